//! Which batches run on the calling thread and which are split across the
//! workers: the crossover each [`CpuBackend`](super::CpuBackend) measures on
//! its own table and kernel when it is built, parked workers' wake-up
//! included.

use std::fmt;
use std::time::{Duration, Instant};

/// The two batch lengths a split is timed at, with the workers parked
/// before each run: the fit through them gives a split's fixed cost
/// (waking the workers, handing out chunks, waiting for the last) and its
/// cost per lookup.
pub(crate) const SPLIT_PROBE_QUERIES: [usize; 2] = [1 << 13, 1 << 17];

/// The batch length the calling thread's rate is timed at (the seed
/// batch's size).
const INLINE_PROBE_QUERIES: usize = 1 << 16;

/// The smallest limit a measured [`SplitCalibration`] gives: batches this
/// short take about a microsecond on the calling thread, less than any
/// wake-up.
pub const MIN_SPLIT_QUERIES: usize = 1 << 12;

/// Idle time before each timed split, past the few dozen yields (tens of
/// microseconds on an idle machine) after which rayon's workers go to
/// sleep, so the timing includes waking them.
const PARK: Duration = Duration::from_micros(150);

/// Timed runs per measurement; the best is kept, as for the kernels.
const RUNS: usize = 3;

/// What a CPU backend measured to decide which batches to split, or the
/// limit it was given ([`CpuBackendBuilder::inline_max_queries`](super::CpuBackendBuilder::inline_max_queries)).
///
/// A batch of up to [`SplitCalibration::inline_max_queries`] queries runs
/// on the calling thread; a longer one is split across the workers. The
/// limit is where the two fits cross: `n / inline rate` on the calling
/// thread against `fixed cost + n / split rate` through parked workers,
/// clamped to between [`MIN_SPLIT_QUERIES`] and the longest split timed
/// (2^17 queries): longer batches are split, as nothing was measured to
/// say otherwise.
///
/// A process measures once for each kind of backend (its kernels, threads,
/// copies of the counts, count width, and rows rounded up to a power of
/// two; about 4 ms on a 2-CPU VM) and later backends of that kind reuse it.
/// The 64-bit queries' line reuses the `u32` one's fixed cost, as waking
/// the workers does not depend on the queries.
///
/// ```
/// use initret::{BitTable, cpu::CpuBackend};
///
/// let cpu = CpuBackend::builder().threads(2).build(&BitTable::seed(65535))?;
/// let split = cpu.split_calibration();
/// assert!(split.inline_max_queries() >= initret::cpu::MIN_SPLIT_QUERIES);
/// println!("{split}");
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SplitCalibration {
    inline_max_queries: usize,
    source: Source,
}

/// Where a [`SplitCalibration`]'s limit came from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
    Measured(SplitMeasurement),
    Given,
    OneWorker,
}

/// The timings behind a measured [`SplitCalibration`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SplitMeasurement {
    /// Lookups per second on the calling thread.
    pub inline_lookups_per_s: f64,
    /// A split's fixed cost, parked workers' wake-up included: the fit's
    /// intercept.
    pub split_fixed: Duration,
    /// Lookups per second through the workers: the fit's slope.
    pub split_lookups_per_s: f64,
}

impl SplitCalibration {
    /// A limit taken as given, nothing measured.
    pub(crate) fn fixed(inline_max_queries: usize) -> SplitCalibration {
        SplitCalibration {
            inline_max_queries,
            source: Source::Given,
        }
    }

    /// One worker: nothing is ever split, as handing a batch to the only
    /// worker cannot beat running it here.
    pub(crate) fn single_worker() -> SplitCalibration {
        SplitCalibration {
            inline_max_queries: usize::MAX,
            source: Source::OneWorker,
        }
    }

    /// Times `inline` (a batch of the given length on the calling thread)
    /// and `split` (the same through the workers) and keeps the crossover.
    /// Both closures must run exactly the batch length they are given.
    ///
    /// With `fixed` (a split's fixed cost measured already on the same
    /// workers, for another query type: waking them does not depend on the
    /// queries), only the longer split is timed and the line goes through
    /// it from `fixed`.
    pub(crate) fn measure<E>(
        fixed: Option<Duration>,
        mut inline: impl FnMut(usize) -> Result<(), E>,
        mut split: impl FnMut(usize) -> Result<(), E>,
    ) -> Result<SplitCalibration, E> {
        let inline_probe = (
            INLINE_PROBE_QUERIES,
            best(RUNS, || {}, || inline(INLINE_PROBE_QUERIES))?,
        );
        let [short, long] = SPLIT_PROBE_QUERIES;
        let mut parked = |n: usize| -> Result<(usize, Duration), E> {
            Ok((n, best(RUNS, || std::thread::sleep(PARK), || split(n))?))
        };
        let measurement = match fixed {
            None => SplitMeasurement::fit(inline_probe, parked(short)?, parked(long)?),
            Some(fixed) => SplitMeasurement::fit(inline_probe, (0, fixed), parked(long)?),
        };
        Ok(SplitCalibration {
            inline_max_queries: measurement.crossover(),
            source: Source::Measured(measurement),
        })
    }

