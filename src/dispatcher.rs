//! [`Dispatcher`]: one API for popcount lookups over a chosen backend.

use std::fmt;
use std::sync::OnceLock;

use crate::arch::{Isa, Kernel, KernelRequest};
use crate::cpu::CpuBackend;
use crate::gpu::GpuBackend;
use crate::{BitTable, Error};

/// Where a [`Dispatcher`] runs its lookups.
///
/// ```
/// use initret::Backend;
/// assert_eq!("gpu".parse::<Backend>()?, Backend::Gpu);
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// CPU worker threads with SIMD kernels ([`CpuBackend`]).
    Cpu,
    /// A wgpu compute device. Building fails with [`Error::GpuUnavailable`]
    /// when there is none; it never falls back to the CPU silently.
    Gpu,
    /// The CPU, or a real GPU for batches large enough to pay for the
    /// transfer (see [`Dispatcher`] for how the crossover is measured).
    Auto,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
            Backend::Auto => "auto",
        })
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Backend, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Backend::Cpu),
            "gpu" => Ok(Backend::Gpu),
            "auto" => Ok(Backend::Auto),
            other => Err(Error::InvalidConfig(format!(
                "unknown backend {other:?}; expected cpu, gpu or auto"
            ))),
        }
    }
}

/// Configures a [`Dispatcher`]: backend, CPU threads, CPU kernel.
///
/// ```
/// use initret::{Backend, BitTable, Dispatcher, arch::Isa};
///
/// let dispatcher = Dispatcher::builder(BitTable::seed(100))
///     .backend(Backend::Cpu)
///     .threads(2)
///     .isa(Isa::Scalar)
///     .build()?;
/// assert_eq!(dispatcher.popcount(&[3, 99])?, vec![2, 4]);
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Debug)]
pub struct DispatcherBuilder {
    table: BitTable,
    backend: Backend,
    threads: usize,
    kernel: Option<KernelRequest>,
    auto_accepts_software_gpu: bool,
    auto_crossover: Option<usize>,
}

