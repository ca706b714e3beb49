//! [`CpuBackendBuilder`]: the one way a [`CpuBackend`] is built.

use std::sync::Arc;

use super::CpuBackend;
use crate::arch::{CountTable, KernelRequest};
use crate::{BitTable, Error, Placement, Pool, Topology};

/// Configures a [`CpuBackend`]: worker threads, which kernels to measure (or
/// which one to run), how the counts are placed, and over which topology;
/// then builds it over a table ([`CpuBackendBuilder::build`]) or over
/// counts derived already ([`CpuBackendBuilder::build_with_counts`]).
///
/// Every input is one of these settings: nothing is read from the
/// environment unless asked for with
/// [`CpuBackendBuilder::kernel_request_from_env`] (what a
/// [`Dispatcher`](crate::Dispatcher) does when given no kernel). The
/// defaults: one thread per CPU (rayon's default, which honours
/// `RAYON_NUM_THREADS`), every kernel this CPU can run measured and the
/// fastest kept, one copy of the counts per cache domain
/// ([`Placement::PerDomain`]), the topology the OS reports.
///
/// ```
/// use initret::{BitTable, Placement, PopcountBackend, arch::Kernel, cpu::CpuBackend};
///
/// let cpu = CpuBackend::builder()
///     .threads(2)
///     .kernel_request(Kernel::SCALAR)
///     .placement(Placement::PerWorker)
///     .build(&BitTable::seed(1000))?;
/// assert_eq!((cpu.kernel(), cpu.copies()), (Kernel::SCALAR, 2));
/// assert_eq!(cpu.popcount(&[7, 999])?, vec![3, 8]);
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct CpuBackendBuilder {
    threads: usize,
    kernels: Kernels,
    placement: Placement,
    topology: Option<Topology>,
    inline_max_queries: Option<usize>,
}

/// Where the kernel request comes from.
#[derive(Clone, Copy, Debug)]
enum Kernels {
    /// As given (the default: measure every kernel available).
    Given(KernelRequest),
    /// [`KernelRequest::from_env`], read when the backend is built.
    FromEnv,
}

impl Default for Kernels {
    fn default() -> Kernels {
        Kernels::Given(KernelRequest::Measure { isa: None })
    }
}

