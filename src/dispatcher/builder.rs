//! [`DispatcherBuilder`]: what a [`Dispatcher`] is built from and how.

use super::auto::AutoBackend;
use super::{ActiveBackend, Backend, Dispatcher};
use crate::arch::{CountTable, Isa, Kernel};
use crate::cpu::{CpuBackend, CpuBackendBuilder};
use crate::gpu::GpuBackend;
use crate::{BitTable, Error, Placement};

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
    source: TableSource,
    backend: Backend,
    /// The CPU backend's settings, for [`Backend::Cpu`] and [`Backend::Auto`].
    cpu: CpuBackendBuilder,
    auto_accepts_software_gpu: bool,
    auto_crossover: Option<usize>,
}

/// What a dispatcher is built from.
#[derive(Debug)]
pub(super) enum TableSource {
    /// The table: each backend derives its counts.
    Table(BitTable),
    /// Counts derived already (perhaps in shared memory), for rows of this
    /// many words.
    Counts(CountTable, usize),
}

impl DispatcherBuilder {
    pub(super) fn new(source: TableSource) -> DispatcherBuilder {
        DispatcherBuilder {
            source,
            backend: Backend::Auto,
            // Unless a kernel is given, `INITRET_FORCE_ISA` says which, read
            // only when a CPU backend is built: it must not stop a GPU-only
            // dispatcher from building.
            cpu: CpuBackend::builder().kernel_request_from_env(),
            auto_accepts_software_gpu: false,
            auto_crossover: None,
        }
    }

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
        self.cpu = self.cpu.threads(threads);
        self
    }

    /// Limits the CPU kernel to one instruction set: the backend still
    /// measures that ISA's kernels (gathers or scalar loads, prefetching or
    /// not) and keeps the fastest. Overrides `INITRET_FORCE_ISA`. Default:
    /// what `INITRET_FORCE_ISA` asks for, or every kernel this CPU can run
    /// ([`KernelRequest::from_env`](crate::arch::KernelRequest::from_env)).
    ///
    /// ```
    /// use initret::{Backend, BitTable, Dispatcher, arch::Isa};
    ///
    /// let d = Dispatcher::builder(BitTable::seed(4)).backend(Backend::Cpu).isa(Isa::Scalar).build()?;
    /// assert_eq!(d.cpu().map(|cpu| cpu.isa()), Some(Isa::Scalar));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn isa(mut self, isa: Isa) -> DispatcherBuilder {
        self.cpu = self.cpu.kernel_request(isa);
        self
    }

    /// How the CPU backend places its count table: once per cache domain
    /// (the default), once for all workers, or once per worker.
    ///
    /// ```
    /// use initret::{Backend, BitTable, Dispatcher, Placement};
    ///
    /// let d = Dispatcher::builder(BitTable::seed(4))
    ///     .backend(Backend::Cpu)
    ///     .threads(2)
    ///     .placement(Placement::PerWorker)
    ///     .build()?;
    /// assert_eq!(d.cpu().map(|cpu| cpu.copies()), Some(2));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn placement(mut self, placement: Placement) -> DispatcherBuilder {
        self.cpu = self.cpu.placement(placement);
        self
    }

    /// Runs CPU batches of up to `queries` queries on the calling thread and
    /// splits longer ones across the workers, instead of measuring where
    /// splitting pays
    /// ([`CpuBackendBuilder::inline_max_queries`](crate::cpu::CpuBackendBuilder::inline_max_queries)).
    ///
    /// ```
    /// use initret::{Backend, BitTable, Dispatcher};
    ///
    /// let d = Dispatcher::builder(BitTable::seed(4)).backend(Backend::Cpu).threads(2).inline_max_queries(1000).build()?;
    /// assert_eq!(d.cpu().map(|cpu| cpu.split_calibration().inline_max_queries()), Some(1000));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn inline_max_queries(mut self, queries: usize) -> DispatcherBuilder {
        self.cpu = self.cpu.inline_max_queries(queries);
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
        self.cpu = self.cpu.kernel_request(kernel);
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
        let (rows, words_per_row, active) = match self.source {
            TableSource::Table(table) => {
                table.require_rows()?;
                let cpu = || self.cpu.clone().build(&table);
                let active = match self.backend {
                    Backend::Cpu => ActiveBackend::Cpu(cpu()?),
                    Backend::Gpu => ActiveBackend::Gpu(GpuBackend::new(&table)?),
                    Backend::Auto => {
                        let cpu = cpu()?;
                        let gpu = GpuBackend::new(&table);
                        ActiveBackend::Auto(Box::new(AutoBackend::new(
                            gpu,
                            cpu,
                            self.auto_accepts_software_gpu,
                            self.auto_crossover,
                        )))
                    }
                };
                (table.rows(), table.words_per_row(), active)
            }
            TableSource::Counts(counts, words_per_row) => {
                if counts.rows() == 0 {
                    return Err(Error::InvalidTable("the table has no rows".into()));
                }
                let rows = counts.rows();
                let active = match self.backend {
                    Backend::Gpu => {
                        ActiveBackend::Gpu(GpuBackend::from_counts(&counts, words_per_row)?)
                    }
                    backend => {
                        // The CPU reads the counts in place; the GPU, if
                        // any, uploads them from there.
                        let cpu = self.cpu.clone().build_with_counts(counts)?;
                        if backend == Backend::Cpu {
                            ActiveBackend::Cpu(cpu)
                        } else {
                            let gpu = GpuBackend::from_counts(cpu.counts(), words_per_row);
                            ActiveBackend::Auto(Box::new(AutoBackend::new(
                                gpu,
                                cpu,
                                self.auto_accepts_software_gpu,
                                self.auto_crossover,
                            )))
                        }
                    }
                };
                (rows, words_per_row, active)
            }
        };
        Ok(Dispatcher {
            rows,
            words_per_row,
            requested: self.backend,
            active,
        })
    }
}
