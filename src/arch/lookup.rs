//! [`LookupKernel`]: one [`Kernel`] resolved to its routines, the function
//! pointers the CPU backend calls for every batch.

use std::fmt;

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
use super::aarch64;
use super::all;
use super::counts::{CountStorage, CountTable};
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

/// The raw per-ISA routine over counts of type `C` and query words of type
/// `Q`: `(padded counts, rows, queries, out, streaming, prefetch distance)`.
/// `unsafe` because it may use instructions the CPU lacks; [`LookupKernel`]
/// only holds one whose ISA was checked.
type RawLookup<C, Q> = unsafe fn(&[C], usize, &[Q], &mut [u32], bool, usize) -> Result<(), usize>;

/// A lookup routine for one [`Kernel`], chosen once (at backend build) and
/// then called directly through function pointers, one per count width and
/// query width: the same algorithm reads `u32` queries, and `u64` or `i64`
/// ones in place (no narrowed copy; see [`LookupKernel::lookup_indices`]).
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
#[derive(Clone, Copy)]
pub struct LookupKernel {
    kernel: Kernel,
    u8: RawLookup<u8, u32>,
    u16: RawLookup<u16, u32>,
    u32: RawLookup<u32, u32>,
    wide_u8: RawLookup<u8, u64>,
    wide_u16: RawLookup<u16, u64>,
    wide_u32: RawLookup<u32, u64>,
}

impl fmt::Debug for LookupKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookupKernel")
            .field("kernel", &self.kernel)
            .finish()
    }
}

/// The instances of one generic routine for the three count widths and the
/// two query widths.
macro_rules! routines {
    ($kernel:expr, $f:path) => {
        LookupKernel {
            kernel: $kernel,
            u8: $f,
            u16: $f,
            u32: $f,
            wide_u8: $f,
            wide_u16: $f,
            wide_u32: $f,
        }
    };
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
        Ok(match (kernel.isa(), kernel.fetch()) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, Fetch::Gather) => routines!(kernel, x86_64::avx2::lookup_gather),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, Fetch::Loads) => routines!(kernel, x86_64::avx2::lookup_loads),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, Fetch::Gather) => routines!(kernel, x86_64::avx512::lookup_gather),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, Fetch::Loads) => routines!(kernel, x86_64::avx512::lookup_loads),
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            (Isa::Neon, _) => routines!(kernel, aarch64::neon::lookup_loads),
            _ => routines!(kernel, all::lookup_raw),
        })
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

    /// [`LookupKernel::lookup`] for queries of any [`QueryIndex`] type:
    /// `u32`, `u64` or `i64`. The kernel reads 64-bit queries directly
    /// (a vector of them is narrowed in registers and range checked
    /// there); a negative `i64` or a value `>= counts.rows()` is
    /// [`Error::IndexOutOfRange`] at the first such position, with the value
    /// as given.
    ///
    /// ```
    /// use initret::Error;
    /// use initret::arch::{CountTable, Kernel, LookupKernel};
    ///
    /// let counts = CountTable::from_counts(&[7, 8, 9]);
    /// for kernel in Kernel::available() {
    ///     let kernel = LookupKernel::new(kernel)?;
    ///     let mut out = [0; 3];
    ///     kernel.lookup_indices(&counts, &[2u64, 0, 1], &mut out)?;
    ///     assert_eq!(out, [9, 7, 8]);
    ///     kernel.lookup_indices(&counts, &[1i64, 1, 2], &mut out)?;
    ///     assert_eq!(out, [8, 8, 9]);
    ///     assert!(matches!(
    ///         kernel.lookup_indices(&counts, &[0i64, -1, 5], &mut out),
    ///         Err(Error::IndexOutOfRange { position: 1, index: -1, rows: 3 })
    ///     ));
    /// }
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn lookup_indices<Q: QueryIndex>(
        &self,
        counts: &CountTable,
        queries: &[Q],
        out: &mut [u32],
    ) -> Result<(), Error> {
        let streaming = queries.len() >= STREAM_MIN_QUERIES;
        self.lookup_with_stores(counts, queries, out, streaming)
    }

    /// [`LookupKernel::lookup`] with the store kind chosen by the caller:
    /// a caller that splits one large batch into chunks decides `streaming`
    /// once, from the whole batch's size.
    pub(crate) fn lookup_with_stores<Q: QueryIndex>(
        &self,
        counts: &CountTable,
        queries: &[Q],
        out: &mut [u32],
        streaming: bool,
    ) -> Result<(), Error> {
        Error::check_output_len(queries.len(), out.len())?;
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
        // SAFETY: the routines were chosen by `LookupKernel::new` only after
        // `check_available` confirmed the CPU supports their ISA; `out` and
        // `queries` have equal lengths (checked above); `CountTable` stores
        // `rows` counts plus the padding the 4-byte gathers need; and the
        // gather routines only see tables of at most 2^31 bytes (above).
        let result = unsafe {
            match (counts.words(), Q::words(queries)) {
                (CountStorage::U8(words), Words::U32(q)) => {
                    (kernel.u8)(words, rows, q, out, streaming, prefetch)
                }
                (CountStorage::U16(words), Words::U32(q)) => {
                    (kernel.u16)(words, rows, q, out, streaming, prefetch)
                }
                (CountStorage::U32(words), Words::U32(q)) => {
                    (kernel.u32)(words, rows, q, out, streaming, prefetch)
                }
                (CountStorage::U8(words), Words::U64(q)) => {
                    (kernel.wide_u8)(words, rows, q, out, streaming, prefetch)
                }
                (CountStorage::U16(words), Words::U64(q)) => {
                    (kernel.wide_u16)(words, rows, q, out, streaming, prefetch)
                }
                (CountStorage::U32(words), Words::U64(q)) => {
                    (kernel.wide_u32)(words, rows, q, out, streaming, prefetch)
                }
            }
        };
        // The position is read again to be reported: if another thread
        // rewrote it meanwhile, that is said, not a valid index called bad.
        result.map_err(|position| Error::flagged(position, queries[position].to_i128(), rows))
    }
}
