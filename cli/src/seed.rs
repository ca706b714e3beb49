//! The main job (`initret` with no command): the seed workload, popcounts
//! of the first 2^16 − 1 integers through a 2^16 − 1-row cache, through
//! every strategy, side by side.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use initret::gpu::DeviceLookup;
use initret::{Backend, BitTable, Dispatcher, Error, Pool, SEED_CHECKSUM, SEED_ROWS};

use crate::baseline::{self, GlobalInitializer, PerCallCopy, TaskSize};
use crate::bench::kernel_name;
use crate::error::CliError;

/// One line of the main job's table.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedRow {
    /// The strategy's name (`initret cpu (avx2)`, `serial`, ...).
    pub strategy: String,
    /// Worker threads, or `gpu`.
    pub workers: String,
    /// How many times the state was initialized or copied.
    pub init_calls: String,
    /// Time to build the strategy (pool, dispatcher, upload).
    pub setup: Duration,
    /// Best time for the whole workload.
    pub time: Duration,
    /// The counts it produced.
    pub counts: Vec<u32>,
}

/// Best of up to 5 runs, stopping early once 2 s have been spent.
///
/// ```
/// let (_, v) = initret_cli::seed::best_of(|| Ok::<_, initret::Error>(3))?;
/// assert_eq!(v, 3);
/// # Ok::<(), initret::Error>(())
/// ```
pub fn best_of<T, E>(f: impl FnMut() -> Result<T, E>) -> Result<(Duration, T), E> {
    crate::bench::best_run(1..=5, Duration::from_secs(2), f)
}

/// The time `f` took, and its value.
///
/// ```
/// let (_, v) = initret_cli::seed::timed(|| Ok::<_, initret::Error>(3))?;
/// assert_eq!(v, 3);
/// # Ok::<(), initret::Error>(())
/// ```
pub fn timed<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<(Duration, T), E> {
    let t = Instant::now();
    let value = f()?;
    Ok((t.elapsed(), value))
}

/// A generous estimate of the bytes (of address space, which `ulimit -v`
/// bounds) the main job holds at once with `threads` workers: the cache and
/// four copies of it per worker (the per-call copies in flight, the global
/// initializer's, `map_init`'s and the `Pool`'s), eight more (the dispatcher
/// and the references), sixteen query-sized buffers, and the 2 MiB stacks of
/// the six pools' worker threads. `None` if it overflows.
///
/// ```
/// let one = initret_cli::seed::footprint(1).unwrap();
/// assert!(one > 12 * 65535 * 4 && one < 32 << 20);
/// assert!(initret_cli::seed::footprint(usize::MAX).is_none());
/// ```
pub fn footprint(threads: usize) -> Option<usize> {
    const STACK: usize = 2 << 20;
    let table = SEED_ROWS as usize * std::mem::size_of::<u32>();
    let copies = threads.checked_mul(4)?.checked_add(9)?;
    let stacks = threads.checked_mul(6)?.checked_mul(STACK)?;
    table
        .checked_mul(copies)?
        .checked_add(16 * table)?
        .checked_add(stacks)
}

/// Reserves [`footprint`] once, fallibly, and frees it: a main job that
/// cannot be allocated (under `ulimit -v`, or with absurd thread counts) is
/// a [`CliError::Allocation`] before anything is built.
///
/// ```
/// assert!(initret_cli::seed::check_allocatable(2).is_ok());
/// ```
pub fn check_allocatable(threads: usize) -> Result<(), CliError> {
    let what = format!("the main job with {threads} worker threads");
    let bytes = footprint(threads).ok_or_else(|| CliError::Allocation {
        what: what.clone(),
        reason: "the size overflows".into(),
    })?;
    let mut probe: Vec<u8> = Vec::new();
    probe
        .try_reserve_exact(bytes)
        .map_err(|e| CliError::Allocation {
            what: format!("{what} (about {bytes} bytes)"),
            reason: e.to_string(),
        })
}

/// What the main job measured.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// Worker threads given to every pooled strategy.
    pub threads: usize,
    /// Size of the seed's cache in bytes.
    pub cache_bytes: usize,
    /// One row per strategy.
    pub rows: Vec<SeedRow>,
    /// Lines to print after the table (where the GPU rows ran, or why not).
    pub notes: Vec<String>,
    /// The reference counts.
    pub expected: Vec<u32>,
}

