//! [`Dispatcher`]: one API for popcount lookups over a chosen backend.

use std::fmt;

use crate::arch::Isa;
use crate::cpu::CpuBackend;
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
    /// The CPU, or the GPU where it pays (see [`Dispatcher`]).
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
            other => Err(Error::InvalidArgument(format!(
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
    isa: Option<Isa>,
}

impl DispatcherBuilder {
    /// Which backend to use (default [`Backend::Auto`]).
    ///
    /// ```
    /// let b = initret::Dispatcher::builder(initret::BitTable::seed(4)).backend(initret::Backend::Cpu);
    /// # let _ = b;
    /// ```
    pub fn backend(mut self, backend: Backend) -> DispatcherBuilder {
        self.backend = backend;
        self
    }

    /// Number of CPU worker threads; 0 (the default) means one per CPU.
    ///
    /// ```
    /// let b = initret::Dispatcher::builder(initret::BitTable::seed(4)).threads(2);
    /// # let _ = b;
    /// ```
    pub fn threads(mut self, threads: usize) -> DispatcherBuilder {
        self.threads = threads;
        self
    }

    /// Forces the CPU kernel's instruction set (default: [`Isa::selected`]).
    ///
    /// ```
    /// let b = initret::Dispatcher::builder(initret::BitTable::seed(4)).isa(initret::arch::Isa::Scalar);
    /// # let _ = b;
    /// ```
    pub fn isa(mut self, isa: Isa) -> DispatcherBuilder {
        self.isa = Some(isa);
        self
    }

    /// Places the table on the chosen backend (the initializer) and returns
    /// the dispatcher.
    ///
    /// ```
    /// let d = initret::Dispatcher::builder(initret::BitTable::seed(4)).build()?;
    /// # let _ = d;
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn build(self) -> Result<Dispatcher, Error> {
        let table = self.table;
        if table.rows() == 0 {
            return Err(Error::InvalidTable(
                "the table has no rows, so no query can be answered".into(),
            ));
        }
        let engine = match self.backend {
            Backend::Cpu | Backend::Auto => {
                Engine::Cpu(CpuBackend::new(&table, self.threads, self.isa)?)
            }
            Backend::Gpu => {
                return Err(Error::GpuUnavailable(
                    "this build has no GPU backend (enable the `gpu` feature)".into(),
                ));
            }
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
}

/// Maps popcount lookups over one [`BitTable`] on a chosen backend.
///
/// [`Dispatcher::new`] places the table once, the initializer: on the CPU,
/// every worker derives its own per-row count table; on the GPU, the table
/// is uploaded once into a storage buffer. Every call afterwards moves only
/// queries and counts.
///
/// A query index `>= rows` is [`Error::IndexOutOfRange`] naming the first
/// offending position, on every backend: never a panic, never a wrong count.
///
/// `Dispatcher` is `Send + Sync`: share it (e.g. in an `Arc`) and call it
/// from many threads at once.
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
    /// # let _ = d;
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn builder(table: BitTable) -> DispatcherBuilder {
        DispatcherBuilder {
            table,
            backend: Backend::Auto,
            threads: 0,
            isa: None,
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
        match &self.engine {
            Engine::Cpu(cpu) => format!("cpu ({} kernel, {} threads)", cpu.isa(), cpu.threads()),
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
        if out.len() != queries.len() {
            return Err(Error::OutputLength {
                queries: queries.len(),
                output: out.len(),
            });
        }
        match &self.engine {
            Engine::Cpu(cpu) => cpu.popcount_into(queries, out),
        }
    }
}
