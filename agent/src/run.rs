//! Start-up, the event loop and shutdown of the agent, and the `fetch` subcommand.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tapline_ebpf::{ProbeConfig, Probes};
use tapline_output::metrics::Metrics;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::cli::{Cli, Command, CommonArgs, RunArgs};
use crate::clock::Clock;
use crate::config::{self, ConfigError, Loaded};
use crate::pipeline::{Pipeline, Settings};
use crate::process::{self, ProcessTable};
use crate::server::{self, Status};
use crate::stores::{self, Stores};
use crate::tls_attach::{ProbeAvailability, TlsAttacher};

/// Why the agent stopped with an error. Each message is one clear sentence.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid (exit 2).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The host cannot run the agent (not root, no BTF, old kernel).
    #[error("{0}")]
    Preflight(#[from] tapline_ebpf::PreflightError),
    /// The kernel programs could not be loaded or attached.
    #[error("cannot load the eBPF programs: {0}")]
    Load(#[from] tapline_ebpf::LoadError),
    /// The status endpoint could not listen.
    #[error("cannot listen on {addr} for /readyz and /metrics: {source} (choose another address with --http-listen)")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A store could not be opened or read.
    #[error("{0}")]
    Store(#[from] tapline_output::object::StoreError),
    /// `fetch` found nothing under that digest.
    #[error("no object with digest {digest} in object store `{store}`")]
    NotFound {
        /// The digest asked for.
        digest: String,
        /// The store searched.
        store: String,
    },
    /// `check-config` found problems (each already printed with its key path).
    #[error("{file}: {count} problem(s) found")]
    ConfigProblems {
        /// The file checked.
        file: String,
        /// How many.
        count: usize,
    },
    /// Any other I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl RunError {
    /// The process exit code for this error: 2 for configuration errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_) | RunError::ConfigProblems { .. } => 2,
            _ => 1,
        }
    }
}

fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> RunError {
    move |source| RunError::Io { context, source }
}

/// Loads the configuration named on the command line (or the embedded default) and logs its warnings.
pub fn load_config(common: &CommonArgs) -> Result<Loaded, RunError> {
    let loaded = match &common.config {
        Some(path) => config::load_file(path)?,
        None => {
            info!("no --config given: using the embedded default (events on stdout, objects in the local store)");
            config::embedded_default()
        }
    };
    for w in &loaded.warnings {
        warn!("{w}");
    }
    Ok(loaded)
}

/// Runs the CLI.
pub fn main(cli: Cli) -> Result<(), RunError> {
    match cli.command {
        Some(Command::Fetch { digest }) => fetch(&cli.common, &digest),
        Some(Command::CheckConfig { file, print }) => check_config(&cli.common, &file, print),
        None => run_agent(&cli.common, &cli.run),
    }
}

/// `tapline check-config FILE`: loads and resolves `file` as the agent would. Every problem
/// (an error, or an unknown key: most often a typo) is printed on stderr with its key path and
/// makes the exit code 2; notices about settings tapline does not apply are printed and pass.
/// With `print`, the effective configuration (defaults filled in) goes to stdout as YAML.
fn check_config(common: &CommonArgs, file: &std::path::Path, print: bool) -> Result<(), RunError> {
    let loaded = config::load_file(file)?;
    let mut problems = 0;
    for w in &loaded.warnings {
        if w.is_unknown_key() {
            problems += 1;
            eprintln!("{}: {}: {}", loaded.origin, w.path, w.message);
        } else {
            eprintln!("{}: {}: note: {}", loaded.origin, w.path, w.message);
        }
    }
    let eff = config::resolve_in(&loaded.config, &loaded.origin, &common.data_dir)?;
    if problems > 0 {
        return Err(RunError::ConfigProblems { file: loaded.origin, count: problems });
    }
    if print {
        print!("{}", config::print::effective_yaml(&eff));
    }
    eprintln!("{}: OK", loaded.origin);
    Ok(())
}

