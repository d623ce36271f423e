//! The likely mistakes, each answered by one clear sentence that says what to do (no panic,
//! no backtrace). Others are tested where they live: not root (cli.rs), a typo in a key
//! (cli.rs, check-config), missing BTF and an old kernel (ebpf preflight unit tests), S3
//! wrong region / credentials / bucket (output/tests/s3.rs).

use std::process::Command;
use std::time::Duration;

use tapline_e2e::*;

fn tapline(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin_path()).args(args).output().expect("run tapline");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    assert!(out.stdout.is_empty(), "stdout stays for events: {out:?}");
    (out.status.code(), err)
}

fn file(dir: &tempfile::TempDir, text: &str) -> String {
    let p = dir.path().join("q.yaml");
    std::fs::write(&p, text).expect("write");
    p.to_string_lossy().into_owned()
}

#[test]
fn missing_config_file() {
    let (code, err) = tapline(&["--config", "/nonexistent/qtap.yaml", "check-config", "/nonexistent/qtap.yaml"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("/nonexistent/qtap.yaml: cannot read the configuration: No such file"), "{err}");
}

#[test]
fn wrong_value_names_the_key_what_is_allowed_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(&dir, "tap:\n  direction: egres\n");
    let (code, err) = tapline(&["check-config", &f]);
    assert_eq!(code, Some(2));
    assert!(err.contains("tap.direction: unknown variant `egres`") && err.contains("`egress`"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn unknown_stack_name_lists_the_stacks_and_suggests_one() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(&dir, "stacks:\n  basic_reporting: {plugins: []}\ntap:\n  http: {stack: basic_reportng}\n");
    let (code, err) = tapline(&["check-config", &f]);
    assert_eq!(code, Some(2));
    assert!(err.contains("tap.http.stack: no stack named `basic_reportng`"), "{err}");
    assert!(err.contains("(did you mean `basic_reporting`?)"), "{err}");
}

#[test]
fn bad_size_says_the_units() {
    let (code, err) = tapline(&["--http-buffer-size", "2xb", "check-config", "/dev/null"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown size unit `xb`") && err.contains("use b, kb, mb or gb"), "{err}");
}

#[test]
fn listen_address_in_use() {
    let _lock = probe_lock();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = tapline(&["--http-listen", &addr, "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("choose another address with --http-listen"),
        "{err}"
    );
}

#[test]
fn forward_receiver_unreachable_is_said_at_start() {
    let _lock = probe_lock();
    let port = free_port();
    let config = format!("services:\n  event_stores: [{{type: forward, host: 127.0.0.1, port: {port}}}]\n");
    let agent = Agent::start(Some(&config), &[]).expect("the agent still starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !agent.stderr().contains("is unreachable") {
        assert!(std::time::Instant::now() < deadline, "no warning: {}", agent.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = agent.stderr();
    assert!(err.contains(&format!("the Fluent Forward receiver 127.0.0.1:{port} is unreachable")), "{err}");
    assert!(err.contains("wait in the spool"), "{err}");
    assert_eq!(agent.get("/readyz").expect("readyz").0, 200, "capture goes on");
    agent.stop().expect("stop");
}
