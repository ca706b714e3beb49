//! The recipes users compare against, with the same semantics as
//! [`Dispatcher`](initret::Dispatcher) (popcount of each queried row, first bad
//! position reported as [`Error::IndexOutOfRange`]). For comparison only.
//!
//! * [`serial`]: one thread, the plain loop.
//! * [`PerCallCopy`]: the table is cloned for every task, as `functools.partial`
//!   ships the cache with each task.
//! * [`GlobalInitializer`]: a pool whose initializer stores the table in a
//!   thread-local global that the function reads, the seed's `make_global`.
//! * [`rayon_map_init`]: rayon's `map_init`, which calls its init once per
//!   split job rather than once per worker.
//! * [`naive_rayon_into`]: `par_iter().map(|&q| row_popcount(q))`, the loop a
//!   rayon user writes first.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rayon::prelude::*;

use initret::harness::python_chunk_len;
use initret::{BitTable, Error};

use crate::error::CliError;

/// What a baseline produced and how often it built or copied its state.
///
/// ```
/// let t = initret::BitTable::seed(8);
/// let outcome = initret_cli::baseline::rayon_map_init(&t, &[1, 2, 3])?;
/// assert_eq!(outcome.counts, vec![1, 1, 2]);
/// assert!(outcome.init_calls >= 1);
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The popcounts, in query order.
    pub counts: Vec<u32>,
    /// How many times the state was initialized or copied during the run.
    pub init_calls: usize,
}

/// The plain serial loop: `func(i) = cache[i].count("1")` for each query.
///
/// ```
/// assert_eq!(initret_cli::baseline::serial(&initret::BitTable::seed(8), &[7, 1])?, vec![3, 1]);
/// # Ok::<(), initret::Error>(())
/// ```
pub fn serial(table: &BitTable, queries: &[u32]) -> Result<Vec<u32>, Error> {
    table.reference_popcount(queries)
}

/// `Err` naming the first query `>= rows`, if there is one. Baselines compute
/// per item and only call this once they know some item failed.
fn first_out_of_range(queries: &[u32], rows: usize) -> Result<(), Error> {
    match queries.iter().position(|&q| q as usize >= rows) {
        Some(position) => Err(Error::IndexOutOfRange {
            position,
            index: queries[position].into(),
            rows,
        }),
        None => Ok(()),
    }
}

/// How many items each task of a [`PerCallCopy`] run carries.
///
/// ```
/// use initret_cli::baseline::TaskSize;
/// assert_eq!(TaskSize::PythonDefault.items(65535, 2), 8192);
/// assert_eq!(TaskSize::One.items(65535, 2), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskSize {
    /// One item per task, so one table copy per item.
    One,
    /// Python's `Pool.map` default: `ceil(len / (4 × workers))`.
    PythonDefault,
    /// A fixed number of items (at least 1).
    Items(usize),
}

impl TaskSize {
    /// Items per task for a batch of `len` items on `workers` workers.
    ///
    /// ```
    /// assert_eq!(initret_cli::baseline::TaskSize::Items(0).items(10, 2), 1);
    /// ```
    pub fn items(self, len: usize, workers: usize) -> usize {
        match self {
            TaskSize::One => 1,
            TaskSize::PythonDefault => python_chunk_len(len, workers),
            TaskSize::Items(n) => n.max(1),
        }
    }
}

/// A plain rayon pool of `workers` threads (0: rayon's default), named
/// `"{name}-{i}"`, for running rayon-based baselines and references with the
/// same thread count as the pools they are compared with.
///
/// ```
/// let pool = initret_cli::baseline::thread_pool(2, "ref")?;
/// assert_eq!(pool.current_num_threads(), 2);
/// # Ok::<(), initret::Error>(())
/// ```
pub fn thread_pool(workers: usize, name: &'static str) -> Result<rayon::ThreadPool, Error> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(move |i| format!("{name}-{i}"))
        .build()
        .map_err(|e| Error::ThreadSpawn(e.to_string()))
}