/// Runs the seed workload through every strategy with `threads` workers
/// (0: one per CPU).
///
/// ```no_run
/// let report = initret_cli::seed::run(2)?;
/// assert!(report.disagreements().is_empty());
/// # Ok::<(), initret_cli::error::CliError>(())
/// ```
pub fn run(threads: usize) -> Result<SeedReport, CliError> {
    let threads = if threads == 0 {
        rayon::current_num_threads()
    } else {
        threads
    };
    // A request that cannot be had fails here, as one error, rather than as
    // an abort in the middle of the strategies.
    check_allocatable(threads)?;
    let cache = BitTable::seed(SEED_ROWS);
    let items: Vec<u32> = (0..SEED_ROWS).collect();
    let mut rows = Vec::new();

    let (time, counts) = best_of(|| baseline::serial(&cache, &items))?;
    rows.push(SeedRow {
        strategy: "serial".into(),
        workers: "1".into(),
        init_calls: "0".into(),
        setup: Duration::ZERO,
        time,
        counts,
    });

    for (name, task_size) in [
        ("per-call copy (1/task)", TaskSize::One),
        ("per-call copy (py chunks)", TaskSize::PythonDefault),
    ] {
        let (setup, pool) = timed(|| PerCallCopy::new(threads, task_size))?;
        let (time, outcome) = best_of(|| pool.run(&cache, &items))?;
        rows.push(SeedRow {
            strategy: name.into(),
            workers: pool.workers().to_string(),
            init_calls: outcome.init_calls.to_string(),
            setup,
            time,
            counts: outcome.counts,
        });
    }

    let (setup, global) = timed(|| GlobalInitializer::new(cache.clone(), threads))?;
    let (time, outcome) = best_of(|| global.run(&items))?;
    rows.push(SeedRow {
        strategy: "global initializer".into(),
        workers: global.workers().to_string(),
        init_calls: global.init_calls().to_string(),
        setup,
        time,
        counts: outcome.counts,
    });

    // rayon's `map_init` runs on whatever pool it is called in: give it one
    // with the same number of threads as the others.
    let (setup, rayon_pool) = timed(|| baseline::thread_pool(threads, "map-init"))?;
    let (time, outcome) =
        rayon_pool.install(|| best_of(|| baseline::rayon_map_init(&cache, &items)))?;
    rows.push(SeedRow {
        strategy: "rayon map_init".into(),
        workers: rayon_pool.current_num_threads().to_string(),
        init_calls: outcome.init_calls.to_string(),
        setup,
        time,
        counts: outcome.counts,
    });

    let (setup, pool) = timed(|| {
        Pool::builder()
            .threads(threads)
            .build_with(|_worker| Ok::<_, Error>(cache.clone()))
    })?;
    let (time, counts) = best_of(|| {
        pool.map(&items, |cache: &BitTable, &i| {
            cache.row_popcount(i as usize).unwrap_or(u32::MAX)
        })
    })?;
    rows.push(SeedRow {
        strategy: "initret Pool::map".into(),
        workers: pool.threads().to_string(),
        init_calls: pool.init_calls().to_string(),
        setup,
        time,
        counts,
    });

    let (setup, dispatcher) = timed(|| {
        Dispatcher::builder(cache.clone())
            .backend(Backend::Cpu)
            .threads(threads)
            .build()
    })?;
    let (time, counts) = best_of(|| dispatcher.popcount(&items))?;
    let cpu = dispatcher.cpu();
    rows.push(SeedRow {
        strategy: format!(
            "initret cpu ({})",
            cpu.map_or_else(|| "?".into(), kernel_name)
        ),
        workers: cpu.map_or(0, |c| c.threads()).to_string(),
        init_calls: cpu.map_or(0, |c| c.init_calls()).to_string(),
        setup,
        time,
        counts,
    });

    let (gpu, note) = gpu_rows(&cache, &items)?;
    rows.extend(gpu);
    Ok(SeedReport {
        threads,
        cache_bytes: cache.size_in_bytes(),
        rows,
        notes: vec![note],
        expected: cache.reference_popcount(&items)?,
    })
}

