//! [`CountTable`]: the per-row popcounts an initializer derives once, stored
//! in the narrowest integer that holds them.
//!
//! The lookups are bound by random reads into this table, so its size is
//! what matters: the seed's 2^16 rows take 64 KiB as `u8` rather than 256 KiB
//! as `u32`, and more of it stays in the L1 and L2 caches.

use crate::BitTable;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
}

/// An unsigned integer type a [`CountTable`] can store counts in: `u8`,
/// `u16` or `u32`.
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

/// The counts, padded so that a 4-byte read at the start of any row stays
/// inside the allocation (the vector kernels gather 32-bit words and mask
/// them down).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CountWords {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
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
    words: CountWords,
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
        fn padded<C: CountWord>(counts: &[u32], narrow: impl Fn(u32) -> C) -> Vec<C> {
            // Enough trailing zeros that 4 bytes read from the last count's
            // first byte stay inside the vector.
            let pad = 4usize.div_ceil(C::BYTES) - 1;
            let mut words = Vec::with_capacity(counts.len() + pad);
            words.extend(counts.iter().map(|&c| narrow(c)));
            words.resize(counts.len() + pad, C::ZERO);
            words
        }
        let max = counts.iter().copied().max().unwrap_or(0);
        let words = if max <= u32::from(u8::MAX) {
            CountWords::U8(padded(counts, |c| c as u8))
        } else if max <= u32::from(u16::MAX) {
            CountWords::U16(padded(counts, |c| c as u16))
        } else {
            CountWords::U32(padded(counts, |c| c))
        };
        CountTable {
            rows: counts.len(),
            words,
        }
    }

    /// Number of rows.
    ///
    /// ```
    /// assert_eq!(initret::arch::CountTable::from_counts(&[1, 2, 3]).rows(), 3);
    /// ```
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
            CountWords::U8(_) => 1,
            CountWords::U16(_) => 2,
            CountWords::U32(_) => 4,
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
            CountWords::U8(w) => w.get(row).map(|&c| c.into()),
            CountWords::U16(w) => w.get(row).map(|&c| c.into()),
            CountWords::U32(w) => w.get(row).copied(),
        }
    }

    pub(crate) fn words(&self) -> &CountWords {
        &self.words
    }
}