impl DispatcherBuilder {
    /// Which backend to use (default [`Backend::Auto`]).
    ///
    /// ```
    /// use initret::{Backend, BitTable, Dispatcher};
    ///
    /// let d = Dispatcher::builder(BitTable::seed(4)).backend(Backend::Cpu).build()?;
    /// assert_eq!((d.requested_backend(), d.route(1 << 30)), (Backend::Cpu, Backend::Cpu));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn backend(mut self, backend: Backend) -> DispatcherBuilder {
        self.backend = backend;
        self
    }

    /// Number of CPU worker threads; 0 (the default) means rayon's default:
    /// `RAYON_NUM_THREADS` if set, else one per CPU.
    ///
    /// ```
    /// use initret::{Backend, BitTable, Dispatcher};
    ///
    /// let d = Dispatcher::builder(BitTable::seed(4)).backend(Backend::Cpu).threads(2).build()?;
    /// assert_eq!(d.cpu().map(|cpu| cpu.threads()), Some(2));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn threads(mut self, threads: usize) -> DispatcherBuilder {
        self.threads = threads;
        self
    }

    /// Limits the CPU kernel to one instruction set: the backend still
    /// measures that ISA's kernels (gathers or scalar loads, prefetching or
    /// not) and keeps the fastest. Overrides `INITRET_FORCE_ISA`. Default:
    /// what `INITRET_FORCE_ISA` asks for, or every kernel this CPU can run
    /// ([`KernelRequest::from_env`]).
    ///
    /// ```
    /// use initret::{Backend, BitTable, Dispatcher, arch::Isa};
    ///
    /// let d = Dispatcher::builder(BitTable::seed(4)).backend(Backend::Cpu).isa(Isa::Scalar).build()?;
    /// assert_eq!(d.cpu().map(|cpu| cpu.isa()), Some(Isa::Scalar));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn isa(mut self, isa: Isa) -> DispatcherBuilder {
        self.kernel = Some(KernelRequest::Measure { isa: Some(isa) });
        self
    }

    /// Fixes the CPU kernel, unmeasured. Overrides `INITRET_FORCE_ISA`.
    ///
    /// ```
    /// use initret::{Backend, BitTable, Dispatcher, arch::Kernel};
    ///
    /// let d = Dispatcher::builder(BitTable::seed(4)).backend(Backend::Cpu).kernel(Kernel::SCALAR).build()?;
    /// assert_eq!(d.cpu().map(|cpu| cpu.kernel()), Some(Kernel::SCALAR));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn kernel(mut self, kernel: Kernel) -> DispatcherBuilder {
        self.kernel = Some(KernelRequest::Fixed(kernel));
        self
    }

    /// Lets [`Backend::Auto`] consider a software (CPU-type) adapter such as
    /// llvmpipe, which it normally skips; for testing the crossover logic on
    /// machines without a GPU.
    #[cfg(test)]
    pub(crate) fn auto_accepts_software_gpu(mut self, yes: bool) -> DispatcherBuilder {
        self.auto_accepts_software_gpu = yes;
        self
    }

    /// For [`Backend::Auto`]: send batches of at least `queries` queries to the
    /// GPU, instead of measuring the crossover at build. Ignored by the other
    /// backends; a software adapter is still skipped.
    ///
    /// ```
    /// use initret::{Backend, BitTable, Dispatcher};
    ///
    /// let d = Dispatcher::builder(BitTable::seed(4)).auto_crossover(1 << 20).build()?;
    /// // Below the crossover every batch stays on the CPU, GPU or not.
    /// assert_eq!(d.route((1 << 20) - 1), Backend::Cpu);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn auto_crossover(mut self, queries: usize) -> DispatcherBuilder {
        self.auto_crossover = Some(queries);
        self
    }

    /// Places the table on the chosen backend (the initializer) and returns
    /// the dispatcher.
    ///
    /// ```
    /// let d = initret::Dispatcher::builder(initret::BitTable::seed(4)).build()?;
    /// assert_eq!(d.popcount(&[3])?, vec![2]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn build(self) -> Result<Dispatcher, Error> {
        let table = self.table;
        table.require_rows()?;
        // Only the CPU backend has a kernel to choose: `INITRET_FORCE_ISA`
        // must not stop a GPU-only dispatcher from building.
        let cpu = || {
            let request = match self.kernel {
                Some(request) => request.check_available()?,
                None => KernelRequest::from_env()?,
            };
            CpuBackend::with_request(&table, self.threads, request)
        };
        let engine = match self.backend {
            Backend::Cpu => Engine::Cpu(cpu()?),
            Backend::Gpu => Engine::Gpu(GpuBackend::new(&table)?),
            Backend::Auto => Engine::Auto(AutoEngine::new(
                &table,
                cpu()?,
                self.auto_accepts_software_gpu,
                self.auto_crossover,
            )),
        };
        Ok(Dispatcher {
            rows: table.rows(),
            words_per_row: table.words_per_row(),
            requested: self.backend,
            engine,
        })
    }
}

enum Engine {
    Cpu(CpuBackend),
    Gpu(GpuBackend),
    Auto(AutoEngine),
}

/// Batch sizes `Auto` tries when it measures the CPU/GPU crossover.
const CROSSOVER_CANDIDATES: [usize; 6] = [1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22];

/// `Backend::Auto`: always a CPU backend, plus a real GPU used for batches
/// of at least the crossover.
struct AutoEngine {
    cpu: CpuBackend,
    /// The GPU and the smallest batch it takes, if it is used at all.
    gpu: Option<(GpuBackend, usize)>,
    /// Why batches go where they go, decided at build.
    note: String,
    /// Set once, when the GPU device is lost; every later batch goes to the CPU.
    lost: OnceLock<String>,
}

