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

/// Runs `f` at least `runs.start()` times, then again while less than
/// `budget` has passed and fewer than `runs.end()` runs were made; returns
/// the best time and the value of that run. Every timing loop of the crate
/// (bench rows, the main job, `Auto`'s crossover) goes through here.
///
/// ```
/// use std::time::Duration;
///
/// let (best, value) = initret_cli::bench::best_run(1..=5, Duration::ZERO, || Ok(7))?;
/// assert_eq!(value, 7);
/// assert!(best < Duration::from_secs(1));
/// # Ok::<(), initret::Error>(())
/// ```
pub fn best_run<T>(
    runs: std::ops::RangeInclusive<usize>,
    budget: Duration,
    mut f: impl FnMut() -> Result<T, Error>,
) -> Result<(Duration, T), Error> {
    let started = Instant::now();
    let mut best: Option<(Duration, T)> = None;
    let mut made = 0;
    while made < *runs.start() || (made < *runs.end() && started.elapsed() < budget) {
        let t = Instant::now();
        let value = std::hint::black_box(f()?);
        let elapsed = t.elapsed();
        if best.as_ref().is_none_or(|(b, _)| elapsed < *b) {
            best = Some((elapsed, value));
        }
        made += 1;
    }
    best.ok_or_else(|| Error::InvalidArgument("best_run was asked for zero runs".into()))
}

/// The benchmark rows' timing: the best of at least 3 runs and at least
/// [`MIN_SECONDS_PER_ROW`] in total (at most 1000 runs).
///
/// ```
/// let best = initret_cli::bench::best_time(|| Ok(std::hint::black_box(1 + 1)))?;
/// assert!(best.as_secs_f64() < 1.0);
/// # Ok::<(), initret::Error>(())
/// ```
pub fn best_time<T>(f: impl FnMut() -> Result<T, Error>) -> Result<Duration, Error> {
    let budget = Duration::from_secs_f64(MIN_SECONDS_PER_ROW);
    best_run(3..=1000, budget, f).map(|(best, _)| best)
}

/// One measured strategy at one point of the sweep.
///
/// ```
/// use initret_cli::bench::BenchRow;
///
/// let row = BenchRow::new("x", "cpu", 1024, 1, 0.001);
/// assert_eq!(row.lookups_per_s, 1024.0 / 0.001);
/// assert!(row.to_json().contains("\"strategy\":\"x\""));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    /// What was measured (`initret-cpu`, `naive-rayon`, `memcpy`, ...).
    pub strategy: String,
    /// Where it ran (`cpu`, or the GPU adapter's name).
    pub backend: String,
    /// Queries per call.
    pub queries: usize,
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
    /// let row = initret_cli::bench::BenchRow::new("memcpy", "cpu", 10, 1, 1e-6);
    /// assert!(row.ratio_to_memcpy.is_nan());
    /// ```
    pub fn new(
        strategy: impl Into<String>,
        backend: impl Into<String>,
        queries: usize,
        words_per_row: usize,
        seconds: f64,
    ) -> BenchRow {
        BenchRow {
            strategy: strategy.into(),
            backend: backend.into(),
            queries,
            words_per_row,
            seconds,
            lookups_per_s: queries as f64 / seconds,
            ratio_to_memcpy: f64::NAN,
            ratio_to_naive_rayon: f64::NAN,
            ratio_to_device_copy: None,
            ratio_to_transfer: None,
        }
    }

    /// Sets the ratios against the memcpy and naive-rayon times of this run.
    ///
    /// ```
    /// let row = initret_cli::bench::BenchRow::new("x", "cpu", 10, 1, 2.0).with_references(1.0, 4.0);
    /// assert_eq!((row.ratio_to_memcpy, row.ratio_to_naive_rayon), (0.5, 2.0));
    /// ```
    pub fn with_references(mut self, memcpy_seconds: f64, naive_rayon_seconds: f64) -> BenchRow {
        self.ratio_to_memcpy = memcpy_seconds / self.seconds;
        self.ratio_to_naive_rayon = naive_rayon_seconds / self.seconds;
        self
    }

    /// The row as one JSON object on one line.
    ///
    /// ```
    /// let row = initret_cli::bench::BenchRow::new("x", "cpu", 10, 1, 2.0);
    /// assert!(row.to_json().starts_with('{'));
    /// ```
    pub fn to_json(&self) -> String {
        fn num(x: f64) -> String {
            if x.is_finite() {
                format!("{x}")
            } else {
                "null".into()
            }
        }
        fn opt(x: Option<f64>) -> String {
            x.map_or_else(|| "null".into(), num)
        }
        format!(
            "{{\"strategy\":{},\"backend\":{},\"queries\":{},\"words_per_row\":{},\"seconds\":{},\"lookups_per_s\":{},\"ratio_to_memcpy\":{},\"ratio_to_naive_rayon\":{},\"ratio_to_device_copy\":{},\"ratio_to_transfer\":{}}}",
            json_string(&self.strategy),
            json_string(&self.backend),
            self.queries,
            self.words_per_row,
            num(self.seconds),
            num(self.lookups_per_s),
            num(self.ratio_to_memcpy),
            num(self.ratio_to_naive_rayon),
            opt(self.ratio_to_device_copy),
            opt(self.ratio_to_transfer),
        )
    }
}

