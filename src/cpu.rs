//! The CPU backend: a [`Pool`] whose workers read the per-row popcount
//! table placed once per cache domain (or as [`Placement`] says), and a SIMD
//! [`LookupKernel`] chosen once at build time.

mod builder;
mod split;

pub use builder::CpuBackendBuilder;
pub use split::{MIN_SPLIT_QUERIES, SplitCalibration, SplitMeasurement};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, TryLockError};
use std::time::Duration;

use crate::arch::{
    Calibration, CountTable, CountWord, Isa, Kernel, LookupKernel, STREAM_MIN_QUERIES,
};
use crate::pool::python_chunk_len;
use crate::query::sealed::Words;
use crate::topology::format_cpu_list;
use crate::{Error, Placement, Pool, PopcountBackend, QueryIndex};

pub(crate) use split::SPLIT_PROBE_QUERIES;

/// What a split calibration depends on, beyond the machine: backends that
/// agree on all of it share one measurement per process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct SplitKey {
    kernels: (Kernel, Kernel),
    threads: usize,
    copies: usize,
    bytes_per_count: usize,
    rows_class: usize,
}

/// Chunks handed to workers are at least this long, so per-chunk overhead
/// stays small next to the lookups; a shorter batch is split into one
/// chunk per worker.
const MIN_CHUNK: usize = 1 << 14;

/// Popcount lookups on CPU threads with run-time-selected SIMD kernels.
///
/// Built once per table: the table's per-row popcounts ([`CountTable`], as
/// `u8` where they fit) are derived once and placed once per cache domain
/// (the CPUs sharing a last-level cache and NUMA node), copied there by a
/// worker of that domain, so every lookup afterwards is a single load from
/// a table no other copy competes with for the cache. [`Placement`] offers
/// one shared copy, or one per worker (the baseline). The kernel that does
/// the loads (scalar, vector range checks with scalar loads or gathers,
/// with or without prefetching) is the one that measured fastest on this
/// machine and this table ([`CpuBackend::calibration`]).
///
/// Built with [`CpuBackend::builder`]; the lookups are the methods of
/// [`PopcountBackend`].
///
/// ```
/// use initret::{BitTable, PopcountBackend, cpu::CpuBackend};
///
/// let cpu = CpuBackend::builder().threads(2).build(&BitTable::seed(1000))?;
/// let mut out = [0; 3];
/// cpu.popcount_into(&[7, 255, 0], &mut out)?;
/// assert_eq!(out, [3, 8, 0]);
/// // One copy of the counts per cache domain in use, not per thread.
/// assert_eq!(cpu.copies(), initret::Topology::detect().domains().len().min(2));
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Debug)]
pub struct CpuBackend {
    // An `Arc` so that counts in memory someone else owns
    // (`CpuBackendBuilder::build_with_counts`) are read in place by the first copy's
    // workers rather than copied.
    pool: Pool<Arc<CountTable>>,
    kernel: LookupKernel,
    calibration: Calibration,
    /// Which `u32` batches run on the calling thread.
    split: SplitCalibration,
    /// The kernel for `u64` and `i64` queries, measured on its own.
    wide: Wide,
    rows: usize,
}

/// [`CpuBackend`]'s kernel for 64-bit queries and how it was chosen.
#[derive(Debug)]
struct Wide {
    kernel: LookupKernel,
    calibration: Calibration,
    split: SplitCalibration,
}