/// The `functools.partial` recipe: every task carries its own fresh copy of
/// the whole table, which its worker uses once and drops.
///
/// As in Python's `Pool`, whose feeder blocks on the pipe once the workers
/// fall behind, only a few copies exist at a time: each worker takes the
/// next task from a shared queue and copies the table when it starts it, so
/// at most one copy per worker is alive, however many tasks the batch has.
/// The copies are allocated fallibly: a table that cannot be copied is
/// [`CliError::Allocation`], not an abort.
///
/// ```
/// use initret_cli::baseline::{PerCallCopy, TaskSize};
///
/// let pool = PerCallCopy::new(2, TaskSize::One)?;
/// let outcome = pool.run(&initret::BitTable::seed(8), &[7, 3, 0])?;
/// assert_eq!(outcome.counts, vec![3, 2, 0]);
/// assert_eq!(outcome.init_calls, 3); // one copy per task
/// # Ok::<(), initret_cli::error::CliError>(())
/// ```
#[derive(Debug)]
pub struct PerCallCopy {
    pool: rayon::ThreadPool,
    task_size: TaskSize,
}

impl PerCallCopy {
    /// A pool of `workers` threads (0: one per CPU) handing out tasks of `task_size`.
    ///
    /// ```
    /// let p = initret_cli::baseline::PerCallCopy::new(1, initret_cli::baseline::TaskSize::PythonDefault)?;
    /// assert_eq!(p.workers(), 1);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn new(workers: usize, task_size: TaskSize) -> Result<PerCallCopy, Error> {
        Ok(PerCallCopy {
            pool: thread_pool(workers, "per-call-copy")?,
            task_size,
        })
    }

    /// Number of worker threads.
    ///
    /// ```
    /// let p = initret_cli::baseline::PerCallCopy::new(2, initret_cli::baseline::TaskSize::One)?;
    /// assert_eq!(p.workers(), 2);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn workers(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs the batch; `init_calls` is the number of table copies made (one
    /// per task). A bad index is [`Error::IndexOutOfRange`] naming the first
    /// bad position; a copy or output that cannot be allocated is
    /// [`CliError::Allocation`].
    ///
    /// ```
    /// let p = initret_cli::baseline::PerCallCopy::new(1, initret_cli::baseline::TaskSize::Items(2))?;
    /// assert_eq!(p.run(&initret::BitTable::seed(8), &[1, 2, 3])?.init_calls, 2);
    /// # Ok::<(), initret_cli::error::CliError>(())
    /// ```
    pub fn run(&self, table: &BitTable, queries: &[u32]) -> Result<Outcome, CliError> {
        let task = self.task_size.items(queries.len(), self.workers());
        let mut counts = Vec::new();
        counts
            .try_reserve_exact(queries.len())
            .map_err(|e| CliError::Allocation {
                what: format!("the per-call copy's output of {} counts", queries.len()),
                reason: e.to_string(),
            })?;
        counts.resize(queries.len(), 0);
        // The task queue: (task number, its queries, its slice of the output).
        let tasks = Mutex::new(
            queries
                .chunks(task)
                .zip(counts.chunks_mut(task))
                .enumerate(),
        );
        // The failure of the lowest-numbered failing task, which holds the
        // first bad position; an allocation failure stops the run.
        let failure: Mutex<Option<(usize, CliError)>> = Mutex::new(None);
        let stop = AtomicBool::new(false);
        let copies = AtomicUsize::new(0);
        let worker = || {
            while !stop.load(Ordering::Relaxed) {
                let next = tasks.lock().unwrap_or_else(PoisonError::into_inner).next();
                let Some((k, (input, output))) = next else {
                    return;
                };
                // This task's own copy of the table, as a worker unpickles
                // the cache shipped with each task; dropped when it ends.
                let result = copy_table(table).and_then(|copy| {
                    copies.fetch_add(1, Ordering::Relaxed);
                    copy.reference_popcount(input)
                        .map(|counts| output.copy_from_slice(&counts))
                        .map_err(|e| CliError::from(e.offset_position(k * task)))
                });
                if let Err(error) = result {
                    if matches!(error, CliError::Allocation { .. }) {
                        stop.store(true, Ordering::Relaxed);
                    }
                    let mut failure = failure.lock().unwrap_or_else(PoisonError::into_inner);
                    if failure.as_ref().is_none_or(|(first, _)| k < *first) {
                        *failure = Some((k, error));
                    }
                }
            }
        };
        self.pool.scope(|scope| {
            for _ in 0..self.workers() {
                scope.spawn(|_| worker());
            }
        });
        if let Some((_, error)) = failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
            return Err(error);
        }
        Ok(Outcome {
            counts,
            init_calls: copies.into_inner(),
        })
    }
}

