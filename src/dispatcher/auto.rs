//! `Backend::Auto`: the CPU backend, plus a real GPU for batches at or
//! above a crossover measured once at build.

use std::sync::OnceLock;

use crate::arch::CountWord;
use crate::cpu::CpuBackend;
use crate::gpu::GpuBackend;
use crate::{Error, PopcountBackend, QueryIndex};

/// Batch sizes `Auto` tries when it measures the CPU/GPU crossover.
const CROSSOVER_CANDIDATES: [usize; 6] = [1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22];

/// `Backend::Auto`: always a CPU backend, plus a real GPU used for batches
/// of at least the crossover.
pub(super) struct AutoBackend {
    pub(super) cpu: CpuBackend,
    /// The GPU and the smallest batch it takes, if it is used at all.
    pub(super) gpu: Option<(GpuBackend, usize)>,
    /// Why batches go where they go, decided at build.
    decision: String,
    /// Set once, when the GPU device is lost; every later batch goes to the CPU.
    lost: OnceLock<String>,
}

impl AutoBackend {
    /// `gpu`: the GPU backend over the same counts, or why there is none.
    pub(super) fn new(
        gpu: Result<GpuBackend, Error>,
        cpu: CpuBackend,
        accept_software: bool,
        fixed_crossover: Option<usize>,
    ) -> AutoBackend {
        let rows = cpu.counts().rows();
        let (gpu, decision) = match gpu {
            Err(e) => (None, format!("no GPU: {e}")),
            Ok(gpu) if gpu.is_software() && !accept_software => (
                None,
                format!(
                    "adapter {} is a software (CPU-type) adapter; the CPU backend is faster",
                    gpu.adapter().name
                ),
            ),
            Ok(gpu) => match fixed_crossover {
                Some(n) => (
                    Some((gpu, n)),
                    format!("batches of {n} queries or more go to the GPU (set by the builder)"),
                ),
                None => match measure_crossover(rows, &cpu, &gpu) {
                    Ok(Some(n)) => (
                        Some((gpu, n)),
                        format!("batches of {n} queries or more go to the GPU (measured at build)"),
                    ),
                    Ok(None) => (
                        None,
                        format!(
                            "the GPU ({}) was slower than the CPU at every batch size up to {} queries",
                            gpu.adapter().name,
                            CROSSOVER_CANDIDATES[CROSSOVER_CANDIDATES.len() - 1]
                        ),
                    ),
                    Err(e) => (None, format!("measuring the GPU failed: {e}")),
                },
            },
        };
        AutoBackend {
            cpu,
            gpu,
            decision,
            lost: OnceLock::new(),
        }
    }

    pub(super) fn gpu_for(&self, queries: usize) -> Option<&GpuBackend> {
        match &self.gpu {
            Some((gpu, crossover)) if queries >= *crossover && self.lost.get().is_none() => {
                Some(gpu)
            }
            _ => None,
        }
    }

    pub(super) fn decision(&self) -> String {
        self.lost
            .get()
            .cloned()
            .unwrap_or_else(|| self.decision.clone())
    }
}

/// The GPU for batches at or above the crossover, the CPU for the rest and
/// for everything after the GPU device was lost.
impl PopcountBackend for AutoBackend {
    /// The CPU's: the GPU was given the CPU's counts, so the two agree.
    fn result_bytes(&self) -> usize {
        self.cpu.result_bytes()
    }

    fn popcount_indices_into<Q: QueryIndex, R: CountWord>(
        &self,
        queries: &[Q],
        out: &mut [R],
    ) -> Result<(), Error> {
        if let Some(gpu) = self.gpu_for(queries.len()) {
            match gpu.popcount_indices_into(queries, out) {
                Err(Error::DeviceLost(reason)) => {
                    let note = format!("GPU device lost ({reason}); continuing on the CPU");
                    // Reported once, by whichever call sets it first.
                    if self.lost.set(note.clone()).is_ok() {
                        eprintln!("initret: {note}");
                    }
                }
                other => return other,
            }
        }
        self.cpu.popcount_indices_into(queries, out)
    }
}

/// The smallest candidate batch size at which the GPU end to end beats the
/// CPU (best of 3 each, on random queries), or `None` if it never does.
fn measure_crossover(
    rows: usize,
    cpu: &CpuBackend,
    gpu: &GpuBackend,
) -> Result<Option<usize>, Error> {
    use crate::timing::best_of;
    for n in CROSSOVER_CANDIDATES {
        let queries = crate::random::random_queries(n, rows, n as u64);
        let mut out = vec![0; n];
        let cpu_time = best_of(3, || cpu.popcount_into(&queries, &mut out))?;
        let gpu_time = best_of(3, || gpu.popcount_into(&queries, &mut out))?;
        if gpu_time < cpu_time {
            return Ok(Some(n));
        }
    }
    Ok(None)
}
