//! The sysfs reader against fake trees, and the worker assignment.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A fake `/sys` in a fresh temporary directory, removed on drop.
struct FakeSysfs {
    root: PathBuf,
}

impl FakeSysfs {
    /// `cpus` CPUs with per-CPU L1d and L2 caches, the L3 groups
    /// `llc_groups` (each listing its CPUs), the NUMA nodes `nodes`, and
    /// `online` as the online list. Offline CPUs get no cache directory, as
    /// on Linux.
    fn new(cpus: usize, llc_groups: &[Vec<usize>], nodes: &[Vec<usize>], online: &[usize]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "initret-sysfs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let cpu_root = root.join("devices/system/cpu");
        write(&cpu_root.join("online"), &format_cpu_list(online));
        for cpu in 0..cpus {
            if !online.contains(&cpu) {
                std::fs::create_dir_all(cpu_root.join(format!("cpu{cpu}"))).unwrap();
                continue;
            }
            let cache = cpu_root.join(format!("cpu{cpu}/cache"));
            cache_index(&cache.join("index0"), 1, "Data", "48K", &[cpu]);
            cache_index(&cache.join("index1"), 1, "Instruction", "32K", &[cpu]);
            cache_index(&cache.join("index2"), 2, "Unified", "1024K", &[cpu]);
            let group = llc_groups
                .iter()
                .find(|g| g.contains(&cpu))
                .expect("every CPU has an L3");
            cache_index(&cache.join("index3"), 3, "Unified", "32768K", group);
        }
        for (node, list) in nodes.iter().enumerate() {
            write(
                &root.join(format!("devices/system/node/node{node}/cpulist")),
                &format_cpu_list(list),
            );
        }
        FakeSysfs { root }
    }

    fn read(&self, allowed: &[usize]) -> Result<Topology, Error> {
        Topology::from_sysfs(&self.root, allowed)
    }
}

impl Drop for FakeSysfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{text}\n")).unwrap();
}

fn cache_index(dir: &Path, level: u32, kind: &str, size: &str, shared: &[usize]) {
    write(&dir.join("level"), &level.to_string());
    write(&dir.join("type"), kind);
    write(&dir.join("size"), size);
    write(&dir.join("shared_cpu_list"), &format_cpu_list(shared));
}

fn range(r: std::ops::Range<usize>) -> Vec<usize> {
    r.collect()
}

fn cpus_of(topology: &Topology) -> Vec<Vec<usize>> {
    topology.domains().iter().map(|d| d.cpus.clone()).collect()
}

#[test]
fn two_sockets_of_four_ccx_are_eight_domains() {
    let ccx: Vec<Vec<usize>> = (0..8).map(|c| range(c * 4..c * 4 + 4)).collect();
    let sys = FakeSysfs::new(32, &ccx, &[range(0..16), range(16..32)], &range(0..32));
    let topology = sys.read(&range(0..32)).unwrap();
    assert_eq!(cpus_of(&topology), ccx);
    for (i, domain) in topology.domains().iter().enumerate() {
        assert_eq!(domain.numa_node, Some(i / 4));
        assert_eq!(domain.llc_bytes, Some(32 << 20));
    }
    // 16 workers: two per CCX, every CCX used before any gets a second.
    let assigned = topology.assign(16);
    assert_eq!(&assigned[..8], &[0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(&assigned[8..], &[0, 1, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn smt_siblings_stay_in_their_cache_domain() {
    // Two CCX of four cores with two threads each; Linux numbers the second
    // thread of core c as c + 8.
    let ccx = [
        vec![0, 1, 2, 3, 8, 9, 10, 11],
        vec![4, 5, 6, 7, 12, 13, 14, 15],
    ];
    let sys = FakeSysfs::new(16, &ccx, &[range(0..16)], &range(0..16));
    let topology = sys.read(&range(0..16)).unwrap();
    assert_eq!(cpus_of(&topology), ccx);
    assert!(topology.domains().iter().all(|d| d.numa_node == Some(0)));
}

#[test]
fn an_affinity_mask_over_half_a_ccx_keeps_only_those_cpus() {
    let ccx = [range(0..4), range(4..8)];
    let sys = FakeSysfs::new(8, &ccx, &[range(0..8)], &range(0..8));
    // taskset -c 0,1: half of the first CCX, one domain.
    let topology = sys.read(&[0, 1]).unwrap();
    assert_eq!(cpus_of(&topology), [vec![0, 1]]);
    // taskset -c 2-5: half of each CCX, still two domains.
    let topology = sys.read(&range(2..6)).unwrap();
    assert_eq!(cpus_of(&topology), [vec![2, 3], vec![4, 5]]);
}

#[test]
fn an_offline_cpu_is_left_out() {
    let ccx = [range(0..4), range(4..8)];
    let online = [0, 1, 2, 4, 5, 6, 7];
    let sys = FakeSysfs::new(8, &ccx, &[range(0..8)], &online);
    let topology = sys.read(&range(0..8)).unwrap();
    assert_eq!(cpus_of(&topology), [vec![0, 1, 2], range(4..8)]);
}

#[test]
fn one_llc_over_two_numa_nodes_is_split_by_node() {
    // Sub-NUMA clustering: one L3 for the socket, two memory nodes.
    let sys = FakeSysfs::new(8, &[range(0..8)], &[range(0..4), range(4..8)], &range(0..8));
    let topology = sys.read(&range(0..8)).unwrap();
    assert_eq!(cpus_of(&topology), [range(0..4), range(4..8)]);
    assert_eq!(topology.domains()[1].numa_node, Some(1));
}

#[test]
fn a_tree_without_numa_nodes_has_no_node_numbers() {
    let sys = FakeSysfs::new(4, &[range(0..4)], &[], &range(0..4));
    let topology = sys.read(&range(0..4)).unwrap();
    assert_eq!(cpus_of(&topology), [range(0..4)]);
    assert_eq!(topology.domains()[0].numa_node, None);
}

#[test]
fn unreadable_trees_and_empty_masks_are_errors() {
    let missing = std::env::temp_dir().join("initret-no-such-sysfs");
    assert!(matches!(
        Topology::from_sysfs(&missing, &[0]),
        Err(Error::Topology(_))
    ));
    let sys = FakeSysfs::new(2, &[range(0..2)], &[], &range(0..2));
    assert!(matches!(sys.read(&[5]), Err(Error::Topology(_))));
}

#[test]
fn this_machine_has_at_least_one_domain_covering_the_allowed_cpus() {
    let topology = Topology::detect();
    let cpus: usize = topology.domains().iter().map(|d| d.cpus.len()).sum();
    assert_eq!(
        cpus,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

#[test]
fn cpu_lists_parse_and_print() {
    assert_eq!(
        parse_cpu_list("0-3,8,10-11\n").unwrap(),
        [0, 1, 2, 3, 8, 10, 11]
    );
    assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
    assert!(parse_cpu_list("3-1").is_err());
    assert!(parse_cpu_list("a").is_err());
    assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
    assert_eq!(parse_size("32768K"), Some(32 << 20));
    assert_eq!(parse_size("2M"), Some(2 << 20));
}