/// The artifact_record in `text`: a stdout envelope line or a bare record.
fn record_of(text: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    let rec = if v.get("item").is_some() { v.get("item")?.clone() } else { v };
    rec.get("digest").is_some().then_some(rec)
}

fn fetch(common: &CommonArgs, what: &str) -> Result<(), RunError> {
    let loaded = load_config(common)?;
    let metrics = Metrics::new();
    let eff = config::resolve_in(&loaded.config, &loaded.origin, &common.data_dir)?;
    let store = stores::open_object_store(&eff, &metrics, &common.data_dir)?;
    // `-`: an artifact_record line (or a digest) on stdin.
    let input = if what == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s).map_err(io("reading stdin"))?;
        s
    } else {
        what.to_string()
    };
    let (found, digest) = match record_of(&input) {
        Some(rec) => {
            let digest = rec.get("digest").and_then(|d| d.as_str()).unwrap_or_default().to_ascii_lowercase();
            (store.get_by_record(&rec)?, digest)
        }
        None => {
            let digest = input.trim().to_ascii_lowercase();
            (store.get(&digest)?, digest)
        }
    };
    let bytes = found.ok_or_else(|| RunError::NotFound { digest, store: store.name().to_string() })?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes).map_err(io("writing the object to stdout"))?;
    out.flush().map_err(io("writing the object to stdout"))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Mirrors per-CPU kernel counters (totals by reason) into a Prometheus family: the kernel's
/// losses (`tapline_ringbuf_lost_total`) and what its filters skipped (`tapline_kernel_filtered_total`).
struct KernelCounters {
    family: Family<ReasonLabel, Counter>,
    last: HashMap<&'static str, u64>,
    /// Log each increase (losses are worth a warning; filtered items are not).
    warn: bool,
}

impl KernelCounters {
    fn new(metrics: &Metrics, name: &str, help: &str, warn: bool) -> Self {
        let family = Family::<ReasonLabel, Counter>::default();
        metrics.register(name, help, family.clone());
        Self { family, last: HashMap::new(), warn }
    }

    /// Records and bytes the kernel lost so far (records only: bytes are not items).
    fn records_lost(&self) -> u64 {
        self.last
            .iter()
            .filter(|(r, _)| r.ends_with("records") || **r == "pending_full" || **r == "socket_table_full")
            .map(|(_, v)| *v)
            .sum()
    }

    fn update<'a>(&mut self, totals: impl IntoIterator<Item = &'a (&'static str, u64)>) {
        for &(reason, total) in totals {
            let prev = self.last.insert(reason, total).unwrap_or(0);
            // Every reason is exported, at 0 until something happens.
            let counter = self.family.get_or_create(&ReasonLabel { reason: reason.to_string() });
            if total > prev {
                counter.inc_by(total - prev);
                if self.warn {
                    warn!(reason, lost = total - prev, "the kernel dropped capture data");
                }
            }
        }
    }
}

/// Longest stores hold output before it is pushed while records keep coming.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Pushes the filters the kernel can apply (tap.direction, ignore_loopback, exact executable
/// paths, and the decision for every running process); userspace keeps applying all of
/// them exactly, so a failure here only costs copies (it is logged).
fn push_kernel_filters(probes: &mut tapline_ebpf::Probes, pipeline: &mut Pipeline) {
    use config::TapDirection as D;
    let s = pipeline.settings();
    let roles = match s.direction {
        D::All => tapline_ebpf::RoleFilter::All,
        D::Ingress => tapline_ebpf::RoleFilter::Ingress,
        D::Egress | D::EgressExternal | D::EgressInternal => tapline_ebpf::RoleFilter::Egress,
    };
    let exes = s.filter.exact_exes();
    let ignore_loopback = s.ignore_loopback;
    let f = probes.filters_mut();
    let r = f.set_connections(roles, ignore_loopback).and_then(|()| f.set_exes(&exes)).and_then(|long| {
        for path in long {
            tracing::debug!(path, "executable path too long for the kernel filter; filtered in userspace");
        }
        f.clear_processes()
    });
    if let Err(e) = r {
        warn!(error = %e, "cannot push filters to the kernel; they are applied in userspace only");
        return;
    }
    let mut n = 0;
    for pid in process::live_pids(std::path::Path::new("/proc")) {
        let flags = pipeline.kernel_flags_of(pid);
        if flags != 0 {
            n += 1;
            if let Err(e) = probes.filters_mut().set_process(pid, flags) {
                warn!(pid, error = %e, "cannot push a process filter to the kernel");
            }
        }
    }
    tracing::debug!(processes = n, exes = exes.len(), "kernel filters pushed");
}