/// A fresh copy of `table`, allocated fallibly.
fn copy_table(table: &BitTable) -> Result<BitTable, CliError> {
    let words = table.words();
    let mut copy = Vec::new();
    copy.try_reserve_exact(words.len())
        .map_err(|e| CliError::Allocation {
            what: format!(
                "a per-call copy of the table ({} bytes)",
                table.size_in_bytes()
            ),
            reason: e.to_string(),
        })?;
    copy.extend_from_slice(words);
    Ok(BitTable::from_rows(table.words_per_row(), copy)?)
}

thread_local! {
    /// The seed's `global_cache`: set by the pool initializer, read by `func`.
    static GLOBAL_CACHE: RefCell<Option<Arc<BitTable>>> = const { RefCell::new(None) };
}

/// The seed's `make_global` recipe: each worker's initializer stores the
/// table in a thread-local global, and the mapped function reads it from
/// there for every item.
///
/// ```
/// use initret_cli::baseline::GlobalInitializer;
///
/// let pool = GlobalInitializer::new(initret::BitTable::seed(8), 2)?;
/// assert_eq!(pool.init_calls(), 2);
/// assert_eq!(pool.run(&[7, 3])?.counts, vec![3, 2]);
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Debug)]
pub struct GlobalInitializer {
    pool: rayon::ThreadPool,
    rows: usize,
    init_calls: Arc<AtomicUsize>,
}

impl GlobalInitializer {
    /// Starts `workers` threads (0: one per CPU), each storing its own copy
    /// of `table` in the thread-local global when it starts.
    ///
    /// ```
    /// let p = initret_cli::baseline::GlobalInitializer::new(initret::BitTable::seed(4), 1)?;
    /// # let _ = p;
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn new(table: BitTable, workers: usize) -> Result<GlobalInitializer, Error> {
        let rows = table.rows();
        let table = Arc::new(table);
        let init_calls = Arc::new(AtomicUsize::new(0));
        let calls = Arc::clone(&init_calls);
        let mut builder = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("global-init-{i}"))
            .start_handler(move |_| {
                calls.fetch_add(1, Ordering::Relaxed);
                let copy = Arc::new(BitTable::clone(&table));
                GLOBAL_CACHE.with(|global| *global.borrow_mut() = Some(copy));
            });
        if workers > 0 {
            builder = builder.num_threads(workers);
        }
        let pool = builder
            .build()
            .map_err(|e| Error::ThreadSpawn(e.to_string()))?;
        // Wait until every worker has started, so its initializer has run.
        pool.broadcast(|_| ());
        Ok(GlobalInitializer {
            pool,
            rows,
            init_calls,
        })
    }

    /// Number of times the initializer ran (once per worker).
    ///
    /// ```
    /// let p = initret_cli::baseline::GlobalInitializer::new(initret::BitTable::seed(4), 2)?;
    /// assert_eq!(p.init_calls(), 2);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn init_calls(&self) -> usize {
        self.init_calls.load(Ordering::Relaxed)
    }

    /// Number of worker threads.
    ///
    /// ```
    /// let p = initret_cli::baseline::GlobalInitializer::new(initret::BitTable::seed(4), 2)?;
    /// assert_eq!(p.workers(), 2);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn workers(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Maps `func(i) = global_cache[i].count_ones()` over the queries in
    /// Python's default chunks.
    ///
    /// ```
    /// let p = initret_cli::baseline::GlobalInitializer::new(initret::BitTable::seed(4), 1)?;
    /// assert!(p.run(&[4]).is_err());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn run(&self, queries: &[u32]) -> Result<Outcome, Error> {
        let chunk = TaskSize::PythonDefault.items(queries.len(), self.workers());
        let mut counts = vec![0; queries.len()];
        let failed = AtomicBool::new(false);
        self.pool.install(|| {
            queries
                .par_chunks(chunk)
                .zip(counts.par_chunks_mut(chunk))
                .for_each(|(input, output)| {
                    for (&q, slot) in input.iter().zip(output) {
                        let count = GLOBAL_CACHE.with(|global| {
                            global
                                .borrow()
                                .as_ref()
                                .and_then(|t| t.row_popcount(q as usize))
                        });
                        match count {
                            Some(c) => *slot = c,
                            None => failed.store(true, Ordering::Relaxed),
                        }
                    }
                });
        });
        if failed.into_inner() {
            first_out_of_range(queries, self.rows)?;
            return Err(Error::Internal(
                "a worker ran without its global cache".into(),
            ));
        }
        Ok(Outcome {
            counts,
            init_calls: self.init_calls(),
        })
    }
}

