//! The crate's one error type.

/// Every fallible call in this crate returns `Result<T, Error>`.
///
/// # Examples
///
/// ```
/// use initret::{BitTable, Error};
///
/// let err = BitTable::from_rows(0, vec![1, 2, 3]).unwrap_err();
/// assert!(matches!(err, Error::InvalidTable(_)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A query index names a row the table does not have: it is `>= rows`,
    /// or negative (an `i64` batch). `position` is the first (lowest)
    /// offending position in the query batch.
    #[error("query at position {position} has index {index}, but the table has {rows} rows")]
    IndexOutOfRange {
        /// Position of the first bad query in the batch.
        position: usize,
        /// The bad index found there, widened to `i128`, which holds every
        /// value of every query type (`u32`, `u64`, `i64`; see
        /// [`QueryIndex`](crate::QueryIndex)).
        index: i128,
        /// Number of rows in the table (valid indices are `0..rows`).
        rows: usize,
    },

    /// The table's shape is not usable (zero-width rows, a word count that is
    /// not a whole number of rows, too many rows for a `u32` index, ...).
    #[error("invalid table: {0}")]
    InvalidTable(String),

    /// `popcount_into` was given an output slice whose length differs from the
    /// number of queries.
    #[error("output has length {output} but there are {queries} queries")]
    OutputLength {
        /// Number of queries in the batch.
        queries: usize,
        /// Length of the output slice given.
        output: usize,
    },

    /// The result type asked for is narrower than the table's counts: a
    /// `u8` result for a table whose counts need `u16`, say. Reported
    /// before any lookup; a result type at least
    /// [`CountTable::bytes_per_count`](crate::arch::CountTable::bytes_per_count)
    /// bytes wide holds every count.
    #[error(
        "results of {output_bytes} byte(s) cannot hold this table's counts, which need {count_bytes}"
    )]
    OutputTooNarrow {
        /// Bytes of one result asked for.
        output_bytes: usize,
        /// Bytes a count of this table needs.
        count_bytes: usize,
    },

    /// The GPU backend cannot be used: no adapter, `INITRET_ADAPTER` matches
    /// none, the crate was built without the `gpu` feature, or the count
    /// buffer the table needs exceeds the adapter's limits.
    #[error("GPU unavailable: {0}")]
    GpuUnavailable(String),

    /// The GPU device was lost (driver reset, `destroy`, ...). The dispatcher
    /// that owns it cannot recover; build a new one.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),

    /// A GPU operation did not complete within its time limit.
    #[error("GPU operation timed out after {seconds:.1} s: {what}")]
    GpuTimeout {
        /// What was being waited for.
        what: &'static str,
        /// How long the call waited.
        seconds: f64,
    },

    /// wgpu reported a failure: the adapter refused a device, a validation,
    /// out-of-memory or internal error was caught by an error scope, a
    /// buffer could not be mapped, or a poll failed. The wgpu error is the
    /// [`source`](std::error::Error::source) of the [`GpuError`](crate::gpu::GpuError).
    #[error("GPU error: {0}")]
    Gpu(#[from] crate::gpu::GpuError),

    /// A SIMD instruction set was requested (by `INITRET_FORCE_ISA` or
    /// explicitly) that this CPU or build does not support, or the name was
    /// not recognised.
    #[error("instruction set {requested:?} is not available: {reason}")]
    IsaUnavailable {
        /// The name that was asked for.
        requested: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// A worker's initializer returned an error; the pool was not built.
    #[error("initializer failed on worker {worker}: {source}")]
    Initializer {
        /// Index of the worker whose initializer failed.
        worker: usize,
        /// The initializer's own error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A worker's initializer panicked; the pool was not built.
    #[error("initializer panicked on worker {worker}: {message}")]
    InitializerPanicked {
        /// Index of the worker whose initializer panicked.
        worker: usize,
        /// The panic message.
        message: String,
    },

    /// A task panicked inside a pool worker. The pool is still usable.
    #[error("task panicked on worker {worker}: {message}")]
    TaskPanicked {
        /// Index of the worker the task ran on.
        worker: usize,
        /// The panic message.
        message: String,
    },

    /// The worker threads could not be started.
    #[error("could not start worker threads: {0}")]
    ThreadSpawn(String),

    /// The operating system's description of the CPUs and caches (sysfs
    /// on Linux) could not be read or made no sense.
    #[error("cannot read the CPU topology: {0}")]
    Topology(String),

    /// A configuration value is not understood or out of range (a backend
    /// name, a measurement size, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A [`GpuBatch`](crate::gpu::GpuBatch) or [`GpuCounts`](crate::gpu::GpuCounts)
    /// was handed to a [`GpuBackend`](crate::gpu::GpuBackend) other than the
    /// one that made it (device buffers cannot cross devices).
    #[error("this {what} belongs to another GpuBackend")]
    ForeignGpuValue {
        /// `"GpuBatch"` or `"GpuCounts"`.
        what: &'static str,
    },

    /// [`GpuBackend::read_back`](crate::gpu::GpuBackend::read_back) was given
    /// counts whose last lookup did not complete (it failed).
    #[error("these GpuCounts hold no completed lookup (the last one failed)")]
    CountsIncomplete,

    /// The queries changed while the call was reading them: another thread
    /// wrote to the batch during the call. Safe Rust cannot do this (the
    /// batch is borrowed), but callers that lend memory shared with other
    /// code can (a numpy array in the Python binding). A check saw an index
    /// out of range at `position`, and when the call read that position
    /// again to report it, it held `now`, a valid index. No count of the
    /// call can be trusted; repeat it with a batch nothing writes to.
    #[error(
        "the queries changed during the call: position {position} held an index >= {rows} \
         when it was checked, and holds {now} now (another thread wrote to the batch)"
    )]
    ConcurrentModification {
        /// The position found out of range, then valid.
        position: usize,
        /// What it held when it was read again.
        now: u32,
        /// Number of rows in the table.
        rows: usize,
    },

    /// A buffer given to [`Frozen::open`](crate::frozen::Frozen::open) is not
    /// a valid frozen container: truncated, of another format or version,
    /// or with an offset, length, tag or UTF-8 string that does not check
    /// out. `offset` is where in the buffer the first problem was found.
    #[error("not a valid frozen buffer: {reason} (at byte {offset})")]
    FrozenCorrupt {
        /// Byte offset of the field found wrong.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },

    /// Contents that a frozen container cannot hold: a key or value of an
    /// unsupported type or size, two equal keys, nesting deeper than
    /// [`MAX_DEPTH`](crate::frozen::MAX_DEPTH) (or a cycle), a malformed
    /// array.
    #[error("cannot freeze: {0}")]
    NotFreezable(String),

    /// An invariant of this crate did not hold: a bug in initret, reported
    /// instead of panicking. Please file it with the message.
    #[error("internal error (a bug in initret): {0}")]
    Internal(String),
}

impl Error {
    /// `Ok` if an output of length `output` fits a batch of `queries`
    /// queries, else [`Error::OutputLength`]: the check every
    /// `popcount_into` makes first.
    ///
    /// ```
    /// use initret::Error;
    ///
    /// assert!(Error::check_output_len(3, 3).is_ok());
    /// assert!(matches!(
    ///     Error::check_output_len(3, 2),
    ///     Err(Error::OutputLength { queries: 3, output: 2 })
    /// ));
    /// ```
    pub fn check_output_len(queries: usize, output: usize) -> Result<(), Error> {
        if queries == output {
            Ok(())
        } else {
            Err(Error::OutputLength { queries, output })
        }
    }

    /// [`Error::OutputTooNarrow`] unless results of type `R` hold counts
    /// of `count_bytes` bytes.
    ///
    /// ```
    /// use initret::Error;
    /// assert!(Error::check_output_width::<u16>(2).is_ok());
    /// assert!(matches!(
    ///     Error::check_output_width::<u8>(4),
    ///     Err(Error::OutputTooNarrow { output_bytes: 1, count_bytes: 4 })
    /// ));
    /// ```
    pub fn check_output_width<R: crate::arch::CountWord>(count_bytes: usize) -> Result<(), Error> {
        Error::check_output_width_bytes(R::BYTES, count_bytes)
    }

    /// [`Error::check_output_width`] for a result type known by its size
    /// (a caller choosing the type at run time, as the Python binding does
    /// from a dtype).
    ///
    /// ```
    /// use initret::Error;
    /// assert!(Error::check_output_width_bytes(4, 1).is_ok());
    /// assert!(Error::check_output_width_bytes(1, 2).is_err());
    /// ```
    pub fn check_output_width_bytes(output_bytes: usize, count_bytes: usize) -> Result<(), Error> {
        if output_bytes >= count_bytes {
            Ok(())
        } else {
            Err(Error::OutputTooNarrow {
                output_bytes,
                count_bytes,
            })
        }
    }

    /// This error with its query position moved `offset` further on: turns
    /// an [`Error::IndexOutOfRange`] found in a chunk into one about the
    /// whole batch the chunk starts `offset` into. Other errors are returned
    /// unchanged.
    ///
    /// ```
    /// use initret::Error;
    ///
    /// let in_chunk = Error::IndexOutOfRange { position: 3, index: 9, rows: 4 };
    /// assert!(matches!(
    ///     in_chunk.offset_position(100),
    ///     Error::IndexOutOfRange { position: 103, index: 9, rows: 4 }
    /// ));
    /// ```
    pub fn offset_position(self, offset: usize) -> Error {
        match self {
            Error::ConcurrentModification {
                position,
                now,
                rows,
            } => Error::ConcurrentModification {
                position: position + offset,
                now,
                rows,
            },
            Error::IndexOutOfRange {
                position,
                index,
                rows,
            } => Error::IndexOutOfRange {
                position: position + offset,
                index,
                rows,
            },
            other => other,
        }
    }
}

impl Error {
    /// The error for a query position a check found out of range, given
    /// the index that position holds when it is read again to be reported:
    /// [`Error::IndexOutOfRange`] if that index is out of range too, else
    /// [`Error::ConcurrentModification`] (the batch was rewritten during
    /// the call), so a report never names a valid index as the bad one.
    ///
    /// ```
    /// use initret::Error;
    ///
    /// assert!(matches!(Error::flagged(3, 9, 4), Error::IndexOutOfRange { position: 3, index: 9, rows: 4 }));
    /// assert!(matches!(Error::flagged(3, -2, 4), Error::IndexOutOfRange { position: 3, index: -2, rows: 4 }));
    /// assert!(matches!(Error::flagged(3, 1, 4), Error::ConcurrentModification { position: 3, now: 1, rows: 4 }));
    /// ```
    pub fn flagged(position: usize, now: i128, rows: usize) -> Error {
        // A valid index is below `rows <= 2^32`, so it fits a `u32`.
        match u32::try_from(now) {
            Ok(valid) if (valid as usize) < rows => Error::ConcurrentModification {
                position,
                now: valid,
                rows,
            },
            _ => Error::IndexOutOfRange {
                position,
                index: now,
                rows,
            },
        }
    }
}

/// Turns a panic payload into the message it carries, for error reports.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}
