//! The library's own small timer, for the measurements it makes while it
//! builds (the CPU kernel calibration and `Backend::Auto`'s crossover).
//! Benchmarks have their own harness in the `initret-cli` crate.

use std::time::{Duration, Instant};

use crate::Error;

/// The shortest of `runs` timed calls of `f` (at least one): the run least
/// disturbed by other load on the machine.
pub(crate) fn best_of(
    runs: usize,
    mut f: impl FnMut() -> Result<(), Error>,
) -> Result<Duration, Error> {
    let mut best = Duration::MAX;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed());
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_closure_and_stops_at_its_first_error() {
        let mut calls = 0;
        best_of(3, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 3);
        let mut calls = 0;
        let err = best_of(3, || {
            calls += 1;
            Err(Error::Internal("boom".into()))
        })
        .unwrap_err();
        assert!(matches!(err, Error::Internal(_)));
        assert_eq!(calls, 1);
    }
}
