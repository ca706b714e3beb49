//! The sweep: which points `initret bench` visits ([`plan`]), the data of
//! one point ([`Point`]), and the CPU strategies measured at it.

use initret::harness::{SplitMix64, random_table};
use initret::{BitTable, Error, Placement};

use super::row::{BenchRow, NO_KERNEL, References, Shape};
use super::timing::{best_time, kernel_name, parallel_memcpy, resident_bytes, resolved_threads};
use crate::error::CliError;

/// The strategy name of the CPU backend's rows: `initret-cpu` with the
/// default placement, `initret-cpu/shared` or `initret-cpu/per-worker`
/// otherwise, so rows of one run with several placements stay apart.
///
/// ```
/// use initret::Placement;
/// use initret_cli::bench::initret_cpu_strategy;
///
/// assert_eq!(initret_cpu_strategy(Placement::PerDomain), "initret-cpu");
/// assert_eq!(initret_cpu_strategy(Placement::PerWorker), "initret-cpu/per-worker");
/// ```
pub fn initret_cpu_strategy(placement: Placement) -> String {
    if placement == Placement::default() {
        "initret-cpu".into()
    } else {
        format!("initret-cpu/{placement}")
    }
}

/// Rows of the sweep's seed-sized table (the table every strategy and
/// width is measured on).
pub const SEED_SIZED_ROWS: usize = 1 << 16;

/// Rows the default sweep visits: the seed-sized table, one past the L2,
/// 4 to 16 MiB of `u8` counts (where copies per thread start to compete
/// for an L3), and up to a DRAM-sized one.
pub const DEFAULT_ROWS: [usize; 7] = [
    SEED_SIZED_ROWS,
    1 << 20,
    1 << 22,
    1 << 23,
    1 << 24,
    1 << 25,
    1 << 26,
];

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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// The CPU backend's placements to measure, each point once per
    /// placement (empty: the default placement only).
    pub placements: Vec<Placement>,
    /// `--scaling`: every point at 1, 2, ... up to `threads` threads (or one
    /// per CPU), references and initret only.
    pub scaling: bool,
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
/// assert_eq!(all.len(), 9 * 3 + 6 * 3);
/// assert!(all.iter().filter(|p| p.rows == 1 << 26).all(|p| p.words_per_row == 1 && !p.baselines));
///
/// let wide = plan(&SweepOptions { words_per_row: Some(4), queries: Some(8), ..SweepOptions::default() });
/// assert_eq!(wide.len(), 1);
///
/// let one = plan(&SweepOptions { rows: Some(100), queries: Some(8), baselines: true, ..SweepOptions::default() });
/// assert_eq!(one.len(), 3);
/// assert!(one.iter().all(|p| p.rows == 100 && p.queries == 8 && p.baselines));
///
/// // Both placements at 1 and 2 threads: four points, no baselines.
/// let scaling = plan(&SweepOptions {
///     rows: Some(100), queries: Some(8), words_per_row: Some(1), threads: 2, baselines: true, scaling: true,
///     placements: vec![initret::Placement::PerDomain, initret::Placement::PerWorker],
/// });
/// assert_eq!(scaling.iter().map(|p| p.threads).collect::<Vec<_>>(), [1, 1, 2, 2]);
/// assert!(scaling.iter().all(|p| !p.baselines));
/// ```
pub fn plan(options: &SweepOptions) -> Vec<PointSpec> {
    let rows_list = options.rows.map_or(DEFAULT_ROWS.to_vec(), |r| vec![r]);
    let words_list = options
        .words_per_row
        .map_or(DEFAULT_WORDS.to_vec(), |w| vec![w]);
    let queries_list = options.queries.map_or_else(default_queries, |q| vec![q]);
    let placements = if options.placements.is_empty() {
        vec![Placement::default()]
    } else {
        options.placements.clone()
    };
    let threads_list: Vec<usize> = if options.scaling {
        (1..=resolved_threads(options.threads)).collect()
    } else {
        vec![options.threads]
    };
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
                for &threads in &threads_list {
                    for (i, &placement) in placements.iter().enumerate() {
                        points.push(PointSpec {
                            rows,
                            words_per_row,
                            queries,
                            threads,
                            // The baselines do not depend on the placement.
                            baselines: options.baselines && full && !options.scaling && i == 0,
                            placement,
                        });
                    }
                }
            }
        }
    }
    points
}

