//! [`LookupKernel`]: one [`Kernel`] resolved to its routines, the function
//! pointers the CPU backend calls for every batch.

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
use super::aarch64;
use super::all;
use super::counts::{CountStorage, CountTable, CountWord};
use super::isa::Isa;
use super::kernel::{Fetch, Kernel};
#[cfg(target_arch = "x86_64")]
use super::x86_64;
use crate::query::sealed::Words;
use crate::{Error, QueryIndex};

/// Batches of at least this many queries are written with streaming
/// (non-temporal) stores by [`LookupKernel::lookup`]: their output is far
/// bigger than the caches, so bypassing them saves the read-for-ownership of
/// every output line. Smaller outputs are stored normally, since the caller
/// is likely to read them while they are still cached.
pub(crate) const STREAM_MIN_QUERIES: usize = 1 << 18;

/// A lookup routine for one [`Kernel`], chosen once (at backend build): the
/// same algorithm reads `u32` queries, and `u64` or `i64` ones in place (no
/// narrowed copy; see [`LookupKernel::lookup_indices`]), from counts of
/// every width into results of every width ([`CountWord`]).
///
/// ```
/// use initret::arch::{CountTable, Kernel, LookupKernel};
///
/// let kernel = LookupKernel::new(Kernel::SCALAR)?;
/// let mut out = [0; 2];
/// // Position 1 holds an index past the 2-row count table.
/// assert!(kernel.lookup(&CountTable::from_counts(&[5, 6]), &[1, 2], &mut out).is_err());
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LookupKernel {
    kernel: Kernel,
    routine: Routine,
}

/// Which generic routine runs a kernel: the portable one, or an ISA's
/// instance of the vector algorithm.
#[derive(Clone, Copy, Debug)]
enum Routine {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Gather,
    #[cfg(target_arch = "x86_64")]
    Avx2Loads,
    #[cfg(target_arch = "x86_64")]
    Avx512Gather,
    #[cfg(target_arch = "x86_64")]
    Avx512Loads,
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    NeonLoads,
}

impl Routine {
    /// `out[i] = counts[queries[i]]` for the first `rows` counts, or the
    /// first bad position: the routine's instance for this count width,
    /// query width and result type.
    ///
    /// # Safety
    /// The CPU supports the routine's ISA; `out.len() == queries.len()`;
    /// the counts are padded as [`CountTable`] stores them; a gather routine
    /// sees at most 2^31 bytes of counts; and `R` holds every count.
    unsafe fn run<R: CountWord>(
        self,
        counts: &CountStorage,
        rows: usize,
        queries: Words<'_>,
        out: &mut [R],
        streaming: bool,
        prefetch: usize,
    ) -> Result<(), usize> {
        /// The instances of the generic routine `$f` for the three count
        /// widths and the two query widths.
        macro_rules! instances {
            ($f:path) => {
                // SAFETY: forwarded from this function's contract.
                unsafe {
                    match (counts, queries) {
                        (CountStorage::U8(c), Words::U32(q)) => {
                            $f(c, rows, q, out, streaming, prefetch)
                        }
                        (CountStorage::U16(c), Words::U32(q)) => {
                            $f(c, rows, q, out, streaming, prefetch)
                        }
                        (CountStorage::U32(c), Words::U32(q)) => {
                            $f(c, rows, q, out, streaming, prefetch)
                        }
                        (CountStorage::U8(c), Words::U64(q)) => {
                            $f(c, rows, q, out, streaming, prefetch)
                        }
                        (CountStorage::U16(c), Words::U64(q)) => {
                            $f(c, rows, q, out, streaming, prefetch)
                        }
                        (CountStorage::U32(c), Words::U64(q)) => {
                            $f(c, rows, q, out, streaming, prefetch)
                        }
                    }
                }
            };
        }
        match self {
            Routine::Portable => instances!(all::lookup_raw),
            #[cfg(target_arch = "x86_64")]
            Routine::Avx2Gather => instances!(x86_64::avx2::lookup_gather),
            #[cfg(target_arch = "x86_64")]
            Routine::Avx2Loads => instances!(x86_64::avx2::lookup_loads),
            #[cfg(target_arch = "x86_64")]
            Routine::Avx512Gather => instances!(x86_64::avx512::lookup_gather),
            #[cfg(target_arch = "x86_64")]
            Routine::Avx512Loads => instances!(x86_64::avx512::lookup_loads),
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            Routine::NeonLoads => instances!(aarch64::neon::lookup_loads),
        }
    }
}

