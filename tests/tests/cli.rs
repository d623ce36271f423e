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

#[test]
fn version_names_the_commit() {
    let out = tapline(&["--version"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    let head =
        Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(tapline_e2e::workspace()).output();
    match head {
        // Built from this checkout: the commit it was built at (a rebuild follows new commits).
        Ok(h) if h.status.success() => {
            let commit = String::from_utf8_lossy(&h.stdout).trim().to_string();
            assert!(s.starts_with("tapline ") && s.contains("(commit ") && s.len() > 20, "{s}");
            assert!(s.contains(&commit), "{s} vs {commit}");
        }
        _ => assert!(s.contains("(commit "), "{s}"),
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p.to_string_lossy().into_owned()
}

#[test]
fn check_config_names_each_problem_and_prints_the_effective_config() {
    let dir = tempfile::tempdir().expect("tmp");
    // A typo and a misspelt plugin key: both are problems (exit 2), each with its key path.
    let bad = write(
        &dir,
        "typo.yaml",
        "stacks:\n  s:\n    plugins:\n      - type: http_capture\n        config: {levl: full}\n\
         tap:\n  ignore_loopbak: true\n  http: {stack: s}\ncontrol: {}\n",
    );
    let out = tapline(&["check-config", &bad]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tap.ignore_loopbak: unknown key") && err.contains("did you mean `ignore_loopback`"), "{err}");
    assert!(err.contains("stacks.s.plugins[0].config.levl: unknown key"), "{err}");
    assert!(err.contains("control: note:"), "an unsupported setting is a note: {err}");
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(out.stdout.is_empty());
    // An invalid value stops at once, with its path.
    let invalid = write(&dir, "invalid.yaml", "tap:\n  direction: sideways\n");
    let out = tapline(&["check-config", &invalid]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tap.direction"));
    // A good file: exit 0, and --print shows the defaults it implies.
    let good = write(
        &dir,
        "good.yaml",
        "stacks:\n  s:\n    plugins:\n      - type: http_capture\n        config: {level: full}\n      - type: report_usage\n\
         tap:\n  direction: egress\n  http: {stack: s}\n",
    );
    let out = tapline(&["check-config", "--print", &good]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("good.yaml: OK"));
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&out.stdout).expect("YAML on stdout");
    assert_eq!(doc["tap"]["direction"].as_str(), Some("egress"));
    assert_eq!(doc["tap"]["ignore_loopback"].as_bool(), Some(false), "a default filled in");
    assert_eq!(doc["stacks"]["s"]["http_capture"]["level"].as_str(), Some("full"));
    assert_eq!(doc["stacks"]["s"]["report_usage"].as_bool(), Some(true));
    assert_eq!(doc["services"]["event_stores"][0]["type"].as_str(), Some("stdout"));
    assert_eq!(doc["services"]["object_store"]["type"].as_str(), Some("local"));
    assert!(doc["redaction"]["headers"].as_sequence().is_some_and(|h| h.iter().any(|x| x == "authorization")));
}
