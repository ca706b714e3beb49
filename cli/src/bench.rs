//! The benchmark harness behind `initret bench` and the criterion benches.
//!
//! Every row is reported against references measured in the same run, since
//! the machine is shared and absolute times drift:
//!
//! * `ratio_to_memcpy`: a parallel memcpy of the same bytes (a lookup reads a
//!   4-byte index and writes a 4-byte count, so `8 × queries` bytes, the same
//!   as copying `queries` words) divided by the row's time. 1.0 means "as
//!   fast as moving the bytes".
//! * `ratio_to_naive_rayon`: the naive rayon loop's time divided by the
//!   row's time. 2.0 means twice as fast as `par_iter().map(row_popcount)`.
//!
//! Times are the best of several repetitions (at least 3, and at least
//! [`MIN_SECONDS_PER_ROW`] in total), which is the least disturbed by other
//! load on a shared machine.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rayon::prelude::*;

pub use initret::random::{SplitMix64, random_queries, random_table};
use initret::{BitTable, Error, python_chunk_len};

use crate::error::CliError;

/// Each row is repeated until it has run at least this long in total.
pub const MIN_SECONDS_PER_ROW: f64 = 0.3;

/// Copies `src` into `dst` on the current rayon pool: the memory-bandwidth
/// reference. Fails with [`Error::OutputLength`] if the lengths differ.
///
/// ```
/// let src = vec![1u32; 1000];
/// let mut dst = vec![0u32; 1000];
/// initret_cli::bench::parallel_memcpy(&src, &mut dst)?;
/// assert_eq!(src, dst);
/// assert!(initret_cli::bench::parallel_memcpy(&src, &mut [0; 3]).is_err());
/// # Ok::<(), initret::Error>(())
/// ```
pub fn parallel_memcpy(src: &[u32], dst: &mut [u32]) -> Result<(), Error> {
    if src.len() != dst.len() {
        return Err(Error::OutputLength {
            queries: src.len(),
            output: dst.len(),
        });
    }
    let chunk = python_chunk_len(src.len(), rayon::current_num_threads()).max(1 << 14);
    dst.par_chunks_mut(chunk)
        .zip(src.par_chunks(chunk))
        .for_each(|(d, s)| d.copy_from_slice(s));
    Ok(())
}

