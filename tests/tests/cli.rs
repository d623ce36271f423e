//! The binary's behaviour that needs no probes: config errors, fetch errors, help.

use std::process::Command;

use tapline_e2e::bin_path;

fn tapline(args: &[&str]) -> std::process::Output {
    Command::new(bin_path()).args(args).output().expect("run tapline")
}

#[test]
fn invalid_config_exits_2_with_the_key_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "tap:\n  direction: sideways\n").expect("write");
    let out = tapline(&["--config", cfg.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tap.direction"), "names the key path: {err}");
    assert!(err.contains("egress-external"), "says what was expected: {err}");
    assert!(out.stdout.is_empty(), "stdout stays clean");
    assert!(!err.contains("panicked") && !err.contains("backtrace"));
}

#[test]
fn not_root_is_one_clear_sentence() {
    // setpriv (util-linux) drops to nobody without a shell.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin_path())
        .args(["--http-listen", "127.0.0.1:0", "--data-dir", "/tmp/tapline-not-root"])
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("root"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

#[test]
fn fetch_of_unknown_digest_fails_clearly() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = tapline(&["--data-dir", dir.path().to_str().unwrap_or_default(), "fetch", &"0".repeat(40)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no object with digest"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn help_has_examples() {
    let out = tapline(&["--help"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("Examples:") && s.contains("fetch"), "{s}");
}
