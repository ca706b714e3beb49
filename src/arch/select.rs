//! [`Calibration`]: the CPU backend's kernel, chosen by timing every
//! candidate on the machine at hand, not by CPUID.
//!
//! Why measure: an instruction set's presence says nothing about its speed
//! (on some Intel cores the gather is slow microcode, and no CPU flag says
//! so), and which prefetch distance pays depends on the table against this
//! machine's caches. The measurements are in BENCHMARKS.md ("Why the CPU
//! kernel is measured, not read off CPUID").
//!
//! Each timed run looks up a fresh batch of [`CALIBRATION_QUERIES`]
//! uniformly random row indices with streaming stores: the shape of the
//! large batches, where the choice matters, and the one that punishes
//! gathers and caches most. The candidates take turns,
//! [`CALIBRATION_ROUNDS`] rounds of one run each, so a burst of other load
//! on the machine hits them all alike; each keeps its best run.

use std::time::Duration;

use super::counts::CountTable;
use super::kernel::Kernel;
use super::lookup::LookupKernel;
use crate::random::SplitMix64;
use crate::{Error, QueryIndex};

/// Queries per timed calibration run.
pub(crate) const CALIBRATION_QUERIES: usize = 1 << 13;

/// Timed runs per candidate kernel; each keeps its best.
pub(crate) const CALIBRATION_ROUNDS: usize = 3;

/// One candidate kernel's measured speed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelRate {
    /// The kernel timed.
    pub kernel: Kernel,
    /// Lookups per second in its best run.
    pub lookups_per_s: f64,
}

/// How a CPU backend chose its kernel: every candidate's measured rate and
/// the winner.
///
/// ```
/// use initret::BitTable;
/// use initret::arch::{Calibration, CountTable, Kernel};
///
/// let counts = CountTable::new(&BitTable::seed(1 << 16));
/// let calibration = Calibration::measure(&counts, &Kernel::available())?;
/// assert_eq!(calibration.rates().len(), Kernel::available().len());
/// // The winner is the candidate with the highest measured rate.
/// let best = calibration.rates().iter().map(|r| r.lookups_per_s).fold(0.0, f64::max);
/// assert_eq!(calibration.rate_of(calibration.chosen()), Some(best));
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    chosen: Kernel,
    rates: Vec<KernelRate>,
}