/// Runs `f` once, then again while fewer than `runs.start()` runs were
/// made, or while less than `budget` has passed and fewer than `runs.end()`
/// runs were made; returns the best time and the value of that run. Every
/// timing loop of the harness (bench rows, the main job) goes through here.
///
/// ```
/// use std::time::Duration;
///
/// let (best, value) = initret_cli::bench::best_run(1..=5, Duration::ZERO, || Ok::<_, ()>(7))?;
/// assert_eq!(value, 7);
/// assert!(best < Duration::from_secs(1));
///
/// let mut calls = 0;
/// initret_cli::bench::best_run(3..=3, Duration::from_secs(60), || Ok::<_, ()>(calls += 1))?;
/// assert_eq!(calls, 3);
/// # Ok::<(), ()>(())
/// ```
pub fn best_run<T, E>(
    runs: std::ops::RangeInclusive<usize>,
    budget: Duration,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<(Duration, T), E> {
    let mut once = || {
        let t = Instant::now();
        let value = std::hint::black_box(f()?);
        Ok((t.elapsed(), value))
    };
    let started = Instant::now();
    let mut best = once()?;
    let mut made = 1;
    while made < *runs.start() || (made < *runs.end() && started.elapsed() < budget) {
        let run = once()?;
        if run.0 < best.0 {
            best = run;
        }
        made += 1;
    }
    Ok(best)
}

/// The benchmark rows' timing: the best of at least 3 runs and at least
/// [`MIN_SECONDS_PER_ROW`] in total (at most 1000 runs).
///
/// ```
/// let best = initret_cli::bench::best_time(|| Ok::<_, ()>(std::hint::black_box(1 + 1)))?;
/// assert!(best.as_secs_f64() < 1.0);
/// # Ok::<(), ()>(())
/// ```
pub fn best_time<T, E>(f: impl FnMut() -> Result<T, E>) -> Result<Duration, E> {
    let budget = Duration::from_secs_f64(MIN_SECONDS_PER_ROW);
    best_run(3..=1000, budget, f).map(|(best, _)| best)
}

/// The name of the lookup kernel a CPU backend runs (`avx2`, `scalar`, ...):
/// what the `kernel` field of a bench row and the main job's row name
/// report.
///
/// ```
/// let cpu = initret::cpu::CpuBackend::new(&initret::BitTable::seed(16), 1, None)?;
/// assert!(!initret_cli::bench::kernel_name(&cpu).is_empty());
/// # Ok::<(), initret::Error>(())
/// ```
pub fn kernel_name(cpu: &initret::cpu::CpuBackend) -> String {
    cpu.kernel().to_string()
}

/// Rows of the DRAM-sized table `initret info` calibrates on (1 word per
/// row: 256 MiB of words, 64 MiB of `u8` counts, past the caches).
pub const DRAM_SIZED_ROWS: usize = 1 << 26;

/// What a CPU backend measured when it chose its kernel for a random
/// `rows × 1` table (built on `threads` workers, 0: one per CPU): one line
/// per candidate kernel with its rate, the chosen one marked, as `initret
/// info` prints it. A table that cannot be built gives a line saying why.
///
/// ```
/// let report = initret_cli::bench::calibration_report("tiny", 1024, 1);
/// assert!(report.starts_with("tiny table (1024 rows × 1 word): picks "), "{report}");
/// ```
pub fn calibration_report(name: &str, rows: usize, threads: usize) -> String {
    let mut out = format!("{name} table ({rows} rows × 1 word): ");
    let cpu = random_table(rows, 1, 0x5EED ^ 1)
        .and_then(|table| initret::cpu::CpuBackend::new(&table, threads, None));
    let cpu = match cpu {
        Ok(cpu) => cpu,
        Err(e) => {
            let _ = writeln!(out, "no calibration: {e}");
            return out;
        }
    };
    let _ = writeln!(out, "picks {}", kernel_name(&cpu));
    let rates = cpu.calibration().rates();
    if rates.is_empty() {
        out += "  (one candidate, taken without timing)\n";
    }
    for rate in rates {
        let _ = writeln!(
            out,
            "  {:<22} {:>10.3e} lookups/s{}",
            rate.kernel.to_string(),
            rate.lookups_per_s,
            if rate.kernel == cpu.kernel() {
                "  <- picked"
            } else {
                ""
            }
        );
    }
    out
}

/// The shape of one sweep point: queries per call, and the table's rows and
/// words per row.
///
/// ```
/// let shape = initret_cli::bench::Shape { queries: 1024, rows: 1 << 16, words_per_row: 4 };
/// assert_eq!(shape.queries, 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Queries per call.
    pub queries: usize,
    /// Rows of the table.
    pub rows: usize,
    /// Words per table row.
    pub words_per_row: usize,
}

/// The `kernel` field of rows that run no initret kernel (the references
/// and the baselines).
pub const NO_KERNEL: &str = "-";