/// `s` as a JSON string literal.
///
/// ```
/// assert_eq!(initret_cli::bench::json_string("a\"b"), "\"a\\\"b\"");
/// ```
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders rows as an aligned text table.
///
/// ```
/// let rows = [initret_cli::bench::BenchRow::new("x", "cpu", 10, 1, 2.0).with_references(1.0, 1.0)];
/// assert!(initret_cli::bench::format_table(&rows).contains("ratio_to_memcpy"));
/// ```
pub fn format_table(rows: &[BenchRow]) -> String {
    fn ratio(x: Option<f64>) -> String {
        match x {
            Some(x) if x.is_finite() => format!("{x:.3}"),
            _ => "-".into(),
        }
    }
    let mut out = format!(
        "{:<22} {:<24} {:>10} {:>5} {:>12} {:>14} {:>15} {:>20} {:>20} {:>17}\n",
        "strategy",
        "backend",
        "queries",
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
            "{:<22} {:<24} {:>10} {:>5} {:>12.3e} {:>14.3e} {:>15} {:>20} {:>20} {:>17}",
            r.strategy,
            truncate(&r.backend, 24),
            r.queries,
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

/// What one point of the sweep measures.
///
/// ```
/// let config = initret_cli::bench::PointConfig { rows: 1 << 16, threads: 0, baselines: true };
/// # let _ = config;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PointConfig {
    /// Rows of the random table the queries index.
    pub rows: usize,
    /// CPU worker threads for initret and the pooled baselines (0: one per CPU).
    pub threads: usize,
    /// Whether to also run the baselines (serial, per-call copy, global
    /// initializer, rayon `map_init`).
    pub baselines: bool,
}

/// The data of one sweep point, built once and shared by every strategy
/// and backend measured there: a random `rows × words_per_row` table,
/// `queries` random indices into it, and their expected counts.
///
/// ```
/// let config = initret_cli::bench::PointConfig { rows: 16, threads: 1, baselines: false };
/// let point = initret_cli::bench::Point::new(&config, 5, 3)?;
/// assert_eq!((point.table.words_per_row(), point.queries.len()), (3, 5));
/// assert_eq!(point.expected, point.table.reference_popcount(&point.queries)?);
/// # Ok::<(), initret::Error>(())
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
    /// same arguments give the same data).
    ///
    /// ```
    /// let config = initret_cli::bench::PointConfig { rows: 8, threads: 1, baselines: false };
    /// let a = initret_cli::bench::Point::new(&config, 4, 1)?;
    /// let b = initret_cli::bench::Point::new(&config, 4, 1)?;
    /// assert_eq!(a.queries, b.queries);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn new(config: &PointConfig, queries: usize, words_per_row: usize) -> Result<Point, Error> {
        let table = random_table(config.rows, words_per_row, 0x5EED ^ words_per_row as u64)?;
        let queries = random_queries(queries, config.rows, 0xBA7C ^ queries as u64);
        let mut expected = Vec::new();
        crate::baseline::naive_rayon_into(&table, &queries, &mut expected)?;
        Ok(Point {
            table,
            queries,
            expected,
        })
    }

    fn check(&self, name: &str, got: &[u32]) -> Result<(), Error> {
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

/// Measures every CPU strategy at one [`Point`] and returns the rows,
/// references first. The references (memcpy, naive rayon loop) and rayon's
/// `map_init` run on a rayon pool of `config.threads` threads, the same
/// number initret and the pooled baselines get. Every strategy's output is
/// checked against the point's expected counts; a mismatch is an error, not
/// a row.
///
/// ```
/// use initret_cli::bench::{PointConfig, Point, measure_cpu_point};
///
/// let config = PointConfig { rows: 1024, threads: 1, baselines: false };
/// let rows = measure_cpu_point(&config, &Point::new(&config, 1024, 1)?)?;
/// assert_eq!(rows[0].strategy, "memcpy");
/// # Ok::<(), initret::Error>(())
/// ```
pub fn measure_cpu_point(config: &PointConfig, point: &Point) -> Result<Vec<BenchRow>, Error> {
    use crate::baseline::{self, GlobalInitializer, PerCallCopy, TaskSize};
    use initret::{Backend, Dispatcher};

    let (table, batch) = (&point.table, point.queries.as_slice());
    let (queries, words_per_row) = (batch.len(), table.words_per_row());
    let references = baseline::thread_pool(config.threads, "initret-bench")?;
    let mut out = vec![0u32; queries];
    let memcpy = references
        .install(|| best_time(|| parallel_memcpy(batch, &mut out)))?
        .as_secs_f64();
    let mut got = Vec::new();
    let naive = references
        .install(|| best_time(|| baseline::naive_rayon_into(table, batch, &mut got)))?
        .as_secs_f64();
    point.check("naive-rayon", &got)?;
    let row = |name: &str, seconds: f64| {
        BenchRow::new(name, "cpu", queries, words_per_row, seconds).with_references(memcpy, naive)
    };
    let mut rows = vec![row("memcpy", memcpy), row("naive-rayon", naive)];

    let dispatcher = Dispatcher::builder(table.clone())
        .backend(Backend::Cpu)
        .threads(config.threads)
        .build()?;
    let t = best_time(|| dispatcher.popcount_into(batch, &mut out))?;
    point.check("initret-cpu", &out)?;
    rows.push(row("initret-cpu", t.as_secs_f64()));

    if config.baselines {
        let global = GlobalInitializer::new(table.clone(), config.threads)?;
        let t = best_time(|| {
            got = global.run(batch)?.counts;
            Ok(())
        })?;
        point.check("global-initializer", &got)?;
        rows.push(row("global-initializer", t.as_secs_f64()));

        let t = references.install(|| {
            best_time(|| {
                got = baseline::rayon_map_init(table, batch)?.counts;
                Ok(())
            })
        })?;
        point.check("rayon-map-init", &got)?;
        rows.push(row("rayon-map-init", t.as_secs_f64()));

        let copy = PerCallCopy::new(config.threads, TaskSize::PythonDefault)?;
        let t = best_time(|| {
            got = copy.run(table, batch)?.counts;
            Ok(())
        })?;
        point.check("per-call-copy", &got)?;
        rows.push(row("per-call-copy", t.as_secs_f64()));

        let t = best_time(|| {
            got = baseline::serial(table, batch)?;
            Ok(())
        })?;
        point.check("serial", &got)?;
        rows.push(row("serial", t.as_secs_f64()));
    }
    Ok(rows)
}

/// Measures the GPU backend at one [`Point`] (whose table `gpu` must hold):
/// `gpu-end-to-end` (queries up, counts down,
/// [`GpuBackend::popcount_into`](initret::gpu::GpuBackend::popcount_into)) with
/// `ratio_to_transfer` against a host→device plus device→host copy of the
/// same bytes, and `gpu-resident` (queries and counts stay on the device)
/// with `ratio_to_device_copy` against a device buffer copy of the same
/// bytes; both references are measured now, on the same device. `references`
/// are this point's `memcpy` and `naive-rayon` rows, for the CPU ratios.
/// Results are checked against the point's expected counts.
///
/// ```no_run
/// use initret_cli::bench::{Point, PointConfig, measure_cpu_point, measure_gpu_point};
///
/// let config = PointConfig { rows: 1 << 16, threads: 0, baselines: false };
/// let point = Point::new(&config, 1 << 20, 1)?;
/// let cpu_rows = measure_cpu_point(&config, &point)?;
/// let gpu = initret::gpu::GpuBackend::new(&point.table)?;
/// let gpu_rows = measure_gpu_point(&point, &gpu, &cpu_rows[..2])?;
/// # Ok::<(), initret::Error>(())
/// ```
#[cfg(feature = "gpu")]
pub fn measure_gpu_point(
    point: &Point,
    gpu: &initret::gpu::GpuBackend,
    references: &[BenchRow],
) -> Result<Vec<BenchRow>, Error> {
    let reference_seconds = |name: &str| {
        references
            .iter()
            .find(|r| r.strategy == name)
            .map(|r| r.seconds)
            .ok_or_else(|| Error::InvalidArgument(format!("no {name} reference row")))
    };
    let (memcpy, naive) = (
        reference_seconds("memcpy")?,
        reference_seconds("naive-rayon")?,
    );
    let batch = point.queries.as_slice();
    let (queries, words_per_row) = (batch.len(), point.table.words_per_row());
    let adapter = gpu.adapter().name.clone();
    let bytes = 4 * queries as u64;

    let mut out = vec![0u32; queries];
    let end_to_end = best_time(|| gpu.popcount_into(batch, &mut out))?.as_secs_f64();
    point.check("gpu-end-to-end", &out)?;
    let transfer = gpu.measure_transfer(bytes)?.as_secs_f64();
    let mut e2e_row = BenchRow::new(
        "gpu-end-to-end",
        adapter.clone(),
        queries,
        words_per_row,
        end_to_end,
    )
    .with_references(memcpy, naive);
    e2e_row.ratio_to_transfer = Some(transfer / end_to_end);

    let resident_batch = gpu.upload_batch(batch)?;
    let mut counts = gpu.popcount_resident(&resident_batch)?;
    let resident =
        best_time(|| gpu.popcount_resident_into(&resident_batch, &mut counts))?.as_secs_f64();
    point.check("gpu-resident", &gpu.read_back(&counts)?)?;
    let device_copy = gpu.measure_device_copy(bytes)?.as_secs_f64();
    let mut resident_row = BenchRow::new("gpu-resident", adapter, queries, words_per_row, resident)
        .with_references(memcpy, naive);
    resident_row.ratio_to_device_copy = Some(device_copy / resident);
    Ok(vec![e2e_row, resident_row])
}
