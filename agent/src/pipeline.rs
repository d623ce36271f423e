//! The pipeline: kernel records in, events and objects out.
//!
//! record → connection table → protocol state → transactions → `http_capture` → stores.
//! Everything here runs on one task, record by record, so no locking is needed and the
//! order of a connection's bytes is the ring-buffer order.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tapline_ebpf::{DataSource, Record, Role};
use tapline_output::event::{Event, EventStore};
use tapline_output::ids::new_id;
use tapline_output::metrics::{ComponentMetrics, Metrics};
use tapline_output::model::{self, L7Protocol, Tags};
use tapline_output::object::{ObjectStore, StoredObject};
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::config::{CaptureLevel, TapDirection};
use crate::conn::l7::{L7Output, L7State};
use crate::conn::stream::{Admit, StreamCursor};
use crate::conn::{Connection, Plaintext, host_without_port};
use crate::dns::{DnsError, DnsNames, split_tcp_messages};
use crate::plugins::http_capture::{self, TxnContext};
use crate::process::ProcessTable;
use crate::txn::{BodyPolicy, Notice, Transaction};

/// Pipeline settings, resolved from the configuration and the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The plugin stacks: `tap.http.stack` and per-endpoint ones.
    pub stacks: crate::config::Stacks,
    /// Maximum body bytes kept per message (`--http-buffer-size`).
    pub body_cap: usize,
    /// Which directions are reported (`tap.direction`).
    pub direction: TapDirection,
    /// Drop loopback connections (`tap.ignore_loopback`).
    pub ignore_loopback: bool,
    /// Report DNS lookups as `connection` events (`tap.audit_include_dns`).
    pub audit_include_dns: bool,
    /// A long-lived connection is reported every this often (with `part`).
    pub report_interval: Duration,
    /// This host's name (`tags.host`, `system.hostname`).
    pub hostname: String,
    /// This host's primary IP (`tags.ip`).
    pub local_ip: Option<IpAddr>,
    /// Id of this agent run (`system.agentInstance`).
    pub agent_instance: String,
    /// Connections tracked at once; more are counted and not tracked.
    pub max_connections: usize,
    /// Masks secrets in every transaction before it is stored (`None`: redaction off).
    pub redactor: Option<Arc<crate::redact::Redactor>>,
    /// Key of the keyed hash (`redaction.hash_key`), also used for `authTokenHash`.
    pub hash_key: Option<Vec<u8>>,
    /// `tap.filters` (groups and custom).
    pub filter: crate::process::filter::ProcessFilter,
    /// Tags added to every connection (`--tags k:v,k:v`).
    pub deployment_tags: Vec<(String, String)>,
    /// Tags read from each process's environment (`tags:` with `source: env`).
    pub tag_sources: Vec<crate::config::TagSource>,
}

impl Settings {
    fn keep_bodies(&self) -> bool {
        self.stacks.all().any(|s| s.keeps_bodies())
    }

    /// Environment variables of processes that rules and tags read.
    fn env_vars(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tag_sources.iter().map(|t| t.env.clone()).collect();
        for s in self.stacks.all() {
            let rules = s
                .rules
                .iter()
                .map(|r| &r.rule)
                .chain(s.access_logs.iter().flat_map(|a| a.rules.iter().map(|(r, _)| r)));
            for r in rules {
                v.extend(r.fields().iter().filter_map(|f| f.strip_prefix("src.process.env.")).map(str::to_string));
            }
        }
        v
    }

