//! The one timing loop: the library's own measurements while it builds (the
//! CPU kernel calibration, `Backend::Auto`'s crossover, the GPU transfer
//! references) and, through [`harness`](crate::harness), the benchmark rows
//! and the main job of `initret-cli`.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

/// Runs `f` once, then again while fewer than `runs.start()` runs were
/// made, or while less than `budget` has passed and fewer than `runs.end()`
/// runs were made; returns the best time and the value of that run. The
/// best run is the one least disturbed by other load on the machine. Stops
/// at the first error.
///
/// ```
/// use std::time::Duration;
/// use initret::harness::best_run;
///
/// let (best, value) = best_run(1..=5, Duration::ZERO, || Ok::<_, ()>(7))?;
/// assert_eq!(value, 7);
/// assert!(best < Duration::from_secs(1));
///
/// let mut calls = 0;
/// best_run(3..=3, Duration::from_secs(60), || Ok::<_, ()>(calls += 1))?;
/// assert_eq!(calls, 3);
/// # Ok::<(), ()>(())
/// ```
pub fn best_run<T, E>(
    runs: RangeInclusive<usize>,
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

/// The shortest of exactly `runs` timed calls of `f` (at least one).
pub(crate) fn best_of<T, E>(runs: usize, f: impl FnMut() -> Result<T, E>) -> Result<Duration, E> {
    let runs = runs.max(1);
    best_run(runs..=runs, Duration::ZERO, f).map(|(best, _)| best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn runs_the_closure_and_stops_at_its_first_error() {
        let mut calls = 0;
        best_of(3, || {
            calls += 1;
            Ok::<(), Error>(())
        })
        .unwrap();
        assert_eq!(calls, 3);
        let mut calls = 0;
        let err = best_of(3, || {
            calls += 1;
            Err::<(), _>(Error::Internal("boom".into()))
        })
        .unwrap_err();
        assert!(matches!(err, Error::Internal(_)));
        assert_eq!(calls, 1);
    }
}
