//! [`Topology`]: which CPUs share a last-level cache and a memory node, read
//! from the operating system, so that state can be placed once per
//! [`CacheDomain`] instead of once per thread.
//!
//! A *cache domain* is a set of CPUs that share their last-level cache and
//! their NUMA node: the CPUs of one LLC, split further by NUMA node where one
//! LLC spans several nodes (Intel's sub-NUMA clustering). On Linux the
//! domains come from sysfs (`cpu*/cache/index*/shared_cpu_list`,
//! `node*/cpulist`, the `online` list) intersected with the process's
//! affinity mask, so `taskset` and cgroup cpusets are respected. Elsewhere
//! there is one domain.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::Error;

/// CPUs that share one last-level cache and one NUMA node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheDomain {
    /// The CPUs (logical, as the OS numbers them) this process may run on.
    pub cpus: Vec<usize>,
    /// Size of the shared last-level cache in bytes, when the OS says.
    pub llc_bytes: Option<u64>,
    /// The NUMA node, when the OS has nodes.
    pub numa_node: Option<usize>,
}

impl fmt::Display for CacheDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpus {}", format_cpu_list(&self.cpus))?;
        if let Some(bytes) = self.llc_bytes {
            write!(f, ", LLC {} KiB", bytes / 1024)?;
        }
        if let Some(node) = self.numa_node {
            write!(f, ", NUMA node {node}")?;
        }
        Ok(())
    }
}

/// The machine's cache domains, as far as this process can use them.
///
/// ```
/// let topology = initret::Topology::detect();
/// assert!(!topology.domains().is_empty());
/// // Four workers spread over the domains, round-robin.
/// let domains = topology.assign(4);
/// assert_eq!(domains.len(), 4);
/// assert!(domains.iter().all(|&d| d < topology.domains().len()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    domains: Vec<CacheDomain>,
}

impl Topology {
    /// The topology of this machine for this process: sysfs on Linux, one
    /// domain of every CPU elsewhere or when sysfs cannot be read.
    pub fn detect() -> Topology {
        #[cfg(target_os = "linux")]
        {
            if let Some(allowed) = affinity::current()
                && let Ok(topology) = Topology::from_sysfs(Path::new("/sys"), &allowed)
            {
                return topology;
            }
        }
        Topology::single(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// One domain holding CPUs `0..cpus`, with nothing known about caches.
    ///
    /// ```
    /// let one = initret::Topology::single(8);
    /// assert_eq!(one.domains().len(), 1);
    /// assert_eq!(one.domains()[0].cpus.len(), 8);
    /// ```
    pub fn single(cpus: usize) -> Topology {
        Topology {
            domains: vec![CacheDomain {
                cpus: (0..cpus.max(1)).collect(),
                llc_bytes: None,
                numa_node: None,
            }],
        }
    }

    /// A topology of the given domains, for tests and for callers who know
    /// their machine better than the OS says; no domains is one domain of
    /// CPU 0.
    pub fn from_domains(domains: Vec<CacheDomain>) -> Topology {
        let domains: Vec<CacheDomain> =
            domains.into_iter().filter(|d| !d.cpus.is_empty()).collect();
        if domains.is_empty() {
            return Topology::single(1);
        }
        Topology { domains }
    }

    /// Reads the topology from a sysfs tree at `root` (normally `/sys`),
    /// keeping only online CPUs in `allowed` (the affinity mask).
    ///
    /// Fails with [`Error::Topology`] when the tree has no readable CPU
    /// caches or no allowed CPU is online.
    pub fn from_sysfs(root: &Path, allowed: &[usize]) -> Result<Topology, Error> {
        let cpu_root = root.join("devices/system/cpu");
        let online = match std::fs::read_to_string(cpu_root.join("online")) {
            Ok(text) => parse_cpu_list(&text)?,
            Err(e) => return Err(topology_error(&cpu_root.join("online"), e)),
        };
        let cpus: Vec<usize> = online
            .into_iter()
            .filter(|cpu| allowed.contains(cpu))
            .collect();
        if cpus.is_empty() {
            return Err(Error::Topology(format!(
                "none of the allowed CPUs {} is online",
                format_cpu_list(allowed)
            )));
        }
        let node_of = numa_nodes(&root.join("devices/system/node"))?;

        // Key: (first CPU of the LLC group, NUMA node). The LLC group's first
        // CPU names it whatever the mask, so CPUs of one cache stay together.
        let mut groups: BTreeMap<(usize, Option<usize>), CacheDomain> = BTreeMap::new();
        for &cpu in &cpus {
            let (llc_cpus, llc_bytes) = last_level_cache(&cpu_root.join(format!("cpu{cpu}")))?;
            let leader = llc_cpus.first().copied().unwrap_or(cpu);
            let node = node_of.get(&cpu).copied();
            groups
                .entry((leader, node))
                .or_insert_with(|| CacheDomain {
                    cpus: Vec::new(),
                    llc_bytes,
                    numa_node: node,
                })
                .cpus
                .push(cpu);
        }
        let mut domains: Vec<CacheDomain> = groups.into_values().collect();
        domains.sort_by_key(|d| d.cpus[0]);
        Ok(Topology { domains })
    }

    /// The domains, ordered by their lowest CPU.
    pub fn domains(&self) -> &[CacheDomain] {
        &self.domains
    }

    /// The domain of each of `workers` workers: round-robin over the
    /// domains, so that every domain is used before any gets a second
    /// worker and the workers of a domain never outnumber another's by more
    /// than one.
    pub fn assign(&self, workers: usize) -> Vec<usize> {
        (0..workers).map(|w| w % self.domains.len()).collect()
    }
}

fn topology_error(path: &Path, e: std::io::Error) -> Error {
    Error::Topology(format!("cannot read {}: {e}", path.display()))
}

/// The CPUs sharing `cpu_dir`'s highest-level data or unified cache, and
/// that cache's size.
fn last_level_cache(cpu_dir: &Path) -> Result<(Vec<usize>, Option<u64>), Error> {
    let cache_dir = cpu_dir.join("cache");
    let entries = std::fs::read_dir(&cache_dir).map_err(|e| topology_error(&cache_dir, e))?;
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_index = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("index"));
        if !is_index {
            continue;
        }
        let kind = read_trimmed(&path.join("type")).unwrap_or_default();
        if kind == "Instruction" {
            continue;
        }
        let Some(level) = read_trimmed(&path.join("level")).and_then(|l| l.parse::<u32>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(l, _)| level > *l) {
            best = Some((level, path));
        }
    }
    let Some((_, llc)) = best else {
        return Err(Error::Topology(format!(
            "no data cache is listed under {}",
            cache_dir.display()
        )));
    };
    let shared = llc.join("shared_cpu_list");
    let text = std::fs::read_to_string(&shared).map_err(|e| topology_error(&shared, e))?;
    let cpus = parse_cpu_list(&text)?;
    let bytes = read_trimmed(&llc.join("size")).and_then(|s| parse_size(&s));
    Ok((cpus, bytes))
}