/// The process table, naming containers through the Docker Engine API, containerd and a CRI
/// runtime when their sockets exist.
fn processes(args: &RunArgs) -> ProcessTable {
    use process::containers::{ContainerResolver, Runtime};
    let mut runtimes = Vec::new();
    if args.docker_socket.exists() {
        runtimes.push(Runtime::Docker(args.docker_socket.clone()));
    }
    if args.containerd_socket.exists() {
        runtimes.push(Runtime::Containerd(args.containerd_socket.clone(), args.containerd_namespace.clone()));
    }
    if args.cri_socket.exists() {
        runtimes.push(Runtime::Cri(args.cri_socket.clone()));
    }
    let mut table = ProcessTable::new("/proc".into());
    let n = table.warm_up();
    tracing::debug!(processes = n, "process table warmed up from /proc");
    if runtimes.is_empty() {
        return table;
    }
    info!(runtimes = ?runtimes, "container names from the container runtimes");
    table.with_containers(ContainerResolver::new(runtimes))
}

/// The pipeline settings of a resolved configuration and the command line.
fn settings(eff: &config::Effective, args: &RunArgs) -> Settings {
    Settings {
        stacks: eff.stacks().clone(),
        body_cap: usize::try_from(args.http_buffer_size).unwrap_or(usize::MAX),
        direction: eff.direction(),
        ignore_loopback: eff.ignore_loopback(),
        audit_include_dns: eff.audit_include_dns(),
        report_interval: Duration::from_secs(args.report_interval_secs.max(1)),
        hostname: process::host_name(),
        local_ip: process::primary_local_ip(),
        agent_instance: tapline_output::ids::new_id(),
        max_connections: 65_536,
        // Checked when the configuration was resolved: building it again cannot fail.
        redactor: eff.redaction().and_then(|r| crate::redact::Redactor::new(r).ok()).map(Arc::new),
        hash_key: eff.redaction().and_then(|r| r.hash_key.clone()),
        filter: eff.process_filter().clone(),
        deployment_tags: args.tags.0.clone(),
        tag_sources: eff.tag_sources().to_vec(),
    }
}

/// SIGHUP: loads the configuration file again and applies its capture settings (levels,
/// rules, plugins, filters, redaction, direction) to new traffic. An invalid file is
/// rejected with its error and the running configuration stays. Stores are not reopened.
fn reload(common: &CommonArgs, args: &RunArgs, pipeline: &RefCell<Pipeline>, probes: &mut tapline_ebpf::Probes) {
    let Some(path) = &common.config else {
        info!("SIGHUP: no --config file to reload; the embedded default stays");
        return;
    };
    let eff = config::load_file(path).and_then(|l| {
        for w in &l.warnings {
            warn!("{w}");
        }
        config::resolve_in(&l.config, &l.origin, &common.data_dir)
    });
    match eff {
        Ok(eff) => {
            pipeline.borrow_mut().replace_settings(settings(&eff, args));
            push_kernel_filters(probes, &mut pipeline.borrow_mut());
            info!(config = %path.display(), "SIGHUP: configuration reloaded");
        }
        Err(e) => warn!(error = %e, "SIGHUP: the new configuration is invalid; the running one stays"),
    }
}

