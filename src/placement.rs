//! [`Placement`]: how many copies of a pool's state exist, and which
//! workers read which copy.

use std::fmt;

use crate::Error;
use crate::topology::Topology;

/// How many copies of a [`Pool`](crate::Pool)'s or a CPU backend's state
/// are made, and where they live.
///
/// Workers of one cache domain share their last-level cache: copies of the
/// same table there evict each other and multiply memory by the thread
/// count, so the default is one copy per [cache domain](crate::Topology).
///
/// ```
/// use initret::Placement;
///
/// assert_eq!(Placement::default(), Placement::PerDomain);
/// assert_eq!("per-worker".parse::<Placement>()?, Placement::PerWorker);
/// assert_eq!(Placement::Shared.to_string(), "shared");
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Placement {
    /// One copy per cache domain (the CPUs of one last-level cache and NUMA
    /// node), built by a worker of that domain; the workers are pinned to
    /// their domain's CPUs when there is more than one domain.
    #[default]
    PerDomain,
    /// One copy for all workers.
    Shared,
    /// One copy per worker thread, each built on its own worker.
    PerWorker,
}

impl Placement {
    /// Every placement, in the order the CLI lists them.
    pub const ALL: [Placement; 3] = [
        Placement::PerDomain,
        Placement::Shared,
        Placement::PerWorker,
    ];

    /// The name the CLI, the JSON output and Python use.
    pub fn name(self) -> &'static str {
        match self {
            Placement::PerDomain => "per-domain",
            Placement::Shared => "shared",
            Placement::PerWorker => "per-worker",
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Placement {
    type Err = Error;

    fn from_str(s: &str) -> Result<Placement, Error> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        Placement::ALL
            .into_iter()
            .find(|p| p.name() == wanted)
            .ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "unknown placement {s:?}; expected per-domain, shared or per-worker"
                ))
            })
    }
}

/// Which state copy ("slot") each worker reads, which worker builds each
/// slot, and the CPUs each worker is pinned to.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// `slot_of_worker[w]`: the index of the state worker `w` reads.
    pub(crate) slot_of_worker: Vec<usize>,
    /// `builder_of_slot[s]`: the worker whose thread runs slot `s`'s
    /// initializer (first touch places its memory near that worker).
    pub(crate) builder_of_slot: Vec<usize>,
    /// `domain_of_slot[s]`: the topology domain slot `s` belongs to, when
    /// the slot is a domain's.
    pub(crate) domain_of_slot: Vec<Option<usize>>,
    /// The CPUs to pin each worker to; `None` leaves the worker unpinned.
    pub(crate) pin: Vec<Option<Vec<usize>>>,
}

impl Plan {
    /// One slot per worker, nothing pinned.
    pub(crate) fn per_worker(workers: usize) -> Plan {
        Plan {
            slot_of_worker: (0..workers).collect(),
            builder_of_slot: (0..workers).collect(),
            domain_of_slot: vec![None; workers],
            pin: vec![None; workers],
        }
    }

    /// One slot for all, built by worker 0, nothing pinned.
    pub(crate) fn shared(workers: usize) -> Plan {
        Plan {
            slot_of_worker: vec![0; workers],
            builder_of_slot: vec![0],
            domain_of_slot: vec![None],
            pin: vec![None; workers],
        }
    }

    /// One slot per domain that has a worker; workers spread round-robin
    /// over the domains and pinned to their domain's CPUs when there is
    /// more than one domain.
    pub(crate) fn per_domain(workers: usize, topology: &Topology) -> Plan {
        let domain_of_worker = topology.assign(workers);
        let mut slot_of_domain = vec![None; topology.domains().len()];
        let mut plan = Plan {
            slot_of_worker: Vec::with_capacity(workers),
            builder_of_slot: Vec::new(),
            domain_of_slot: Vec::new(),
            pin: Vec::with_capacity(workers),
        };
        let pin = topology.domains().len() > 1;
        for (worker, &domain) in domain_of_worker.iter().enumerate() {
            let slot = *slot_of_domain[domain].get_or_insert_with(|| {
                plan.builder_of_slot.push(worker);
                plan.domain_of_slot.push(Some(domain));
                plan.builder_of_slot.len() - 1
            });
            plan.slot_of_worker.push(slot);
            plan.pin
                .push(pin.then(|| topology.domains()[domain].cpus.clone()));
        }
        plan
    }

    pub(crate) fn slots(&self) -> usize {
        self.builder_of_slot.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::CacheDomain;

    fn domains(n: usize, per: usize) -> Topology {
        Topology::from_domains(
            (0..n)
                .map(|d| CacheDomain {
                    cpus: (d * per..(d + 1) * per).collect(),
                    llc_bytes: Some(32 << 20),
                    numa_node: Some(d / 4),
                })
                .collect(),
        )
    }

    #[test]
    fn per_domain_makes_one_slot_per_used_domain() {
        let plan = Plan::per_domain(10, &domains(4, 8));
        assert_eq!(plan.slot_of_worker, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
        assert_eq!(plan.builder_of_slot, [0, 1, 2, 3]);
        assert_eq!(plan.domain_of_slot, [Some(0), Some(1), Some(2), Some(3)]);
        assert_eq!(
            plan.pin[5].as_deref(),
            Some(&(8..16).collect::<Vec<_>>()[..])
        );
    }

    #[test]
    fn fewer_workers_than_domains_use_only_their_domains() {
        let plan = Plan::per_domain(2, &domains(8, 4));
        assert_eq!(plan.slots(), 2);
        assert_eq!(plan.domain_of_slot, [Some(0), Some(1)]);
    }

    #[test]
    fn one_domain_is_one_slot_and_nothing_is_pinned() {
        let plan = Plan::per_domain(6, &Topology::single(6));
        assert_eq!(plan.slots(), 1);
        assert!(plan.slot_of_worker.iter().all(|&s| s == 0));
        assert!(plan.pin.iter().all(Option::is_none));
    }

    #[test]
    fn shared_and_per_worker() {
        assert_eq!(Plan::shared(3).slot_of_worker, [0, 0, 0]);
        assert_eq!(Plan::shared(3).slots(), 1);
        assert_eq!(Plan::per_worker(3).slot_of_worker, [0, 1, 2]);
        assert_eq!(Plan::per_worker(3).slots(), 3);
    }

    #[test]
    fn names_parse_back() {
        for p in Placement::ALL {
            assert_eq!(p.name().parse::<Placement>().unwrap(), p);
        }
        assert_eq!(
            "PER_DOMAIN".parse::<Placement>().unwrap(),
            Placement::PerDomain
        );
        assert!(matches!(
            "per-core".parse::<Placement>(),
            Err(Error::InvalidConfig(_))
        ));
    }
}