impl CpuBackendBuilder {
    /// Number of worker threads; 0 (the default) means rayon's default:
    /// `RAYON_NUM_THREADS` if set, else one per CPU.
    ///
    /// ```
    /// let cpu = initret::cpu::CpuBackend::builder().threads(3).build(&initret::BitTable::seed(4))?;
    /// assert_eq!(cpu.threads(), 3);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn threads(mut self, threads: usize) -> CpuBackendBuilder {
        self.threads = threads;
        self
    }

    /// Which kernels to choose from: an [`Isa`](crate::arch::Isa) measures
    /// that instruction set's kernels and keeps the fastest, a
    /// [`Kernel`](crate::arch::Kernel) runs that kernel unmeasured, and any
    /// [`KernelRequest`] says either. The default measures every kernel this
    /// CPU can run. Replaces [`CpuBackendBuilder::kernel_request_from_env`].
    /// A request this CPU cannot serve fails the build with
    /// [`Error::IsaUnavailable`].
    ///
    /// ```
    /// use initret::{BitTable, arch::{Isa, Kernel}, cpu::CpuBackend};
    ///
    /// let table = BitTable::seed(16);
    /// let measured = CpuBackend::builder().threads(1).kernel_request(Isa::Scalar).build(&table)?;
    /// assert_eq!(measured.isa(), Isa::Scalar);
    /// let fixed = CpuBackend::builder().threads(1).kernel_request(Kernel::SCALAR).build(&table)?;
    /// assert_eq!(fixed.kernel(), Kernel::SCALAR);
    /// // Nothing to measure: a fixed kernel is taken as it is.
    /// assert!(fixed.calibration().rates().is_empty());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn kernel_request(mut self, request: impl Into<KernelRequest>) -> CpuBackendBuilder {
        self.kernels = Kernels::Given(request.into());
        self
    }

    /// Takes the kernel request from `INITRET_FORCE_ISA`
    /// ([`FORCE_ISA_ENV`](crate::arch::FORCE_ISA_ENV)), read when the
    /// backend is built: an instruction set's name limits the measurement
    /// to its kernels, a kernel's full name fixes the kernel, and an unset
    /// or empty variable measures every kernel ([`KernelRequest::from_env`]).
    /// A name that is unknown, or that this CPU cannot run, fails the build
    /// with [`Error::IsaUnavailable`] naming the variable. Replaces
    /// [`CpuBackendBuilder::kernel_request`].
    ///
    /// ```
    /// use initret::{BitTable, cpu::CpuBackend};
    ///
    /// // With the variable unset, as here, every kernel is measured.
    /// # // SAFETY: doctests run in a process of their own.
    /// # unsafe { std::env::remove_var("INITRET_FORCE_ISA") };
    /// let cpu = CpuBackend::builder().threads(1).kernel_request_from_env().build(&BitTable::seed(16))?;
    /// assert!(cpu.kernel().is_available());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn kernel_request_from_env(mut self) -> CpuBackendBuilder {
        self.kernels = Kernels::FromEnv;
        self
    }

    /// How the counts are placed: once per cache domain (the default),
    /// once for all workers, or once per worker.
    ///
    /// ```
    /// use initret::{BitTable, Placement, cpu::CpuBackend};
    ///
    /// let builder = CpuBackend::builder().threads(3);
    /// let table = BitTable::seed(64);
    /// assert_eq!(builder.clone().placement(Placement::PerWorker).build(&table)?.copies(), 3);
    /// assert_eq!(builder.placement(Placement::Shared).build(&table)?.copies(), 1);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn placement(mut self, placement: Placement) -> CpuBackendBuilder {
        self.placement = placement;
        self
    }

    /// Places and pins the workers over `topology` instead of the one the
    /// OS reports ([`Topology::detect`]).
    ///
    /// ```
    /// use initret::{BitTable, Topology, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::builder().threads(1).topology(Topology::detect()).build(&BitTable::seed(4))?;
    /// assert_eq!(cpu.rows(), 4);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn topology(mut self, topology: Topology) -> CpuBackendBuilder {
        self.topology = Some(topology);
        self
    }

    /// Runs batches of up to `queries` queries on the calling thread and
    /// splits longer ones across the workers, instead of measuring where
    /// splitting starts to pay ([`SplitCalibration`](super::SplitCalibration),
    /// the default with more than one thread). `usize::MAX` never splits.
    ///
    /// ```
    /// use initret::{BitTable, PopcountBackend, cpu::CpuBackend};
    ///
    /// // Every batch of more than 8 queries goes to the workers.
    /// let cpu = CpuBackend::builder().threads(2).inline_max_queries(8).build(&BitTable::seed(100))?;
    /// assert_eq!(cpu.split_calibration().inline_max_queries(), 8);
    /// assert_eq!(cpu.popcount(&(0..100).collect::<Vec<u32>>())?[99], 4);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn inline_max_queries(mut self, queries: usize) -> CpuBackendBuilder {
        self.inline_max_queries = Some(queries);
        self
    }

    /// Starts the workers, places `table`'s per-row counts (derived once
    /// here, then copied by a worker of each domain that reads them, so
    /// each copy's memory is first touched there) and chooses the kernels
    /// on the first copy ([`Calibration`](crate::arch::Calibration)).
    ///
    /// Fails with [`Error::InvalidTable`] for a table with no rows, with
    /// [`Error::IsaUnavailable`] for a kernel request this CPU cannot serve,
    /// and with [`Error::InvalidConfig`] for too many threads.
    ///
    /// ```
    /// use initret::{BitTable, Error, cpu::CpuBackend};
    ///
    /// let err = CpuBackend::builder().build(&BitTable::seed(0)).unwrap_err();
    /// assert!(matches!(err, Error::InvalidTable(_)));
    /// ```
    pub fn build(self, table: &BitTable) -> Result<CpuBackend, Error> {
        table.require_rows()?;
        let candidates = self.candidates()?;
        let derived = CountTable::new(table);
        let pool = self.pool().build_placed(self.placement, |_copy| {
            Ok::<_, Error>(Arc::new(derived.clone()))
        })?;
        drop(derived);
        CpuBackend::calibrated(pool, &candidates, self.inline_max_queries)
    }

    /// Builds the backend over counts derived already: read in place by
    /// the workers of the first copy (a table in shared memory is not
    /// copied), and copied for every further copy the placement asks for
    /// (other cache domains, or every worker but the first with
    /// [`Placement::PerWorker`]). Errors as [`CpuBackendBuilder::build`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use initret::{BitTable, Placement, PopcountBackend, arch::CountTable, cpu::CpuBackend};
    ///
    /// let derived = CountTable::new(&BitTable::seed(1000));
    /// let memory = Arc::new(derived.as_bytes().to_vec());
    /// let counts = CountTable::from_memory(memory, derived.rows(), derived.bytes_per_count())?;
    /// let cpu = CpuBackend::builder()
    ///     .threads(2)
    ///     .placement(Placement::Shared)
    ///     .build_with_counts(counts)?;
    /// assert_eq!(cpu.popcount(&[7, 999])?, vec![3, 8]);
    /// assert!(cpu.counts().is_borrowed());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn build_with_counts(self, counts: CountTable) -> Result<CpuBackend, Error> {
        if counts.rows() == 0 {
            return Err(Error::InvalidTable("the table has no rows".into()));
        }
        let candidates = self.candidates()?;
        let given = Arc::new(counts);
        let pool = self.pool().build_placed(self.placement, |copy| {
            Ok::<_, Error>(if copy == 0 {
                Arc::clone(&given)
            } else {
                Arc::new((*given).clone())
            })
        })?;
        drop(given);
        CpuBackend::calibrated(pool, &candidates, self.inline_max_queries)
    }

    /// The kernels to measure, all available here.
    fn candidates(&self) -> Result<Vec<crate::arch::Kernel>, Error> {
        let request = match self.kernels {
            Kernels::Given(request) => request.check_available()?,
            Kernels::FromEnv => KernelRequest::from_env()?,
        };
        Ok(request.candidates())
    }

    /// The pool's settings.
    fn pool(&self) -> crate::PoolBuilder {
        let pool = Pool::builder()
            .threads(self.threads)
            .thread_name("initret-cpu");
        match &self.topology {
            Some(topology) => pool.topology(topology.clone()),
            None => pool,
        }
    }
}
