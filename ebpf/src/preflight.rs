//! Checks that the host can run the agent, with one clear sentence when it cannot.

use std::path::Path;

/// Why the host cannot run the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    /// Not running as root.
    #[error("tapline must run as root (it loads eBPF programs); try: sudo tapline")]
    NotRoot,
    /// No kernel BTF.
    #[error(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing); tapline needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    /// Kernel older than 5.8 (ring buffer).
    #[error("kernel {0} is too old: tapline needs Linux 5.8 or newer (BPF ring buffer)")]
    KernelTooOld(String),
}

fn kernel_release() -> Option<String> {
    nix_uname().or_else(|| std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()))
}

fn nix_uname() -> Option<String> {
    let mut u: libc::utsname = unsafe_zeroed();
    // SAFETY: uname writes into the struct we own.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = u.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8(bytes).ok()
}

fn unsafe_zeroed() -> libc::utsname {
    // SAFETY: utsname is a plain C struct of byte arrays; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Parses `major.minor` from a release like `6.18.44-fc-v669`.
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Root, BTF and kernel ≥ 5.8.
pub fn preflight() -> Result<(), PreflightError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    check(euid, Path::new("/sys/kernel/btf/vmlinux").exists(), kernel_release().as_deref())
}

/// The checks of [`preflight`] on given facts: effective uid, whether kernel BTF exists, the
/// kernel release.
pub fn check(euid: u32, has_btf: bool, release: Option<&str>) -> Result<(), PreflightError> {
    if euid != 0 {
        return Err(PreflightError::NotRoot);
    }
    if !has_btf {
        return Err(PreflightError::NoBtf);
    }
    if let Some(rel) = release
        && parse_release(rel).is_some_and(|v| v < (5, 8))
    {
        return Err(PreflightError::KernelTooOld(rel.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0-150-generic"), Some((5, 4)));
        assert!(parse_release("5.4.0").is_some_and(|v| v < (5, 8)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn each_missing_requirement_is_named() {
        assert_eq!(check(1000, true, Some("6.18.0")), Err(PreflightError::NotRoot));
        assert_eq!(check(0, false, Some("6.18.0")), Err(PreflightError::NoBtf));
        assert!(PreflightError::NoBtf.to_string().contains("CONFIG_DEBUG_INFO_BTF"));
        let old = check(0, true, Some("5.4.0-150-generic")).unwrap_err();
        assert_eq!(
            old.to_string(),
            "kernel 5.4.0-150-generic is too old: tapline needs Linux 5.8 or newer (BPF ring buffer)"
        );
        assert_eq!(check(0, true, Some("6.18.44")), Ok(()));
        assert_eq!(check(0, true, None), Ok(()), "an unreadable release is not a reason to refuse");
    }

    #[test]
    fn messages_are_one_sentence() {
        for e in [PreflightError::NotRoot, PreflightError::NoBtf, PreflightError::KernelTooOld("4.19".into())] {
            let s = e.to_string();
            assert!(!s.contains('\n') && s.len() < 200, "{s}");
        }
    }
}
