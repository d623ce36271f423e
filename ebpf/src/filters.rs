//! Filters applied in the kernel, before payload is copied: processes (by pid, and by exact
//! executable path at exec), `tap.direction` (ingress/egress by socket role) and
//! `tap.ignore_loopback`. Userspace still applies every filter exactly (path prefixes,
//! regexes, egress-external/internal, sockets met mid-life); the kernel's share only saves
//! the copies. See `PROC_SKIP`, `EXE_SKIP`, `FILTER_SETTINGS` and `FILTERED` in tapline.bpf.c.

use aya::maps::{Array, HashMap, MapData, PerCpuArray};

use crate::loader::LoadError;

/// Skip nothing of the process: no records at all (`TL_SKIP_ALL`).
pub const SKIP_ALL: u32 = 1;
/// Syscall payload is not copied; byte positions still advance (`TL_SKIP_DATA`).
pub const SKIP_DATA: u32 = 2;
/// DNS answers are not copied (`TL_SKIP_DNS`).
pub const SKIP_DNS: u32 = 4;
/// TLS plaintext is not copied (`TL_SKIP_TLS`).
pub const SKIP_TLS: u32 = 8;

/// Longest executable path `EXE_SKIP` holds (`TL_EXE_KEY`, NUL included).
pub const EXE_KEY_LEN: usize = 256;

/// Names of the `FILTERED` counters, in map order (`enum tl_filtered`).
pub const FILTERED_REASONS: &[&str] = &["filtered_process_calls", "skipped_payload_bytes", "filtered_connections"];

/// Which connection roles the kernel reports (`enum tl_dir_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleFilter {
    /// Both.
    All = 0,
    /// Only accepted connections.
    Ingress = 1,
    /// Only connections the process opened.
    Egress = 2,
}

/// `struct tl_filter_settings`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct FilterSettings {
    ignore_loopback: u32,
    direction: u32,
}

// SAFETY: two u32 fields, `#[repr(C)]`, no padding: any bit pattern is valid.
unsafe impl aya::Pod for FilterSettings {}

/// Handles on the filter maps of the loaded programs.
pub struct KernelFilters {
    procs: HashMap<MapData, u32, u32>,
    exes: HashMap<MapData, [u8; EXE_KEY_LEN], u32>,
    settings: Array<MapData, FilterSettings>,
    counters: PerCpuArray<MapData, u64>,
    exe_keys: Vec<[u8; EXE_KEY_LEN]>,
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> LoadError {
    move |e| LoadError::Map { name, reason: e.to_string() }
}

impl KernelFilters {
    /// Takes the filter maps out of the loaded object.
    pub(crate) fn take(ebpf: &mut aya::Ebpf) -> Result<Self, LoadError> {
        let mut take =
            |name: &'static str| ebpf.take_map(name).ok_or_else(|| LoadError::Map { name, reason: "missing".into() });
        Ok(KernelFilters {
            procs: HashMap::try_from(take("PROC_SKIP")?).map_err(map_err("PROC_SKIP"))?,
            exes: HashMap::try_from(take("EXE_SKIP")?).map_err(map_err("EXE_SKIP"))?,
            settings: Array::try_from(take("FILTER_SETTINGS")?).map_err(map_err("FILTER_SETTINGS"))?,
            counters: PerCpuArray::try_from(take("FILTERED")?).map_err(map_err("FILTERED"))?,
            exe_keys: Vec::new(),
        })
    }

    /// Sets which roles are reported and whether loopback connections are.
    pub fn set_connections(&mut self, roles: RoleFilter, ignore_loopback: bool) -> Result<(), LoadError> {
        let s = FilterSettings { ignore_loopback: u32::from(ignore_loopback), direction: roles as u32 };
        self.settings.set(0, s, 0).map_err(map_err("FILTER_SETTINGS"))
    }

    /// Sets what is skipped of process `pid` (0 removes its entry).
    pub fn set_process(&mut self, pid: u32, flags: u32) -> Result<(), LoadError> {
        if flags == 0 {
            // Most processes have no entry: only remove one that is there.
            if self.procs.get(&pid, 0).is_err() {
                return Ok(());
            }
            return match self.procs.remove(&pid) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                Err(e) => Err(map_err("PROC_SKIP")(e)),
            };
        }
        self.procs.insert(pid, flags, 0).map_err(map_err("PROC_SKIP"))
    }

    /// Forgets every process entry (a new configuration; they are pushed again).
    pub fn clear_processes(&mut self) -> Result<(), LoadError> {
        let pids: Vec<u32> = self.procs.keys().filter_map(Result::ok).collect();
        for pid in pids {
            self.set_process(pid, 0)?;
        }
        Ok(())
    }

    /// Replaces the exact-path filters applied at exec. Paths longer than the key are left to
    /// userspace (returned).
    pub fn set_exes(&mut self, exes: &[(String, u32)]) -> Result<Vec<String>, LoadError> {
        for k in std::mem::take(&mut self.exe_keys) {
            match self.exes.remove(&k) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("EXE_SKIP")(e)),
            }
        }
        let mut too_long = Vec::new();
        for (path, flags) in exes {
            if path.len() >= EXE_KEY_LEN {
                too_long.push(path.clone());
                continue;
            }
            let mut key = [0u8; EXE_KEY_LEN];
            key[..path.len()].copy_from_slice(path.as_bytes());
            self.exes.insert(key, *flags, 0).map_err(map_err("EXE_SKIP"))?;
            self.exe_keys.push(key);
        }
        Ok(too_long)
    }

    /// What the kernel filters skipped, summed over CPUs, by [`FILTERED_REASONS`].
    pub fn counters(&self) -> Result<Vec<(&'static str, u64)>, LoadError> {
        FILTERED_REASONS
            .iter()
            .enumerate()
            .map(|(i, r)| Ok((*r, self.counters.get(&(i as u32), 0).map_err(map_err("FILTERED"))?.iter().sum())))
            .collect()
    }
}