impl LookupKernel {
    /// The routine for `kernel`, or [`Error::IsaUnavailable`] if this CPU
    /// or build cannot run it.
    ///
    /// ```
    /// use initret::arch::{Kernel, LookupKernel};
    ///
    /// assert_eq!(LookupKernel::new(Kernel::SCALAR)?.kernel(), Kernel::SCALAR);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn new(kernel: Kernel) -> Result<LookupKernel, Error> {
        kernel.check_available()?;
        let routine = match (kernel.isa(), kernel.fetch()) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, Fetch::Gather) => Routine::Avx2Gather,
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, Fetch::Loads) => Routine::Avx2Loads,
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, Fetch::Gather) => Routine::Avx512Gather,
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, Fetch::Loads) => Routine::Avx512Loads,
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            (Isa::Neon, _) => Routine::NeonLoads,
            _ => Routine::Portable,
        };
        Ok(LookupKernel { kernel, routine })
    }

    /// Whether this routine can serve `counts` as it is: the gathers take
    /// signed 32-bit byte offsets, so a gather kernel hands tables past
    /// 2^31 bytes of counts to its ISA's scalar-load variant instead.
    ///
    /// ```
    /// use initret::arch::{CountTable, Kernel, LookupKernel};
    /// let kernel = LookupKernel::new(Kernel::SCALAR)?;
    /// assert!(kernel.serves(&CountTable::from_counts(&[1, 2, 3])));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn serves(&self, counts: &CountTable) -> bool {
        self.kernel.fetch() != Fetch::Gather
            || counts.rows().saturating_mul(counts.bytes_per_count()) <= 1 << 31
    }

    /// The kernel that runs when this routine serves `counts`: itself, or,
    /// for a gather kernel on a table past 2^31 bytes of counts (see
    /// [`LookupKernel::serves`]), the same ISA's loads kernel.
    ///
    /// ```
    /// use initret::arch::{CountTable, Kernel, LookupKernel};
    /// let counts = CountTable::from_counts(&[1, 2]);
    /// assert_eq!(LookupKernel::new(Kernel::SCALAR)?.kernel_for(&counts), Kernel::SCALAR);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn kernel_for(&self, counts: &CountTable) -> Kernel {
        if self.serves(counts) {
            self.kernel
        } else {
            self.kernel.with_fetch(Fetch::Loads)
        }
    }

    /// The kernel this routine runs.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The instruction set of the kernel.
    pub fn isa(&self) -> Isa {
        self.kernel.isa()
    }

    /// Writes the count of row `queries[i]` to `out[i]` for every `i`,
    /// with streaming stores when there are at least 2^18 queries (their
    /// output is far bigger than the caches).
    ///
    /// Fails with [`Error::OutputLength`] if `out` and `queries` differ in
    /// length, and with [`Error::IndexOutOfRange`] at the first query
    /// `>= counts.rows()`; `out` is then only partly written.
    ///
    /// ```
    /// use initret::arch::{CountTable, Kernel, LookupKernel};
    ///
    /// for kernel in Kernel::available() {
    ///     let mut out = [0; 4];
    ///     LookupKernel::new(kernel)?.lookup(&CountTable::from_counts(&[7, 8, 9]), &[2, 2, 0, 1], &mut out)?;
    ///     assert_eq!(out, [9, 9, 7, 8]);
    /// }
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn lookup(
        &self,
        counts: &CountTable,
        queries: &[u32],
        out: &mut [u32],
    ) -> Result<(), Error> {
        self.lookup_indices(counts, queries, out)
    }

    /// [`LookupKernel::lookup`] for queries of any [`QueryIndex`] type
    /// (`u32`, `u64` or `i64`) and results of any [`CountWord`] type (`u8`,
    /// `u16` or `u32`). The kernel reads 64-bit queries directly (a vector
    /// of them is narrowed in registers and range checked there); a
    /// negative `i64` or a value `>= counts.rows()` is
    /// [`Error::IndexOutOfRange`] at the first such position, with the value
    /// as given. A result type narrower than the counts
    /// ([`CountTable::bytes_per_count`]) is [`Error::OutputTooNarrow`],
    /// before any lookup.
    ///
    /// ```
    /// use initret::Error;
    /// use initret::arch::{CountTable, Kernel, LookupKernel};
    ///
    /// let counts = CountTable::from_counts(&[7, 8, 9]);
    /// for kernel in Kernel::available() {
    ///     let kernel = LookupKernel::new(kernel)?;
    ///     let mut out = [0u32; 3];
    ///     kernel.lookup_indices(&counts, &[2u64, 0, 1], &mut out)?;
    ///     assert_eq!(out, [9, 7, 8]);
    ///     // The counts fit a byte: so may the results.
    ///     let mut narrow = [0u8; 3];
    ///     kernel.lookup_indices(&counts, &[1i64, 1, 2], &mut narrow)?;
    ///     assert_eq!(narrow, [8, 8, 9]);
    ///     assert!(matches!(
    ///         kernel.lookup_indices(&counts, &[0i64, -1, 5], &mut out),
    ///         Err(Error::IndexOutOfRange { position: 1, index: -1, rows: 3 })
    ///     ));
    /// }
    /// let wide = CountTable::from_counts(&[300, 1]);
    /// assert!(matches!(
    ///     LookupKernel::new(Kernel::SCALAR)?.lookup_indices(&wide, &[0u32], &mut [0u8]),
    ///     Err(Error::OutputTooNarrow { output_bytes: 1, count_bytes: 2 })
    /// ));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn lookup_indices<Q: QueryIndex, R: CountWord>(
        &self,
        counts: &CountTable,
        queries: &[Q],
        out: &mut [R],
    ) -> Result<(), Error> {
        let streaming = queries.len() >= STREAM_MIN_QUERIES;
        self.lookup_with_stores(counts, queries, out, streaming)
    }

    /// [`LookupKernel::lookup_indices`] with the store kind chosen by the
    /// caller: a caller that splits one large batch into chunks decides
    /// `streaming` once, from the whole batch's size.
    pub(crate) fn lookup_with_stores<Q: QueryIndex, R: CountWord>(
        &self,
        counts: &CountTable,
        queries: &[Q],
        out: &mut [R],
        streaming: bool,
    ) -> Result<(), Error> {
        Error::check_output_len(queries.len(), out.len())?;
        Error::check_output_width::<R>(counts.bytes_per_count())?;
        let rows = counts.rows();
        // The gathers take signed 32-bit byte offsets: tables past 2^31
        // bytes of counts go to the same ISA's scalar loads, which index
        // with usize.
        let kernel = if self.serves(counts) {
            *self
        } else {
            LookupKernel::new(self.kernel.with_fetch(Fetch::Loads))?
        };
        let prefetch = usize::from(kernel.kernel.prefetch_distance());
        // SAFETY: the routine was chosen by `LookupKernel::new` only after
        // `check_available` confirmed the CPU supports its ISA; `out` and
        // `queries` have equal lengths (checked above); `CountTable` stores
        // `rows` counts plus the padding the 4-byte gathers need; the gather
        // routines only see tables of at most 2^31 bytes (above); and `R` is
        // at least as wide as the counts' type (above), which holds them.
        let result = unsafe {
            kernel.routine.run(
                counts.words(),
                rows,
                Q::words(queries),
                out,
                streaming,
                prefetch,
            )
        };
        // The position is read again to be reported: if another thread
        // rewrote it meanwhile, that is said, not a valid index called bad.
        result.map_err(|position| Error::flagged(position, queries[position].to_i128(), rows))
    }
}