/// What one point of the sweep measures.
///
/// ```
/// let spec = initret_cli::bench::PointSpec { rows: 1 << 16, words_per_row: 1, queries: 1024, threads: 0, baselines: true, placement: initret::Placement::PerDomain };
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
    /// How the CPU backend places its counts.
    pub placement: Placement,
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
    /// let spec = PointSpec { rows: 1000, words_per_row: 1, queries: 10, threads: 2, baselines: false, placement: initret::Placement::PerDomain };
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
    /// let small = PointSpec { rows: 16, words_per_row: 1, queries: 8, threads: 1, baselines: true, placement: initret::Placement::PerDomain };
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
/// let spec = initret_cli::bench::PointSpec { rows: 16, words_per_row: 3, queries: 5, threads: 1, baselines: false, placement: initret::Placement::PerDomain };
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
    /// let spec = initret_cli::bench::PointSpec { rows: 8, words_per_row: 1, queries: 4, threads: 1, baselines: false, placement: initret::Placement::PerDomain };
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
    /// let spec = initret_cli::bench::PointSpec { rows: 8, words_per_row: 1, queries: 4, threads: 1, baselines: false, placement: initret::Placement::PerDomain };
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
/// let spec = PointSpec { rows: 1024, words_per_row: 1, queries: 1024, threads: 1, baselines: false, placement: initret::Placement::PerDomain };
/// let measured = measure_cpu_point(&spec, &Point::new(&spec)?)?;
/// assert_eq!(measured.rows[0].strategy, "memcpy");
/// assert_eq!(measured.rows[2].strategy, "initret-cpu");
/// assert_ne!(measured.rows[2].kernel, "-");
/// assert!(measured.rows.iter().all(|r| r.rows == 1024));
/// # Ok::<(), initret_cli::error::CliError>(())
/// ```
pub fn measure_cpu_point(spec: &PointSpec, point: &Point) -> Result<CpuRows, CliError> {
    use crate::baseline::{self, GlobalInitializer, PerCallCopy, TaskSize};
    use initret::PopcountBackend;
    use initret::cpu::CpuBackend;

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
    let threads = resolved_threads(spec.threads);
    let row = |name: &str, kernel: &str, seconds: f64| BenchRow {
        threads: Some(threads),
        ..BenchRow::new(name, "cpu", kernel, shape, seconds).with_references(references)
    };
    let mut rows = vec![
        row("memcpy", NO_KERNEL, references.memcpy_seconds),
        row("naive-rayon", NO_KERNEL, references.naive_rayon_seconds),
    ];

    // The CPU backend a `Dispatcher` with `Backend::Cpu` runs, built over
    // the point's table without copying it, so the resident memory it adds
    // is its own: the count tables, its threads, the calibration buffers.
    let before = resident_bytes();
    let cpu = CpuBackend::builder()
        .threads(spec.threads)
        .kernel_request_from_env()
        .placement(spec.placement)
        .build(table)?;
    let added = before
        .zip(resident_bytes())
        .map(|(before, after)| after.saturating_sub(before));
    let kernel = kernel_name(&cpu);
    let placed = (cpu.copies() * cpu.count_bytes()) as u64;
    let name = initret_cpu_strategy(spec.placement);
    let t = best_time(|| cpu.popcount_into(batch, &mut out))?;
    point.check(&name, &out)?;
    rows.push(BenchRow {
        placement: Some(spec.placement.to_string()),
        resident_bytes_added: added,
        count_bytes_placed: Some(placed),
        ..row(&name, &kernel, t.as_secs_f64())
    });
    // The same lookups into the natural result type (the smallest that
    // holds the table's counts: `u8` for rows of up to 7 words), against a
    // memcpy of the bytes they really move.
    let natural = match cpu.result_bytes() {
        1 => Some(narrow_row::<u8>(&cpu, point, &pool)?),
        2 => Some(narrow_row::<u16>(&cpu, point, &pool)?),
        _ => None,
    };
    if let Some((seconds, bytes_per_lookup, memcpy_seconds)) = natural {
        let mut narrow = BenchRow {
            placement: Some(spec.placement.to_string()),
            bytes_per_lookup,
            ..row(
                &format!("{name}-u{}", 8 * (bytes_per_lookup - 4)),
                &kernel,
                seconds,
            )
        };
        narrow.ratio_to_memcpy = memcpy_seconds / seconds;
        rows.push(narrow);
    }
    drop(cpu);

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
            Ok::<_, CliError>(())
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

/// The best time of `cpu`'s lookups of `point`'s `u32` queries into results
/// of type `R`, checked against the point's counts; the bytes a lookup then
/// moves (4 for the query, `R`'s size for the result); and the best time of
/// a parallel memcpy moving as many bytes (reading half, writing half), on
/// `pool`.
fn narrow_row<R: initret::arch::CountWord>(
    cpu: &initret::cpu::CpuBackend,
    point: &Point,
    pool: &rayon::ThreadPool,
) -> Result<(f64, usize, f64), CliError> {
    use initret::PopcountBackend;
    let batch = point.queries.as_slice();
    let mut out = vec![R::ZERO; batch.len()];
    let t = best_time(|| cpu.popcount_indices_into(batch, &mut out))?;
    let widened: Vec<u32> = out.iter().map(|&c| c.into()).collect();
    point.check(&format!("initret-cpu into u{}", 8 * R::BYTES), &widened)?;
    let bytes_per_lookup = 4 + R::BYTES;
    // The same buffers as the 8-byte reference (the queries copied into a
    // u32 output), fewer words: `bytes_per_lookup / 8` of them per query.
    let words = (bytes_per_lookup * batch.len())
        .div_ceil(8)
        .min(batch.len());
    let mut dst = try_zeroed(words, "memcpy output")?;
    let memcpy = pool.install(|| best_time(|| parallel_memcpy(&batch[..words], &mut dst)))?;
    Ok((t.as_secs_f64(), bytes_per_lookup, memcpy.as_secs_f64()))
}
