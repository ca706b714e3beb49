//! The seed batch one call at a time, as a program that asks now and then
//! would make it: the workers are left idle long enough to park before
//! every call, so a split pays their wake-up. Printed after the main job's
//! table: the calling thread alone, every batch split, the measured limit
//! ([`initret::cpu::SplitCalibration`]), and a `memcpy` of the bytes the
//! call moves (queries in, counts out) as the reference.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use initret::cpu::CpuBackend;
use initret::{BitTable, Error, PopcountBackend, SEED_CHECKSUM, SEED_ROWS};

use crate::error::CliError;

/// Timed calls per row; the rows take turns, so noise hits all alike.
pub const CALLS: usize = 200;

/// Idle time before each call: far past the few dozen yields after which
/// rayon's workers sleep.
pub const PARK: Duration = Duration::from_millis(1);

/// One row: what was timed and every call's time.
#[derive(Clone, Debug)]
pub struct BatchRow {
    /// What the row does.
    pub what: String,
    /// Every call's time, sorted.
    pub times: Vec<Duration>,
}

impl BatchRow {
    /// The `q`-quantile (0.5: the median) of the calls.
    ///
    /// ```
    /// use std::time::Duration;
    /// let row = initret_cli::seed_batch::BatchRow {
    ///     what: "x".into(),
    ///     times: (1..=10).map(Duration::from_micros).collect(),
    /// };
    /// assert_eq!(row.quantile(0.5), Duration::from_micros(6));
    /// assert_eq!(row.quantile(0.0), Duration::from_micros(1));
    /// assert_eq!(row.quantile(1.0), Duration::from_micros(10));
    /// ```
    pub fn quantile(&self, q: f64) -> Duration {
        if self.times.is_empty() {
            return Duration::ZERO;
        }
        let at = ((self.times.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        self.times[at]
    }
}

/// Times the seed batch ([`SEED_ROWS`] `u32` queries `0..SEED_ROWS` into the
/// seed table, `u8` counts out) on `threads` workers (0: one per CPU) and
/// renders the table. Fails if any call's counts do not add up to
/// [`SEED_CHECKSUM`].
pub fn report(threads: usize) -> Result<String, CliError> {
    let table = BitTable::seed(SEED_ROWS);
    let build = |limit: Option<usize>| {
        let builder = CpuBackend::builder().threads(threads);
        match limit {
            Some(limit) => builder.inline_max_queries(limit),
            None => builder,
        }
        .build(&table)
    };
    let inline = build(Some(usize::MAX))?;
    let split = build(Some(0))?;
    let measured = build(None)?;
    let queries: Vec<u32> = (0..SEED_ROWS).collect();
    let n = queries.len();
    // A u32 query in, a u8 count out.
    let bytes_per_lookup = std::mem::size_of::<u32>() + std::mem::size_of::<u8>();
    let moved = n * bytes_per_lookup;
    let source = vec![1u8; moved];
    let mut copy = vec![0u8; moved];
    let mut out = vec![0u8; n];

    let names = [
        format!("memcpy of the bytes moved ({n} × {bytes_per_lookup} B)"),
        "popcount_indices_into, u8 out, calling thread only".to_string(),
        format!(
            "popcount_indices_into, u8 out, split over {} workers",
            split.threads()
        ),
        format!(
            "popcount_indices_into, u8 out, measured: {}",
            limit_text(measured.split_calibration().inline_max_queries())
        ),
        "popcount_as::<_, u8> (a new Vec<u8>), measured".to_string(),
        "popcount (a new Vec<u32>), measured".to_string(),
    ];
    let mut times = vec![Vec::with_capacity(CALLS); names.len()];
    for _ in 0..CALLS {
        for (row, row_times) in times.iter_mut().enumerate() {
            std::thread::sleep(PARK);
            let start = Instant::now();
            // Counts checked after the clock stops: in `out`, or a new Vec.
            let fresh = match row {
                0 => {
                    copy.copy_from_slice(std::hint::black_box(&source));
                    None
                }
                1 => inline
                    .popcount_indices_into(&queries, &mut out)
                    .map(|()| None)?,
                2 => split
                    .popcount_indices_into(&queries, &mut out)
                    .map(|()| None)?,
                3 => measured
                    .popcount_indices_into(&queries, &mut out)
                    .map(|()| None)?,
                4 => Some(Fresh::Narrow(measured.popcount_as::<_, u8>(&queries)?)),
                _ => Some(Fresh::Wide(measured.popcount(&queries)?)),
            };
            row_times.push(start.elapsed());
            match (row, fresh) {
                (0, _) => {
                    std::hint::black_box(&copy);
                }
                (_, Some(Fresh::Narrow(counts))) => {
                    check(counts.iter().map(|&c| u64::from(c)).sum())?
                }
                (_, Some(Fresh::Wide(counts))) => {
                    check(counts.iter().map(|&c| u64::from(c)).sum())?
                }
                (_, None) => check(out.iter().map(|&c| u64::from(c)).sum())?,
            }
            out.fill(0);
        }
    }
    let rows: Vec<BatchRow> = names
        .into_iter()
        .zip(times)
        .map(|(what, mut times)| {
            times.sort_unstable();
            BatchRow { what, times }
        })
        .collect();
    Ok(render(&rows, &measured))
}

/// Counts a call returned in a new vector.
enum Fresh {
    Narrow(Vec<u8>),
    Wide(Vec<u32>),
}

fn check(sum: u64) -> Result<(), CliError> {
    if sum == SEED_CHECKSUM {
        Ok(())
    } else {
        Err(CliError::Initret(Error::Internal(format!(
            "the seed batch added up to {sum}, not {SEED_CHECKSUM}"
        ))))
    }
}

/// `inline up to 40000 queries`, or `never split` for `usize::MAX`.
fn limit_text(limit: usize) -> String {
    if limit == usize::MAX {
        "never split".into()
    } else {
        format!("inline up to {limit}")
    }
}

/// The table: median, 90th percentile and best per row, and the median's
/// ratio to the `memcpy` row's (the first).
///
/// ```
/// use std::time::Duration;
/// use initret_cli::seed_batch::{BatchRow, render_rows};
///
/// let row = |what: &str, us: u64| BatchRow { what: what.into(), times: vec![Duration::from_micros(us)] };
/// let text = render_rows(&[row("memcpy", 10), row("lookup", 20)]);
/// assert!(text.contains("0.50x"), "{text}");
/// ```
pub fn render_rows(rows: &[BatchRow]) -> String {
    let reference = rows.first().map_or(Duration::ZERO, |r| r.quantile(0.5));
    let mut out = format!(
        "{:<58} {:>9} {:>9} {:>9} {:>10}\n",
        "what", "median", "p90", "best", "vs memcpy"
    );
    for row in rows {
        let median = row.quantile(0.5);
        let _ = writeln!(
            out,
            "{:<58} {:>9} {:>9} {:>9} {:>9.2}x",
            row.what,
            format!("{:.1?}", median),
            format!("{:.1?}", row.quantile(0.9)),
            format!("{:.1?}", row.quantile(0.0)),
            reference.as_secs_f64() / median.as_secs_f64().max(f64::MIN_POSITIVE)
        );
    }
    out
}

fn render(rows: &[BatchRow], measured: &CpuBackend) -> String {
    let threads = measured.threads();
    let mut out = format!(
        "\nseed batch: {SEED_ROWS} u32 queries 0..{} into the seed table, one call at a time, each after {} ms idle (so the {threads} workers have parked), {CALLS} calls per row taken in turns\n",
        SEED_ROWS - 1,
        PARK.as_millis()
    );
    let _ = writeln!(out, "split calibration: {}", measured.split_calibration());
    out += &render_rows(rows);
    out
}