    /// Batches up to this many queries run on the calling thread.
    pub fn inline_max_queries(&self) -> usize {
        self.inline_max_queries
    }

    /// The timings, if the limit was measured rather than given.
    pub fn measurement(&self) -> Option<&SplitMeasurement> {
        match &self.source {
            Source::Measured(measurement) => Some(measurement),
            Source::Given | Source::OneWorker => None,
        }
    }
}

impl SplitMeasurement {
    /// The inline rate from one timing, and the split's straight line
    /// through two (a negative intercept, from noise, counts as zero).
    pub(crate) fn fit(
        inline: (usize, Duration),
        short: (usize, Duration),
        long: (usize, Duration),
    ) -> SplitMeasurement {
        let per_lookup = (long.1.as_secs_f64() - short.1.as_secs_f64()) / (long.0 - short.0) as f64;
        let per_lookup = per_lookup.max(f64::MIN_POSITIVE);
        let fixed = (short.1.as_secs_f64() - per_lookup * short.0 as f64).max(0.0);
        SplitMeasurement {
            inline_lookups_per_s: inline.0 as f64 / inline.1.as_secs_f64().max(f64::MIN_POSITIVE),
            split_fixed: Duration::from_secs_f64(fixed),
            split_lookups_per_s: 1.0 / per_lookup,
        }
    }

    /// The batch length where splitting starts to pay, within
    /// [`MIN_SPLIT_QUERIES`] and the longest split timed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use initret::cpu::SplitMeasurement;
    ///
    /// let measured = SplitMeasurement {
    ///     inline_lookups_per_s: 3e9,
    ///     split_fixed: Duration::from_micros(10),
    ///     split_lookups_per_s: 6e9,
    /// };
    /// // 10 µs of fixed cost against 1/6 ns saved per lookup: 60000 lookups.
    /// assert_eq!(measured.crossover(), 60000);
    /// ```
    pub fn crossover(&self) -> usize {
        let longest = SPLIT_PROBE_QUERIES[1];
        let saved_per_lookup = 1.0 / self.inline_lookups_per_s - 1.0 / self.split_lookups_per_s;
        // NaN (from a zero rate) and a split no faster per lookup alike.
        if saved_per_lookup.is_nan() || saved_per_lookup <= 0.0 {
            return longest;
        }
        let n = (self.split_fixed.as_secs_f64() / saved_per_lookup).round();
        (n.min(longest as f64) as usize).max(MIN_SPLIT_QUERIES)
    }
}

impl fmt::Display for SplitCalibration {
    /// `inline up to 60000 queries (calling thread 3.00e9/s; split 10.0 µs + 6.00e9/s, parked workers)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.inline_max_queries) {
            (Source::OneWorker, _) => write!(f, "every batch on the calling thread (one worker)"),
            (Source::Given, usize::MAX) => write!(f, "every batch on the calling thread (given)"),
            (Source::Given, n) => write!(f, "inline up to {n} queries (given)"),
            (Source::Measured(m), n) => write!(
                f,
                "inline up to {n} queries (calling thread {:.2e}/s; split {:.1} µs + {:.2e}/s, parked workers)",
                m.inline_lookups_per_s,
                m.split_fixed.as_secs_f64() * 1e6,
                m.split_lookups_per_s
            ),
        }
    }
}

