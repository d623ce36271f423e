//! Which side of a TCP connection a process is on, for sockets first seen in the middle of
//! their life (the kernel saw neither the connect nor the accept): a socket whose local port
//! has a listener in the process's network namespace is the server side.

use std::net::SocketAddr;

use tapline_ebpf::Role;

/// Parses `/proc/<pid>/net/tcp{,6}` text: whether a socket in LISTEN state has `port`.
pub fn listens_on(table: &str, port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    table.lines().skip(1).any(|l| {
        let mut cols = l.split_whitespace();
        let (Some(_), Some(local), Some(_), Some(state)) = (cols.next(), cols.next(), cols.next(), cols.next()) else {
            return false;
        };
        local.ends_with(&suffix) && state == "0A"
    })
}

/// The role of a socket seen mid-life, from the listeners in `pid`'s network namespace.
pub fn infer_role(pid: u32, local: SocketAddr) -> Role {
    if local.port() == 0 {
        return Role::Unknown;
    }
    let listening = ["tcp", "tcp6"].iter().any(|t| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).is_ok_and(|text| listens_on(&text, local.port()))
    });
    if listening { Role::Server } else { Role::Client }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn listener_ports_decide_the_role() {
        assert!(listens_on(TABLE, 8080), "0x1F90 = 8080 is listening");
        assert!(!listens_on(TABLE, 0xD431), "an established socket's port is not a listener");
        assert!(!listens_on("", 8080));
        assert!(!listens_on("header only\n garbage", 8080));
    }

    #[test]
    fn own_listener_makes_a_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let me = std::process::id();
        assert_eq!(infer_role(me, SocketAddr::from(([127, 0, 0, 1], port))), Role::Server);
        assert_eq!(infer_role(me, c.local_addr().unwrap()), Role::Client);
    }
}
