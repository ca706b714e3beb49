//! [`CountTable`]: the per-row popcounts an initializer derives once, stored
//! in the narrowest integer that holds them.
//!
//! The lookups are bound by random reads into this table, so its size is
//! what matters: the seed's 2^16 rows take 64 KiB as `u8` rather than 256 KiB
//! as `u32`, and more of it stays in the L1 and L2 caches.

use std::sync::Arc;

use super::buffer::{CountBuffer, CountMemory};
use crate::{BitTable, Error};

pub(super) mod sealed {
    /// Keeps [`CountWord`](super::CountWord) to `u8`, `u16` and `u32`, and
    /// carries what only the kernels may call.
    pub trait Sealed: Sized {
        /// The low `8 × BYTES` bits of `count`. The kernels call it only for
        /// counts that fit: a result type narrower than the table's counts
        /// is refused before any lookup
        /// ([`Error::OutputTooNarrow`](crate::Error::OutputTooNarrow)).
        fn truncate(count: u32) -> Self;
    }
    impl Sealed for u8 {
        #[inline(always)]
        fn truncate(count: u32) -> u8 {
            count as u8
        }
    }
    impl Sealed for u16 {
        #[inline(always)]
        fn truncate(count: u32) -> u16 {
            count as u16
        }
    }
    impl Sealed for u32 {
        #[inline(always)]
        fn truncate(count: u32) -> u32 {
            count
        }
    }
}

/// An unsigned integer type counts are kept in: `u8`, `u16` or `u32`. A
/// [`CountTable`] stores its counts in the narrowest that holds them, and
/// the lookups write their results in any that holds the table's counts
/// (a narrower result moves fewer bytes: for 1-word rows a `u8` result is a
/// quarter of the `u32` one).
///
/// ```
/// use initret::arch::CountWord;
/// assert_eq!(<u16 as CountWord>::BYTES, 2);
/// ```
pub trait CountWord: Copy + Into<u32> + Send + Sync + 'static + sealed::Sealed {
    /// Size in bytes.
    const BYTES: usize;
    /// `log2(BYTES)`: the shift that turns a row index into a byte offset.
    const SHIFT: u32;
    /// Keeps the low `8 × BYTES` bits of a 32-bit word read at a count.
    const MASK: u32;
    /// Zero, for padding.
    const ZERO: Self;
}

impl CountWord for u8 {
    const BYTES: usize = 1;
    const SHIFT: u32 = 0;
    const MASK: u32 = 0xFF;
    const ZERO: u8 = 0;
}

impl CountWord for u16 {
    const BYTES: usize = 2;
    const SHIFT: u32 = 1;
    const MASK: u32 = 0xFFFF;
    const ZERO: u16 = 0;
}

impl CountWord for u32 {
    const BYTES: usize = 4;
    const SHIFT: u32 = 2;
    const MASK: u32 = u32::MAX;
    const ZERO: u32 = 0;
}

/// The low `8 × R::BYTES` bits of `count`, for callers outside the kernels
/// that narrow counts they hold as `u32` (the GPU's read-back), having
/// checked that `R` holds every count.
#[inline(always)]
#[cfg_attr(
    not(feature = "gpu"),
    expect(dead_code, reason = "only the GPU backend uses it")
)]
pub(crate) fn narrow_count<R: CountWord>(count: u32) -> R {
    R::truncate(count)
}

/// The counts, padded so that a 4-byte read at the start of any row stays
/// inside the allocation (the vector kernels gather 32-bit words and mask
/// them down).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CountStorage {
    U8(CountBuffer<u8>),
    U16(CountBuffer<u16>),
    U32(CountBuffer<u32>),
}

/// The popcount of every row of a table, in the narrowest of `u8`, `u16`
/// and `u32` that holds the largest one. What the CPU backend's initializer
/// builds once per worker, and what the lookup kernels read.
///
/// ```
/// use initret::{BitTable, arch::CountTable};
///
/// let counts = CountTable::new(&BitTable::seed(4));
/// assert_eq!(counts.rows(), 4);
/// assert_eq!(counts.get(3), Some(2));
/// assert_eq!(counts.bytes_per_count(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountTable {
    rows: usize,
    words: CountStorage,
}

