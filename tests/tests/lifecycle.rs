//! Connection reports over time, signals, a TEST-NET peer in a network namespace
//! (egress-external), and the stdout object store. Real agent, real eBPF, as root.

use std::process::Command;
use std::time::Duration;

use tapline_e2e::*;

fn held_client(port: u16, host: &str) -> Proc {
    let script = format!(
        "import http.client,time\nc=http.client.HTTPConnection('127.0.0.1',{port})\n\
         c.request('GET','/held',headers={{'Host':'{host}'}})\nc.getresponse().read()\ntime.sleep(3)\n\
         c.request('GET','/again',headers={{'Host':'{host}'}})\nc.getresponse().read()\nc.close()\n"
    );
    Proc { child: Command::new("python3").args(["-c", &script]).spawn().expect("client") }
}

#[test]
fn long_connections_get_part_reports_then_a_final_one() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(None, &["--report-interval-secs", "1"]).expect("agent");
    let _client = held_client(port, "parts");
    let ev = agent
        .wait_for(Duration::from_secs(20), "a finalized report", |ev| {
            connections_to(ev, port, "egress-internal").iter().any(|c| c["finalized"] == true)
        })
        .expect("events");
    let reports = connections_to(&ev, port, "egress-internal");
    assert!(reports.len() >= 3, "periodic reports every second over ~3 s: {}", reports.len());
    let id = &reports[0]["meta"]["connectionId"];
    assert!(reports.iter().all(|r| &r["meta"]["connectionId"] == id), "one connection");
    assert!(reports[0].get("part").is_none(), "the first report has part 0, omitted");
    for (i, r) in reports.iter().enumerate().skip(1) {
        assert_eq!(r["part"], i, "parts count up");
    }
    let (last, earlier) = reports.split_last().expect("reports");
    assert_eq!(last["finalized"], true);
    assert!(earlier.iter().all(|r| r.get("finalized").is_none()), "only the last report is final");
    assert!(earlier.iter().all(|r| r.get("closedAt").is_none()));
    assert!(last["closedAt"].is_string());
    assert_eq!(artifacts_of(&ev, id.as_str().unwrap_or("")).len(), 2);
    let stopped = agent.stop().expect("stop");
    stopped.check_data_model().expect("data model");
}

#[test]
fn sigint_finalizes_open_connections_and_exits_zero() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(None, &[]).expect("agent");
    let _client = held_client(port, "sigint-held");
    agent
        .wait_for(Duration::from_secs(15), "the first request", |ev| {
            items(ev, "artifact_record").iter().any(|a| a["endpointId"] == "sigint-held")
        })
        .expect("events");
    agent.signal(libc::SIGINT);
    let stopped = agent.wait_exit(Duration::from_secs(30)).expect("exits on SIGINT");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("SIGINT"), "{}", stopped.stderr);
    let ev = stopped.events();
    let c = connections_to(&ev, port, "egress-internal");
    assert_eq!(c.len(), 1, "the open connection is reported once, finalized");
    assert_eq!(c[0]["finalized"], true);
}

/// A network namespace with a veth pair: 198.51.100.1 here, 198.51.100.2 inside.
struct Netns {
    name: String,
    veth: String,
}