/// One measured strategy at one point of the sweep; one JSON object per
/// row with `bench --json`.
///
/// ```
/// use initret_cli::bench::{BenchRow, Shape};
///
/// let shape = Shape { queries: 1024, rows: 1 << 16, words_per_row: 1 };
/// let row = BenchRow::new("x", "cpu", "avx2", shape, 0.001);
/// assert_eq!(row.lookups_per_s, 1024.0 / 0.001);
/// let json = serde_json::to_value(&row)?;
/// assert_eq!(json["strategy"], "x");
/// assert_eq!(json["kernel"], "avx2");
/// assert_eq!(json["rows"], 65536);
/// assert!(json["ratio_to_memcpy"].is_null()); // NaN until the references are set
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BenchRow {
    /// What was measured (`initret-cpu`, `naive-rayon`, `memcpy`, ...).
    pub strategy: String,
    /// Where it ran (`cpu`, or the GPU adapter's name).
    pub backend: String,
    /// The kernel that ran: the CPU kernel's name for `initret-cpu`, `gpu`
    /// for the GPU rows, [`NO_KERNEL`] for the references and baselines.
    pub kernel: String,
    /// Queries per call.
    pub queries: usize,
    /// Rows of the table.
    pub rows: usize,
    /// Words per table row.
    pub words_per_row: usize,
    /// Best time for one call, in seconds.
    pub seconds: f64,
    /// `queries / seconds`.
    pub lookups_per_s: f64,
    /// Parallel memcpy time of the same bytes divided by `seconds`.
    pub ratio_to_memcpy: f64,
    /// Naive rayon loop time divided by `seconds`.
    pub ratio_to_naive_rayon: f64,
    /// For GPU resident rows: device buffer copy time of the same bytes divided by `seconds`.
    pub ratio_to_device_copy: Option<f64>,
    /// For GPU end-to-end rows: host→device + device→host copy time of the same bytes divided by `seconds`.
    pub ratio_to_transfer: Option<f64>,
}

impl BenchRow {
    /// A row with its ratios still unset (NaN); see [`BenchRow::with_references`].
    ///
    /// ```
    /// let shape = initret_cli::bench::Shape { queries: 10, rows: 4, words_per_row: 1 };
    /// let row = initret_cli::bench::BenchRow::new("memcpy", "cpu", "-", shape, 1e-6);
    /// assert!(row.ratio_to_memcpy.is_nan());
    /// assert_eq!((row.queries, row.rows, row.words_per_row), (10, 4, 1));
    /// ```
    pub fn new(
        strategy: impl Into<String>,
        backend: impl Into<String>,
        kernel: impl Into<String>,
        shape: Shape,
        seconds: f64,
    ) -> BenchRow {
        BenchRow {
            strategy: strategy.into(),
            backend: backend.into(),
            kernel: kernel.into(),
            queries: shape.queries,
            rows: shape.rows,
            words_per_row: shape.words_per_row,
            seconds,
            lookups_per_s: shape.queries as f64 / seconds,
            ratio_to_memcpy: f64::NAN,
            ratio_to_naive_rayon: f64::NAN,
            ratio_to_device_copy: None,
            ratio_to_transfer: None,
        }
    }

    /// Sets the ratios against this run's references.
    ///
    /// ```
    /// use initret_cli::bench::{BenchRow, References, Shape};
    ///
    /// let shape = Shape { queries: 10, rows: 4, words_per_row: 1 };
    /// let references = References { memcpy_seconds: 1.0, naive_rayon_seconds: 4.0 };
    /// let row = BenchRow::new("x", "cpu", "-", shape, 2.0).with_references(references);
    /// assert_eq!((row.ratio_to_memcpy, row.ratio_to_naive_rayon), (0.5, 2.0));
    /// ```
    pub fn with_references(mut self, references: References) -> BenchRow {
        self.ratio_to_memcpy = references.memcpy_seconds / self.seconds;
        self.ratio_to_naive_rayon = references.naive_rayon_seconds / self.seconds;
        self
    }

    /// The row's shape.
    ///
    /// ```
    /// use initret_cli::bench::{BenchRow, Shape};
    ///
    /// let shape = Shape { queries: 10, rows: 4, words_per_row: 2 };
    /// assert_eq!(BenchRow::new("x", "cpu", "-", shape, 1.0).shape(), shape);
    /// ```
    pub fn shape(&self) -> Shape {
        Shape {
            queries: self.queries,
            rows: self.rows,
            words_per_row: self.words_per_row,
        }
    }
}

/// The two CPU references of one sweep point, measured in the same run as
/// the rows they are compared with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct References {
    /// Best time of a parallel memcpy of the same bytes.
    pub memcpy_seconds: f64,
    /// Best time of the naive rayon loop.
    pub naive_rayon_seconds: f64,
}

