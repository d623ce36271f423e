//! End to end, as root: a connection with no TLS name and no HTTP host is named from the DNS
//! answer its process received, over UDP and over TCP (glibc's resolver, pointed at a test
//! DNS server through a private mount namespace's /etc/resolv.conf).

use std::process::Command;
use std::time::Duration;

use tapline_e2e::*;

/// Resolves `name` with glibc (getaddrinfo) through `resolv`, connects to it on `port`, sends
/// a line of non-HTTP bytes and reads the answer.
fn resolve_and_connect(resolv: &std::path::Path, name: &str, port: u16) {
    let script = format!(
        "import socket\ns = socket.create_connection(('{name}', {port}))\ns.sendall(b'\\x00\\x01not http\\n')\n\
         s.recv(100)\ns.close()"
    );
    let cmd = format!("mount --bind {} /etc/resolv.conf && python3 -c \"{script}\"", resolv.display());
    run(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &cmd])).expect("client");
}

#[test]
fn endpoint_named_from_udp_and_tcp_dns_answers() {
    let _lock = probe_lock();
    let dir = tempfile::tempdir().unwrap();
    // A test DNS server on a loopback address of its own (127.0.0.1:53 may be a system resolver's).
    let pid = std::process::id();
    let ns = format!("127.53.{}.{}", pid / 250 % 250, pid % 250 + 1);
    let (_dns, _) =
        start_fixture("dns_server.py", &[ns.as_str(), "svc.tapline.test=127.0.0.1", "svc-tcp.tapline.test=127.0.0.1"])
            .expect("dns server");
    let udp = dir.path().join("resolv.udp");
    std::fs::write(&udp, format!("nameserver {ns}\n")).unwrap();
    let tcp = dir.path().join("resolv.tcp");
    std::fs::write(&tcp, format!("nameserver {ns}\noptions use-vc\n")).unwrap();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(None, &[]).expect("agent");

    resolve_and_connect(&udp, "svc.tapline.test", port);
    let ev = agent
        .wait_for(Duration::from_secs(15), "the UDP-named connection", |ev| {
            connections_to(ev, port, "egress-internal").iter().any(|c| c["finalized"] == true)
        })
        .expect("events");
    let c = one(connections_to(&ev, port, "egress-internal"), "client");
    assert_eq!(c["l7Protocol"], "other");
    assert_eq!(c["meta"]["endpointId"], "svc.tapline.test", "named from the UDP answer: {c}");

    resolve_and_connect(&tcp, "svc-tcp.tapline.test", port);
    let ev = agent
        .wait_for(Duration::from_secs(15), "the TCP-named connection", |ev| {
            connections_to(ev, port, "egress-internal").iter().filter(|c| c["finalized"] == true).count() == 2
        })
        .expect("events");
    let named: Vec<&str> =
        connections_to(&ev, port, "egress-internal").iter().filter_map(|c| c["meta"]["endpointId"].as_str()).collect();
    assert!(named.contains(&"svc-tcp.tapline.test"), "named from the TCP answer: {named:?}");

    // The server side is named by what its own process knows: nothing, so the IP.
    for c in connections_to(&ev, port, "ingress") {
        assert_eq!(c["meta"]["endpointId"], "127.0.0.1");
    }
    let (_, metrics) = agent.get("/metrics").expect("metrics");
    let sent = metrics
        .lines()
        .find(|l| l.starts_with("tapline_component_sent_total") && l.contains("component=\"dns\""))
        .unwrap_or_default()
        .to_string();
    assert!(sent.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) >= 2, "{metrics}");
    agent.stop().expect("stop").check_data_model().expect("data model");
}