/// The main job's GPU rows (`initret gpu end-to-end` through a
/// [`Dispatcher`], `initret gpu resident` with queries and counts kept on
/// the device) and a note naming the adapter, or no rows and the reason.
///
/// ```
/// let items: Vec<u32> = (0..100).collect();
/// let (rows, note) = initret_cli::seed::gpu_rows(&initret::BitTable::seed(100), &items)?;
/// assert!(rows.len() == 2 || note.contains("no rows"));
/// # Ok::<(), initret_cli::error::CliError>(())
/// ```
pub fn gpu_rows(cache: &BitTable, items: &[u32]) -> Result<(Vec<SeedRow>, String), CliError> {
    let (setup, dispatcher) = match timed(|| Dispatcher::new(cache.clone(), Backend::Gpu)) {
        Ok(built) => built,
        Err(e) => return Ok((Vec::new(), format!("gpu: no rows: {e}"))),
    };
    let Some(gpu) = dispatcher.gpu() else {
        return Ok((
            Vec::new(),
            "gpu: no rows: the dispatcher has no GPU backend".into(),
        ));
    };
    let row = |strategy: &str, time: Duration, counts: Vec<u32>| SeedRow {
        strategy: strategy.into(),
        workers: "gpu".into(),
        init_calls: "1".into(),
        setup,
        time,
        counts,
    };
    let (time, counts) = best_of(|| dispatcher.popcount(items))?;
    let mut rows = vec![row("initret gpu end-to-end", time, counts)];
    let batch = gpu.upload_batch(items)?;
    let mut resident = gpu.popcount_resident(&batch)?;
    let (time, ()) = best_of(|| gpu.popcount_resident_into(&batch, &mut resident))?;
    rows.push(row("initret gpu resident", time, gpu.read_back(&resident)?));
    let note = format!(
        "gpu rows ran on {}{}",
        gpu.adapter().name,
        if gpu.is_software() {
            " (a software adapter on the CPU cores: correctness, not speed)"
        } else {
            ""
        }
    );
    Ok((rows, note))
}

impl SeedReport {
    /// The strategies whose counts differ from the reference or whose
    /// checksum is not the seed's.
    pub fn disagreements(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|row| row.counts != self.expected || checksum(&row.counts) != SEED_CHECKSUM)
            .map(|row| row.strategy.clone())
            .collect()
    }

    /// The report as printed: a header line, the table (speedups over
    /// per-call copy with one task per item), the notes and the checksum
    /// verdict.
    ///
    /// ```
    /// use initret_cli::seed::{SeedReport, SeedRow};
    /// use std::time::Duration;
    ///
    /// let row = SeedRow {
    ///     strategy: "serial".into(), workers: "1".into(), init_calls: "0".into(),
    ///     setup: Duration::ZERO, time: Duration::from_millis(1), counts: vec![1],
    /// };
    /// let report = SeedReport { threads: 1, cache_bytes: 4096, rows: vec![row], notes: vec![], expected: vec![1] };
    /// let text = report.render();
    /// assert!(text.contains("serial") && text.contains("(4 KiB)") && text.contains("disagree"));
    /// assert_eq!(report.disagreements(), ["serial"]);
    /// ```
    pub fn render(&self) -> String {
        let mut out = format!(
            "seed workload: popcount of each of the first 2^16-1 integers via a {SEED_ROWS}-row cache ({} KiB), {} worker threads\n",
            self.cache_bytes / 1024,
            self.threads
        );
        let reference = self
            .rows
            .iter()
            .find(|r| r.strategy == "per-call copy (1/task)")
            .map_or(Duration::ZERO, |r| r.time);
        let _ = writeln!(
            out,
            "\n{:<34} {:>7} {:>10} {:>11} {:>11} {:>12} {:>10} {:>9}",
            "strategy",
            "workers",
            "init calls",
            "setup",
            "time",
            "lookups/s",
            "speedup",
            "checksum"
        );
        for row in &self.rows {
            let _ = writeln!(
                out,
                "{:<34} {:>7} {:>10} {:>11} {:>11} {:>12.3e} {:>9.1}x {:>9}",
                row.strategy,
                row.workers,
                row.init_calls,
                format!("{:.1?}", row.setup),
                format!("{:.1?}", row.time),
                row.counts.len() as f64 / row.time.as_secs_f64(),
                reference.as_secs_f64() / row.time.as_secs_f64(),
                checksum(&row.counts)
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "{note}");
        }
        let _ = writeln!(
            out,
            "\nspeedup is over per-call copy (1/task); time is the best of up to 5 runs; expected checksum {SEED_CHECKSUM}"
        );
        let disagreements = self.disagreements();
        if disagreements.is_empty() {
            let _ = writeln!(out, "checksum {SEED_CHECKSUM}: all strategies agree");
        } else {
            let _ = writeln!(
                out,
                "strategies disagree with the reference: {}",
                disagreements.join(", ")
            );
        }
        out
    }
}

fn checksum(counts: &[u32]) -> u64 {
    counts.iter().map(|&c| u64::from(c)).sum()
}