/// Renders rows as an aligned text table.
///
/// ```
/// use initret_cli::bench::{BenchRow, References, Shape, format_table};
///
/// let shape = Shape { queries: 10, rows: 4, words_per_row: 1 };
/// let refs = References { memcpy_seconds: 1.0, naive_rayon_seconds: 1.0 };
/// let table = format_table(&[BenchRow::new("x", "cpu", "avx2", shape, 2.0).with_references(refs)]);
/// assert!(table.contains("ratio_to_memcpy") && table.contains("avx2"));
/// ```
pub fn format_table(rows: &[BenchRow]) -> String {
    fn ratio(x: Option<f64>) -> String {
        match x {
            Some(x) if x.is_finite() => format!("{x:.3}"),
            _ => "-".into(),
        }
    }
    let mut out = format!(
        "{:<22} {:<24} {:<18} {:>10} {:>10} {:>5} {:>12} {:>14} {:>15} {:>20} {:>20} {:>17}\n",
        "strategy",
        "backend",
        "kernel",
        "queries",
        "rows",
        "words",
        "seconds",
        "lookups/s",
        "ratio_to_memcpy",
        "ratio_to_naive_rayon",
        "ratio_to_device_copy",
        "ratio_to_transfer"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<22} {:<24} {:<18} {:>10} {:>10} {:>5} {:>12.3e} {:>14.3e} {:>15} {:>20} {:>20} {:>17}",
            r.strategy,
            truncate(&r.backend, 24),
            truncate(&r.kernel, 18),
            r.queries,
            r.rows,
            r.words_per_row,
            r.seconds,
            r.lookups_per_s,
            ratio(Some(r.ratio_to_memcpy)),
            ratio(Some(r.ratio_to_naive_rayon)),
            ratio(r.ratio_to_device_copy),
            ratio(r.ratio_to_transfer),
        );
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Rows of the sweep's seed-sized table (the table every strategy and
/// width is measured on).
pub const SEED_SIZED_ROWS: usize = 1 << 16;

/// Rows the default sweep visits: the seed-sized table, one past the L2,
/// one past a typical L3 and a DRAM-sized one.
pub const DEFAULT_ROWS: [usize; 4] = [SEED_SIZED_ROWS, 1 << 20, 1 << 24, 1 << 26];

/// Words per row the default sweep visits.
pub const DEFAULT_WORDS: [usize; 3] = [1, 4, 16];

/// Query counts of the default sweep at the larger tables (rows other than
/// [`SEED_SIZED_ROWS`]), where only [`ROWS_SWEEP_WORDS`] and no baselines
/// are measured, to keep a default `initret bench` to a few minutes.
pub const ROWS_SWEEP_QUERIES: [usize; 3] = [1 << 16, 1 << 20, 1 << 24];

/// Words per row of the larger tables of the default sweep: a 2^26-row
/// table of 1 word is 256 MiB of words and 64 MiB of `u8` counts, past any
/// L3, which is what that table is for.
pub const ROWS_SWEEP_WORDS: usize = 1;

/// Query counts of the default sweep at the seed-sized table: 2^10 to 2^26,
/// even powers.
///
/// ```
/// let q = initret_cli::bench::default_queries();
/// assert_eq!((q[0], q.len(), *q.last().unwrap()), (1 << 10, 9, 1 << 26));
/// ```
pub fn default_queries() -> Vec<usize> {
    (10..=26).step_by(2).map(|p| 1usize << p).collect()
}

/// What `initret bench` was asked to sweep (`None`: the default list).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepOptions {
    /// `--queries`: only this many queries per call.
    pub queries: Option<usize>,
    /// `--words`: only this many words per row.
    pub words_per_row: Option<usize>,
    /// `--rows`: only this many rows, with every strategy and width.
    pub rows: Option<usize>,
    /// CPU worker threads (0: one per CPU).
    pub threads: usize,
    /// Whether to run the baselines too (off with `--no-baselines`).
    pub baselines: bool,
}