fn run_agent(common: &CommonArgs, args: &RunArgs) -> Result<(), RunError> {
    let loaded = load_config(common)?;
    let eff = config::resolve_in(&loaded.config, &loaded.origin, &common.data_dir)?;
    tapline_ebpf::preflight()?;
    let metrics = Metrics::new();
    let spool = stores::spool_settings(&common.data_dir, args.spool_size);
    let Stores { events, objects, drops } = stores::open(&eff, &metrics, &spool)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("starting the async runtime"))?;
    runtime.block_on(async {
        let status = Arc::new(Status { ready: false.into(), metrics: metrics.clone() });
        let server = server::bind(args.http_listen, status.clone())
            .await
            .map_err(|source| RunError::Listen { addr: args.http_listen, source })?;
        tokio::spawn(async move {
            if let Err(e) = server.await {
                warn!(error = %e, "the /metrics endpoint stopped");
            }
        });

        let ring = u32::try_from(args.ring_buffer_size.next_power_of_two()).unwrap_or(1 << 30);
        let mut probes = Probes::load(&ProbeConfig { self_pid: std::process::id(), ring_buffer_bytes: ring })?;
        let mut reader = probes.take_reader()?;
        for family in &args.tls_probes.unsupported {
            warn!(family = %family, "this TLS probe family is not implemented by tapline; ignored");
        }
        let availability = ProbeAvailability::new(&metrics);
        let tls = &args.tls_probes;
        let mut attacher = (tls.openssl || tls.gotls).then(|| {
            let mut a = TlsAttacher::new(
                &metrics,
                availability.clone(),
                (tls.openssl, probes.openssl_available()),
                (tls.gotls, probes.gotls_available()),
            );
            a.startup(&mut probes);
            a
        });
        let settings = settings(&eff, args);
        let pipeline = RefCell::new(Pipeline::new(
            settings,
            Clock::measure(),
            processes(args),
            events.clone(),
            objects.clone(),
            &metrics,
        ));
        push_kernel_filters(&mut probes, &mut pipeline.borrow_mut());
        let mut filtered = KernelCounters::new(
            &metrics,
            "tapline_kernel_filtered",
            "What the kernel skipped on purpose (tap.filters, tap.direction, ignore_loopback), by reason",
            false,
        );
        let mut loss = KernelCounters::new(
            &metrics,
            "tapline_ringbuf_lost",
            "Kernel-side losses (records or bytes that never reached userspace), by reason",
            true,
        );
        loss.update(&probes.loss_counters()?.by_reason);
        let decode_errors = metrics.component("reader", "ringbuf");
        let mut sigterm = signal(SignalKind::terminate()).map_err(io("installing the SIGTERM handler"))?;
        let mut sigint = signal(SignalKind::interrupt()).map_err(io("installing the SIGINT handler"))?;
        let mut sighup = signal(SignalKind::hangup()).map_err(io("installing the SIGHUP handler"))?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ticks: u64 = 0;
        let (mut pending_flush, mut last_flush) = (false, std::time::Instant::now());
        let mut status_line = crate::status::Status::new(args.status_interval_secs.map(Duration::from_secs));
        let snapshot = |p: &Pipeline, loss: &KernelCounters| {
            let (events, objects) = p.totals();
            crate::status::Snapshot {
                connections: p.active_connections(),
                events,
                objects,
                drops: metrics.discarded_total() + loss.records_lost(),
                spool_bytes: crate::status::dir_bytes(&spool.dir),
            }
        };
        status.ready.store(true, Ordering::Release);
        info!(programs = probes.attached().len(), listen = %args.http_listen, "tapline is ready");

        let mut handle = |rec: Result<tapline_ebpf::Record<'_>, tapline_ebpf::DecodeError>| match rec {
            // The RefCell is only borrowed inside this callback and in the select handlers
            // below, never across an await, so the borrows cannot overlap.
            Ok(r) => pipeline.borrow_mut().handle(r),
            Err(e) => {
                decode_errors.error("decode");
                tracing::debug!(error = %e, "undecodable ring-buffer record");
            }
        };
        loop {
            tokio::select! {
                _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
                _ = sighup.recv() => reload(common, args, &pipeline, &mut probes),
                r = reader.next_batch(&mut handle) => {
                    let n = r.map_err(io("reading the kernel ring buffer"))?;
                    // Stores are flushed at most every FLUSH_EVERY (and after a quiet poll):
                    // a flush per batch costs a write per poll and seals small S3 batches.
                    pending_flush |= n > 0;
                    if pending_flush && (n == 0 || last_flush.elapsed() >= FLUSH_EVERY) {
                        pipeline.borrow().flush();
                        pending_flush = false;
                        last_flush = std::time::Instant::now();
                    }
                    if n == 0 {
                        continue;
                    }
                    // New processes: hook their TLS libraries before they get far.
                    for (pid, flags) in pipeline.borrow_mut().take_kernel_skips() {
                        if let Err(e) = probes.filters_mut().set_process(pid, flags) {
                            tracing::debug!(pid, error = %e, "cannot push a process filter to the kernel");
                        }
                    }
                    let execs = pipeline.borrow_mut().take_execs();
                    if let Some(a) = attacher.as_mut() {
                        for (pid, at) in execs {
                            a.on_exec(&mut probes, pid, at);
                        }
                        for issue in a.take_issues() {
                            pipeline.borrow().emit_attach_issue(&issue, SystemTime::now());
                        }
                    }
                }
                _ = tick.tick() => {
                    pipeline.borrow_mut().tick(SystemTime::now());
                    for (sink, d) in &drops {
                        let n = d.take();
                        if n > 0 {
                            pipeline.borrow().emit_sink_drop_issue(sink, n, SystemTime::now());
                        }
                    }
                    ticks += 1;
                    let now = std::time::Instant::now();
                    if status_line.due(now) {
                        let snap = snapshot(&pipeline.borrow(), &loss);
                        if ticks == 1 { status_line.start(now, snap) } else { status_line.report(now, snap) }
                    }
                    if ticks.is_multiple_of(2) && let Some(a) = attacher.as_mut() {
                        a.rescan(&mut probes);
                        for issue in a.take_issues() {
                            pipeline.borrow().emit_attach_issue(&issue, SystemTime::now());
                        }
                    }
                    if let Ok(c) = probes.filters().counters() {
                        filtered.update(&c);
                    }
                    match probes.loss_counters() {
                        Ok(c) => loss.update(&c.by_reason),
                        Err(e) => warn!(error = %e, "cannot read the kernel loss counters"),
                    }
                }
            }
        }
        status.ready.store(false, Ordering::Release);
        // Take what the kernel already queued, then finalize every open connection.
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), reader.next_batch(&mut handle)).await {
            if n == 0 {
                break;
            }
        }
        if let Ok(c) = probes.loss_counters() {
            loss.update(&c.by_reason);
        }
        drop(probes);
        let mut p = pipeline.borrow_mut();
        p.finish_all(SystemTime::now());
        p.flush();
        Ok::<(), RunError>(())
    })?;
    stores::shutdown(&events, &objects, Duration::from_secs(10));
    info!("tapline stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::record_of;

    #[test]
    fn fetch_takes_an_envelope_a_record_or_a_digest() {
        let env = r#"{"level":"qpoint","event":"artifact_record","item":{"digest":"ab12","url":"s3://x"}}"#;
        assert_eq!(record_of(env).unwrap()["url"], "s3://x");
        assert_eq!(record_of(r#"{"digest":"ab12"}"#).unwrap()["digest"], "ab12");
        assert!(record_of("3a0e707f765b8b56daf73edefcda3e0464a48099").is_none(), "a digest is not a record");
        assert!(record_of(r#"{"event":"connection","item":{"meta":{}}}"#).is_none());
    }
}