impl AutoEngine {
    fn new(
        table: &BitTable,
        cpu: CpuBackend,
        accept_software: bool,
        fixed_crossover: Option<usize>,
    ) -> AutoEngine {
        let (gpu, note) = match GpuBackend::new(table) {
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
                None => match measure_crossover(table.rows(), &cpu, &gpu) {
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
        AutoEngine {
            cpu,
            gpu,
            note,
            lost: OnceLock::new(),
        }
    }

    fn gpu_for(&self, queries: usize) -> Option<&GpuBackend> {
        match &self.gpu {
            Some((gpu, crossover)) if queries >= *crossover && self.lost.get().is_none() => {
                Some(gpu)
            }
            _ => None,
        }
    }

    fn note(&self) -> String {
        self.lost
            .get()
            .cloned()
            .unwrap_or_else(|| self.note.clone())
    }

    fn popcount_into(&self, queries: &[u32], out: &mut [u32]) -> Result<(), Error> {
        if let Some(gpu) = self.gpu_for(queries.len()) {
            match gpu.popcount_into(queries, out) {
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
        self.cpu.popcount_into(queries, out)
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

/// Maps popcount lookups over one [`BitTable`] on a chosen backend.
///
/// [`Dispatcher::new`] places the table once, the initializer: on the CPU,
/// every worker derives its own per-row count table; on the GPU, a counting
/// pass derives the same counts on the device as the table streams through
/// it. Every call afterwards moves only queries and counts.
///
/// A query index `>= rows` is [`Error::IndexOutOfRange`] naming the first
/// offending position, on every backend: never a panic, never a wrong count.
///
/// `Dispatcher` is `Send + Sync`: share it (e.g. in an `Arc`) and call it
/// from many threads at once.
///
/// # Choosing a backend
///
/// * [`Backend::Cpu`]: worker threads and the kernel that measured fastest
///   on this machine and table ([`CpuBackend::calibration`]).
/// * [`Backend::Gpu`]: the wgpu backend; fails to build with
///   [`Error::GpuUnavailable`] (with the reason) when there is no adapter
///   or the crate was built without the `gpu` feature.
/// * [`Backend::Auto`]: always builds the CPU backend. It adds the GPU only
///   for a real GPU (a CPU-type adapter such as llvmpipe is skipped) and only
///   for batches at or above a crossover it measures once, at build: for
///   4096, 16384, ... up to 2^22 random queries it times the CPU and the GPU
///   end to end (best of 3 each) and takes the first size where the GPU wins;
///   if it never wins, everything stays on the CPU. [`Dispatcher::note`] says
///   which way it went and why.
///
/// # Recovering from GPU faults
///
/// If the GPU device is lost (driver reset, unplugged, ...), calls on a
/// [`Backend::Gpu`] dispatcher return [`Error::DeviceLost`] from then on:
/// drop it and build a new one (or a CPU one). A [`Backend::Auto`]
/// dispatcher instead moves every later call to its CPU backend, reports the
/// reason once on stderr and keeps it in [`Dispatcher::note`]. A GPU wait that
/// does not finish within the backend's timeout is [`Error::GpuTimeout`].
///
/// ```
/// use initret::{Backend, BitTable, Dispatcher, Error};
///
/// let dispatcher = Dispatcher::new(BitTable::seed(65535), Backend::Cpu)?;
/// assert_eq!(dispatcher.popcount(&[0, 1, 65534])?, vec![0, 1, 15]);
///
/// let err = dispatcher.popcount(&[1, 2, 70000, 80000]).unwrap_err();
/// assert!(matches!(err, Error::IndexOutOfRange { position: 2, index: 70000, rows: 65535 }));
/// # Ok::<(), initret::Error>(())
/// ```
pub struct Dispatcher {
    rows: usize,
    words_per_row: usize,
    requested: Backend,
    engine: Engine,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("rows", &self.rows)
            .field("words_per_row", &self.words_per_row)
            .field("requested", &self.requested)
            .field("engine", &self.describe())
            .finish()
    }
}

impl Dispatcher {
    /// Places `table` on `backend` with default settings.
    ///
    /// ```
    /// let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Auto)?;
    /// assert_eq!(d.popcount(&[7])?, vec![3]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn new(table: BitTable, backend: Backend) -> Result<Dispatcher, Error> {
        Dispatcher::builder(table).backend(backend).build()
    }

    /// Starts configuring a dispatcher for `table`.
    ///
    /// ```
    /// let d = initret::Dispatcher::builder(initret::BitTable::seed(8)).threads(1).build()?;
    /// assert_eq!((d.rows(), d.requested_backend()), (8, initret::Backend::Auto));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn builder(table: BitTable) -> DispatcherBuilder {
        DispatcherBuilder {
            table,
            backend: Backend::Auto,
            threads: 0,
            kernel: None,
            auto_accepts_software_gpu: false,
            auto_crossover: None,
        }
    }

    /// Number of rows of the table; valid queries are `0..rows()`.
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// assert_eq!(d.rows(), 8);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Words per row of the table.
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// assert_eq!(d.words_per_row(), 1);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn words_per_row(&self) -> usize {
        self.words_per_row
    }

    /// The backend that was asked for.
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// assert_eq!(d.requested_backend(), initret::Backend::Cpu);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn requested_backend(&self) -> Backend {
        self.requested
    }

    /// The CPU backend, if this dispatcher has one.
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// assert!(d.cpu().is_some());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn cpu(&self) -> Option<&CpuBackend> {
        match &self.engine {
            Engine::Cpu(cpu) => Some(cpu),
            Engine::Gpu(_) => None,
            Engine::Auto(auto) => Some(&auto.cpu),
        }
    }