/// The points a sweep measures, in order: for each number of rows, each
/// width, each query count. At the seed-sized table (or the one `--rows`
/// names) every width, query count and strategy; at the larger default
/// tables only [`ROWS_SWEEP_WORDS`] (so none when `--words` names another
/// width), the [`ROWS_SWEEP_QUERIES`] (or `--queries`) and no baselines.
///
/// ```
/// use initret_cli::bench::{SweepOptions, plan};
///
/// let all = plan(&SweepOptions { baselines: true, ..SweepOptions::default() });
/// assert_eq!(all.len(), 9 * 3 + 3 * 3);
/// assert!(all.iter().filter(|p| p.rows == 1 << 26).all(|p| p.words_per_row == 1 && !p.baselines));
///
/// let wide = plan(&SweepOptions { words_per_row: Some(4), queries: Some(8), ..SweepOptions::default() });
/// assert_eq!(wide.len(), 1);
///
/// let one = plan(&SweepOptions { rows: Some(100), queries: Some(8), baselines: true, ..SweepOptions::default() });
/// assert_eq!(one.len(), 3);
/// assert!(one.iter().all(|p| p.rows == 100 && p.queries == 8 && p.baselines));
/// ```
pub fn plan(options: &SweepOptions) -> Vec<PointSpec> {
    let rows_list = options.rows.map_or(DEFAULT_ROWS.to_vec(), |r| vec![r]);
    let words_list = options
        .words_per_row
        .map_or(DEFAULT_WORDS.to_vec(), |w| vec![w]);
    let queries_list = options.queries.map_or_else(default_queries, |q| vec![q]);
    let mut points = Vec::new();
    for &rows in &rows_list {
        let full = options.rows.is_some() || rows == SEED_SIZED_ROWS;
        for &words_per_row in &words_list {
            if !full && words_per_row != ROWS_SWEEP_WORDS {
                continue;
            }
            for &queries in &queries_list {
                if !full && options.queries.is_none() && !ROWS_SWEEP_QUERIES.contains(&queries) {
                    continue;
                }
                points.push(PointSpec {
                    rows,
                    words_per_row,
                    queries,
                    threads: options.threads,
                    baselines: options.baselines && full,
                });
            }
        }
    }
    points
}

/// What one point of the sweep measures.
///
/// ```
/// let spec = initret_cli::bench::PointSpec { rows: 1 << 16, words_per_row: 1, queries: 1024, threads: 0, baselines: true };
/// assert_eq!(spec.shape().queries, 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PointSpec {
    /// Rows of the random table the queries index.
    pub rows: usize,
    /// Words per row of that table.
    pub words_per_row: usize,
    /// Queries per call.
    pub queries: usize,
    /// CPU worker threads for initret and the pooled baselines (0: one per CPU).
    pub threads: usize,
    /// Whether to also run the baselines (serial, per-call copy, global
    /// initializer, rayon `map_init`).
    pub baselines: bool,
}

impl PointSpec {
    /// The point's shape.
    pub fn shape(&self) -> Shape {
        Shape {
            queries: self.queries,
            rows: self.rows,
            words_per_row: self.words_per_row,
        }
    }