/// The shortest of `runs` timed calls of `f`, each after an untimed call
/// of `before`.
fn best<E>(
    runs: usize,
    mut before: impl FnMut(),
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Duration, E> {
    let mut shortest = Duration::MAX;
    for _ in 0..runs {
        before();
        let t = Instant::now();
        f()?;
        shortest = shortest.min(t.elapsed());
    }
    Ok(shortest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(us: f64) -> Duration {
        Duration::from_secs_f64(us * 1e-6)
    }

    #[test]
    fn the_fit_recovers_a_straight_line() {
        // 8 µs fixed, 0.1 ns per lookup; inline 0.25 ns per lookup.
        let m = SplitMeasurement::fit(
            (1 << 16, micros(65536.0 * 0.25e-3)),
            (1 << 14, micros(8.0 + 16384.0 * 0.1e-3)),
            (1 << 18, micros(8.0 + 262144.0 * 0.1e-3)),
        );
        assert!(
            (m.split_fixed.as_secs_f64() * 1e6 - 8.0).abs() < 0.01,
            "{m:?}"
        );
        assert!((m.split_lookups_per_s / 1e10 - 1.0).abs() < 1e-3, "{m:?}");
        assert!((m.inline_lookups_per_s / 4e9 - 1.0).abs() < 1e-3, "{m:?}");
        // 8 µs / 0.15 ns saved per lookup.
        assert!(
            (m.crossover() as f64 - 53333.0).abs() < 2.0,
            "{}",
            m.crossover()
        );
    }

    #[test]
    fn a_split_that_never_pays_keeps_batches_inline_up_to_the_longest_timed() {
        let m = SplitMeasurement {
            inline_lookups_per_s: 5e9,
            split_fixed: micros(5.0),
            split_lookups_per_s: 4e9,
        };
        assert_eq!(m.crossover(), SPLIT_PROBE_QUERIES[1]);
        let huge_fixed = SplitMeasurement {
            split_fixed: Duration::from_secs(1),
            split_lookups_per_s: 6e9,
            ..m
        };
        assert_eq!(huge_fixed.crossover(), SPLIT_PROBE_QUERIES[1]);
    }

    #[test]
    fn a_free_split_still_keeps_the_shortest_batches_inline() {
        let m = SplitMeasurement {
            inline_lookups_per_s: 1e9,
            split_fixed: Duration::ZERO,
            split_lookups_per_s: 2e9,
        };
        assert_eq!(m.crossover(), MIN_SPLIT_QUERIES);
    }

    #[test]
    fn a_noisy_fit_never_yields_a_negative_cost_or_an_infinite_rate() {
        // The longer split timed faster than the shorter one.
        let m = SplitMeasurement::fit(
            (1 << 16, micros(20.0)),
            (1 << 14, micros(30.0)),
            (1 << 18, micros(25.0)),
        );
        assert!(m.split_lookups_per_s.is_finite() && m.split_lookups_per_s > 0.0);
        let n = m.crossover();
        assert!((MIN_SPLIT_QUERIES..=SPLIT_PROBE_QUERIES[1]).contains(&n));
    }

    #[test]
    fn measure_times_each_probe_and_parks_before_each_split() {
        let mut inline_lengths = Vec::new();
        let mut split_calls = Vec::new();
        let calibration = SplitCalibration::measure(
            None,
            |n| {
                inline_lengths.push(n);
                Ok::<(), ()>(())
            },
            |n| {
                split_calls.push((n, Instant::now()));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(inline_lengths, vec![INLINE_PROBE_QUERIES; RUNS]);
        let lengths: Vec<usize> = split_calls.iter().map(|(n, _)| *n).collect();
        let mut expected = vec![SPLIT_PROBE_QUERIES[0]; RUNS];
        expected.extend(vec![SPLIT_PROBE_QUERIES[1]; RUNS]);
        assert_eq!(lengths, expected);
        for pair in split_calls.windows(2) {
            assert!(pair[1].1 - pair[0].1 >= PARK, "no park between splits");
        }
        assert!(calibration.measurement().is_some());
    }

    #[test]
    fn a_known_fixed_cost_times_only_the_longer_split() {
        let mut split_lengths = Vec::new();
        let calibration = SplitCalibration::measure(
            Some(Duration::from_micros(40)),
            |_| Ok::<(), ()>(()),
            |n| {
                split_lengths.push(n);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(split_lengths, vec![SPLIT_PROBE_QUERIES[1]; RUNS]);
        let m = calibration.measurement().unwrap();
        // The line from 40 µs at no queries through a (near) instant split
        // cannot fall below zero: the fixed cost stays as given.
        assert!(m.split_fixed.as_nanos().abs_diff(40_000) <= 1, "{m:?}");
    }

    #[test]
    fn the_park_is_not_timed() {
        let calibration =
            SplitCalibration::measure(None, |_| Ok::<(), ()>(()), |_| Ok(())).unwrap();
        let m = calibration.measurement().unwrap();
        // Splits that cost nothing measure (nearly) nothing, not the park.
        assert!(m.split_fixed < PARK / 2, "{m:?}");
    }

    #[test]
    fn an_error_while_measuring_is_returned() {
        let err = SplitCalibration::measure(None, |_| Ok(()), |_| Err("split failed")).unwrap_err();
        assert_eq!(err, "split failed");
    }

    #[test]
    fn the_summary_names_the_limit_and_where_it_came_from() {
        assert_eq!(
            SplitCalibration::fixed(1000).to_string(),
            "inline up to 1000 queries (given)"
        );
        assert!(
            SplitCalibration::single_worker()
                .to_string()
                .contains("one worker")
        );
        assert_eq!(
            SplitCalibration::fixed(usize::MAX).to_string(),
            "every batch on the calling thread (given)"
        );
    }
}
