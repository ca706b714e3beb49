//! [`PoolBuilder`]: the settings of a [`Pool`] and the start of its workers.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::Error;
use crate::error::panic_message;
use crate::placement::{Placement, Plan};
use crate::topology::{CacheDomain, Topology, affinity};

use super::{MAX_THREADS, Pool, join_all};

/// Configures and builds a [`Pool`], in the style of rayon's `ThreadPoolBuilder`.
///
/// ```
/// use initret::Pool;
///
/// let pool = Pool::builder()
///     .threads(2)
///     .thread_name("lookup")
///     .build_with(|worker| Ok::<_, std::io::Error>(vec![worker as u64; 4]))?;
/// assert_eq!(pool.threads(), 2);
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct PoolBuilder {
    threads: Option<usize>,
    thread_name: Option<String>,
    topology: Option<Topology>,
}

impl PoolBuilder {
    /// A builder with the default settings: one worker per available CPU.
    ///
    /// ```
    /// let pool = initret::PoolBuilder::new().build_with(|_| Ok::<_, String>(()))?;
    /// assert!(pool.threads() >= 1);
    /// assert_eq!(pool.init_calls(), pool.threads());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn new() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Number of worker threads. `0` (the default) means rayon's default:
    /// `RAYON_NUM_THREADS` if set, else one per available CPU. More than
    /// [`MAX_THREADS`] fails the build with [`Error::InvalidConfig`].
    ///
    /// ```
    /// let pool = initret::Pool::builder().threads(4).build_with(|_| Ok::<_, String>(()))?;
    /// assert_eq!(pool.threads(), 4);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn threads(mut self, threads: usize) -> PoolBuilder {
        self.threads = (threads > 0).then_some(threads);
        self
    }

    /// Prefix of the worker threads' names; worker `i` is called `"{prefix}-{i}"`.
    /// The default prefix is `initret-worker`.
    ///
    /// ```
    /// let pool = initret::Pool::builder()
    ///     .threads(2)
    ///     .thread_name("cache")
    ///     .build_with(|_| Ok::<_, String>(()))?;
    /// let names = pool.map(&[(); 2], |_, _| std::thread::current().name().map(String::from))?;
    /// assert!(names.iter().flatten().all(|name| name.starts_with("cache-")));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn thread_name(mut self, prefix: impl Into<String>) -> PoolBuilder {
        self.thread_name = Some(prefix.into());
        self
    }

    /// The cache domains [`build_per_domain`](PoolBuilder::build_per_domain)
    /// places state in; the default is [`Topology::detect`].
    pub fn topology(mut self, topology: Topology) -> PoolBuilder {
        self.topology = Some(topology);
        self
    }

    /// Starts the workers and runs `init(worker)` exactly once on each
    /// worker's own thread, before that worker takes any task. The returned
    /// state stays with the worker and is passed as `&S` to every call.
    ///
    /// Per-worker state fits when each worker must own its state (to mutate
    /// it through interior mutability without sharing, say) or when the
    /// state is small; for a large read-only table prefer
    /// [`build_per_domain`](PoolBuilder::build_per_domain).
    ///
    /// If an initializer returns an error or panics, the pool is torn down
    /// (its threads joined) and the error of the lowest-numbered failing
    /// worker is returned as [`Error::Initializer`] or
    /// [`Error::InitializerPanicked`].
    ///
    /// ```
    /// use initret::{Error, Pool};
    ///
    /// let failed = Pool::builder()
    ///     .threads(2)
    ///     .build_with(|worker| if worker == 1 { Err("no cache for you") } else { Ok(()) });
    /// assert!(matches!(failed, Err(Error::Initializer { worker: 1, .. })));
    /// ```
    pub fn build_with<S, E, F>(self, init: F) -> Result<Pool<S>, Error>
    where
        S: Send + Sync,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        F: Fn(usize) -> Result<S, E> + Sync,
    {
        self.build_placed(Placement::PerWorker, init)
    }

    /// Starts the workers and runs `init(domain, &cache_domain)` once per
    /// [cache domain](Topology) that has a worker, on a worker of that
    /// domain, so its memory is first touched there. Every worker of the
    /// domain reads that one value by reference. With more than one domain,
    /// workers are spread round-robin over the domains and pinned to their
    /// domain's CPUs.
    ///
    /// This is the right choice for a large read-only table: workers of one
    /// domain share their last-level cache, where copies of the same table
    /// would only evict each other.
    ///
    /// ```
    /// use initret::{CacheDomain, Pool, Topology};
    ///
    /// // Two domains of two CPUs each (normally read from the OS).
    /// let topology = Topology::from_domains(vec![
    ///     CacheDomain { cpus: vec![0, 1], llc_bytes: None, numa_node: None },
    ///     CacheDomain { cpus: vec![2, 3], llc_bytes: None, numa_node: None },
    /// ]);
    /// let pool = Pool::builder()
    ///     .threads(4)
    ///     .topology(topology)
    ///     .build_per_domain(|domain, _cpus| Ok::<_, String>(vec![domain; 1 << 10]))?;
    /// assert_eq!((pool.init_calls(), pool.copies()), (2, 2));
    /// assert_eq!(pool.state(3).map(|table| table[0]), Some(1));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn build_per_domain<S, E, F>(mut self, init: F) -> Result<Pool<S>, Error>
    where
        S: Send + Sync,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        F: Fn(usize, &CacheDomain) -> Result<S, E> + Sync,
    {
        let (plan, topology) = self.per_domain_plan();
        let domain_of_slot = plan.domain_of_slot.clone();
        self.build_plan(Placement::PerDomain, plan, Some(&topology), |slot| {
            let domain = domain_of_slot[slot].unwrap_or(0);
            init(domain, &topology.domains()[domain])
        })
    }

    /// Starts the workers and runs `init()` exactly once, on worker 0; every
    /// worker reads the one value by reference.
    ///
    /// ```
    /// let pool = initret::Pool::builder().threads(3).build_shared(|| Ok::<_, String>(vec![7u8; 1 << 20]))?;
    /// assert_eq!((pool.init_calls(), pool.copies()), (1, 1));
    /// assert!(std::ptr::eq(pool.state(0).unwrap(), pool.state(2).unwrap()));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn build_shared<S, E, F>(self, init: F) -> Result<Pool<S>, Error>
    where
        S: Send + Sync,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        F: Fn() -> Result<S, E> + Sync,
    {
        self.build_placed(Placement::Shared, |_| init())
    }

    /// [`build_per_domain`](PoolBuilder::build_per_domain),
    /// [`build_shared`](PoolBuilder::build_shared) or
    /// [`build_with`](PoolBuilder::build_with), chosen by `placement`;
    /// `init(copy)` builds copy number `copy`.
    ///
    /// ```
    /// use initret::{Placement, Pool};
    ///
    /// for placement in Placement::ALL {
    ///     let pool = Pool::builder().threads(2).build_placed(placement, |_| Ok::<_, String>([1u8; 64]))?;
    ///     assert_eq!(pool.placement(), placement);
    ///     assert_eq!(pool.init_calls(), pool.copies());
    /// }
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn build_placed<S, E, F>(mut self, placement: Placement, init: F) -> Result<Pool<S>, Error>
    where
        S: Send + Sync,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        F: Fn(usize) -> Result<S, E> + Sync,
    {
        match placement {
            Placement::PerWorker => {
                let plan = Plan::per_worker(self.resolved_threads());
                self.build_plan(placement, plan, None, init)
            }
            Placement::Shared => {
                let plan = Plan::shared(self.resolved_threads());
                self.build_plan(placement, plan, None, init)
            }
            Placement::PerDomain => {
                let (plan, topology) = self.per_domain_plan();
                self.build_plan(placement, plan, Some(&topology), init)
            }
        }
    }

    /// The per-domain plan over the given topology (or the detected one),
    /// and that topology.
    fn per_domain_plan(&mut self) -> (Plan, Topology) {
        let topology = self.topology.take().unwrap_or_else(Topology::detect);
        (
            Plan::per_domain(self.resolved_threads(), &topology),
            topology,
        )
    }

    /// The number of workers the pool will have: the requested count, else
    /// rayon's default (`RAYON_NUM_THREADS`, else one per available CPU).
    fn resolved_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|n| n.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        })
    }

    /// Starts `plan.slot_of_worker.len()` workers, pins them as the plan
    /// says, and runs `init(slot)` once per slot on that slot's builder.
    fn build_plan<S, E, F>(
        self,
        placement: Placement,
        plan: Plan,
        topology: Option<&Topology>,
        init: F,
    ) -> Result<Pool<S>, Error>
    where
        S: Send + Sync,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        F: Fn(usize) -> Result<S, E> + Sync,
    {
        let workers = plan.slot_of_worker.len();
        if workers > MAX_THREADS {
            return Err(Error::InvalidConfig(format!(
                "threads: at most {MAX_THREADS} worker threads; got {workers}"
            )));
        }
        let prefix = self
            .thread_name
            .unwrap_or_else(|| "initret-worker".to_string());
        let pins = plan.pin.clone();
        // Spawning the threads ourselves keeps their join handles: rayon's
        // own `ThreadPool` drop only signals its threads to stop.
        let handles: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let spawned = Arc::clone(&handles);
        let builder = rayon::ThreadPoolBuilder::new()
            .num_threads(plan.slot_of_worker.len())
            .spawn_handler(move |thread| {
                let pin = pins.get(thread.index()).cloned().flatten();
                let handle = std::thread::Builder::new()
                    .name(format!("{prefix}-{}", thread.index()))
                    .spawn(move || {
                        if let Some(cpus) = pin {
                            // Unpinned is slower, never wrong: a CPU set the
                            // OS refuses leaves the thread where it is.
                            affinity::pin_current_thread(&cpus);
                        }
                        thread.run()
                    })?;
                spawned
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(handle);
                Ok(())
            });
        let workers = match builder.build() {
            Ok(workers) => workers,
            Err(e) => {
                join_all(&handles);
                return Err(Error::ThreadSpawn(e.to_string()));
            }
        };

        let init_calls = AtomicUsize::new(0);
        // `broadcast` runs the closure exactly once on every worker thread and
        // returns the results in worker order; the worker that builds a slot
        // runs its initializer, so the state is first touched there.
        let results: Vec<Option<Result<S, Error>>> = workers.broadcast(|ctx| {
            let worker = ctx.index();
            let slot = plan.slot_of_worker[worker];
            if plan.builder_of_slot[slot] != worker {
                return None;
            }
            init_calls.fetch_add(1, Ordering::Relaxed);
            Some(match catch_unwind(AssertUnwindSafe(|| init(slot))) {
                Ok(Ok(state)) => Ok(state),
                Ok(Err(e)) => Err(Error::Initializer {
                    worker,
                    source: e.into(),
                }),
                Err(payload) => Err(Error::InitializerPanicked {
                    worker,
                    message: panic_message(payload.as_ref()),
                }),
            })
        });
        let domains = plan
            .domain_of_slot
            .iter()
            .map(|d| d.and_then(|d| topology.map(|t| t.domains()[d].clone())))
            .collect();
        let mut pool = Pool {
            workers: Some(workers),
            states: Vec::with_capacity(plan.slots()),
            slot_of_worker: plan.slot_of_worker,
            domains,
            placement,
            init_calls: init_calls.into_inner(),
            handles,
        };
        // Builders are numbered in slot order, so the states come out in
        // slot order too.
        for result in results.into_iter().flatten() {
            // On the first failure `pool` is dropped, which joins the threads.
            pool.states.push(result?);
        }
        Ok(pool)
    }
}
