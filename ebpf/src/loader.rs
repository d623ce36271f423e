//! Loads the kernel programs, attaches them, and owns their lifetime: dropping [`Probes`]
//! detaches everything (aya links are file descriptors).

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::uprobe::UProbeScope;
use aya::programs::{BtfTracePoint, TracePoint, UProbe};
use aya::{Btf, Ebpf, EbpfLoader, include_bytes_aligned};
use tracing::{debug, info};

use crate::reader::RecordReader;

static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tapline.bpf.o"));

/// Syscall tracepoint programs: (program, tracepoint name in `syscalls/`).
const SYSCALL_PROGRAMS: &[(&str, &str)] = &[
    ("tl_enter_write", "sys_enter_write"),
    ("tl_exit_write", "sys_exit_write"),
    ("tl_enter_sendto", "sys_enter_sendto"),
    ("tl_exit_sendto", "sys_exit_sendto"),
    ("tl_enter_writev", "sys_enter_writev"),
    ("tl_exit_writev", "sys_exit_writev"),
    ("tl_enter_sendmsg", "sys_enter_sendmsg"),
    ("tl_exit_sendmsg", "sys_exit_sendmsg"),
    ("tl_enter_read", "sys_enter_read"),
    ("tl_exit_read", "sys_exit_read"),
    ("tl_enter_recvfrom", "sys_enter_recvfrom"),
    ("tl_exit_recvfrom", "sys_exit_recvfrom"),
    ("tl_enter_readv", "sys_enter_readv"),
    ("tl_exit_readv", "sys_exit_readv"),
    ("tl_enter_recvmsg", "sys_enter_recvmsg"),
    ("tl_exit_recvmsg", "sys_exit_recvmsg"),
    ("tl_enter_recvmmsg", "sys_enter_recvmmsg"),
    ("tl_exit_recvmmsg", "sys_exit_recvmmsg"),
    ("tl_enter_connect", "sys_enter_connect"),
    ("tl_exit_connect", "sys_exit_connect"),
    ("tl_exit_accept", "sys_exit_accept"),
    ("tl_exit_accept4", "sys_exit_accept4"),
    ("tl_enter_close", "sys_enter_close"),
    ("tl_enter_dup2", "sys_enter_dup2"),
    ("tl_enter_dup3", "sys_enter_dup3"),
];

/// BTF tracepoints: (program, tracepoint).
const BTF_PROGRAMS: &[(&str, &str)] =
    &[("tl_exec", "sched_process_exec"), ("tl_fork", "sched_process_fork"), ("tl_exit", "sched_process_exit")];

/// OpenSSL entry probes: (program, function). Each function also gets the shared return probe.
const OPENSSL_PROBES: &[(&str, &str)] = &[
    ("tl_ssl_write", "SSL_write"),
    ("tl_ssl_write_ex", "SSL_write_ex"),
    ("tl_ssl_read", "SSL_read"),
    ("tl_ssl_read_ex", "SSL_read_ex"),
];
const OPENSSL_RET: &str = "tl_ssl_ret";
/// `SSL_set_fd` entry: which fd an SSL object reads and writes (no return probe).
const OPENSSL_SET_FD: (&str, &str) = ("tl_ssl_set_fd", "SSL_set_fd");

/// Go crypto/tls programs: entries and the plain uprobes put on each RET.
const GOTLS_PROGRAMS: &[&str] = &["tl_go_write", "tl_go_write_ret", "tl_go_read", "tl_go_read_ret"];

/// Where to probe one Go function: file offsets of its entry and of each RET instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunctionSites {
    /// File offset of the first instruction.
    pub entry: u64,
    /// File offsets of every RET.
    pub returns: Vec<u64>,
}

/// Stable names of the kernel's loss counters (index = `enum tl_loss` in record.h).
pub const LOSS_REASONS: &[&str] = &[
    "ring_full_records",
    "ring_full_bytes",
    "read_failed_bytes",
    "truncated_bytes",
    "pending_full",
    "socket_table_full",
    "tls_socket_unknown_bytes",
];

/// How to load the probes.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The agent's own pid: its traffic is never captured. 0 ignores nobody.
    pub self_pid: u32,
    /// Ring-buffer size in bytes (a power of two, at least one page).
    pub ring_buffer_bytes: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig { self_pid: std::process::id(), ring_buffer_bytes: 16 << 20 }
    }
}