    /// A generous estimate of the bytes measuring this point holds at once:
    /// the table, the dispatcher's copy of it and every worker's count table,
    /// the query, expected and output buffers, the baselines' copies (the
    /// global initializer's and per-call copy's, one per worker) and, with
    /// the `gpu` feature, the GPU's copy and its staging. An error when it
    /// overflows.
    ///
    /// ```
    /// use initret_cli::bench::PointSpec;
    ///
    /// let spec = PointSpec { rows: 1000, words_per_row: 1, queries: 10, threads: 2, baselines: false };
    /// assert!(spec.footprint()? >= 2 * 4000);
    /// let huge = PointSpec { queries: usize::MAX, ..spec };
    /// assert!(huge.footprint().unwrap_err().to_string().contains("overflows"));
    /// # Ok::<(), initret_cli::error::CliError>(())
    /// ```
    pub fn footprint(&self) -> Result<u64, CliError> {
        let threads = if self.threads == 0 {
            rayon::current_num_threads()
        } else {
            self.threads
        } as u64;
        let overflow = || CliError::Allocation {
            what: self.describe(),
            reason: "the size overflows".into(),
        };
        let mul = |a: u64, b: u64| a.checked_mul(b).ok_or_else(overflow);
        let (rows, words, queries) = (
            self.rows as u64,
            self.words_per_row as u64,
            self.queries as u64,
        );
        let table = mul(mul(rows, words)?, 4)?;
        let query_bytes = mul(queries, 4)?;
        // The point's table, the dispatcher's copy, GPU copy and staging.
        let table_copies = 2
            + if initret::gpu::ENABLED { 2 } else { 0 }
            + if self.baselines { 1 + 2 * threads } else { 0 };
        // Row counts while deriving, then one count table per worker.
        let counts = mul(mul(rows, 4)?, 2 + threads)?;
        // Queries, expected, output and scratch; the baselines' results.
        let buffers = mul(query_bytes, 4 + if self.baselines { 2 } else { 0 })?;
        [mul(table, table_copies)?, counts, buffers]
            .into_iter()
            .try_fold(0u64, u64::checked_add)
            .ok_or_else(overflow)
    }

    /// Fails with [`CliError::Allocation`] unless [`PointSpec::footprint`]
    /// bytes can be reserved now: a size check before anything is built, so
    /// that a request too large for the machine (or for `ulimit -v`) is a
    /// one-line error, not an abort. The probe is released at once.
    ///
    /// ```
    /// use initret_cli::bench::PointSpec;
    ///
    /// let small = PointSpec { rows: 16, words_per_row: 1, queries: 8, threads: 1, baselines: true };
    /// assert!(small.check_allocatable().is_ok());
    /// let large = PointSpec { queries: 1 << 60, ..small };
    /// let message = large.check_allocatable().unwrap_err().to_string();
    /// assert!(message.starts_with("cannot allocate bench point"), "{message}");
    /// ```
    pub fn check_allocatable(&self) -> Result<(), CliError> {
        let bytes = self.footprint()?;
        let too_large = |reason: String| CliError::Allocation {
            what: format!("{} (about {:.3e} bytes)", self.describe(), bytes as f64),
            reason,
        };
        let len = usize::try_from(bytes).map_err(|e| too_large(e.to_string()))?;
        let mut probe: Vec<u8> = Vec::new();
        probe
            .try_reserve_exact(len)
            .map_err(|e| too_large(e.to_string()))
    }

    fn describe(&self) -> String {
        format!(
            "bench point rows={} words_per_row={} queries={}{}",
            self.rows,
            self.words_per_row,
            self.queries,
            if self.baselines {
                " with baselines"
            } else {
                ""
            }
        )
    }
}

/// An empty vector with room for `len` elements, or a
/// [`CliError::Allocation`] naming `what`.
///
/// ```
/// let v: Vec<u32> = initret_cli::bench::try_with_capacity(10, "queries")?;
/// assert!(v.capacity() >= 10);
/// assert!(initret_cli::bench::try_with_capacity::<u32>(usize::MAX, "queries").is_err());
/// # Ok::<(), initret_cli::error::CliError>(())
/// ```
pub fn try_with_capacity<T>(len: usize, what: &str) -> Result<Vec<T>, CliError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|e| CliError::Allocation {
        what: format!("{len} {what} ({} bytes each)", std::mem::size_of::<T>()),
        reason: e.to_string(),
    })?;
    Ok(v)
}

/// A zeroed output buffer of `len` counts, allocated with
/// [`try_with_capacity`].
fn try_zeroed(len: usize, what: &str) -> Result<Vec<u32>, CliError> {
    let mut v = try_with_capacity(len, what)?;
    v.resize(len, 0);
    Ok(v)
}