/// CPU → NUMA node, from `node*/cpulist`; empty when the tree has no nodes.
fn numa_nodes(node_root: &Path) -> Result<BTreeMap<usize, usize>, Error> {
    let mut node_of = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(node_root) else {
        return Ok(node_of);
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(node) = name
            .to_str()
            .and_then(|n| n.strip_prefix("node"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let list = entry.path().join("cpulist");
        let text = std::fs::read_to_string(&list).map_err(|e| topology_error(&list, e))?;
        for cpu in parse_cpu_list(&text)? {
            node_of.insert(cpu, node);
        }
    }
    Ok(node_of)
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `"32768K"` → 33554432; sysfs writes cache sizes in K (or M).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit.trim() {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Parses a kernel CPU list such as `"0-3,8,10-11"`; an empty list is empty.
pub(crate) fn parse_cpu_list(text: &str) -> Result<Vec<usize>, Error> {
    let bad = || Error::Topology(format!("malformed CPU list {:?}", text.trim()));
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((lo, hi)) => {
                let lo: usize = lo.trim().parse().map_err(|_| bad())?;
                let hi: usize = hi.trim().parse().map_err(|_| bad())?;
                if hi < lo || hi - lo > 1 << 20 {
                    return Err(bad());
                }
                cpus.extend(lo..=hi);
            }
            None => cpus.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Writes CPUs as a kernel CPU list: `[0, 1, 2, 5]` → `"0-2,5"`.
pub(crate) fn format_cpu_list(cpus: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        parts.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// The process's CPU affinity, and pinning a thread to a set of CPUs.
pub(crate) mod affinity {
    /// The CPUs this thread may run on, or `None` where that cannot be read.
    pub(crate) fn current() -> Option<Vec<usize>> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: `cpu_set_t` is a plain bit array, valid when zeroed.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: pid 0 is the calling thread; the size is the size of
            // `set`, which the call fills in.
            let rc = unsafe {
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set)
            };
            if rc != 0 {
                return None;
            }
            let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
                // SAFETY: `cpu < CPU_SETSIZE`, the bit array's size.
                .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
                .collect();
            (!cpus.is_empty()).then_some(cpus)
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// Restricts the calling thread to `cpus`. Returns whether it worked;
    /// a thread that cannot be pinned still runs, only unpinned.
    pub(crate) fn pin_current_thread(cpus: &[usize]) -> bool {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: `cpu_set_t` is a plain bit array, valid when zeroed.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
                // SAFETY: `cpu < CPU_SETSIZE`, checked just above.
                unsafe { libc::CPU_SET(cpu, &mut set) };
            }
            // SAFETY: pid 0 is the calling thread; `set` is initialised and
            // its size is passed.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = cpus;
            false
        }
    }
}

#[cfg(test)]
mod tests;
