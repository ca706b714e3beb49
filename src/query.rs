//! [`QueryIndex`]: the integer types a batch of query indices may come in.
//!
//! Every backend answers batches of `u32`, `u64` or `i64` row indices. The
//! CPU kernels read each type directly (a `u64` or `i64` batch is never
//! narrowed into a `u32` copy first): an `i64` batch is read as the `u64`
//! words it is made of, where a negative index is a huge one, so one range
//! check (`< rows`) rejects both. The GPU, whose shaders have no 64-bit
//! integers, narrows `u64` and `i64` batches on the host with the same check
//! ([`GpuBackend`](crate::gpu::GpuBackend)).

pub(crate) mod sealed {
    /// The query words a kernel reads: `u32`, or the 64-bit words of a `u64`
    /// or `i64` batch.
    pub enum Words<'a> {
        /// A `u32` batch.
        U32(&'a [u32]),
        /// A `u64` batch, or an `i64` one read as `u64` (negative values are
        /// then at least 2^63, past any table).
        U64(&'a [u64]),
    }

    /// Keeps [`QueryIndex`](super::QueryIndex) to the types the kernels read.
    pub trait Sealed: Sized {
        /// The batch as the kernels read it, without copying.
        fn words(queries: &[Self]) -> Words<'_>;
        /// The query naming `row` (calibration batches).
        fn from_row(row: u32) -> Self;
    }
}

use sealed::Words;

/// The integer types a query batch may hold: `u32`, `u64` and `i64`
/// (sealed: the kernels are written for exactly these).
///
/// Valid indices are `0..rows` whatever the type. A negative `i64` or a
/// value past the table is [`Error::IndexOutOfRange`](crate::Error::IndexOutOfRange) naming the lowest
/// offending position and the value found there, widened to `i128`
/// ([`QueryIndex::to_i128`]), which holds every value of every query type.
///
/// Backends take each type through explicitly named methods
/// (`popcount_into` for `u32`, `popcount_u64_into`, `popcount_i64_into`, on
/// [`PopcountBackend`](crate::PopcountBackend) and the concrete backends),
/// and through one generic method on the concrete types,
/// `popcount_indices_into::<Q>`, for code written once over the type:
///
/// ```
/// use initret::{Backend, BitTable, Dispatcher, Error, QueryIndex};
///
/// fn total<Q: QueryIndex>(d: &Dispatcher, queries: &[Q]) -> Result<u32, Error> {
///     let mut out = vec![0; queries.len()];
///     d.popcount_indices_into(queries, &mut out)?;
///     Ok(out.iter().sum())
/// }
///
/// let d = Dispatcher::new(BitTable::seed(8), Backend::Cpu)?;
/// assert_eq!(total(&d, &[7u32, 3])?, 5);
/// assert_eq!(total(&d, &[7u64, 3])?, 5);
/// assert_eq!(total(&d, &[7i64, 3])?, 5);
/// assert!(matches!(
///     total(&d, &[7i64, -3]),
///     Err(Error::IndexOutOfRange { position: 1, index: -3, rows: 8 })
/// ));
/// # Ok::<(), Error>(())
/// ```
pub trait QueryIndex: sealed::Sealed + Copy + Send + Sync + std::fmt::Debug + 'static {
    /// The value, widened without loss (what [`Error::IndexOutOfRange`](crate::Error::IndexOutOfRange)
    /// reports).
    ///
    /// ```
    /// use initret::QueryIndex;
    /// assert_eq!(u64::MAX.to_i128(), (1i128 << 64) - 1);
    /// assert_eq!(i64::MIN.to_i128(), -(1i128 << 63));
    /// ```
    fn to_i128(self) -> i128;
}

impl sealed::Sealed for u32 {
    #[inline(always)]
    fn words(queries: &[u32]) -> Words<'_> {
        Words::U32(queries)
    }
    fn from_row(row: u32) -> u32 {
        row
    }
}

impl sealed::Sealed for u64 {
    #[inline(always)]
    fn words(queries: &[u64]) -> Words<'_> {
        Words::U64(queries)
    }
    fn from_row(row: u32) -> u64 {
        row.into()
    }
}

