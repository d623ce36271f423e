//! Stamps the git commit into `tapline --version` (`TAPLINE_GIT_COMMIT` overrides it, e.g. in
//! a Docker build without `.git`; `unknown` when neither is there).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TAPLINE_GIT_COMMIT");
    let git = Path::new("../.git");
    if git.is_dir() {
        println!("cargo:rerun-if-changed=../.git/HEAD");
        // The branch's ref moves with every commit.
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
            && let Some(r) = head.trim().strip_prefix("ref: ")
        {
            println!("cargo:rerun-if-changed=../.git/{r}");
            println!("cargo:rerun-if-changed=../.git/packed-refs");
        }
    }
    let commit = std::env::var("TAPLINE_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    });
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rustc-env=TAPLINE_VERSION={version} (commit {})", commit.as_deref().unwrap_or("unknown"));
}