    /// The tags of a connection of `process` (`tags` of connection events, `k:v` lists elsewhere).
    fn tags(&self, process: &crate::process::ProcessInfo, protocol: &str) -> Tags {
        let mut tags = Tags::default();
        if let Some(bin) = &process.binary {
            tags.add("bin", bin);
        }
        tags.add("host", &self.hostname);
        if let Some(ip) = self.local_ip {
            tags.add("ip", &ip.to_string());
        }
        tags.add("protocol", protocol);
        tags.add("strategy", process.strategy.as_str());
        if let Some(m) = process.container.as_deref() {
            if let Some(pod) = &m.pod_name {
                tags.add("pod", pod);
            }
            if let Some(ns) = &m.pod_namespace {
                tags.add("namespace", ns);
            }
        }
        for (k, v) in &self.deployment_tags {
            tags.add(k, v);
        }
        if let Some(v) = process.env_var(crate::process::strategy::TAGS_ENV) {
            for (k, v) in crate::process::strategy::parse_tags(v) {
                tags.add(&k, &v);
            }
        }
        for t in &self.tag_sources {
            if let Some(v) = process.env_var(&t.env) {
                tags.add(&t.key, v);
            }
        }
        tags
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct TypeLabel {
    r#type: String,
}

/// The pipeline's own metrics (stores count themselves).
struct PipelineMetrics {
    records: Family<KindLabel, Counter>,
    events: Family<TypeLabel, Counter>,
    /// The series of `records` and `events` by kind, resolved once.
    record_kinds: Vec<(&'static str, Counter)>,
    event_kinds: Vec<(&'static str, Counter)>,
    events_total: Counter,
    gaps: Counter,
    gap_bytes: Counter,
    redacted: Counter,
    active: Gauge,
    http1: ComponentMetrics,
    http2: ComponentMetrics,
    dns: ComponentMetrics,
    http_metrics: crate::plugins::http_metrics::HttpMetrics,
    capture: ComponentMetrics,
    connections: ComponentMetrics,
}

impl PipelineMetrics {
    fn new(metrics: &Metrics) -> Self {
        let records = Family::<KindLabel, Counter>::default();
        let events = Family::<TypeLabel, Counter>::default();
        let record_kinds = ["exec", "fork", "exit", "open", "data", "dns", "close"]
            .into_iter()
            .map(|k| (k, records.get_or_create(&KindLabel { kind: k.to_string() }).clone()))
            .collect();
        let event_kinds = ["connection", "artifact_record", "issue", "request"]
            .into_iter()
            .map(|k| (k, events.get_or_create(&TypeLabel { r#type: k.to_string() }).clone()))
            .collect();
        let m = Self {
            records,
            events,
            record_kinds,
            event_kinds,
            events_total: Counter::default(),
            gaps: Counter::default(),
            gap_bytes: Counter::default(),
            redacted: Counter::default(),
            active: Gauge::default(),
            http1: metrics.component("parser", "http1"),
            http2: metrics.component("parser", "http2"),
            dns: metrics.component("parser", "dns"),
            http_metrics: crate::plugins::http_metrics::HttpMetrics::new(metrics),
            capture: metrics.component("plugin", "http_capture"),
            connections: metrics.component("tracker", "connections"),
        };
        metrics.register("tapline_records", "Kernel ring-buffer records decoded, by kind", m.records.clone());
        metrics.register("tapline_events", "Events emitted, by type", m.events.clone());
        metrics.register(
            "tapline_stream_gaps",
            "Gaps (bytes the kernel could not deliver) seen in connection streams",
            m.gaps.clone(),
        );
        metrics.register("tapline_stream_gap_bytes", "Bytes lost in stream gaps", m.gap_bytes.clone());
        metrics.register(
            "tapline_redactions",
            "Secrets masked before storing (headers, query values, body fields)",
            m.redacted.clone(),
        );
        metrics.register("tapline_connections_active", "Connections being tracked", m.active.clone());
        m
    }
}

/// Turns records into events and objects.
pub struct Pipeline {
    settings: Settings,
    clock: Clock,
    conns: HashMap<u64, Connection>,
    processes: ProcessTable,
    event_stores: Vec<Arc<dyn EventStore>>,
    object_store: Arc<dyn ObjectStore>,
    m: PipelineMetrics,
    /// TLS probe families that delivered plaintext, per process (`meta.tlsProbeTypesDetected`).
    tls_probes: HashMap<u32, BTreeSet<&'static str>>,
    /// Host names learned from the DNS answers processes received.
    dns: DnsNames,
    /// Processes that called exec since the last [`Pipeline::take_execs`], and when (TLS probe discovery).
    execs: Vec<(u32, SystemTime)>,
    /// Kernel filter decisions not yet pushed (`(pid, flags)`).
    kernel_skips: Vec<(u32, u32)>,
    /// Whether any stack may need message bodies (from the settings; read for every data record).
    keep_bodies: bool,
}

/// DNS-over-TCP bytes buffered per connection while a message is incomplete.
const DNS_TCP_LIMIT: usize = 64 * 1024;

/// Admits bytes into one stream (raw or plaintext) and feeds what is new to its protocol state.
#[allow(clippy::too_many_arguments)]
fn admit_and_feed(
    m: &PipelineMetrics,
    cursor: &mut StreamCursor,
    l7: &mut L7State,
    role: Role,
    dir: tapline_ebpf::Direction,
    pos: u64,
    bytes: &[u8],
    at: SystemTime,
    policy: BodyPolicy,
    payload_skipped: bool,
    out: &mut L7Output,
) {
    match cursor.admit(pos, bytes) {
        Admit::Duplicate => m.connections.discarded("duplicate_bytes", bytes.len() as u64),
        Admit::Contiguous(b) => l7.on_data(role, dir, b, at, policy, out),
        // The kernel skipped this process's payload on purpose (tap.filters): not a loss.
        Admit::AfterGap { bytes: b, .. } if payload_skipped => l7.on_data(role, dir, b, at, policy, out),
        Admit::AfterGap { missing, bytes: b } => {
            m.gaps.inc();
            m.gap_bytes.inc_by(missing);
            l7.on_gap(dir, missing, at, out);
            l7.on_data(role, dir, b, at, policy, out);
        }
    }
}

fn comm_str(comm: &[u8]) -> &[u8] {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    &comm[..end]
}

impl Pipeline {
    /// A pipeline writing to the given stores.
    pub fn new(
        settings: Settings,
        clock: Clock,
        processes: ProcessTable,
        event_stores: Vec<Arc<dyn EventStore>>,
        object_store: Arc<dyn ObjectStore>,
        metrics: &Metrics,
    ) -> Self {
        let mut processes = processes;
        processes.add_env_vars(settings.env_vars());
        let keep_bodies = settings.keep_bodies();
        Self {
            settings,
            clock,
            conns: HashMap::new(),
            processes,
            event_stores,
            object_store,
            m: PipelineMetrics::new(metrics),
            tls_probes: HashMap::new(),
            dns: DnsNames::new(),
            execs: Vec::new(),
            kernel_skips: Vec::new(),
            keep_bodies,
        }
    }

    /// Applies reloaded settings to what happens next; the identity of this run (host name,
    /// agent instance) is kept.
    pub fn replace_settings(&mut self, mut new: Settings) {
        new.hostname = std::mem::take(&mut self.settings.hostname);
        new.local_ip = self.settings.local_ip;
        new.agent_instance = std::mem::take(&mut self.settings.agent_instance);
        self.processes.add_env_vars(new.env_vars());
        self.keep_bodies = new.keep_bodies();
        self.settings = new;
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Events emitted and objects stored since start (the status line).
    pub fn totals(&self) -> (u64, u64) {
        (self.m.events_total.get(), self.m.capture.sent_count())
    }

    /// Connections currently tracked.
    pub fn active_connections(&self) -> usize {
        self.conns.len()
    }

    fn count_record(&self, kind: &'static str) {
        match self.m.record_kinds.iter().find(|(k, _)| *k == kind) {
            Some((_, c)) => c.inc(),
            None => self.m.records.get_or_create(&KindLabel { kind: kind.to_string() }).inc(),
        };
    }

    /// Handles one kernel record.
    pub fn handle(&mut self, record: Record<'_>) {
        match record {
            Record::Exec { ts_ns, pid, uid, filename, comm, cgroup_id, .. } => {
                self.count_record("exec");
                self.processes.on_exec(pid, uid, filename, comm_str(&comm), cgroup_id);
                self.execs.push((pid, self.clock.wall(ts_ns)));
                // The kernel applied its exact-path filters at exec; the whole decision
                // (prefixes, regexes, QPOINT_STRATEGY) is pushed back to it.
                let flags = self.kernel_flags_of(pid);
                self.kernel_skips.push((pid, flags));
            }
            Record::Fork { parent_pid, child_pid, .. } => {
                self.count_record("fork");
                self.processes.on_fork(parent_pid, child_pid);
            }
            Record::Exit { pid, .. } => {
                self.count_record("exit");
                self.processes.on_exit(pid);
                self.tls_probes.remove(&pid);
            }
            Record::Open { ts_ns, pid, fd, sock, role, local, remote, uid, comm, .. } => {
                self.count_record("open");
                let at = self.clock.wall(ts_ns);
                if let Some(old) = self.conns.remove(&sock) {
                    // The kernel reused the socket id before we saw its close.
                    self.m.connections.discarded("close_not_seen", 1);
                    self.finalize(old, at, None);
                }
                self.open(sock, pid, fd, role, local, remote, Some(uid), comm_str(&comm), at);
            }
            Record::Data { ts_ns, pid, fd, sock, dir, pos, bytes, source, .. } => {
                self.count_record("data");
                let at = self.clock.wall(ts_ns);
                if !self.conns.contains_key(&sock) {
                    // Its open record was lost (ring full): track it anyway, addresses unknown.
                    self.m.connections.error("data_without_open");
                    let unknown = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
                    self.open(sock, pid, fd, Role::Unknown, unknown, unknown, None, b"", at);
                }
                self.data(sock, dir, pos, bytes, source, at);
            }
            Record::Dns { ts_ns, pid, comm, bytes, truncated, server, local, .. } => {
                self.count_record("dns");
                let process = self.processes.get(pid, None, comm_str(&comm));
                let skip = self.settings.filter.skip_process(&process);
                if skip.all || skip.dns {
                    self.m.dns.discarded("filtered_process", 1);
                    return;
                }
                let scope = Self::dns_scope(&process);
                self.learn_dns(scope, bytes, truncated);
                if self.settings.audit_include_dns {
                    self.audit_dns(&process, local, server, bytes.len() as u64, self.clock.wall(ts_ns));
                }
            }
            Record::Close { ts_ns, sock, bytes_sent, bytes_received, .. } => {
                self.count_record("close");
                let at = self.clock.wall(ts_ns);
                if let Some(conn) = self.conns.remove(&sock) {
                    self.finalize(conn, at, Some((bytes_sent, bytes_received)));
                }
            }
        }
        self.m.active.set(self.conns.len() as i64);
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        sock: u64,
        pid: u32,
        fd: i32,
        role: Role,
        local: SocketAddr,
        remote: SocketAddr,
        uid: Option<u32>,
        comm: &[u8],
        at: SystemTime,
    ) {
        if self.conns.len() >= self.settings.max_connections {
            self.m.connections.discarded("table_full", 1);
            return;
        }
        let process = self.processes.get(pid, uid, comm);
        let skip = self.settings.filter.skip_process(&process);
        if skip.all {
            // A filtered process: nothing of it is tracked (its data records come back here too).
            self.m.connections.discarded("filtered_process", 1);
            return;
        }
        self.m.connections.received(1);
        let scope = Self::dns_scope(&process);
        let dns_name = (role != Role::Server)
            .then(|| self.dns.name_for(scope, remote.ip(), std::time::Instant::now()).map(str::to_string))
            .flatten();
        let dns_tcp = (remote.port() == 53).then(Vec::new);
        self.conns.insert(
            sock,
            Connection {
                id: new_id(),
                sock,
                pid,
                fd,
                role,
                local,
                remote,
                created_at: at,
                last_activity: at,
                process,
                egress: StreamCursor::default(),
                ingress: StreamCursor::default(),
                l7: if skip.data || skip.http { L7State::Other } else { L7State::default() },
                plain: None,
                skip_tls: skip.tls,
                payload_skipped: skip.kernel_flags() & tapline_ebpf::filters::SKIP_DATA != 0,
                // A socket met mid-life: its listeners tell which side the process is on.
                server_hint: (role == Role::Unknown).then(|| crate::process::sockets::infer_role(pid, local)).and_then(
                    |r| match r {
                        Role::Server => Some(true),
                        Role::Client => Some(false),
                        Role::Unknown => None,
                    },
                ),
                hpack_issue_raised: false,
                dns_name,
                dns_tcp,
                host: None,
                reports: 0,
                last_report: at,
                reported: true,
            },
        );
    }

    fn policy(&self) -> BodyPolicy {
        BodyPolicy { keep: self.keep_bodies, cap: self.settings.body_cap }
    }

    /// The DNS scope of a process: its container (answers a container got name its
    /// connections first), or 0 for the host.
    fn dns_scope(process: &crate::process::ProcessInfo) -> u64 {
        use std::hash::{Hash, Hasher};
        match &process.container_id {
            Some(id) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                id.hash(&mut h);
                h.finish() | 1
            }
            None => 0,
        }
    }

    /// Remembers the answers of one DNS response.
    fn learn_dns(&mut self, scope: u64, msg: &[u8], truncated: bool) {
        self.m.dns.received(1);
        match self.dns.insert_message(scope, msg, std::time::Instant::now()) {
            Ok(n) => self.m.dns.sent(n as u64),
            Err(DnsError::NotAResponse) => self.m.dns.discarded("not_a_response", 1),
            Err(_) if truncated => self.m.dns.discarded("truncated_message", 1),
            Err(_) => self.m.dns.error("malformed"),
        }
    }

    /// What the kernel should skip of process `pid` (`tapline_ebpf::filters` bits; 0: nothing).
    pub fn kernel_flags_of(&mut self, pid: u32) -> u32 {
        let p = self.processes.get(pid, None, b"");
        self.settings.filter.skip_process(&p).kernel_flags()
    }

    /// Kernel filter decisions made since the last call, as `(pid, flags)`.
    pub fn take_kernel_skips(&mut self) -> Vec<(u32, u32)> {
        std::mem::take(&mut self.kernel_skips)
    }

    /// Processes that called exec since the last call (for TLS probe discovery).
    pub fn take_execs(&mut self) -> Vec<(u32, SystemTime)> {
        std::mem::take(&mut self.execs)
    }

    /// An HTTP/2 connection whose header compression state is unknown (met in its middle, or
    /// bytes lost): one `issue` per connection, so users know why it has no transactions.
    fn hpack_state_unknown(&mut self, sock: u64, now: SystemTime) {
        let Some(conn) = self.conns.get_mut(&sock) else { return };
        self.m.http2.error("hpack_state_unknown");
        if std::mem::replace(&mut conn.hpack_issue_raised, true) {
            return;
        }
        let Some(conn) = self.conns.get(&sock) else { return };
        if !Self::reportable(&self.settings, conn) {
            return;
        }
        let ev = model::Issue {
            connection_id: conn.id.clone(),
            endpoint_id: conn.endpoint_id(),
            request_id: String::new(),
            tags: vec![format!("host:{}", self.settings.hostname), "protocol:http2".to_string()],
            timestamp: model::rfc3339(now),
            direction: Some(conn.direction()),
            error: "http2_hpack_state_unknown".to_string(),
            url: String::new(),
            path: String::new(),
            method: String::new(),
            status: None,
            trigger_conditions: vec!["http2:hpack_state_unknown".to_string()],
            trigger_reasons: vec![
                "the HTTP/2 header compression state of this connection is unknown (it was already open when \
                 capture started, or bytes were lost): its headers cannot be decoded, so no transactions are \
                 reported for it; its bytes are still counted"
                    .to_string(),
            ],
            count: 0,
        };
        Self::emit(&self.m, &self.event_stores, Event::Issue(ev));
    }

    /// Reports items a remote store dropped because its spool was full, as one `issue`
    /// (with the count) per report interval.
    pub fn emit_sink_drop_issue(&self, sink: &str, dropped: u64, now: SystemTime) {
        let ev = model::Issue {
            connection_id: String::new(),
            endpoint_id: String::new(),
            request_id: String::new(),
            tags: vec![format!("store:{sink}"), format!("host:{}", self.settings.hostname)],
            timestamp: model::rfc3339(now),
            direction: None,
            error: "store_spool_full".to_string(),
            url: String::new(),
            path: String::new(),
            method: String::new(),
            status: None,
            trigger_conditions: vec!["store:spool_full".to_string()],
            trigger_reasons: vec![format!(
                "{dropped} items for {sink} were dropped: its receiver was unreachable and the spool (--spool-size) is full"
            )],
            count: dropped,
        };
        Self::emit(&self.m, &self.event_stores, Event::Issue(ev));
        self.flush();
    }

    /// Reports a binary the TLS probes cannot read as an `issue` event (agent-level: no
    /// connection or request; the file is in the tags and the reason).
    pub fn emit_attach_issue(&self, issue: &crate::tls_attach::AttachIssue, now: SystemTime) {
        let ev = model::Issue {
            connection_id: String::new(),
            endpoint_id: String::new(),
            request_id: String::new(),
            tags: vec![format!("exe:{}", issue.path), format!("host:{}", self.settings.hostname)],
            timestamp: model::rfc3339(now),
            direction: None,
            error: issue.error.to_string(),
            url: String::new(),
            path: String::new(),
            method: String::new(),
            status: None,
            trigger_conditions: vec![format!("tls_probe:{}", issue.error)],
            trigger_reasons: vec![issue.reason.clone()],
            count: 0,
        };
        Self::emit(&self.m, &self.event_stores, Event::Issue(ev));
        self.flush();
    }

    fn data(
        &mut self,
        sock: u64,
        dir: tapline_ebpf::Direction,
        pos: u64,
        bytes: &[u8],
        source: DataSource,
        at: SystemTime,
    ) {
        let policy = self.policy();
        let Some(conn) = self.conns.get_mut(&sock) else {
            return;
        };
        conn.last_activity = at;
        let mut out = L7Output::default();
        let role = conn.role;
        let skipped = conn.payload_skipped;
        match source.probe_name() {
            // Raw socket bytes: plaintext protocols, or (for TLS) the handshake reader.
            None => {
                let (cursor, l7) = conn.raw_stream(dir);
                admit_and_feed(&self.m, cursor, l7, role, dir, pos, bytes, at, policy, skipped, &mut out);
                if dir == tapline_ebpf::Direction::Ingress
                    && let Some(buf) = conn.dns_tcp.as_mut()
                {
                    // DNS over TCP: 2-byte length-prefixed answers, read as they complete.
                    buf.extend_from_slice(&bytes[..bytes.len().min(DNS_TCP_LIMIT.saturating_sub(buf.len()))]);
                    let (msgs, used) = split_tcp_messages(buf);
                    let msgs: Vec<Vec<u8>> = msgs.into_iter().map(<[u8]>::to_vec).collect();
                    buf.drain(..used);
                    if buf.len() >= DNS_TCP_LIMIT {
                        buf.clear();
                        self.m.dns.discarded("tcp_message_too_large", 1);
                    }
                    let scope = Self::dns_scope(&conn.process);
                    for m in msgs {
                        self.learn_dns(scope, &m, false);
                    }
                }
            }
            Some(_) if conn.skip_tls => self.m.connections.discarded("filtered_tls_bytes", bytes.len() as u64),
            Some(probe) => {
                if conn.plain.is_none() {
                    // From now on the raw bytes of this socket are ciphertext.
                    conn.l7.become_tls();
                    self.tls_probes.entry(conn.pid).or_default().insert(probe);
                }
                let plain = conn.plain.get_or_insert_with(|| Box::new(Plaintext::new(probe)));
                let (cursor, l7) = plain.stream(dir);
                admit_and_feed(&self.m, cursor, l7, role, dir, pos, bytes, at, policy, skipped, &mut out);
            }
        }
        match self.conns.get(&sock).map(|c| c.app().protocol()) {
            Some(L7Protocol::Http1) => self.m.http1.received(bytes.len() as u64),
            Some(L7Protocol::Http2) => self.m.http2.received(bytes.len() as u64),
            _ => {}
        }
        self.after_l7(sock, out, at);
    }

    /// Counts notices and captures finished transactions of connection `sock`.
    fn after_l7(&mut self, sock: u64, out: L7Output, now: SystemTime) {
        for n in &out.notices {
            match n {
                Notice::ParseError(e) => self.m.http1.error(e.reason()),
                Notice::OrphanResponse => self.m.http1.discarded("response_without_request", 1),
                Notice::Upgraded => {}
                Notice::Http2(e) => self.m.http2.error(e.reason()),
                Notice::StreamReset => self.m.http2.discarded("stream_reset_before_response", 1),
                Notice::HpackStateUnknown => self.hpack_state_unknown(sock, now),
            }
        }
        if out.unanswered > 0 {
            self.m.capture.discarded("no_response", out.unanswered as u64);
        }
        if out.transactions.is_empty() {
            return;
        }
        let Some(conn) = self.conns.get_mut(&sock) else {
            return;
        };
        Self::refresh_container(&self.processes, conn);
        if conn.host.is_none() {
            conn.host = out
                .transactions
                .iter()
                .find_map(|t| {
                    let hs = &t.request.headers;
                    hs.iter()
                        .find(|h| h.name == ":authority")
                        .or_else(|| hs.iter().find(|h| h.name.eq_ignore_ascii_case("host")))
                })
                .map(|h| host_without_port(&h.value).to_string())
                .filter(|h| !h.is_empty());
        }
        let Some(conn) = self.conns.get(&sock) else {
            return;
        };
        Self::capture_all(&self.settings, conn, out, now, &self.m, &*self.object_store, &self.event_stores);
    }

    /// A container the runtime had not named yet when the connection opened: its answer, once
    /// it is there (never waits).
    fn refresh_container(processes: &ProcessTable, conn: &mut Connection) {
        if conn.process.container.is_none() && conn.process.container_id.is_some() {
            conn.process.container = processes.container_meta(conn.process.container_id.as_deref());
        }
    }

    fn reportable(settings: &Settings, conn: &Connection) -> bool {
        if settings.ignore_loopback && (conn.remote.ip().is_loopback() || conn.local.ip().is_loopback()) {
            return false;
        }
        let d = conn.direction();
        settings.direction.allows(d == model::Direction::Ingress, d == model::Direction::EgressExternal)
    }

    fn capture_all(
        settings: &Settings,
        conn: &Connection,
        out: L7Output,
        now: SystemTime,
        m: &PipelineMetrics,
        objects: &dyn ObjectStore,
        events: &[Arc<dyn EventStore>],
    ) {
        if !Self::reportable(settings, conn) {
            m.capture.discarded("filtered", out.transactions.len() as u64);
            return;
        }
        let endpoint_id = conn.endpoint_id();
        let server_side = conn.is_server_side();
        let dst = if server_side { conn.local } else { conn.remote };
        let ctx = TxnContext {
            connection_id: &conn.id,
            endpoint_id: &endpoint_id,
            direction: conn.direction(),
            process: &conn.process,
            scheme: if conn.is_tls() { "https" } else { "http" },
            body_cap: settings.body_cap,
            redactor: settings.redactor.as_deref(),
            server_side,
            fallback_authority: dst.to_string(),
        };
        // Built once per batch, and only when a plugin reads them (rules, issues, request events).
        let tags_cell = std::cell::OnceCell::new();
        let tags = || tags_cell.get_or_init(|| settings.tags(&conn.process, conn.app().tag_protocol().as_str()));
        for mut txn in out.transactions {
            m.capture.received(1);
            let host = conn.host.as_deref();
            let stack = settings.stacks.for_host(host, &endpoint_id);
            if stack.http_metrics {
                m.http_metrics.observe(&txn, &endpoint_id, conn.direction().as_str());
            }
            // The credential is described before redaction masks it (the event never holds it).
            let auth = stack
                .report_usage
                .then(|| crate::plugins::report_usage::auth_token(&txn.request.headers, settings.hash_key.as_deref()));
            if let Some(r) = &settings.redactor {
                let stats = r.apply(&mut txn);
                if stats.total() > 0 {
                    m.redacted.inc_by(stats.total() as u64);
                }
            }
            let url = format!("{}://{}{}", ctx.scheme, host.unwrap_or(&endpoint_id), txn.request.target);
            // The rule fields, built once for every plugin that reads them.
            let fields = stack
                .needs_fields()
                .then(|| crate::plugins::fields::transaction_fields(&txn, conn, ctx.scheme, tags()));
            if let Some(al) = &stack.access_logs {
                Self::access_log(al, &txn, conn, &url, fields.as_ref());
            }
            let decision = stack.decide(fields.as_ref(), || m.capture.error("rule_missing_field"));
            let mut level = decision.level;
            let request_id = new_id();
            let hits = if stack.error_rules.is_empty() {
                Vec::new()
            } else {
                crate::plugins::detect_errors::check(&stack.error_rules, &txn, &url, tags())
            };
            for hit in hits {
                level = level.max(hit.level);
                if hit.report {
                    let issue = Self::error_issue(conn, tags(), &txn, &request_id, &url, hit, now);
                    Self::emit(m, events, Event::Issue(issue));
                }
            }
            if level == CaptureLevel::None && auth.is_none() {
                m.capture.discarded("level_none", 1);
                continue;
            }
            // report_usage needs the summary even when nothing is stored.
            let Some(captured) = http_capture::capture(&txn, level.max(CaptureLevel::Summary), &ctx, request_id, now)
            else {
                continue;
            };
            if let Some(auth) = auth {
                Self::emit(m, events, Event::Request(Self::request_event(&captured, tags(), auth)));
            }
            if level == CaptureLevel::None {
                m.capture.discarded("level_none", 1);
                continue;
            }
            let stored = match decision.format {
                crate::config::CaptureFormat::Json => match StoredObject::json(&captured.object) {
                    Ok(o) => o,
                    Err(e) => {
                        m.capture.error("serialize");
                        warn!(error = %e, "could not serialize a transaction");
                        continue;
                    }
                },
                crate::config::CaptureFormat::Text => StoredObject::text(&captured.object),
            };
            let mut record = captured.record;
            record.digest = stored.digest.clone();
            match objects.put(stored) {
                Ok(loc) => record.url = loc.url,
                Err(e) => {
                    m.capture.discarded("object_store_error", 1);
                    warn!(store = objects.name(), error = %e, "object not stored; its artifact_record is not emitted");
                    continue;
                }
            }
            m.capture.sent(1);
            Self::emit(m, events, Event::ArtifactRecord(record));
        }
    }

    /// The `request` event (`report_usage`) of a captured transaction.
    fn request_event(
        c: &http_capture::Captured,
        tags: &Tags,
        auth: Option<crate::plugins::report_usage::AuthToken>,
    ) -> model::Request {
        let o = &c.object;
        let r = &c.record;
        let content_type = o.response.as_ref().and_then(|r| r.content_type.clone()).unwrap_or_default();
        let auth = auth.unwrap_or_default();
        model::Request {
            connection_id: r.connection_id.clone(),
            endpoint_id: r.endpoint_id.clone(),
            request_id: r.request_id.clone(),
            tags: tags.pairs(),
            timestamp: r.timestamp.clone(),
            direction: o.direction,
            url: o.request.url.clone(),
            path: o.request.path.clone().unwrap_or_default(),
            method: o.request.method.clone(),
            status: o.response.as_ref().map(|r| r.status).unwrap_or(0),
            duration: o.duration_ms.max(1),
            category: crate::plugins::report_usage::mime_category(&content_type).to_string(),
            content_type,
            agent: o.request.user_agent.clone().unwrap_or_default(),
            bytes_sent: o.metadata.bytes_sent.unwrap_or(0),
            bytes_received: o.metadata.bytes_received.unwrap_or(0),
            auth_token_mask: auth.mask,
            auth_token_hash: auth.hash,
            auth_token_source: auth.source,
            auth_token_type: auth.kind,
        }
    }

    /// Writes the access log line of `txn` to stderr (after redaction).
    fn access_log(
        al: &crate::plugins::access_logs::AccessLogs,
        txn: &Transaction,
        conn: &Connection,
        url: &str,
        fields: Option<&crate::rules::MapFields>,
    ) {
        use crate::plugins::access_logs::{LineContext, line};
        use std::io::Write;
        let mode = fields.map(|f| al.mode_for(f)).unwrap_or(al.mode);
        let exe = conn.process.exe.as_deref().unwrap_or("");
        let ctx = LineContext { url, direction: conn.direction().as_str(), exe };
        let text = line(txn, &ctx, mode, al.format);
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    /// The `issue` event of a `detect_errors` rule that fired (flat, as qtap emits it).
    fn error_issue(
        conn: &Connection,
        tags: &Tags,
        txn: &Transaction,
        request_id: &str,
        url: &str,
        hit: crate::plugins::detect_errors::Hit,
        now: SystemTime,
    ) -> model::Issue {
        model::Issue {
            connection_id: conn.id.clone(),
            endpoint_id: conn.endpoint_id(),
            request_id: request_id.to_string(),
            tags: tags.pairs(),
            timestamp: model::rfc3339(now),
            direction: Some(conn.direction()),
            error: hit.name,
            url: url.to_string(),
            path: txn.request.target.split(['?', '#']).next().unwrap_or("").to_string(),
            method: txn.request.method.clone(),
            status: txn.response.as_ref().map(|r| r.status),
            trigger_conditions: hit.conditions,
            trigger_reasons: hit.reasons,
            count: 0,
        }
    }

    fn emit(m: &PipelineMetrics, stores: &[Arc<dyn EventStore>], event: Event) {
        let kind = event.kind();
        match m.event_kinds.iter().find(|(k, _)| *k == kind) {
            Some((_, c)) => c.inc(),
            None => m.events.get_or_create(&TypeLabel { r#type: kind.to_string() }).inc(),
        };
        m.events_total.inc();
        for s in stores {
            s.submit(&event);
        }
    }

    /// The TLS probe families that delivered plaintext for this connection's process.
    fn probes_of(&self, conn: &Connection) -> Vec<String> {
        let mut v: BTreeSet<&str> = self.tls_probes.get(&conn.pid).into_iter().flatten().copied().collect();
        if let Some(p) = &conn.plain {
            v.insert(p.probe);
        }
        v.into_iter().map(str::to_string).collect()
    }

    /// The local side of a connection of `p` at `addr` (`source`, or `destination` for ingress).
    fn local_endpoint(&self, p: &crate::process::ProcessInfo, addr: SocketAddr) -> model::Endpoint {
        model::Endpoint {
            address: model::NetAddr::from(addr),
            hostname: Some(self.settings.hostname.clone()),
            exe: p.exe.clone(),
            user: p.user_name.clone(),
            user_id: p.uid,
            container: p.container_id.as_ref().map(|id| {
                let m = p.container.as_deref();
                model::Container {
                    id: id.clone(),
                    name: m.and_then(|m| m.name.clone()),
                    image: m.and_then(|m| m.image.clone()),
                    pod: m.and_then(|m| {
                        Some(model::Pod {
                            name: m.pod_name.clone()?,
                            namespace: m.pod_namespace.clone().unwrap_or_default(),
                        })
                    }),
                }
            }),
        }
    }

    /// `tap.audit_include_dns`: one finalized `connection` event (udp, dns) per DNS answer a
    /// process received, subject to the direction and loopback settings like any connection.
    fn audit_dns(
        &self,
        process: &crate::process::ProcessInfo,
        local: SocketAddr,
        server: SocketAddr,
        len: u64,
        at: SystemTime,
    ) {
        let s = &self.settings;
        let direction = model::Direction::classify(server.ip(), false);
        if (s.ignore_loopback && (server.ip().is_loopback() || local.ip().is_loopback()))
            || !s.direction.allows(false, direction == model::Direction::EgressExternal)
        {
            self.m.dns.discarded("audit_filtered", 1);
            return;
        }
        let ev = model::Connection {
            meta: model::ConnectionMeta {
                connection_id: new_id(),
                endpoint_id: server.ip().to_string(),
                tls_probe_types_detected: Vec::new(),
                tls_probe_introspected: false,
            },
            tags: s.tags(process, "dns"),
            finalized: true,
            direction,
            part: 0,
            socket_protocol: "udp".to_string(),
            l7_protocol: L7Protocol::Dns,
            tls_version: None,
            system: model::System {
                hostname: s.hostname.clone(),
                agent: "tapline".to_string(),
                agent_instance: s.agent_instance.clone(),
            },
            source: self.local_endpoint(process, local),
            destination: model::Endpoint { address: model::NetAddr::from(server), ..Default::default() },
            bytes_received: Some(len),
            bytes_sent: None,
            labels: Vec::new(),
            timestamp: model::rfc3339(at),
            created_at: Some(model::rfc3339(at)),
            closed_at: Some(model::rfc3339(at)),
        };
        Self::emit(&self.m, &self.event_stores, Event::Connection(ev));
    }

    /// Builds the `connection` event for `conn`.
    fn connection_event(&self, conn: &Connection, now: SystemTime, finalized: bool) -> model::Connection {
        let s = &self.settings;
        let tags = s.tags(&conn.process, conn.app().tag_protocol().as_str());
        let local = self.local_endpoint(&conn.process, conn.local);
        let remote = model::Endpoint { address: model::NetAddr::from(conn.remote), ..Default::default() };
        let (source, destination) = if conn.is_server_side() { (remote, local) } else { (local, remote) };
        let (sent, received) = (conn.egress.next_pos(), conn.ingress.next_pos());
        let moved = sent > 0 || received > 0;
        model::Connection {
            meta: model::ConnectionMeta {
                connection_id: conn.id.clone(),
                endpoint_id: conn.endpoint_id(),
                tls_probe_types_detected: self.probes_of(conn),
                tls_probe_introspected: conn.plain.is_some(),
            },
            tags,
            finalized,
            direction: conn.direction(),
            part: conn.reports,
            socket_protocol: "tcp".to_string(),
            l7_protocol: conn.app().protocol(),
            tls_version: conn.l7.tls().and_then(|t| t.version()),
            system: model::System {
                hostname: s.hostname.clone(),
                agent: "tapline".to_string(),
                agent_instance: s.agent_instance.clone(),
            },
            source,
            destination,
            bytes_received: moved.then_some(received),
            bytes_sent: moved.then_some(sent),
            labels: Vec::new(),
            timestamp: model::rfc3339(now),
            created_at: Some(model::rfc3339(conn.created_at)),
            closed_at: finalized.then(|| model::rfc3339(now)),
        }
    }

    fn report(&mut self, sock: u64, now: SystemTime) {
        let Some(conn) = self.conns.get(&sock) else {
            return;
        };
        if Self::reportable(&self.settings, conn) {
            let ev = self.connection_event(conn, now, false);
            Self::emit(&self.m, &self.event_stores, Event::Connection(ev));
        }
        let interval = self.settings.report_interval;
        if let Some(conn) = self.conns.get_mut(&sock) {
            conn.reports += 1;
            // Fixed rate: the next report is due one interval after this one was due, so tick
            // jitter does not stretch the period; after a long stall, start again from now.
            conn.last_report += interval;
            if now.duration_since(conn.last_report).is_ok_and(|late| late >= interval) {
                conn.last_report = now;
            }
        }
    }

    /// Closes a connection: flushes its parser, captures what finished, emits the final report.
    fn finalize(&mut self, mut conn: Connection, at: SystemTime, final_pos: Option<(u64, u64)>) {
        let mut out = L7Output::default();
        if let Some((sent, received)) = final_pos {
            for (dir, end) in [(tapline_ebpf::Direction::Egress, sent), (tapline_ebpf::Direction::Ingress, received)] {
                let missing = conn.cursor(dir).close_at(end);
                if missing > 0 && !conn.payload_skipped {
                    self.m.gaps.inc();
                    self.m.gap_bytes.inc_by(missing);
                    conn.l7.on_gap(dir, missing, at, &mut out);
                }
            }
        }
        conn.l7.on_close(at, &mut out);
        if let Some(p) = &mut conn.plain {
            p.l7.on_close(at, &mut out);
        }
        self.m.connections.sent(1);
        let sock = conn.sock;
        // Re-insert briefly so the shared capture path can read it, then drop it for good.
        self.conns.insert(sock, conn);
        self.after_l7(sock, out, at);
        let Some(mut conn) = self.conns.remove(&sock) else {
            return;
        };
        Self::refresh_container(&self.processes, &mut conn);
        if Self::reportable(&self.settings, &conn) {
            let ev = self.connection_event(&conn, at, true);
            Self::emit(&self.m, &self.event_stores, Event::Connection(ev));
        }
        debug!(connection = %conn.id, pid = conn.pid, "connection finalized");
    }

    /// Periodic work: `part` reports of long connections, and finalizing connections whose
    /// process is gone without a close record (e.g. the close was lost).
    pub fn tick(&mut self, now: SystemTime) {
        let interval = self.settings.report_interval;
        let due: Vec<u64> = self
            .conns
            .values()
            .filter(|c| now.duration_since(c.last_report).map(|d| d >= interval).unwrap_or(false))
            .map(|c| c.sock)
            .collect();
        for sock in due {
            self.report(sock, now);
        }
        let stale: Vec<u64> = self
            .conns
            .values()
            .filter(|c| now.duration_since(c.last_activity).map(|d| d >= interval).unwrap_or(false))
            .filter(|c| !std::path::Path::new(&format!("/proc/{}", c.pid)).exists())
            .map(|c| c.sock)
            .collect();
        for sock in stale {
            if let Some(conn) = self.conns.remove(&sock) {
                self.m.connections.error("close_lost");
                self.finalize(conn, now, None);
            }
        }
        self.m.active.set(self.conns.len() as i64);
    }

    /// Finalizes every open connection (shutdown).
    pub fn finish_all(&mut self, now: SystemTime) {
        let socks: Vec<u64> = self.conns.keys().copied().collect();
        for sock in socks {
            if let Some(conn) = self.conns.remove(&sock) {
                self.finalize(conn, now, None);
            }
        }
        self.m.active.set(0);
    }

    /// Pushes buffered output of every store.
    pub fn flush(&self) {
        // Objects first: an artifact_record a reader sees has its object fetchable.
        self.object_store.flush();
        for s in &self.event_stores {
            s.flush();
        }
    }
}