impl CountTable {
    /// Derives the per-row popcounts of `table`.
    ///
    /// ```
    /// let counts = initret::arch::CountTable::new(&initret::BitTable::from_rows(9, vec![u32::MAX; 9])?);
    /// assert_eq!((counts.get(0), counts.bytes_per_count()), (Some(288), 2));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn new(table: &BitTable) -> CountTable {
        CountTable::from_counts(&table.row_counts())
    }

    /// A table holding `counts` (one per row).
    ///
    /// ```
    /// let counts = initret::arch::CountTable::from_counts(&[1, 70_000]);
    /// assert_eq!(counts.bytes_per_count(), 4);
    /// ```
    pub fn from_counts(counts: &[u32]) -> CountTable {
        fn padded<C: CountWord>(counts: &[u32], narrow: impl Fn(u32) -> C) -> CountBuffer<C> {
            // Enough trailing zeros that 4 bytes read from the last count's
            // first byte stay inside the buffer.
            let pad = 4usize.div_ceil(C::BYTES) - 1;
            CountBuffer::from_fn(counts.len() + pad, |i| {
                counts.get(i).map_or(C::ZERO, |&c| narrow(c))
            })
        }
        let max = counts.iter().copied().max().unwrap_or(0);
        let words = if max <= u32::from(u8::MAX) {
            CountStorage::U8(padded(counts, |c| c as u8))
        } else if max <= u32::from(u16::MAX) {
            CountStorage::U16(padded(counts, |c| c as u16))
        } else {
            CountStorage::U32(padded(counts, |c| c))
        };
        CountTable {
            rows: counts.len(),
            words,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes per stored count: 1, 2 or 4.
    ///
    /// ```
    /// assert_eq!(initret::arch::CountTable::from_counts(&[300]).bytes_per_count(), 2);
    /// ```
    pub fn bytes_per_count(&self) -> usize {
        match &self.words {
            CountStorage::U8(_) => 1,
            CountStorage::U16(_) => 2,
            CountStorage::U32(_) => 4,
        }
    }

    /// The count of row `row`, if there is such a row.
    ///
    /// ```
    /// let counts = initret::arch::CountTable::from_counts(&[5]);
    /// assert_eq!((counts.get(0), counts.get(1)), (Some(5), None));
    /// ```
    pub fn get(&self, row: usize) -> Option<u32> {
        if row >= self.rows {
            return None;
        }
        match &self.words {
            CountStorage::U8(w) => w.get(row).map(|&c| c.into()),
            CountStorage::U16(w) => w.get(row).map(|&c| c.into()),
            CountStorage::U32(w) => w.get(row).copied(),
        }
    }

    /// Bytes of count memory, padding included.
    ///
    /// ```
    /// assert_eq!(initret::arch::CountTable::from_counts(&[1, 2]).bytes(), 5);
    /// ```
    pub fn bytes(&self) -> usize {
        match &self.words {
            CountStorage::U8(w) => w.len(),
            CountStorage::U16(w) => w.len() * 2,
            CountStorage::U32(w) => w.len() * 4,
        }
    }

    /// Whether the counts were allocated with a request for transparent
    /// huge pages (tables of 2 MiB or more, on Linux).
    ///
    /// ```
    /// let counts = initret::arch::CountTable::from_counts(&vec![0; 4 << 20]);
    /// assert_eq!(counts.huge_pages_requested(), cfg!(target_os = "linux"));
    /// ```
    pub fn huge_pages_requested(&self) -> bool {
        match &self.words {
            CountStorage::U8(w) => w.huge_pages_advised(),
            CountStorage::U16(w) => w.huge_pages_advised(),
            CountStorage::U32(w) => w.huge_pages_advised(),
        }
    }

    /// Bytes of the counts the kernel backs with transparent huge pages
    /// (`AnonHugePages` in `/proc/self/smaps`); `None` where that cannot be
    /// read (other systems).
    pub fn huge_page_bytes(&self) -> Option<u64> {
        match &self.words {
            CountStorage::U8(w) => w.huge_page_bytes(),
            CountStorage::U16(w) => w.huge_page_bytes(),
            CountStorage::U32(w) => w.huge_page_bytes(),
        }
    }

    /// The count memory as bytes, padding included (native byte order):
    /// what [`CountTable::from_memory`] takes back, with [`rows`](CountTable::rows)
    /// and [`bytes_per_count`](CountTable::bytes_per_count).
    ///
    /// ```
    /// assert_eq!(initret::arch::CountTable::from_counts(&[1, 2]).as_bytes(), &[1, 2, 0, 0, 0]);
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        fn bytes<C: CountWord>(words: &[C]) -> &[u8] {
            // SAFETY: `C` is `u8`, `u16` or `u32` (sealed): no padding, and
            // every byte of the slice is initialised; the length is the
            // slice's size in bytes.
            unsafe {
                std::slice::from_raw_parts(words.as_ptr().cast(), std::mem::size_of_val(words))
            }
        }
        match &self.words {
            CountStorage::U8(w) => bytes(w),
            CountStorage::U16(w) => bytes(w),
            CountStorage::U32(w) => bytes(w),
        }
    }

    /// A table of `rows` counts of `bytes_per_count` bytes (1, 2 or 4) read
    /// in place from `memory`, as [`CountTable::as_bytes`] laid them out:
    /// a table in a shared-memory mapping serves every process that maps
    /// it, with no copy. The table keeps `memory` alive.
    ///
    /// Fails with [`Error::InvalidTable`] when `bytes_per_count` is not 1,
    /// 2 or 4, or the memory is too short (counts and padding) or not
    /// aligned for the count width.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use initret::arch::CountTable;
    ///
    /// let owned = CountTable::from_counts(&[3, 1, 4]);
    /// let memory = Arc::new(owned.as_bytes().to_vec());
    /// let borrowed = CountTable::from_memory(memory, owned.rows(), owned.bytes_per_count())?;
    /// assert_eq!(borrowed, owned);
    /// assert!(borrowed.is_borrowed());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn from_memory(
        memory: Arc<dyn CountMemory>,
        rows: usize,
        bytes_per_count: usize,
    ) -> Result<CountTable, Error> {
        fn borrow<C: CountWord>(
            memory: Arc<dyn CountMemory>,
            rows: usize,
        ) -> Result<CountBuffer<C>, Error> {
            let pad = 4usize.div_ceil(C::BYTES) - 1;
            let have = memory.bytes().len();
            let len = rows
                .checked_add(pad)
                .ok_or_else(|| Error::InvalidTable("too many rows".into()))?;
            CountBuffer::borrowed(memory, len).ok_or_else(|| {
                Error::InvalidTable(format!(
                    "{have} bytes of count memory cannot hold {rows} counts of {} bytes and {pad} of padding, aligned",
                    C::BYTES
                ))
            })
        }
        let words = match bytes_per_count {
            1 => CountStorage::U8(borrow(memory, rows)?),
            2 => CountStorage::U16(borrow(memory, rows)?),
            4 => CountStorage::U32(borrow(memory, rows)?),
            other => {
                return Err(Error::InvalidTable(format!(
                    "counts are 1, 2 or 4 bytes wide, not {other}"
                )));
            }
        };
        Ok(CountTable { rows, words })
    }

    /// Whether the counts live in memory this table does not own
    /// ([`CountTable::from_memory`]).
    pub fn is_borrowed(&self) -> bool {
        match &self.words {
            CountStorage::U8(w) => w.is_borrowed(),
            CountStorage::U16(w) => w.is_borrowed(),
            CountStorage::U32(w) => w.is_borrowed(),
        }
    }

    pub(crate) fn words(&self) -> &CountStorage {
        &self.words
    }
}
