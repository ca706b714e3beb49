//! Measuring: the best-of-repetitions rule every row is timed with, the
//! memcpy reference, the thread count and resident memory rows report,
//! and what the CPU backend's calibration chose.

use std::fmt::Write as _;
use std::time::Duration;

use rayon::prelude::*;

use initret::Error;
use initret::harness::python_chunk_len;
use initret::harness::random_table;

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
pub fn parallel_memcpy<T: Copy + Send + Sync>(src: &[T], dst: &mut [T]) -> Result<(), Error> {
    Error::check_output_len(src.len(), dst.len())?;
    let chunk = python_chunk_len(src.len(), rayon::current_num_threads())
        .max((1 << 16) / std::mem::size_of::<T>().max(1));
    dst.par_chunks_mut(chunk)
        .zip(src.par_chunks(chunk))
        .for_each(|(d, s)| d.copy_from_slice(s));
    Ok(())
}

/// Every timing loop of the harness (bench rows, the main job) goes
/// through the library's one loop.
pub use initret::harness::best_run;

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
/// let cpu = initret::cpu::CpuBackend::builder().threads(1).build(&initret::BitTable::seed(16))?;
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
    let cpu = random_table(rows, 1, 0x5EED ^ 1).and_then(|table| {
        initret::cpu::CpuBackend::builder()
            .threads(threads)
            .kernel_request_from_env()
            .build(&table)
    });
    let cpu = match cpu {
        Ok(cpu) => cpu,
        Err(e) => {
            let _ = writeln!(out, "no calibration: {e}");
            return out;
        }
    };
    let _ = writeln!(out, "picks {}", kernel_name(&cpu));
    let _ = writeln!(out, "  placed {}", cpu.placement_summary());
    let _ = writeln!(out, "  u32 queries: {}", cpu.split_calibration());
    let _ = writeln!(out, "  64-bit queries: {}", cpu.wide_split_calibration());
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

/// `threads`, or when it is 0 the number rayon's default pool would have.
pub fn resolved_threads(threads: usize) -> usize {
    if threads == 0 {
        rayon::current_num_threads()
    } else {
        threads
    }
}

/// This process's resident memory in bytes (`VmRSS` in `/proc/self/status`),
/// where the system reports it.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
