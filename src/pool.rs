//! [`Pool`]: a persistent worker pool whose initializer runs once per worker
//! and whose return value (the *initret*) is handed by reference to every call.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::Error;
use crate::error::panic_message;
use crate::placement::Placement;
use crate::topology::CacheDomain;

/// The most worker threads a [`Pool`] (and so a CPU backend) may be built
/// with: far past any CPU's count, and short of the point where starting
/// them takes minutes and gigabytes.
///
/// ```
/// let err = initret::Pool::builder()
///     .threads(initret::MAX_THREADS + 1)
///     .build_with(|_| Ok::<_, String>(()));
/// assert!(matches!(err, Err(initret::Error::InvalidConfig(_))));
/// ```
pub const MAX_THREADS: usize = 1024;

mod builder;

pub use builder::PoolBuilder;

/// Python's default `Pool.map` chunk size: `ceil(len / (4 × workers))`, at
/// least 1. [`Pool::map`] splits its input the same way.
///
/// ```
/// use initret::harness::python_chunk_len;
/// assert_eq!(python_chunk_len(65535, 2), 8192);
/// assert_eq!(python_chunk_len(0, 4), 1);
/// ```
pub fn python_chunk_len(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers.max(1)).max(1)
}

/// Collects the failures of parallel chunks and keeps the one at the lowest
/// offset, so a batch reports its first bad position however the chunks
/// were scheduled.
pub(crate) struct FirstFailure<E> {
    first: Mutex<Option<(usize, E)>>,
    // The lowest failing offset so far; chunks starting beyond it need not run.
    cutoff: AtomicUsize,
}

impl<E> FirstFailure<E> {
    pub(crate) fn new() -> FirstFailure<E> {
        FirstFailure {
            first: Mutex::new(None),
            cutoff: AtomicUsize::new(usize::MAX),
        }
    }

    /// Whether a chunk that starts at `offset` cannot change the outcome.
    pub(crate) fn failed_before(&self, offset: usize) -> bool {
        offset > self.cutoff.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, offset: usize, error: E) {
        self.cutoff.fetch_min(offset, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap_or_else(PoisonError::into_inner);
        if first.as_ref().is_none_or(|(o, _)| offset < *o) {
            *first = Some((offset, error));
        }
    }

    pub(crate) fn into_result(self) -> Result<(), E> {
        match self
            .first
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }
}

/// Joins every thread whose handle is in `handles`.
fn join_all(handles: &Mutex<Vec<JoinHandle<()>>>) {
    let handles = std::mem::take(&mut *handles.lock().unwrap_or_else(PoisonError::into_inner));
    for handle in handles {
        // A worker's panics are caught inside its tasks, so an error here
        // can only be a panic in rayon itself; there is nothing left to do
        // with it during teardown.
        let _ = handle.join();
    }
}

/// A persistent pool of worker threads, each holding the value its
/// initializer returned (its *initret*), handed as `&S` to every call.
///
/// This is the seed problem's proposed `Pool(initializer=..)` whose return
/// value reaches `func` as `initret`, for any Rust closure:
///
/// * the initializer runs exactly once per worker, on that worker's thread
///   ([`Pool::init_calls`] counts the calls);
/// * [`Pool::map`] and [`Pool::map_chunks`] can be called any number of
///   times and never rerun it;
/// * results keep the input order;
/// * a panicking task becomes [`Error::TaskPanicked`] naming the worker, and
///   the pool keeps serving.
///
/// `Pool<S>` is `Send + Sync`: several threads may call `map` on one pool at
/// the same time; their tasks share the workers. Calling `map` from inside a
/// task of the same pool is allowed too (the nested call runs on the pool).
///
/// Dropping the pool joins its worker threads (unless it is dropped from one
/// of them, in which case they are only told to stop).
///
/// ```
/// use initret::Pool;
///
/// // The seed's cache, built once per worker by the initializer.
/// let pool = Pool::builder().threads(2).build_with(|_worker| {
///     Ok::<_, std::convert::Infallible>((0u32..1 << 16).map(|i| format!("{i:b}")).collect::<Vec<_>>())
/// })?;
/// let items: Vec<usize> = (0..65535).collect();
/// let counts = pool.map(&items, |cache, &i| cache[i].matches('1').count())?;
/// assert_eq!(counts.iter().sum::<usize>(), 524272);
/// assert_eq!(pool.init_calls(), 2);
/// # Ok::<(), initret::Error>(())
/// ```
pub struct Pool<S> {
    // `Option` so that `Drop` can release the rayon pool before waiting.
    workers: Option<rayon::ThreadPool>,
    // One per copy; worker `w` reads `states[slot_of_worker[w]]`.
    states: Vec<S>,
    slot_of_worker: Vec<usize>,
    // The cache domain of each copy, for per-domain placement.
    domains: Vec<Option<CacheDomain>>,
    placement: Placement,
    init_calls: usize,
    handles: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl<S> std::fmt::Debug for Pool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.slot_of_worker.len())
            .field("placement", &self.placement)
            .field("copies", &self.states.len())
            .field("init_calls", &self.init_calls)
            .finish_non_exhaustive()
    }
}

