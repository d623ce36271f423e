//! Host facts: host name, primary IP, user names.

use std::net::IpAddr;

/// The user name of `uid` from the host's user database.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
}

/// This machine's host name.
pub fn host_name() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".to_string())
}

/// The first non-loopback address of an interface that is up (IPv4 preferred). Sends nothing.
pub fn primary_local_ip() -> Option<IpAddr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    let mut v6 = None;
    for a in addrs {
        if !a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP) {
            continue;
        }
        let Some(sa) = a.address else { continue };
        if let Some(v4) = sa.as_sockaddr_in() {
            let ip = IpAddr::V4(v4.ip());
            if !ip.is_loopback() {
                return Some(ip);
            }
        } else if let Some(s6) = sa.as_sockaddr_in6() {
            let ip = IpAddr::V6(s6.ip());
            if !ip.is_loopback() && v6.is_none() {
                v6 = Some(ip);
            }
        }
    }
    v6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_host() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert!(!host_name().is_empty());
        if let Some(ip) = primary_local_ip() {
            assert!(!ip.is_loopback());
        }
    }
}