/// The data of one sweep point, built once and shared by every strategy
/// and backend measured there: a random `rows × words_per_row` table,
/// `queries` random indices into it, and their expected counts.
///
/// ```
/// let spec = initret_cli::bench::PointSpec { rows: 16, words_per_row: 3, queries: 5, threads: 1, baselines: false };
/// let point = initret_cli::bench::Point::new(&spec)?;
/// assert_eq!((point.table.words_per_row(), point.queries.len()), (3, 5));
/// assert_eq!(point.expected, point.table.reference_popcount(&point.queries)?);
/// # Ok::<(), initret_cli::error::CliError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Point {
    /// The table the queries index.
    pub table: BitTable,
    /// The query batch.
    pub queries: Vec<u32>,
    /// The popcount of each queried row, from the naive rayon loop.
    pub expected: Vec<u32>,
}

impl Point {
    /// Builds the point's table, queries and expected counts (seeded, so the
    /// same spec gives the same data), reserving every buffer fallibly.
    ///
    /// ```
    /// let spec = initret_cli::bench::PointSpec { rows: 8, words_per_row: 1, queries: 4, threads: 1, baselines: false };
    /// let a = initret_cli::bench::Point::new(&spec)?;
    /// let b = initret_cli::bench::Point::new(&spec)?;
    /// assert_eq!(a.queries, b.queries);
    /// assert_eq!(a.queries, initret_cli::bench::random_queries(4, 8, 0xBA7C ^ 4));
    /// # Ok::<(), initret_cli::error::CliError>(())
    /// ```
    pub fn new(spec: &PointSpec) -> Result<Point, CliError> {
        let (rows, words_per_row) = (spec.rows, spec.words_per_row);
        let table = random_table(rows, words_per_row, 0x5EED ^ words_per_row as u64)?;
        let mut queries = try_with_capacity(spec.queries, "queries")?;
        let mut rng = SplitMix64::new(0xBA7C ^ spec.queries as u64);
        queries.extend((0..spec.queries).map(|_| rng.below(rows as u64) as u32));
        let mut expected = try_with_capacity(spec.queries, "expected counts")?;
        crate::baseline::naive_rayon_into(&table, &queries, &mut expected)?;
        Ok(Point {
            table,
            queries,
            expected,
        })
    }

    /// The point's shape.
    pub fn shape(&self) -> Shape {
        Shape {
            queries: self.queries.len(),
            rows: self.table.rows(),
            words_per_row: self.table.words_per_row(),
        }
    }

    /// `Ok` if `got` is the expected counts; an [`initret::Error::Internal`]
    /// naming `name` otherwise.
    ///
    /// ```
    /// let spec = initret_cli::bench::PointSpec { rows: 8, words_per_row: 1, queries: 4, threads: 1, baselines: false };
    /// let point = initret_cli::bench::Point::new(&spec)?;
    /// assert!(point.check("x", &point.expected).is_ok());
    /// assert!(point.check("x", &[]).is_err());
    /// # Ok::<(), initret_cli::error::CliError>(())
    /// ```
    pub fn check(&self, name: &str, got: &[u32]) -> Result<(), Error> {
        if got == self.expected.as_slice() {
            Ok(())
        } else {
            Err(Error::Internal(format!(
                "{name} disagrees with the naive loop at {} queries",
                self.queries.len()
            )))
        }
    }
}

/// What [`measure_cpu_point`] measured: the rows (references first) and the
/// references themselves, for the GPU rows of the same point.
#[derive(Clone, Debug)]
pub struct CpuRows {
    /// One row per strategy.
    pub rows: Vec<BenchRow>,
    /// This point's memcpy and naive-rayon times.
    pub references: References,
}