/// rayon's `map_init` on the global rayon pool, with a table clone as the
/// init; `init_calls` reports how many times rayon called it.
///
/// ```
/// let outcome = initret_cli::baseline::rayon_map_init(&initret::BitTable::seed(4), &[3, 3])?;
/// assert_eq!(outcome.counts, vec![2, 2]);
/// # Ok::<(), initret::Error>(())
/// ```
pub fn rayon_map_init(table: &BitTable, queries: &[u32]) -> Result<Outcome, Error> {
    let calls = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut counts = Vec::with_capacity(queries.len());
    queries
        .par_iter()
        .map_init(
            || {
                calls.fetch_add(1, Ordering::Relaxed);
                table.clone()
            },
            |copy, &q| {
                copy.row_popcount(q as usize).unwrap_or_else(|| {
                    failed.store(true, Ordering::Relaxed);
                    0
                })
            },
        )
        .collect_into_vec(&mut counts);
    if failed.into_inner() {
        first_out_of_range(queries, table.rows())?;
    }
    Ok(Outcome {
        counts,
        init_calls: calls.into_inner(),
    })
}

/// The naive rayon loop, `queries.par_iter().map(|&q| row_popcount(q))`,
/// collected into `out` (whose allocation is reused). The benchmarks' second
/// reference.
///
/// ```
/// let mut out = Vec::new();
/// initret_cli::baseline::naive_rayon_into(&initret::BitTable::seed(4), &[3, 1], &mut out)?;
/// assert_eq!(out, [2, 1]);
/// # Ok::<(), initret::Error>(())
/// ```
pub fn naive_rayon_into(
    table: &BitTable,
    queries: &[u32],
    out: &mut Vec<u32>,
) -> Result<(), Error> {
    let failed = AtomicBool::new(false);
    queries
        .par_iter()
        .map(|&q| {
            table.row_popcount(q as usize).unwrap_or_else(|| {
                failed.store(true, Ordering::Relaxed);
                0
            })
        })
        .collect_into_vec(out);
    if failed.into_inner() {
        first_out_of_range(queries, table.rows())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_call_copy_makes_one_copy_per_task_and_reports_the_first_bad_position() {
        let table = BitTable::seed(100);
        let queries: Vec<u32> = (0..1000).map(|i| i % 100).collect();
        for workers in [1, 3] {
            let pool = PerCallCopy::new(workers, TaskSize::Items(7)).unwrap();
            let outcome = pool.run(&table, &queries).unwrap();
            assert_eq!(outcome.counts, table.reference_popcount(&queries).unwrap());
            assert_eq!(outcome.init_calls, 1000_usize.div_ceil(7));

            let mut bad = queries.clone();
            bad[500] = 100;
            bad[900] = 5000;
            assert!(matches!(
                pool.run(&table, &bad),
                Err(CliError::Initret(Error::IndexOutOfRange {
                    position: 500,
                    index: 100,
                    rows: 100
                }))
            ));
        }
    }
}