    /// The GPU backend, if this dispatcher uses one; for the device-resident
    /// API ([`GpuBackend::upload_batch`] and friends).
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// assert!(d.gpu().is_none());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn gpu(&self) -> Option<&GpuBackend> {
        match &self.engine {
            Engine::Cpu(_) => None,
            Engine::Gpu(gpu) => Some(gpu),
            Engine::Auto(auto) => auto.gpu.as_ref().map(|(gpu, _)| gpu),
        }
    }

    /// Where a batch of `queries` queries would run now: [`Backend::Cpu`] or
    /// [`Backend::Gpu`].
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// assert_eq!(d.route(1 << 20), initret::Backend::Cpu);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn route(&self, queries: usize) -> Backend {
        match &self.engine {
            Engine::Cpu(_) => Backend::Cpu,
            Engine::Gpu(_) => Backend::Gpu,
            Engine::Auto(auto) => {
                if auto.gpu_for(queries).is_some() {
                    Backend::Gpu
                } else {
                    Backend::Cpu
                }
            }
        }
    }

    /// For [`Backend::Auto`]: why batches go where they go (no GPU, a
    /// software adapter, the measured crossover, a lost device). `None` for
    /// the other backends.
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// assert_eq!(d.note(), None);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn note(&self) -> Option<String> {
        match &self.engine {
            Engine::Auto(auto) => Some(auto.note()),
            _ => None,
        }
    }

    /// One line saying what runs the lookups (backend, kernel, threads or adapter).
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// assert!(d.describe().starts_with("cpu"));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn describe(&self) -> String {
        fn cpu_line(cpu: &CpuBackend) -> String {
            format!("cpu ({} kernel, {} threads)", cpu.kernel(), cpu.threads())
        }
        match &self.engine {
            Engine::Cpu(cpu) => cpu_line(cpu),
            Engine::Gpu(gpu) => format!("gpu ({})", gpu.adapter().name),
            Engine::Auto(auto) => match &auto.gpu {
                Some((gpu, n)) => format!(
                    "auto: {} below {n} queries, gpu ({}) from {n}",
                    cpu_line(&auto.cpu),
                    gpu.adapter().name
                ),
                _ => format!("auto: {}", cpu_line(&auto.cpu)),
            },
        }
    }

    /// The popcount of each queried row, in query order.
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// assert_eq!(d.popcount(&[7, 0, 3])?, vec![3, 0, 2]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn popcount(&self, queries: &[u32]) -> Result<Vec<u32>, Error> {
        let mut out = vec![0; queries.len()];
        self.popcount_into(queries, &mut out)?;
        Ok(out)
    }

    /// Writes the popcount of row `queries[i]` into `out[i]`.
    ///
    /// `out.len()` must equal `queries.len()` ([`Error::OutputLength`]). On
    /// [`Error::IndexOutOfRange`] `out` may be partly written.
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// let mut out = vec![0; 2];
    /// d.popcount_into(&[5, 6], &mut out)?;
    /// assert_eq!(out, [2, 2]);
    /// assert!(d.popcount_into(&[5, 6], &mut [0; 3]).is_err());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn popcount_into(&self, queries: &[u32], out: &mut [u32]) -> Result<(), Error> {
        // Every backend checks `out.len()` itself before doing any work.
        match &self.engine {
            Engine::Cpu(cpu) => cpu.popcount_into(queries, out),
            Engine::Gpu(gpu) => gpu.popcount_into(queries, out),
            Engine::Auto(auto) => auto.popcount_into(queries, out),
        }
    }
}

#[cfg(test)]
mod tests;
