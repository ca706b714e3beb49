//! [`BitTable`]: the large read-only state every lookup reads.

use crate::{Error, QueryIndex};

/// A table of `rows × words_per_row` `u32` words stored contiguously, row by
/// row. Row `i` is `words[i * words_per_row .. (i + 1) * words_per_row]`.
///
/// This is the seed problem's `cache`: [`BitTable::seed`] builds the table
/// whose row `i` holds the binary representation of `i`.
///
/// # Examples
///
/// ```
/// use initret::BitTable;
///
/// let table = BitTable::from_rows(2, vec![0b1011, 0, u32::MAX, 1])?;
/// assert_eq!(table.rows(), 2);
/// assert_eq!(table.row_popcount(0), Some(3));
/// assert_eq!(table.row_popcount(1), Some(33));
/// assert_eq!(table.row_popcount(2), None);
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitTable {
    words_per_row: usize,
    rows: usize,
    words: Vec<u32>,
}

impl BitTable {
    /// The seed problem's cache: `n` rows of one word each, row `i` holding
    /// the binary representation of `i` (so its popcount is `i.count_ones()`).
    ///
    /// `BitTable::seed(65535)` is the post's `{i: bin(i) for i in range(2**16 - 1)}`.
    ///
    /// ```
    /// let cache = initret::BitTable::seed(65535);
    /// assert_eq!(cache.rows(), 65535);
    /// assert_eq!(cache.row_popcount(7), Some(3));
    /// ```
    pub fn seed(n: u32) -> BitTable {
        BitTable {
            words_per_row: 1,
            rows: n as usize,
            words: (0..n).collect(),
        }
    }

    /// Builds a table from its words, `words_per_row` words per row.
    ///
    /// Fails with [`Error::InvalidTable`] when `words_per_row` is zero or
    /// `words.len()` is not a whole number of rows. A table with no rows is
    /// allowed here but refused by [`Dispatcher::new`](crate::Dispatcher::new),
    /// since it cannot answer any query.
    ///
    /// ```
    /// use initret::BitTable;
    ///
    /// assert!(BitTable::from_rows(3, vec![0; 6]).is_ok());
    /// assert!(BitTable::from_rows(3, vec![0; 7]).is_err());
    /// assert!(BitTable::from_rows(0, vec![]).is_err());
    /// ```
    pub fn from_rows(words_per_row: usize, words: Vec<u32>) -> Result<BitTable, Error> {
        check_shape(0, words_per_row)?;
        if !words.len().is_multiple_of(words_per_row) {
            return Err(Error::InvalidTable(format!(
                "{} words is not a whole number of rows of {} words ({} words left over)",
                words.len(),
                words_per_row,
                words.len() % words_per_row
            )));
        }
        let rows = words.len() / words_per_row;
        check_shape(rows, words_per_row)?;
        Ok(BitTable {
            words_per_row,
            rows,
            words,
        })
    }