/// Why the probes could not be loaded or attached.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The object failed to load (verifier, BTF, permissions).
    #[error("loading the kernel programs failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program failed to load or attach.
    #[error("program `{program}` ({target}) failed: {source}")]
    Program {
        /// The program.
        program: &'static str,
        /// What it attaches to.
        target: &'static str,
        /// Why.
        source: aya::programs::ProgramError,
    },
    /// A map is missing or of the wrong type.
    #[error("map `{name}`: {reason}")]
    Map {
        /// The map.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// The kernel's BTF could not be read.
    #[error("reading the kernel BTF failed: {0}")]
    Btf(#[from] aya::BtfError),
    /// tracefs is not mounted and could not be mounted.
    #[error("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {0}")]
    Tracefs(std::io::Error),
    /// The reader was already taken.
    #[error("the ring-buffer reader was already taken")]
    ReaderTaken,
    /// Registering the ring buffer with the async runtime failed.
    #[error("watching the ring buffer failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Kernel-side losses, summed over CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LossCounters {
    /// (reason, total) in a stable order.
    pub by_reason: Vec<(&'static str, u64)>,
}

impl LossCounters {
    /// The total of one reason.
    pub fn get(&self, reason: &str) -> u64 {
        self.by_reason.iter().find(|(r, _)| *r == reason).map(|(_, n)| *n).unwrap_or(0)
    }
}

/// Why a TLS library probe could not be attached to a file.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The probe family did not load (it is unavailable for every file).
    #[error("the {family} probes are unavailable: {reason}")]
    Unavailable {
        /// The family.
        family: &'static str,
        /// Why.
        reason: String,
    },
    /// The kernel refused the probe (the file vanished, or is not mappable code).
    #[error("cannot attach to {function} in {path}: {source}")]
    Attach {
        /// The function.
        function: &'static str,
        /// The file.
        path: String,
        /// aya's reason.
        source: aya::programs::ProgramError,
    },
}

/// The loaded and attached kernel programs. Dropping it detaches them all.
pub struct Probes {
    ebpf: Ebpf,
    attached: Vec<String>,
    loss: PerCpuArray<MapData, u64>,
    filters: crate::filters::KernelFilters,
    /// Why the OpenSSL programs could not be loaded, if they could not.
    openssl_unavailable: Option<String>,
    /// Why the Go crypto/tls programs could not be loaded, if they could not.
    gotls_unavailable: Option<String>,
}

/// A loaded uprobe program of a TLS family, by name.
fn uprobe_mut<'a>(ebpf: &'a mut Ebpf, family: &'static str, program: &str) -> Result<&'a mut UProbe, AttachError> {
    let unavailable = |reason: String| AttachError::Unavailable { family, reason };
    ebpf.program_mut(program)
        .ok_or_else(|| unavailable(format!("`{program}` missing")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| unavailable(e.to_string()))
}

/// Loads (without attaching) the OpenSSL uprobe programs.
fn load_uprobes(ebpf: &mut Ebpf, programs: impl IntoIterator<Item = &'static str>) -> Result<(), String> {
    for program in programs {
        let p: &mut UProbe = program_mut(ebpf, program)
            .map_err(|e| e.to_string())?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| format!("{program}: {e}"))?;
        p.load().map_err(|e| format!("{program}: {e}"))?;
    }
    Ok(())
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, program: &'static str) -> Result<&'a mut aya::programs::Program, LoadError> {
    ebpf.program_mut(program)
        .ok_or_else(|| LoadError::Map { name: "programs", reason: format!("`{program}` missing from the object") })
}

/// Loads `program` and attaches it to tracepoint `category/target`.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &'static str,
    category: &str,
    target: &'static str,
) -> Result<(), LoadError> {
    let err = |source| LoadError::Program { program, target, source };
    let p: &mut TracePoint = program_mut(ebpf, program)?.try_into().map_err(err)?;
    p.load().map_err(err)?;
    p.attach(category, target).map_err(err)?;
    debug!(program, target, "attached");
    Ok(())
}

/// Mounts tracefs at /sys/kernel/tracing when no tracefs is mounted (tracepoint attach needs
/// it; minimal VMs and containers often boot without it).
fn ensure_tracefs() -> Result<(), LoadError> {
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(2) == Some("tracefs")))
        .unwrap_or(false);
    if mounted {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: mount(2) with valid NUL-terminated strings and no data argument.
    let rc = unsafe { libc::mount(c"tracefs".as_ptr(), target.as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(LoadError::Tracefs(std::io::Error::last_os_error()));
    }
    info!("mounted tracefs at /sys/kernel/tracing");
    Ok(())
}

impl Probes {
    /// Loads the object, sets the globals and attaches every program.
    pub fn load(cfg: &ProbeConfig) -> Result<Probes, LoadError> {
        ensure_tracefs()?;
        let ring = cfg.ring_buffer_bytes.max(4096).next_power_of_two();
        let mut ebpf = EbpfLoader::new()
            .override_global("self_tgid", &cfg.self_pid, true)
            .map_max_entries("EVENTS", ring)
            .load(OBJECT)?;
        let mut attached = Vec::new();
        for &(program, target) in SYSCALL_PROGRAMS {
            attach_tracepoint(&mut ebpf, program, "syscalls", target)?;
            attached.push(format!("tracepoint/syscalls/{target}"));
        }
        attach_tracepoint(&mut ebpf, "tl_sock_state", "sock", "inet_sock_set_state")?;
        attached.push("tracepoint/sock/inet_sock_set_state".to_string());
        let btf = Btf::from_sys_fs()?;
        for &(program, target) in BTF_PROGRAMS {
            let err = |source| LoadError::Program { program, target, source };
            let p: &mut BtfTracePoint = program_mut(&mut ebpf, program)?.try_into().map_err(err)?;
            p.load(target, &btf).map_err(err)?;
            p.attach().map_err(err)?;
            attached.push(format!("tp_btf/{target}"));
        }
        // The OpenSSL family is optional: if it cannot load, the rest still runs.
        let openssl_unavailable =
            load_uprobes(&mut ebpf, OPENSSL_PROBES.iter().map(|(p, _)| *p).chain([OPENSSL_RET, OPENSSL_SET_FD.0]))
                .err();
        let gotls_unavailable = load_uprobes(&mut ebpf, GOTLS_PROGRAMS.iter().copied()).err();
        if let Some(reason) = &gotls_unavailable {
            tracing::warn!(family = "gotls", %reason, "TLS probes unavailable; Go TLS traffic is seen as ciphertext only");
        }
        if let Some(reason) = &openssl_unavailable {
            tracing::warn!(family = "openssl", %reason, "TLS probes unavailable; TLS traffic is seen as ciphertext only");
        }
        let loss_map =
            ebpf.take_map("LOSS").ok_or_else(|| LoadError::Map { name: "LOSS", reason: "missing".into() })?;
        let loss =
            PerCpuArray::try_from(loss_map).map_err(|e| LoadError::Map { name: "LOSS", reason: e.to_string() })?;
        let filters = crate::filters::KernelFilters::take(&mut ebpf)?;
        info!(programs = attached.len(), ring_bytes = ring, "kernel programs attached");
        Ok(Probes { ebpf, attached, loss, filters, openssl_unavailable, gotls_unavailable })
    }

    /// Whether the OpenSSL programs loaded (they can be attached to files).
    pub fn openssl_available(&self) -> bool {
        self.openssl_unavailable.is_none()
    }

    /// Whether the Go crypto/tls programs loaded.
    pub fn gotls_available(&self) -> bool {
        self.gotls_unavailable.is_none()
    }

    /// Attaches the Go crypto/tls probes to an executable: an entry probe and a plain uprobe
    /// on every RET of `(*Conn).Write` and `(*Conn).Read` (a uretprobe would corrupt Go's
    /// stack). Returns how many probes were attached.
    pub fn attach_gotls(
        &mut self,
        target: &std::path::Path,
        write: &GoFunctionSites,
        read: &GoFunctionSites,
    ) -> Result<usize, AttachError> {
        if let Some(reason) = &self.gotls_unavailable {
            return Err(AttachError::Unavailable { family: "gotls", reason: reason.clone() });
        }
        let mut n = 0;
        for (function, sites, entry_prog, ret_prog) in [
            ("crypto/tls.(*Conn).Write", write, "tl_go_write", "tl_go_write_ret"),
            ("crypto/tls.(*Conn).Read", read, "tl_go_read", "tl_go_read_ret"),
        ] {
            let at = |source| AttachError::Attach { function, path: target.display().to_string(), source };
            // Returns first: an entry without its return probes would only fill the call map.
            for &ret in &sites.returns {
                uprobe_mut(&mut self.ebpf, "gotls", ret_prog)?
                    .attach(ret, target, UProbeScope::AllProcesses)
                    .map_err(at)?;
                n += 1;
            }
            uprobe_mut(&mut self.ebpf, "gotls", entry_prog)?
                .attach(sites.entry, target, UProbeScope::AllProcesses)
                .map_err(at)?;
            n += 1;
        }
        self.attached.push(format!("uprobe/gotls:{}", target.display()));
        Ok(n)
    }

    /// The functions the OpenSSL family hooks, and whether each is required (SSL_write and
    /// SSL_read are; the `_ex` variants exist only since OpenSSL 1.1.1).
    pub const OPENSSL_FUNCTIONS: &'static [(&'static str, bool)] = &[
        ("SSL_write", true),
        ("SSL_write_ex", false),
        ("SSL_read", true),
        ("SSL_read_ex", false),
        ("SSL_set_fd", false),
    ];

    /// Attaches the OpenSSL probes to a shared library or executable at the given file offsets
    /// of its functions (every process that maps that file's inode is covered). `functions`
    /// pairs names from [`Probes::OPENSSL_FUNCTIONS`] with file offsets. Returns how many
    /// functions were hooked.
    pub fn attach_openssl(
        &mut self,
        target: &std::path::Path,
        functions: &[(&str, u64)],
    ) -> Result<usize, AttachError> {
        if let Some(reason) = &self.openssl_unavailable {
            return Err(AttachError::Unavailable { family: "openssl", reason: reason.clone() });
        }
        let mut hooked = 0;
        for &(program, function) in OPENSSL_PROBES {
            let Some(&(_, offset)) = functions.iter().find(|(f, _)| *f == function) else { continue };
            for prog in [program, OPENSSL_RET] {
                let p = uprobe_mut(&mut self.ebpf, "openssl", prog)?;
                p.attach(offset, target, UProbeScope::AllProcesses).map_err(|source| AttachError::Attach {
                    function,
                    path: target.display().to_string(),
                    source,
                })?;
            }
            hooked += 1;
        }
        if let Some(&(_, offset)) = functions.iter().find(|(f, _)| *f == OPENSSL_SET_FD.1) {
            let (program, function) = OPENSSL_SET_FD;
            uprobe_mut(&mut self.ebpf, "openssl", program)?
                .attach(offset, target, UProbeScope::AllProcesses)
                .map_err(|source| AttachError::Attach { function, path: target.display().to_string(), source })?;
        }
        self.attached.push(format!("uprobe/openssl:{}", target.display()));
        Ok(hooked)
    }

    /// What is attached, e.g. `tracepoint/syscalls/sys_enter_write`.
    pub fn attached(&self) -> &[String] {
        &self.attached
    }

    /// Takes the ring-buffer reader (once). Needs a tokio runtime.
    pub fn take_reader(&mut self) -> Result<RecordReader, LoadError> {
        let map = self.ebpf.take_map("EVENTS").ok_or(LoadError::ReaderTaken)?;
        let ring = RingBuf::try_from(map).map_err(|e| LoadError::Map { name: "EVENTS", reason: e.to_string() })?;
        Ok(RecordReader::new(ring)?)
    }

    /// The filters the kernel applies before copying payload.
    pub fn filters_mut(&mut self) -> &mut crate::filters::KernelFilters {
        &mut self.filters
    }

    /// The filters the kernel applies (their counters).
    pub fn filters(&self) -> &crate::filters::KernelFilters {
        &self.filters
    }

    /// The kernel's loss counters, summed over CPUs.
    pub fn loss_counters(&self) -> Result<LossCounters, LoadError> {
        let mut by_reason = Vec::with_capacity(LOSS_REASONS.len());
        for (i, reason) in LOSS_REASONS.iter().enumerate() {
            let v =
                self.loss.get(&(i as u32), 0).map_err(|e| LoadError::Map { name: "LOSS", reason: e.to_string() })?;
            by_reason.push((*reason, v.iter().sum()));
        }
        Ok(LossCounters { by_reason })
    }
}
