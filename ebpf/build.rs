//! Compiles the C kernel programs in `src/bpf/` with clang into `$OUT_DIR/tapline.bpf.o` (CO-RE, BTF).
use std::{env, path::PathBuf, process::Command};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("tapline.bpf.o");
    let clang = env::var("BPF_CLANG").unwrap_or_else(|_| {
        for c in ["clang", "clang-19", "clang-16", "clang-14"] {
            if Command::new(c).arg("--version").output().is_ok() {
                return c.to_string();
            }
        }
        panic!("no clang found: run scripts/install-deps.sh (apt-get install clang libbpf-dev) or set BPF_CLANG")
    });
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "arm64",
        _ => "x86",
    };
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .args(["-I", "src/bpf"])
        .args(["-c", "src/bpf/tapline.bpf.c", "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("failed to run {clang}: {e}"));
    assert!(status.success(), "clang failed to compile src/bpf/tapline.bpf.c");
    for f in ["src/bpf/tapline.bpf.c", "src/bpf/record.h", "src/bpf/vmlinux.h"] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
}