/// Measures every CPU strategy at one [`Point`] and returns the rows,
/// references first. The references (memcpy, naive rayon loop) and rayon's
/// `map_init` run on a rayon pool of `spec.threads` threads, the same
/// number initret and the pooled baselines get. Every strategy's output is
/// checked against the point's expected counts; a mismatch is an error, not
/// a row.
///
/// ```
/// use initret_cli::bench::{PointSpec, Point, measure_cpu_point};
///
/// let spec = PointSpec { rows: 1024, words_per_row: 1, queries: 1024, threads: 1, baselines: false };
/// let measured = measure_cpu_point(&spec, &Point::new(&spec)?)?;
/// assert_eq!(measured.rows[0].strategy, "memcpy");
/// assert_eq!(measured.rows[2].strategy, "initret-cpu");
/// assert_ne!(measured.rows[2].kernel, "-");
/// assert!(measured.rows.iter().all(|r| r.rows == 1024));
/// # Ok::<(), initret_cli::error::CliError>(())
/// ```
pub fn measure_cpu_point(spec: &PointSpec, point: &Point) -> Result<CpuRows, CliError> {
    use crate::baseline::{self, GlobalInitializer, PerCallCopy, TaskSize};
    use initret::{Backend, Dispatcher};

    let (table, batch) = (&point.table, point.queries.as_slice());
    let shape = point.shape();
    let pool = baseline::thread_pool(spec.threads, "initret-bench")?;
    let mut out = try_zeroed(batch.len(), "output counts")?;
    let memcpy = pool.install(|| best_time(|| parallel_memcpy(batch, &mut out)))?;
    let mut got = try_with_capacity(batch.len(), "counts")?;
    let naive =
        pool.install(|| best_time(|| baseline::naive_rayon_into(table, batch, &mut got)))?;
    point.check("naive-rayon", &got)?;
    let references = References {
        memcpy_seconds: memcpy.as_secs_f64(),
        naive_rayon_seconds: naive.as_secs_f64(),
    };
    let row = |name: &str, kernel: &str, seconds: f64| {
        BenchRow::new(name, "cpu", kernel, shape, seconds).with_references(references)
    };
    let mut rows = vec![
        row("memcpy", NO_KERNEL, references.memcpy_seconds),
        row("naive-rayon", NO_KERNEL, references.naive_rayon_seconds),
    ];

    let dispatcher = Dispatcher::builder(table.clone())
        .backend(Backend::Cpu)
        .threads(spec.threads)
        .build()?;
    let kernel = dispatcher.cpu().map_or_else(|| "?".into(), kernel_name);
    let t = best_time(|| dispatcher.popcount_into(batch, &mut out))?;
    point.check("initret-cpu", &out)?;
    rows.push(row("initret-cpu", &kernel, t.as_secs_f64()));
    drop(dispatcher);

    if spec.baselines {
        let global = GlobalInitializer::new(table.clone(), spec.threads)?;
        let t = best_time(|| {
            got = global.run(batch)?.counts;
            Ok::<_, Error>(())
        })?;
        point.check("global-initializer", &got)?;
        rows.push(row("global-initializer", NO_KERNEL, t.as_secs_f64()));
        drop(global);

        let t = pool.install(|| {
            best_time(|| {
                got = baseline::rayon_map_init(table, batch)?.counts;
                Ok::<_, Error>(())
            })
        })?;
        point.check("rayon-map-init", &got)?;
        rows.push(row("rayon-map-init", NO_KERNEL, t.as_secs_f64()));

        let copy = PerCallCopy::new(spec.threads, TaskSize::PythonDefault)?;
        let t = best_time(|| {
            got = copy.run(table, batch)?.counts;
            Ok::<_, Error>(())
        })?;
        point.check("per-call-copy", &got)?;
        rows.push(row("per-call-copy", NO_KERNEL, t.as_secs_f64()));

        let t = best_time(|| {
            got = baseline::serial(table, batch)?;
            Ok::<_, Error>(())
        })?;
        point.check("serial", &got)?;
        rows.push(row("serial", NO_KERNEL, t.as_secs_f64()));
    }
    Ok(CpuRows { rows, references })
}