impl sealed::Sealed for i64 {
    #[inline(always)]
    fn words(queries: &[i64]) -> Words<'_> {
        // Same size and alignment: a negative index becomes one >= 2^63.
        Words::U64(bytemuck::cast_slice(queries))
    }
    fn from_row(row: u32) -> i64 {
        row.into()
    }
}

impl QueryIndex for u32 {
    fn to_i128(self) -> i128 {
        self.into()
    }
}

impl QueryIndex for u64 {
    fn to_i128(self) -> i128 {
        self.into()
    }
}

impl QueryIndex for i64 {
    fn to_i128(self) -> i128 {
        self.into()
    }
}

/// The batch as `u32` row indices for a backend that reads only those (the
/// GPU): borrowed for a `u32` batch, otherwise narrowed into a new vector
/// after a range check, an error at the lowest position whose value is
/// negative or `>= rows`: [`Error::flagged`](crate::Error::flagged) with
/// the value that position holds when it is read again, as the CPU kernels
/// report it (a batch another thread rewrote meanwhile gives
/// `ConcurrentModification`, never a valid index called out of range).
#[cfg(any(feature = "gpu", test))]
pub(crate) fn narrow_checked<Q: QueryIndex>(
    queries: &[Q],
    rows: usize,
) -> Result<std::borrow::Cow<'_, [u32]>, crate::Error> {
    match Q::words(queries) {
        Words::U32(words) => Ok(std::borrow::Cow::Borrowed(words)),
        Words::U64(words) => narrow_words(words, rows, |position| queries[position].to_i128())
            .map(std::borrow::Cow::Owned),
    }
}

/// [`narrow_checked`] on the 64-bit words of a batch; `read_again(position)`
/// is the query at `position` as its type reads it, for the report.
#[cfg(any(feature = "gpu", test))]
fn narrow_words(
    words: &[u64],
    rows: usize,
    read_again: impl Fn(usize) -> i128,
) -> Result<Vec<u32>, crate::Error> {
    let mut narrow = Vec::with_capacity(words.len());
    for (position, &word) in words.iter().enumerate() {
        match u32::try_from(word) {
            Ok(index) if (index as usize) < rows => narrow.push(index),
            _ => return Err(crate::Error::flagged(position, read_again(position), rows)),
        }
    }
    Ok(narrow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn narrowing_checks_every_value_and_names_the_first_bad_one() {
        assert_eq!(
            narrow_checked(&[3i64, 0, 9], 10).unwrap().as_ref(),
            [3, 0, 9]
        );
        assert_eq!(narrow_checked(&[4u32, 99], 10).unwrap().as_ref(), [4, 99]);
        for (queries, position, index) in [
            (vec![1i64, -1, 20], 1, -1i128),
            (vec![10, 1, -5], 0, 10),
            (vec![0, 1, i64::MIN], 2, i64::MIN.into()),
            (vec![i64::MAX, -1], 0, i64::MAX.into()),
        ] {
            assert!(matches!(
                narrow_checked(&queries, 10),
                Err(Error::IndexOutOfRange { position: p, index: i, rows: 10 }) if p == position && i == index
            ));
        }
        let wide = [0u64, u64::from(u32::MAX) + 1, u64::MAX];
        assert!(matches!(
            narrow_checked(&wide, 10),
            Err(Error::IndexOutOfRange {
                position: 1,
                index: 0x1_0000_0000,
                rows: 10
            })
        ));
    }

    #[test]
    fn a_position_rewritten_before_the_report_is_a_concurrent_modification() {
        // The check saw 12 at position 1; by the time it is read again for
        // the report, another thread has written a valid 5 there.
        let words = [3u64, 12, 4];
        assert!(matches!(
            narrow_words(&words, 10, |_| 5),
            Err(Error::ConcurrentModification {
                position: 1,
                now: 5,
                rows: 10
            })
        ));
        // Rewritten to another bad value: that value is the one reported.
        assert!(matches!(
            narrow_words(&words, 10, |_| -7),
            Err(Error::IndexOutOfRange {
                position: 1,
                index: -7,
                rows: 10
            })
        ));
    }
}