impl Calibration {
    /// Times every kernel of `candidates` on `counts` (see the module
    /// documentation for the batch shape and the cost) and keeps the
    /// fastest. A gather candidate that cannot serve `counts` (past 2^31
    /// bytes) is replaced by its ISA's loads kernel, which is what would run;
    /// a single remaining candidate is taken without timing. Fails with
    /// [`Error::InvalidTable`] for a table with no rows, with
    /// [`Error::IsaUnavailable`] for a candidate this CPU cannot run, and
    /// with [`Error::Internal`] for an empty candidate list.
    ///
    /// ```
    /// use initret::arch::{Calibration, CountTable, Kernel};
    ///
    /// let only = Calibration::measure(&CountTable::from_counts(&[1, 2]), &[Kernel::SCALAR])?;
    /// assert_eq!(only.chosen(), Kernel::SCALAR);
    /// assert!(only.rates().is_empty());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn measure(counts: &CountTable, candidates: &[Kernel]) -> Result<Calibration, Error> {
        Calibration::measure_for::<u32>(counts, candidates)
    }

    /// [`Calibration::measure`] for 64-bit queries: times each candidate's
    /// routine for `u64` queries, which also serves `i64` ones (read as the
    /// same 64-bit words). Which kernel is fastest can differ from the
    /// `u32` choice (each vector of queries is twice the bytes), so the CPU
    /// backend measures both ([`CpuBackend::wide_calibration`]).
    ///
    /// [`CpuBackend::wide_calibration`]: crate::cpu::CpuBackend::wide_calibration
    ///
    /// ```
    /// use initret::BitTable;
    /// use initret::arch::{Calibration, CountTable, Kernel};
    ///
    /// let counts = CountTable::new(&BitTable::seed(1 << 16));
    /// let calibration = Calibration::measure_wide(&counts, &Kernel::available())?;
    /// assert!(Kernel::available().contains(&calibration.chosen()));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn measure_wide(counts: &CountTable, candidates: &[Kernel]) -> Result<Calibration, Error> {
        Calibration::measure_for::<u64>(counts, candidates)
    }

    /// [`Calibration::measure`] with queries of type `Q`.
    fn measure_for<Q: QueryIndex>(
        counts: &CountTable,
        candidates: &[Kernel],
    ) -> Result<Calibration, Error> {
        if counts.rows() == 0 {
            return Err(Error::InvalidTable("the table has no rows".into()));
        }
        // Name each candidate by what will really run on this table (a
        // gather kernel past 2^31 bytes of counts runs its ISA's loads), and
        // time each routine once.
        let mut kernels: Vec<Kernel> = Vec::with_capacity(candidates.len());
        for &candidate in candidates {
            let kernel = LookupKernel::new(candidate)?.kernel_for(counts);
            if !kernels.contains(&kernel) {
                kernels.push(kernel);
            }
        }
        if let [only] = kernels[..] {
            return Ok(Calibration {
                chosen: only,
                rates: Vec::new(),
            });
        }
        let candidates = &kernels[..];
        let routines = candidates
            .iter()
            .map(|&k| LookupKernel::new(k))
            .collect::<Result<Vec<_>, Error>>()?;
        let mut rng = SplitMix64::new(0xCA1B_4A7E ^ counts.rows() as u64);
        let mut queries = vec![Q::from_row(0); CALIBRATION_QUERIES];
        let mut out = vec![0u32; CALIBRATION_QUERIES];
        Calibration::choose(candidates, CALIBRATION_ROUNDS, |candidate, _round| {
            for q in queries.iter_mut() {
                *q = Q::from_row(rng.below(counts.rows() as u64) as u32);
            }
            crate::timing::best_of(1, || {
                routines[candidate].lookup_with_stores(counts, &queries, &mut out, true)
            })
        })
    }

    /// The selection itself, with the timer injected: `time(candidate,
    /// round)` times one run of `candidates[candidate]`. Each candidate keeps
    /// its best run over `rounds`; the fastest wins, the earlier one on a
    /// tie.
    pub(crate) fn choose(
        candidates: &[Kernel],
        rounds: usize,
        mut time: impl FnMut(usize, usize) -> Result<Duration, Error>,
    ) -> Result<Calibration, Error> {
        let mut best = vec![Duration::MAX; candidates.len()];
        for round in 0..rounds.max(1) {
            for (candidate, best) in best.iter_mut().enumerate() {
                *best = (*best).min(time(candidate, round)?);
            }
        }
        let rates: Vec<KernelRate> = candidates
            .iter()
            .zip(&best)
            .map(|(&kernel, time)| KernelRate {
                kernel,
                lookups_per_s: CALIBRATION_QUERIES as f64 / time.as_secs_f64().max(1e-9),
            })
            .collect();
        let chosen = rates
            .iter()
            .fold(None::<&KernelRate>, |best, rate| match best {
                Some(b) if b.lookups_per_s >= rate.lookups_per_s => Some(b),
                _ => Some(rate),
            })
            .map(|r| r.kernel)
            .ok_or_else(|| Error::Internal("no candidate kernels to choose from".into()))?;
        Ok(Calibration { chosen, rates })
    }

    /// The kernel chosen.
    pub fn chosen(&self) -> Kernel {
        self.chosen
    }

    /// Every candidate's rate, in candidate order; empty when there was
    /// nothing to choose between.
    pub fn rates(&self) -> &[KernelRate] {
        &self.rates
    }

    /// The measured rate of `kernel`, if it was timed.
    ///
    /// ```
    /// # use initret::arch::{Calibration, CountTable, Kernel};
    /// let c = Calibration::measure(&CountTable::from_counts(&[3]), &[Kernel::SCALAR])?;
    /// assert_eq!(c.rate_of(Kernel::SCALAR), None);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn rate_of(&self, kernel: Kernel) -> Option<f64> {
        self.rates
            .iter()
            .find(|r| r.kernel == kernel)
            .map(|r| r.lookups_per_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::isa::Isa;
    use crate::arch::kernel::Fetch;

    fn kernels() -> Vec<Kernel> {
        vec![
            Kernel::SCALAR,
            Kernel::new(Isa::Avx512, Fetch::Gather, 0),
            Kernel::new(Isa::Avx512, Fetch::Loads, 0),
            Kernel::new(Isa::Avx2, Fetch::Gather, 0),
        ]
    }

    /// Injected timings, in microseconds per candidate per round.
    fn choose(micros: &[[u64; 3]]) -> Calibration {
        Calibration::choose(&kernels()[..micros.len()], 3, |c, r| {
            Ok(Duration::from_micros(micros[c][r]))
        })
        .unwrap()
    }

    #[test]
    fn the_fastest_kernel_wins_whatever_its_isa() {
        // The "Downfall" machine: the AVX-512 gather is 11× slower than the
        // scalar loop, which must win over the wider ISA.
        let c = choose(&[[10, 11, 10], [110, 115, 112], [12, 12, 13], [300, 280, 290]]);
        assert_eq!(c.chosen(), Kernel::SCALAR);
        // A machine where the gather is fast.
        let c = choose(&[[10, 11, 10], [4, 5, 6], [7, 7, 7], [9, 9, 9]]);
        assert_eq!(c.chosen(), kernels()[1]);
    }

    #[test]
    fn each_candidate_keeps_its_best_round() {
        // Candidate 1 had one disturbed run but its best is the fastest.
        let c = choose(&[[10, 10, 10], [500, 8, 9]]);
        assert_eq!(c.chosen(), kernels()[1]);
        let rate = CALIBRATION_QUERIES as f64 / 8e-6;
        assert!((c.rate_of(kernels()[1]).unwrap() - rate).abs() < 1e-6 * rate);
        assert_eq!(c.rates().len(), 2);
    }

    #[test]
    fn ties_go_to_the_earlier_candidate() {
        let c = choose(&[[5, 5, 5], [5, 5, 5], [5, 6, 7]]);
        assert_eq!(c.chosen(), Kernel::SCALAR);
    }

    #[test]
    fn a_timing_error_stops_the_selection() {
        let err = Calibration::choose(&kernels(), 3, |c, _| {
            if c == 2 {
                Err(Error::Internal("timer".into()))
            } else {
                Ok(Duration::from_micros(1))
            }
        })
        .unwrap_err();
        assert!(matches!(err, Error::Internal(_)));
    }

    #[test]
    fn no_candidates_is_an_internal_error() {
        assert!(matches!(
            Calibration::choose(&[], 3, |_, _| Ok(Duration::ZERO)),
            Err(Error::Internal(_))
        ));
    }

    #[test]
    fn every_round_visits_every_candidate_in_turn() {
        let mut order = Vec::new();
        Calibration::choose(&kernels(), 2, |c, r| {
            order.push((r, c));
            Ok(Duration::from_micros(1))
        })
        .unwrap();
        let expected: Vec<_> = (0..2).flat_map(|r| (0..4).map(move |c| (r, c))).collect();
        assert_eq!(order, expected);
    }
}
