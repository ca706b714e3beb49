//! [`Dispatcher`]: one API for popcount lookups over a chosen backend.

mod auto;
mod builder;

pub use builder::DispatcherBuilder;
use builder::TableSource;

use std::fmt;

use crate::arch::{CountTable, CountWord};
use crate::cpu::CpuBackend;
use crate::gpu::GpuBackend;
use crate::{BitTable, Error, PopcountBackend, QueryIndex};
use auto::AutoBackend;

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

enum ActiveBackend {
    Cpu(CpuBackend),
    Gpu(GpuBackend),
    // Boxed: it holds both backends.
    Auto(Box<AutoBackend>),
}

/// Maps popcount lookups over one [`BitTable`] on a chosen backend.
///
/// [`Dispatcher::new`] places the table once, the initializer: on the CPU,
/// every worker derives its own per-row count table; on the GPU, a counting
/// pass derives the same counts on the device as the table streams through
/// it. Every call afterwards moves only queries and counts.
///
/// Queries are row indices as `u32` ([`Dispatcher::popcount_into`]), `u64`
/// ([`Dispatcher::popcount_u64_into`]) or `i64`
/// ([`Dispatcher::popcount_i64_into`]); the CPU kernels read each type
/// directly. A query index `>= rows`, or a negative one, is
/// [`Error::IndexOutOfRange`] naming the first offending position and its
/// value, on every backend: never a panic, never a wrong count.
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
///   if it never wins, everything stays on the CPU. [`Dispatcher::auto_decision`] says
///   which way it went and why.
///
/// # Recovering from GPU faults
///
/// If the GPU device is lost (driver reset, unplugged, ...), calls on a
/// [`Backend::Gpu`] dispatcher return [`Error::DeviceLost`] from then on:
/// drop it and build a new one (or a CPU one). A [`Backend::Auto`]
/// dispatcher instead moves every later call to its CPU backend, reports the
/// reason once on stderr and keeps it in [`Dispatcher::auto_decision`]. A GPU wait that
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
    active: ActiveBackend,
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
        DispatcherBuilder::new(TableSource::Table(table))
    }

    /// Starts configuring a dispatcher over counts derived already, for a
    /// table of `words_per_row` words a row: no table, no derivation. The
    /// CPU backend reads `counts` in place (a table in shared memory,
    /// [`CountTable::from_memory`], is not copied for the first cache
    /// domain); the GPU backend uploads them
    /// ([`GpuBackend::from_counts`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use initret::{Backend, BitTable, Dispatcher, arch::CountTable};
    ///
    /// let derived = CountTable::new(&BitTable::seed(1000));
    /// // Memory someone else owns: here a copy, in practice a read-only
    /// // shared-memory mapping.
    /// let memory = Arc::new(derived.as_bytes().to_vec());
    /// let counts = CountTable::from_memory(memory, derived.rows(), derived.bytes_per_count())?;
    /// let d = Dispatcher::counts_builder(counts, 1).backend(Backend::Cpu).build()?;
    /// assert_eq!(d.popcount(&[7, 999])?, vec![3, 8]);
    /// assert!(d.cpu().is_some_and(|cpu| cpu.counts().is_borrowed()));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn counts_builder(counts: CountTable, words_per_row: usize) -> DispatcherBuilder {
        DispatcherBuilder::new(TableSource::Counts(counts, words_per_row))
    }

    /// Number of rows of the table; valid queries are `0..rows()`.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Words per row of the table.
    pub fn words_per_row(&self) -> usize {
        self.words_per_row
    }

    /// The backend that was asked for.
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
        match &self.active {
            ActiveBackend::Cpu(cpu) => Some(cpu),
            ActiveBackend::Gpu(_) => None,
            ActiveBackend::Auto(auto) => Some(&auto.cpu),
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
        match &self.active {
            ActiveBackend::Cpu(_) => None,
            ActiveBackend::Gpu(gpu) => Some(gpu),
            ActiveBackend::Auto(auto) => auto.gpu.as_ref().map(|(gpu, _)| gpu),
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
        match &self.active {
            ActiveBackend::Cpu(_) => Backend::Cpu,
            ActiveBackend::Gpu(_) => Backend::Gpu,
            ActiveBackend::Auto(auto) => {
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
    /// assert_eq!(d.auto_decision(), None);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn auto_decision(&self) -> Option<String> {
        match &self.active {
            ActiveBackend::Auto(auto) => Some(auto.decision()),
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
            let limit = |split: &crate::cpu::SplitCalibration| match split.inline_max_queries() {
                usize::MAX => "all".to_string(),
                n => format!("up to {n}"),
            };
            format!(
                "cpu ({} kernel, {} threads; {}; batches inline: {} u32, {} 64-bit queries)",
                cpu.kernel(),
                cpu.threads(),
                cpu.placement_summary(),
                limit(cpu.split_calibration()),
                limit(cpu.wide_split_calibration()),
            )
        }
        match &self.active {
            ActiveBackend::Cpu(cpu) => cpu_line(cpu),
            ActiveBackend::Gpu(gpu) => format!("gpu ({})", gpu.adapter().name),
            ActiveBackend::Auto(auto) => match &auto.gpu {
                Some((gpu, n)) => format!(
                    "auto: {} below {n} queries, gpu ({}) from {n}",
                    cpu_line(&auto.cpu),
                    gpu.adapter().name
                ),
                _ => format!("auto: {}", cpu_line(&auto.cpu)),
            },
        }
    }

    /// The popcount of each queried row, in query order:
    /// [`PopcountBackend::popcount`], here without the trait in scope.
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// assert_eq!(d.popcount(&[7, 0, 3])?, vec![3, 0, 2]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`].
    pub fn popcount(&self, queries: &[u32]) -> Result<Vec<u32>, Error> {
        PopcountBackend::popcount(self, queries)
    }

    /// Writes the popcount of row `queries[i]` into `out[i]`:
    /// [`PopcountBackend::popcount_into`].
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
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`].
    pub fn popcount_into(&self, queries: &[u32], out: &mut [u32]) -> Result<(), Error> {
        PopcountBackend::popcount_into(self, queries, out)
    }

    /// [`Dispatcher::popcount_into`] for `u64` queries:
    /// [`PopcountBackend::popcount_u64_into`]. The CPU backend reads them in
    /// place (no narrowed copy); the GPU narrows them on the host. A value
    /// `>= rows` is [`Error::IndexOutOfRange`] at the first such position,
    /// with the value.
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// let mut out = vec![0; 2];
    /// d.popcount_u64_into(&[5, 7], &mut out)?;
    /// assert_eq!(out, [2, 3]);
    /// let err = d.popcount_u64_into(&[8, 1], &mut out).unwrap_err();
    /// assert!(matches!(err, initret::Error::IndexOutOfRange { position: 0, index: 8, rows: 8 }));
    /// # Ok::<(), initret::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`].
    pub fn popcount_u64_into(&self, queries: &[u64], out: &mut [u32]) -> Result<(), Error> {
        PopcountBackend::popcount_u64_into(self, queries, out)
    }

    /// [`Dispatcher::popcount_into`] for `i64` queries (numpy's default
    /// integer type): [`PopcountBackend::popcount_i64_into`]. Read as
    /// `u64` queries are; a negative value is out of range too.
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// let mut out = vec![0; 3];
    /// d.popcount_i64_into(&[5, 7, 0], &mut out)?;
    /// assert_eq!(out, [2, 3, 0]);
    /// let err = d.popcount_i64_into(&[1, -2, -3], &mut out).unwrap_err();
    /// assert!(matches!(err, initret::Error::IndexOutOfRange { position: 1, index: -2, rows: 8 }));
    /// # Ok::<(), initret::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`].
    pub fn popcount_i64_into(&self, queries: &[i64], out: &mut [u32]) -> Result<(), Error> {
        PopcountBackend::popcount_i64_into(self, queries, out)
    }

    /// The popcount of each queried row, for `u64` queries:
    /// [`PopcountBackend::popcount_u64`].
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// assert_eq!(d.popcount_u64(&[7, 0, 3])?, vec![3, 0, 2]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`].
    pub fn popcount_u64(&self, queries: &[u64]) -> Result<Vec<u32>, Error> {
        PopcountBackend::popcount_u64(self, queries)
    }

    /// The popcount of each queried row, for `i64` queries:
    /// [`PopcountBackend::popcount_i64`].
    ///
    /// ```
    /// # let d = initret::Dispatcher::new(initret::BitTable::seed(8), initret::Backend::Cpu)?;
    /// assert_eq!(d.popcount_i64(&[7, 0, 3])?, vec![3, 0, 2]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`].
    pub fn popcount_i64(&self, queries: &[i64]) -> Result<Vec<u32>, Error> {
        PopcountBackend::popcount_i64(self, queries)
    }

    /// [`Dispatcher::popcount_into`] for queries of any [`QueryIndex`] type
    /// (`u32`, `u64`, `i64`), for code written once over the type (see
    /// [`QueryIndex`] for an example): [`PopcountBackend::popcount_indices_into`].
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`].
    pub fn popcount_indices_into<Q: QueryIndex, R: CountWord>(
        &self,
        queries: &[Q],
        out: &mut [R],
    ) -> Result<(), Error> {
        PopcountBackend::popcount_indices_into(self, queries, out)
    }

    /// Bytes of this dispatcher's natural result type: the smallest of
    /// `u8`, `u16` and `u32` that holds the table's largest row count, as
    /// numpy's `counts[q]` returns the counts' own dtype
    /// ([`PopcountBackend::result_bytes`]). Every backend agrees on it: the
    /// CPU's count table and the GPU's count lanes are both chosen from the
    /// actual largest count.
    ///
    /// ```
    /// use initret::{Backend, BitTable, Dispatcher};
    ///
    /// let d = Dispatcher::new(BitTable::seed(65535), Backend::Cpu)?;
    /// assert_eq!(d.result_bytes(), 1);
    /// let counts: Vec<u8> = d.popcount_as(&[65534u32, 3])?;
    /// assert_eq!(counts, [15, 2]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn result_bytes(&self) -> usize {
        PopcountBackend::result_bytes(self)
    }

    /// The popcount of each queried row as `R` (any [`CountWord`] that
    /// holds the table's counts): [`PopcountBackend::popcount_as`].
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`];
    /// [`Error::OutputTooNarrow`] for an `R` narrower than
    /// [`Dispatcher::result_bytes`].
    pub fn popcount_as<Q: QueryIndex, R: CountWord>(&self, queries: &[Q]) -> Result<Vec<R>, Error> {
        PopcountBackend::popcount_as(self, queries)
    }
}

/// The lookups run on the backend the dispatcher was built with; for
/// [`Backend::Auto`], on the CPU or the GPU by batch size.
impl PopcountBackend for Dispatcher {
    fn result_bytes(&self) -> usize {
        match &self.active {
            ActiveBackend::Cpu(cpu) => cpu.result_bytes(),
            ActiveBackend::Gpu(gpu) => gpu.result_bytes(),
            ActiveBackend::Auto(auto) => auto.result_bytes(),
        }
    }

    fn popcount_indices_into<Q: QueryIndex, R: CountWord>(
        &self,
        queries: &[Q],
        out: &mut [R],
    ) -> Result<(), Error> {
        // Every backend checks `out.len()` itself before doing any work.
        match &self.active {
            ActiveBackend::Cpu(cpu) => cpu.popcount_indices_into(queries, out),
            ActiveBackend::Gpu(gpu) => gpu.popcount_indices_into(queries, out),
            ActiveBackend::Auto(auto) => auto.popcount_indices_into(queries, out),
        }
    }
}

#[cfg(test)]
mod tests;