impl Pool<()> {
    /// Starts configuring a pool.
    ///
    /// ```
    /// let pool = initret::Pool::builder().threads(1).build_with(|_| Ok::<_, String>(42))?;
    /// assert_eq!(pool.map(&[1, 2], |answer, &x| answer + x)?, vec![43, 44]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }
}

impl<S: Send + Sync> Pool<S> {
    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.slot_of_worker.len()
    }

    /// How the state was placed.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// How many copies of the state exist: one per worker, per cache
    /// domain in use, or one.
    ///
    /// ```
    /// let pool = initret::Pool::builder().threads(2).build_shared(|| Ok::<_, String>(()))?;
    /// assert_eq!(pool.copies(), 1);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn copies(&self) -> usize {
        self.states.len()
    }

    /// Copy number `copy`, if there is one.
    pub fn copy(&self, copy: usize) -> Option<&S> {
        self.states.get(copy)
    }

    /// Which copy worker `worker` reads.
    pub fn copy_of_worker(&self, worker: usize) -> Option<usize> {
        self.slot_of_worker.get(worker).copied()
    }

    /// The cache domain copy `copy` was placed in (per-domain placement only).
    pub fn domain_of_copy(&self, copy: usize) -> Option<&CacheDomain> {
        self.domains.get(copy).and_then(Option::as_ref)
    }

    /// How many times the initializer has been called: once per copy (per
    /// worker, per cache domain in use, or once), however many maps have run.
    ///
    /// ```
    /// let pool = initret::Pool::builder().threads(2).build_with(|_| Ok::<_, String>(()))?;
    /// for _ in 0..10 {
    ///     pool.map(&[1, 2, 3], |_, &x| x)?;
    /// }
    /// assert_eq!(pool.init_calls(), 2);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn init_calls(&self) -> usize {
        self.init_calls
    }

    /// The state worker `worker` was initialized with, if there is such a worker.
    ///
    /// Lets the calling thread read a worker's initret directly, e.g. to run a
    /// batch too small to be worth a hand-off to the pool.
    ///
    /// ```
    /// let pool = initret::Pool::builder().threads(2).build_with(|w| Ok::<_, String>(w * 10))?;
    /// assert_eq!(pool.state(1), Some(&10));
    /// assert_eq!(pool.state(2), None);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn state(&self, worker: usize) -> Option<&S> {
        self.states.get(*self.slot_of_worker.get(worker)?)
    }

    /// Applies `f(&initret, &item)` to every item on the workers and returns
    /// the results in input order.
    ///
    /// Items are handed out in chunks of `ceil(len / (4 × threads))`, the
    /// chunk size Python's `Pool.map` uses by default.
    ///
    /// A panic in `f` becomes [`Error::TaskPanicked`] naming the worker and the
    /// message (the first one by position if several tasks panic); the pool
    /// stays usable.
    ///
    /// ```
    /// let pool = initret::Pool::builder().threads(2).build_with(|_| Ok::<_, String>(vec![10, 20, 30]))?;
    /// assert_eq!(pool.map(&[2, 0, 1], |table, &i| table[i])?, vec![30, 10, 20]);
    ///
    /// let err = pool.map(&[5], |table, &i| table[i]).unwrap_err();
    /// assert!(matches!(err, initret::Error::TaskPanicked { .. }));
    /// assert_eq!(pool.map(&[0], |table, &i| table[i])?, vec![10]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn map<T, R, F>(&self, items: &[T], f: F) -> Result<Vec<R>, Error>
    where
        T: Sync,
        R: Send,
        F: Fn(&S, &T) -> R + Sync,
    {
        // The results are written straight into the vector's spare capacity:
        // no `Option` per slot, and no second pass to unwrap them. Each chunk
        // that completes records its range, so that on a failure elsewhere
        // its results can still be dropped.
        let mut results: Vec<R> = Vec::with_capacity(items.len());
        let completed = Mutex::new(Vec::new());
        let slots = &mut results.spare_capacity_mut()[..items.len()];
        let outcome =
            self.map_chunks::<_, _, Error, _>(items, slots, |state, offset, input, output| {
                for (item, slot) in input.iter().zip(output.iter_mut()) {
                    slot.write(f(state, item));
                }
                completed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(offset..offset + output.len());
                Ok(())
            });
        if let Err(e) = outcome {
            let base = results.as_mut_ptr();
            for range in completed
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
            {
                // SAFETY: the chunk at `range` ran to completion and wrote
                // every slot of it (input and output have the same length),
                // so those elements are initialised; chunks are disjoint, and
                // each range is recorded once, so each is dropped once. The
                // vector's length stays 0, so it never drops them again. The
                // results of a chunk that panicked part-way are leaked.
                unsafe {
                    std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                        base.add(range.start),
                        range.len(),
                    ));
                }
            }
            return Err(e);
        }
        // SAFETY: `map_chunks` returns Ok only after every chunk ran to
        // completion, and each chunk's closure above wrote every slot of its
        // output, so the first `items.len()` elements are initialised.
        unsafe { results.set_len(items.len()) };
        Ok(results)
    }

    /// Hands `f` whole chunks: `f(&initret, offset, input, output)` where
    /// `input = &items[offset..offset + k]` and `output` is the matching
    /// `&mut out[offset..offset + k]`, so a SIMD kernel can run over them.
    /// Chunks are `ceil(len / (4 × threads))` long (see [`Pool::map_chunks_by`]).
    ///
    /// `out.len()` must equal `items.len()` ([`Error::OutputLength`] otherwise).
    /// If `f` fails (or panics) on several chunks, the error of the chunk
    /// with the lowest offset is returned, and chunks after a failed one may
    /// be skipped; the contents of `out` are then unspecified.
    ///
    /// ```
    /// let pool = initret::Pool::builder().threads(2).build_with(|_| Ok::<_, String>(3u32))?;
    /// let items = [1u32, 2, 3, 4, 5];
    /// let mut out = [0u32; 5];
    /// pool.map_chunks(&items, &mut out, |factor, _offset, input, output| {
    ///     for (x, y) in input.iter().zip(output) {
    ///         *y = x * factor;
    ///     }
    ///     Ok::<(), initret::Error>(())
    /// })?;
    /// assert_eq!(out, [3, 6, 9, 12, 15]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn map_chunks<T, R, E, F>(&self, items: &[T], out: &mut [R], f: F) -> Result<(), E>
    where
        T: Sync,
        R: Send,
        E: From<Error> + Send,
        F: Fn(&S, usize, &[T], &mut [R]) -> Result<(), E> + Sync,
    {
        self.map_chunks_by(python_chunk_len(items.len(), self.threads()), items, out, f)
    }

    /// [`Pool::map_chunks`] with an explicit chunk length (at least 1).
    ///
    /// ```
    /// let pool = initret::Pool::builder().threads(2).build_with(|_| Ok::<_, String>(()))?;
    /// let items = [1u8; 10];
    /// let mut lens = [0usize; 10];
    /// pool.map_chunks_by(4, &items, &mut lens, |_, _offset, input, output| {
    ///     output.fill(input.len());
    ///     Ok::<(), initret::Error>(())
    /// })?;
    /// assert_eq!(lens, [4, 4, 4, 4, 4, 4, 4, 4, 2, 2]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn map_chunks_by<T, R, E, F>(
        &self,
        chunk_len: usize,
        items: &[T],
        out: &mut [R],
        f: F,
    ) -> Result<(), E>
    where
        T: Sync,
        R: Send,
        E: From<Error> + Send,
        F: Fn(&S, usize, &[T], &mut [R]) -> Result<(), E> + Sync,
    {
        Error::check_output_len(items.len(), out.len())?;
        if items.is_empty() {
            return Ok(());
        }
        let workers = self.workers.as_ref().ok_or_else(|| {
            Error::ThreadSpawn("the pool's workers have already been shut down".into())
        })?;
        let chunk_len = chunk_len.max(1);
        let failures = FirstFailure::new();
        workers.install(|| {
            items
                .par_chunks(chunk_len)
                .zip(out.par_chunks_mut(chunk_len))
                .enumerate()
                .for_each(|(k, (input, output))| {
                    let offset = k * chunk_len;
                    if failures.failed_before(offset) {
                        return;
                    }
                    let worker = workers.current_thread_index().unwrap_or(usize::MAX);
                    let outcome = match self.state(worker) {
                        Some(state) => {
                            catch_unwind(AssertUnwindSafe(|| f(state, offset, input, output)))
                                .unwrap_or_else(|payload| {
                                    Err(Error::TaskPanicked {
                                        worker,
                                        message: panic_message(payload.as_ref()),
                                    }
                                    .into())
                                })
                        }
                        None => Err(Error::Internal(format!(
                            "a task ran on thread {worker}, outside the pool"
                        ))
                        .into()),
                    };
                    if let Err(e) = outcome {
                        failures.record(offset, e);
                    }
                });
        });
        failures.into_result()
    }
}

impl<S> Drop for Pool<S> {
    fn drop(&mut self) {
        if let Some(workers) = self.workers.take() {
            let on_own_worker = workers.current_thread_index().is_some();
            drop(workers);
            // Waiting on our own thread would never finish; it exits once
            // the task that dropped us returns.
            if !on_own_worker {
                join_all(&self.handles);
            }
        }
    }
}

#[cfg(test)]
mod tests;