impl Netns {
    fn create() -> Netns {
        let tag = std::process::id() % 100_000;
        let n = Netns { name: format!("tl-ext-{tag}"), veth: format!("tlv{tag}") };
        let peer = format!("{}p", n.veth);
        let sh = |args: &[&str]| run(Command::new("ip").args(args)).expect("ip");
        sh(&["netns", "add", &n.name]);
        sh(&["link", "add", &n.veth, "type", "veth", "peer", "name", &peer]);
        sh(&["link", "set", &peer, "netns", &n.name]);
        sh(&["addr", "add", "198.51.100.1/24", "dev", &n.veth]);
        sh(&["link", "set", &n.veth, "up"]);
        sh(&["netns", "exec", &n.name, "ip", "addr", "add", "198.51.100.2/24", "dev", &peer]);
        sh(&["netns", "exec", &n.name, "ip", "link", "set", &peer, "up"]);
        sh(&["netns", "exec", &n.name, "ip", "link", "set", "lo", "up"]);
        n
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.veth]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

#[test]
fn test_net_peer_is_egress_external_and_direction_filters_apply() {
    let _lock = probe_lock();
    let ns = Netns::create();
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3"])
        .arg(fixture("http_server.py"))
        .arg("198.51.100.2")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("server in netns");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line)
        .expect("port");
    let _server = Proc { child };
    let ext_port: u16 = line.trim().parse().expect("port number");
    let (_local, local_port) = start_http_server("127.0.0.1").expect("local server");
    let config = r#"
services:
  event_stores: [{type: stdout}]
  object_stores: [{type: local}]
stacks:
  s: {plugins: [{type: http_capture, config: {level: summary}}]}
tap:
  direction: egress-external
  ignore_loopback: true
  http: {stack: s}
"#;
    let agent = Agent::start(Some(config), &[]).expect("agent");
    run(Command::new("curl").args(["-sS", "-o", "/dev/null", &format!("http://127.0.0.1:{local_port}/internal")]))
        .expect("curl local");
    run(Command::new("curl").args(["-sS", "-o", "/dev/null", &format!("http://198.51.100.2:{ext_port}/external")]))
        .expect("curl external");
    let ev = agent
        .wait_for(Duration::from_secs(15), "the external connection", |ev| {
            !connections_to(ev, ext_port, "egress-external").is_empty()
        })
        .expect("events");
    let c = &connections_to(&ev, ext_port, "egress-external")[0];
    assert_eq!(c["destination"]["address"]["ip"], "198.51.100.2");
    assert_eq!(c["source"]["address"]["ip"], "198.51.100.1");
    let recs = artifacts_of(&ev, c["meta"]["connectionId"].as_str().unwrap_or(""));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["summary"]["direction"], "egress-external");
    // Give the loopback connection time to have been reported, had it not been filtered.
    std::thread::sleep(Duration::from_millis(500));
    let ev = agent.events();
    assert!(
        items(&ev, "connection").iter().all(|c| c["destination"]["address"]["port"] != local_port),
        "loopback / internal traffic is filtered out"
    );
    assert!(
        connections_to(&ev, ext_port, "ingress").is_empty(),
        "the server's ingress side is filtered out by direction"
    );
    agent.stop().expect("stop");
}

#[test]
fn stdout_object_store_prints_objects_for_development() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let config = r#"
services:
  event_stores: [{type: stdout}]
  object_stores: [{type: stdout}]
stacks:
  s: {plugins: [{type: http_capture, config: {level: full}}]}
tap: {direction: egress, http: {stack: s}}
"#;
    let agent = Agent::start(Some(config), &[]).expect("agent");
    run(Command::new("curl").args(["-sS", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/dev-objects")]))
        .expect("curl");
    let ev = agent
        .wait_for(Duration::from_secs(15), "the object line", |ev| {
            ev.iter().any(|e| {
                e["message"] == "object store submission"
                    && b64(&e["data_base64"]).windows(12).any(|w| w == b"/dev-objects")
            })
        })
        .expect("events");
    let obj = ev
        .iter()
        .find(|e| {
            e["message"] == "object store submission"
                && b64(&e["data_base64"]).windows(12).any(|w| w == b"/dev-objects")
        })
        .expect("object line");
    let raw = b64(&obj["data_base64"]);
    assert_eq!(sha1_hex(&raw), obj["digest"].as_str().unwrap_or(""));
    let parsed: serde_json::Value = serde_json::from_slice(&raw).expect("object JSON");
    assert_eq!(parsed["request"]["path"], "/dev-objects");
    let rec = items(&ev, "artifact_record").into_iter().find(|a| a["digest"] == obj["digest"]).expect("record");
    assert_eq!(rec["url"], format!("stdout://{}", obj["digest"].as_str().unwrap_or("")));
    agent.stop().expect("stop");
}

/// The status line: off a terminal it is an `info` record on stderr with the counters.
#[test]
fn status_line_on_stderr() {
    let _lock = probe_lock();
    let (_server, port) = start_http_server("127.0.0.1").expect("server");
    let agent = Agent::start(None, &["--status-interval-secs", "1"]).expect("agent");
    for i in 0..5 {
        run(Command::new("curl").args(["-sS", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}/status-{i}")))
            .expect("curl");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let busy = loop {
        let found: Vec<serde_json::Value> = agent
            .stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "status")
            .collect();
        if let Some(s) = found.iter().find(|s| s["events_per_sec"].as_f64().is_some_and(|e| e > 0.0)) {
            break s.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no busy status line: {}", agent.stderr());
        std::thread::sleep(Duration::from_millis(200));
    };
    for k in ["connections", "objects_per_sec", "drops", "spool_bytes"] {
        assert!(busy[k].is_number(), "{k}: {busy}");
    }
    assert_eq!(busy["level"], "INFO");
    agent.stop().expect("stop");
}