    /// Builds a `rows × words_per_row` table whose word `w` of row `r` is
    /// `word(r, w)`.
    ///
    /// ```
    /// use initret::BitTable;
    ///
    /// let table = BitTable::from_fn(4, 2, |row, word| if word == 0 { row as u32 } else { 0 })?;
    /// assert_eq!(table.row(3), Some(&[3, 0][..]));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn from_fn(
        rows: usize,
        words_per_row: usize,
        mut word: impl FnMut(usize, usize) -> u32,
    ) -> Result<BitTable, Error> {
        check_shape(rows, words_per_row)?;
        let len = rows.checked_mul(words_per_row).ok_or_else(|| {
            Error::InvalidTable(format!("{rows} rows × {words_per_row} words overflows"))
        })?;
        let mut words = Vec::new();
        words.try_reserve_exact(len).map_err(|e| {
            Error::InvalidTable(format!(
                "{rows} rows × {words_per_row} words cannot be allocated: {e}"
            ))
        })?;
        for r in 0..rows {
            for w in 0..words_per_row {
                words.push(word(r, w));
            }
        }
        BitTable::from_rows(words_per_row, words)
    }

    /// `Ok` if the table has at least one row; the [`Error::InvalidTable`]
    /// every backend gives an empty table otherwise.
    pub(crate) fn require_rows(&self) -> Result<(), Error> {
        if self.rows == 0 {
            return Err(Error::InvalidTable(
                "the table has no rows, so no query can be answered".into(),
            ));
        }
        Ok(())
    }

    /// Number of rows; valid query indices are `0..rows()`.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of `u32` words in each row.
    pub fn words_per_row(&self) -> usize {
        self.words_per_row
    }

    /// All words, row after row.
    pub fn words(&self) -> &[u32] {
        &self.words
    }

    /// Size of the table's words in bytes.
    pub fn size_in_bytes(&self) -> usize {
        std::mem::size_of_val(self.words.as_slice())
    }

    /// Row `index`, or `None` if the table has no such row.
    ///
    /// ```
    /// let table = initret::BitTable::seed(3);
    /// assert_eq!(table.row(2), Some(&[2][..]));
    /// assert_eq!(table.row(3), None);
    /// ```
    pub fn row(&self, index: usize) -> Option<&[u32]> {
        if index >= self.rows {
            return None;
        }
        let start = index * self.words_per_row;
        self.words.get(start..start + self.words_per_row)
    }

    /// Number of set bits in row `index`, or `None` if there is no such row.
    /// This is the naive per-lookup computation every kernel is checked against.
    ///
    /// ```
    /// assert_eq!(initret::BitTable::seed(8).row_popcount(7), Some(3));
    /// ```
    pub fn row_popcount(&self, index: usize) -> Option<u32> {
        self.row(index)
            .map(|row| row.iter().map(|w| w.count_ones()).sum())
    }

    /// The scalar reference: the popcount of each queried row, computed from
    /// the table's words one query at a time, with the same
    /// [`Error::IndexOutOfRange`] contract as every backend.
    ///
    /// ```
    /// let table = initret::BitTable::seed(8);
    /// assert_eq!(table.reference_popcount(&[7, 0, 5])?, vec![3, 0, 2]);
    /// assert!(table.reference_popcount(&[1, 8]).is_err());
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn reference_popcount(&self, queries: &[u32]) -> Result<Vec<u32>, Error> {
        self.reference_popcount_indices(queries)
    }

    /// [`BitTable::reference_popcount`] for queries of any [`QueryIndex`]
    /// type (`u32`, `u64`, `i64`): a negative index or one `>= rows` is
    /// [`Error::IndexOutOfRange`] at the first such position.
    ///
    /// ```
    /// let table = initret::BitTable::seed(8);
    /// assert_eq!(table.reference_popcount_indices(&[7i64, 0, 5])?, vec![3, 0, 2]);
    /// assert!(matches!(
    ///     table.reference_popcount_indices(&[1u64, u64::MAX]),
    ///     Err(initret::Error::IndexOutOfRange { position: 1, .. })
    /// ));
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn reference_popcount_indices<Q: QueryIndex>(
        &self,
        queries: &[Q],
    ) -> Result<Vec<u32>, Error> {
        queries
            .iter()
            .enumerate()
            .map(|(position, &index)| {
                usize::try_from(index.to_i128())
                    .ok()
                    .and_then(|row| self.row_popcount(row))
                    .ok_or(Error::IndexOutOfRange {
                        position,
                        index: index.to_i128(),
                        rows: self.rows,
                    })
            })
            .collect()
    }

    /// The popcount of every row, in row order: the derived table an
    /// initializer builds once so that each lookup is a single load.
    ///
    /// ```
    /// assert_eq!(initret::BitTable::seed(4).row_counts(), vec![0, 1, 1, 2]);
    /// ```
    pub fn row_counts(&self) -> Vec<u32> {
        self.row_counts_iter().collect()
    }

    /// The largest row count (0 for a table without rows): what decides the
    /// natural result type of a backend over this table, in one pass and no
    /// allocation.
    #[cfg_attr(
        not(feature = "gpu"),
        expect(dead_code, reason = "only the GPU backend uses it")
    )]
    pub(crate) fn max_row_count(&self) -> u32 {
        self.row_counts_iter().max().unwrap_or(0)
    }

    fn row_counts_iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words
            .chunks_exact(self.words_per_row)
            .map(|row| row.iter().map(|w| w.count_ones()).sum())
    }
}

/// The widest row a table may have: `2^27 - 1` words. A row of `2^27`
/// words can hold `2^32` set bits, one more than the `u32` counts every
/// backend returns, so wider rows are refused with [`Error::InvalidTable`]
/// rather than counted wrong.
///
/// ```
/// use initret::{BitTable, Error, MAX_WORDS_PER_ROW};
///
/// assert_eq!(MAX_WORDS_PER_ROW, (1 << 27) - 1);
/// let err = BitTable::from_fn(1, MAX_WORDS_PER_ROW + 1, |_, _| u32::MAX).unwrap_err();
/// assert!(matches!(err, Error::InvalidTable(_)));
/// ```
pub const MAX_WORDS_PER_ROW: usize = (1 << 27) - 1;

/// Rows must have 1 to [`MAX_WORDS_PER_ROW`] words, and there may be at
/// most 2^32 of them: query indices are `u32`, so row 2^32 and beyond could
/// never be read.
fn check_shape(rows: usize, words_per_row: usize) -> Result<(), Error> {
    if words_per_row == 0 {
        return Err(Error::InvalidTable(
            "words_per_row is 0: every row needs at least one word".into(),
        ));
    }
    if words_per_row > MAX_WORDS_PER_ROW {
        return Err(Error::InvalidTable(format!(
            "{words_per_row} words per row: a row may have at most 2^27 - 1 words, \
             so that its popcount fits the u32 counts every backend returns"
        )));
    }
    if rows as u64 > u64::from(u32::MAX) + 1 {
        return Err(Error::InvalidTable(format!(
            "{rows} rows: query indices are u32, so at most 2^32 rows are addressable"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widest_row_is_counted_and_one_word_more_is_refused() {
        // 2^27 - 1 all-ones words: 2^32 - 32 set bits, the most a u32 count
        // may have to hold. One word more could reach 2^32 and is refused,
        // by both constructors, before anything is counted.
        let widest = BitTable::from_rows(MAX_WORDS_PER_ROW, vec![u32::MAX; MAX_WORDS_PER_ROW])
            .expect("the widest allowed row");
        assert_eq!(widest.row_popcount(0), Some(u32::MAX - 31));
        assert_eq!(widest.row_counts(), vec![u32::MAX - 31]);
        drop(widest);
        let too_wide = 1 << 27;
        let err = BitTable::from_rows(too_wide, vec![u32::MAX; too_wide]).unwrap_err();
        assert!(
            matches!(err, Error::InvalidTable(ref m) if m.contains("2^27")),
            "{err}"
        );
        let err = BitTable::from_fn(1, too_wide, |_, _| u32::MAX).unwrap_err();
        assert!(matches!(err, Error::InvalidTable(_)), "{err}");
        // Even an empty table of such rows is refused: its shape is wrong.
        assert!(BitTable::from_rows(too_wide, Vec::new()).is_err());
    }
}