impl CpuBackend {
    /// Starts configuring a CPU backend: threads, kernel, placement. See
    /// [`CpuBackendBuilder`] for the defaults.
    ///
    /// ```
    /// use initret::{BitTable, PopcountBackend, arch::Isa, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::builder().threads(1).kernel_request(Isa::Scalar).build(&BitTable::seed(16))?;
    /// assert_eq!(cpu.isa(), Isa::Scalar);
    /// assert_eq!(cpu.popcount(&[15])?, vec![4]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn builder() -> CpuBackendBuilder {
        CpuBackendBuilder::default()
    }

    /// Chooses the kernels (for `u32` queries and for 64-bit ones) on the
    /// first copy of the counts, then which batches to split for each
    /// (measured unless `inline_max_queries` is given).
    fn calibrated(
        pool: Pool<Arc<CountTable>>,
        candidates: &[Kernel],
        inline_max_queries: Option<usize>,
    ) -> Result<CpuBackend, Error> {
        let counts = pool
            .copy(0)
            .ok_or_else(|| Error::Internal("the CPU backend has no workers".into()))?;
        let calibration = Calibration::measure(counts, candidates)?;
        let kernel = LookupKernel::new(calibration.chosen())?;
        let wide_calibration = Calibration::measure_wide(counts, candidates)?;
        let wide = LookupKernel::new(wide_calibration.chosen())?;
        let rows = counts.rows();
        let given = match (inline_max_queries, pool.threads()) {
            (Some(limit), _) => SplitCalibration::fixed(limit),
            (None, 1) => SplitCalibration::single_worker(),
            (None, _) => SplitCalibration::fixed(SPLIT_PROBE_QUERIES[1]),
        };
        let mut backend = CpuBackend {
            pool,
            kernel,
            calibration,
            split: given.clone(),
            wide: Wide {
                kernel: wide,
                calibration: wide_calibration,
                split: given,
            },
            rows,
        };
        if inline_max_queries.is_none() && backend.threads() > 1 {
            (backend.split, backend.wide.split) = backend.measured_splits()?;
        }
        Ok(backend)
    }

    /// The split calibrations for `u32` and for 64-bit queries: measured
    /// once per process for each kind of backend (kernels, threads, copies,
    /// count width, and rows rounded up to a power of two) and reused by
    /// every later backend of that kind. The 64-bit measurement reuses the
    /// `u32` one's fixed cost: waking the workers does not depend on the
    /// queries.
    fn measured_splits(&self) -> Result<(SplitCalibration, SplitCalibration), Error> {
        type Splits = HashMap<SplitKey, (SplitCalibration, SplitCalibration)>;
        static MEASURED: OnceLock<Mutex<Splits>> = OnceLock::new();
        // One measurement at a time: two at once would time each other, and
        // the second of a kind finds the first's result below.
        static MEASURING: Mutex<()> = Mutex::new(());
        let key = SplitKey {
            kernels: (self.kernel(), self.wide_kernel()),
            threads: self.threads(),
            copies: self.copies(),
            bytes_per_count: self.counts().bytes_per_count(),
            rows_class: self.rows.next_power_of_two(),
        };
        let measured = MEASURED.get_or_init(Default::default);
        let known = || {
            measured
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .cloned()
        };
        if let Some(splits) = known() {
            return Ok(splits);
        }
        // A rayon worker never waits for the lock: while it waits on another
        // pool, rayon may run one of its own pool's tasks on it, and that
        // task may build a backend and come back here. It measures
        // alongside instead.
        let _measuring = match MEASURING.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) if rayon::current_thread_index().is_some() => None,
            Err(TryLockError::WouldBlock) => {
                Some(MEASURING.lock().unwrap_or_else(PoisonError::into_inner))
            }
        };
        if let Some(splits) = known() {
            return Ok(splits);
        }
        // One set of random queries over every row, and the outputs, for
        // both measurements.
        let longest = SPLIT_PROBE_QUERIES[1];
        let queries = crate::random::random_queries(longest, self.rows, 0x5EED);
        let mut outputs = (vec![0u32; longest], vec![0u32; longest]);
        let narrow = self.measure_split(&queries, &mut outputs, None)?;
        let fixed = narrow.measurement().map(|m| m.split_fixed);
        let wide_queries: Vec<u64> = queries.iter().map(|&q| q.into()).collect();
        drop(queries);
        let splits = (
            narrow,
            self.measure_split(&wide_queries, &mut outputs, fixed)?,
        );
        measured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, splits.clone());
        Ok(splits)
    }

    /// Times batches of `queries` on the calling thread (into `outputs.0`)
    /// and through the parked workers (into `outputs.1`) on this backend's
    /// counts and kernel ([`SplitCalibration::measure`]).
    fn measure_split<Q: QueryIndex>(
        &self,
        queries: &[Q],
        outputs: &mut (Vec<u32>, Vec<u32>),
        fixed: Option<Duration>,
    ) -> Result<SplitCalibration, Error> {
        let counts = self.counts();
        let (kernel, _) = self.kernel_for(queries);
        let (inline_out, split_out) = outputs;
        SplitCalibration::measure(
            fixed,
            |n| kernel.lookup_indices(counts, &queries[..n], &mut inline_out[..n]),
            |n| self.split_batch(kernel, &queries[..n], &mut split_out[..n]),
        )
    }

    /// The kernel measured for this query type, and which of its batches
    /// run on the calling thread.
    fn kernel_for<Q: QueryIndex>(&self, queries: &[Q]) -> (&LookupKernel, &SplitCalibration) {
        match Q::words(queries) {
            Words::U32(_) => (&self.kernel, &self.split),
            Words::U64(_) => (&self.wide.kernel, &self.wide.split),
        }
    }

    /// Runs a batch through the workers: one chunk per worker if Python's
    /// chunking would cut chunks shorter than `MIN_CHUNK`, else Python's
    /// chunks; a bad index is reported at the lowest position across all
    /// chunks.
    fn split_batch<Q: QueryIndex, R: CountWord>(
        &self,
        kernel: &LookupKernel,
        queries: &[Q],
        out: &mut [R],
    ) -> Result<(), Error> {
        let threads = self.threads();
        let python = python_chunk_len(queries.len(), threads);
        let chunk = if python >= MIN_CHUNK {
            python
        } else {
            queries.len().div_ceil(threads).max(1)
        };
        // Decided for the whole batch: whether its output outgrows the caches
        // does not depend on how it is chunked.
        let streaming = queries.len() >= STREAM_MIN_QUERIES;
        self.pool
            .map_chunks_by(chunk, queries, out, |counts, offset, queries, out| {
                kernel
                    .lookup_with_stores(counts, queries, out, streaming)
                    .map_err(|e| e.offset_position(offset))
            })
    }

    /// Which `u32` batches this backend runs on the calling thread, and
    /// what was measured to decide it.
    ///
    /// ```
    /// use initret::{BitTable, cpu::CpuBackend};
    ///
    /// let one = CpuBackend::builder().threads(1).build(&BitTable::seed(16))?;
    /// assert_eq!(one.split_calibration().inline_max_queries(), usize::MAX);
    /// let given = CpuBackend::builder().threads(2).inline_max_queries(100).build(&BitTable::seed(16))?;
    /// assert_eq!(given.split_calibration().inline_max_queries(), 100);
    /// assert!(given.split_calibration().measurement().is_none());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn split_calibration(&self) -> &SplitCalibration {
        &self.split
    }

    /// [`CpuBackend::split_calibration`] for `u64` and `i64` queries,
    /// measured with [`CpuBackend::wide_kernel`].
    pub fn wide_split_calibration(&self) -> &SplitCalibration {
        &self.wide.split
    }

    /// The first copy of the counts: what the calling thread reads for
    /// batches it runs itself, and what a process sharing this backend's
    /// counts would export ([`CountTable::as_bytes`]).
    pub fn counts(&self) -> &CountTable {
        match self.pool.copy(0) {
            Some(counts) => counts,
            None => unreachable!("a built CPU backend has at least one copy"),
        }
    }

    /// How the counts were placed.
    pub fn placement(&self) -> Placement {
        self.pool.placement()
    }

    /// How many copies of the counts the workers read: one per cache
    /// domain in use, one, or one per worker.
    pub fn copies(&self) -> usize {
        self.pool.copies()
    }

    /// Bytes of one copy of the counts.
    pub fn count_bytes(&self) -> usize {
        self.counts().bytes()
    }

    /// Bytes of all copies backed by transparent huge pages, where the OS
    /// says (Linux); see [`CountTable::huge_page_bytes`].
    pub fn huge_page_bytes(&self) -> Option<u64> {
        (0..self.copies())
            .map(|c| {
                self.pool
                    .copy(c)
                    .and_then(|counts| counts.huge_page_bytes())
            })
            .sum()
    }

    /// What was placed where, in one line: the placement, the copies and
    /// their size, huge pages, and each copy's cache domain.
    ///
    /// ```
    /// # let cpu = initret::cpu::CpuBackend::builder().threads(1).build(&initret::BitTable::seed(4))?;
    /// assert!(cpu.placement_summary().starts_with("per-domain: 1 copy of"));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn placement_summary(&self) -> String {
        let copies = self.copies();
        let mut line = format!(
            "{}: {copies} {} of {} for {} {}",
            self.placement(),
            if copies == 1 { "copy" } else { "copies" },
            format_bytes(self.count_bytes() as u64),
            self.threads(),
            if self.threads() == 1 {
                "thread"
            } else {
                "threads"
            },
        );
        let requested = self.counts().huge_pages_requested();
        if requested {
            match self.huge_page_bytes() {
                Some(bytes) => line += &format!(", huge pages {}", format_bytes(bytes)),
                None => line += ", huge pages requested",
            }
        }
        let domains: Vec<String> = (0..copies)
            .filter_map(|c| self.pool.domain_of_copy(c))
            .map(|d| format!("[cpus {}]", format_cpu_list(&d.cpus)))
            .collect();
        if !domains.is_empty() {
            line += &format!(", domains {}", domains.join(" "));
        }
        line
    }

    /// The instruction set of the kernel in use.
    pub fn isa(&self) -> Isa {
        self.kernel.isa()
    }

    /// The kernel in use: the fastest measured, or the one requested.
    pub fn kernel(&self) -> Kernel {
        self.kernel.kernel()
    }

    /// Every candidate kernel's measured rate on this backend's table, and
    /// the one chosen.
    ///
    /// ```
    /// # let cpu = initret::cpu::CpuBackend::builder().threads(1).build(&initret::BitTable::seed(1000))?;
    /// let calibration = cpu.calibration();
    /// assert_eq!(calibration.chosen(), cpu.kernel());
    /// for rate in calibration.rates() {
    ///     println!("{}: {:.2e} lookups/s", rate.kernel, rate.lookups_per_s);
    /// }
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// The kernel that reads `u64` and `i64` queries: measured apart from
    /// [`CpuBackend::kernel`] ([`Calibration::measure_wide`]), among the
    /// same candidates, so a fixed kernel request fixes both.
    ///
    /// ```
    /// use initret::{BitTable, arch::Kernel, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::builder().threads(1).kernel_request(Kernel::SCALAR).build(&BitTable::seed(16))?;
    /// assert_eq!(cpu.wide_kernel(), Kernel::SCALAR);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn wide_kernel(&self) -> Kernel {
        self.wide.kernel.kernel()
    }

    /// Every candidate's measured rate on 64-bit queries, and the one
    /// chosen ([`CpuBackend::wide_kernel`]).
    ///
    /// ```
    /// # let cpu = initret::cpu::CpuBackend::builder().threads(1).build(&initret::BitTable::seed(1000))?;
    /// assert_eq!(cpu.wide_calibration().chosen(), cpu.wide_kernel());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn wide_calibration(&self) -> &Calibration {
        &self.wide.calibration
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// How many times the initializer ran (once per copy of the counts).
    pub fn init_calls(&self) -> usize {
        self.pool.init_calls()
    }

    /// Number of rows of the table.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// The lookups: `u32` queries run [`CpuBackend::kernel`], `u64` and `i64`
/// ones [`CpuBackend::wide_kernel`], each reading its type in place. Batches
/// up to the measured limit ([`CpuBackend::split_calibration`]) run on the
/// calling thread against the first copy of the counts; larger ones are
/// split across the workers, and a bad index is reported at the lowest
/// position across all chunks.
impl PopcountBackend for CpuBackend {
    fn result_bytes(&self) -> usize {
        self.counts().bytes_per_count()
    }

    fn popcount_indices_into<Q: QueryIndex, R: CountWord>(
        &self,
        queries: &[Q],
        out: &mut [R],
    ) -> Result<(), Error> {
        let (kernel, split) = self.kernel_for(queries);
        if queries.len() <= split.inline_max_queries() {
            let counts = self
                .pool
                .state(0)
                .ok_or_else(|| Error::Internal("the CPU backend has no workers".into()))?;
            return kernel.lookup_indices(counts, queries, out);
        }
        self.split_batch(kernel, queries, out)
    }
}

/// `67108864` → `"64 MiB"`: whole KiB, MiB or GiB where exact, else one decimal.
fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            return if bytes.is_multiple_of(size) {
                format!("{} {unit}", bytes / size)
            } else {
                format!("{:.1} {unit}", bytes as f64 / size as f64)
            };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BitTable;

    #[test]
    fn backends_of_one_kind_share_one_split_measurement() {
        let build = |rows| {
            CpuBackend::builder()
                .threads(2)
                .kernel_request(Kernel::SCALAR)
                .build(&BitTable::seed(rows))
                .unwrap()
        };
        let (first, second) = (build(1000), build(1000));
        let measured = first.split_calibration().measurement();
        assert!(measured.is_some());
        // Two timings never agree to the bit: the second was not measured.
        assert_eq!(first.split_calibration(), second.split_calibration());
        assert_eq!(
            first.wide_split_calibration(),
            second.wide_split_calibration()
        );
        // The 64-bit measurement reuses the u32 one's fixed cost.
        assert_eq!(
            first
                .wide_split_calibration()
                .measurement()
                .unwrap()
                .split_fixed,
            measured.unwrap().split_fixed
        );
    }

    #[test]
    fn backends_built_at_once_measure_one_at_a_time_and_rayon_workers_never_wait() {
        let table = BitTable::seed(3000);
        let build = || {
            CpuBackend::builder()
                .threads(2)
                .kernel_request(Kernel::SCALAR)
                .build(&table)
                .unwrap()
        };
        // Threads of their own wait their turn, so all share one measurement.
        let calibrations: Vec<SplitCalibration> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|_| scope.spawn(|| build().split_calibration().clone()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(calibrations.windows(2).all(|w| w[0] == w[1]));
        // Builds on the workers of a rayon pool, which may run on a thread
        // that is itself waiting inside a build: they finish.
        let outer = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let built = outer.install(|| {
            use rayon::prelude::*;
            // Every task a kind of its own (rows 2^10 .. 2^19), so each measures.
            (10..20)
                .into_par_iter()
                .map(|log2| {
                    CpuBackend::builder()
                        .threads(2)
                        .kernel_request(Kernel::SCALAR)
                        .build(&BitTable::seed(1 << log2))
                        .unwrap()
                        .rows()
                })
                .collect::<Vec<_>>()
        });
        assert_eq!(built.len(), 10);
    }

    #[test]
    fn large_batches_report_the_first_bad_position_across_chunks() {
        let table = BitTable::seed(1000);
        let cpu = CpuBackend::builder()
            .threads(2)
            .inline_max_queries(1 << 16)
            .build(&table)
            .unwrap();
        let mut queries: Vec<u32> = (0..(3u32 << 16)).map(|i| i % 1000).collect();
        let n = queries.len();
        queries[n - 1] = 1000;
        queries[n / 2 + 17] = u32::MAX;
        let mut out = vec![0; n];
        let err = cpu.popcount_into(&queries, &mut out).unwrap_err();
        match err {
            Error::IndexOutOfRange {
                position,
                index,
                rows,
            } => {
                assert_eq!((position, index, rows), (n / 2 + 17, u32::MAX.into(), 1000));
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn empty_table_is_refused() {
        let err = CpuBackend::builder()
            .threads(1)
            .build(&BitTable::seed(0))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTable(_)));
    }
}
