//! [`PopcountBackend`]: the one interface a lookup backend implements, so
//! that code can be written once over any of them.
//!
//! As with rayon's `ParallelIterator`, a backend implements one lookup
//! method, generic over the query type and the result type
//! ([`PopcountBackend::popcount_indices_into`]), and every typed convenience
//! (`popcount_into`, `popcount_u64`, `popcount_as`, ...) is a default method
//! written here once, on top of it.

use crate::arch::CountWord;
use crate::{Error, QueryIndex};

/// Popcount lookups into a table the backend placed once, at build.
///
/// Implemented by [`CpuBackend`](crate::cpu::CpuBackend),
/// [`GpuBackend`](crate::gpu::GpuBackend) (including the stand-in of a
/// build without the `gpu` feature, which has no values) and
/// [`Dispatcher`](crate::Dispatcher). A backend implements only
/// [`PopcountBackend::popcount_indices_into`] and
/// [`PopcountBackend::result_bytes`]; the other methods are provided on top
/// of them.
///
/// # Result types
///
/// Results come in any [`CountWord`] type (`u8`, `u16`, `u32`) that holds
/// the table's largest row count. The natural one, the smallest that does,
/// is [`PopcountBackend::result_bytes`] bytes wide: the type the counts are
/// stored in, as numpy's `counts[q]` returns the counts' own dtype. A
/// narrower result moves fewer bytes (for 1-word rows a `u8` result is a
/// quarter of a `u32` one). The `u32` methods (`popcount`, `popcount_into`,
/// ...) hold every count of every table, so they never refuse; a result type
/// narrower than [`PopcountBackend::result_bytes`] is
/// [`Error::OutputTooNarrow`], before any lookup. Bring the trait into scope to call them on a
/// backend (`Dispatcher` also has them as inherent methods).
///
/// The methods are generic, so the trait is used through generics
/// (`impl PopcountBackend`, `B: PopcountBackend`), not as `dyn`.
///
/// ```
/// use initret::{BitTable, Error, PopcountBackend};
/// use initret::cpu::CpuBackend;
/// use initret::gpu::GpuBackend;
///
/// /// The sum of the counts, on whatever backend it is given.
/// fn total(backend: &impl PopcountBackend, queries: &[u32]) -> Result<u64, Error> {
///     Ok(backend.popcount(queries)?.iter().map(|&c| u64::from(c)).sum())
/// }
///
/// let table = BitTable::seed(65535);
/// let queries: Vec<u32> = (0..65535).collect();
/// let cpu = CpuBackend::builder().threads(1).build(&table)?;
/// assert_eq!(total(&cpu, &queries)?, 524272);
/// match GpuBackend::new(&table) {
///     Ok(gpu) => assert_eq!(total(&gpu, &queries)?, 524272),
///     // No adapter, or a build without the `gpu` feature.
///     Err(Error::GpuUnavailable(_reason)) => {
/// #       assert!(!initret::harness::gpu_required(), "{_reason}");
///     }
///     Err(other) => return Err(other),
/// }
/// # Ok::<(), Error>(())
/// ```
pub trait PopcountBackend: Send + Sync {
    /// Bytes of the natural result type: the smallest of `u8`, `u16` and
    /// `u32` that holds the table's largest row count (1, 2 or 4). Results
    /// of a narrower type are [`Error::OutputTooNarrow`].
    ///
    /// ```
    /// use initret::{BitTable, PopcountBackend, cpu::CpuBackend};
    ///
    /// // 1-word rows: at most 32 set bits, a byte holds every count.
    /// let cpu = CpuBackend::builder().threads(1).build(&BitTable::seed(8))?;
    /// assert_eq!(cpu.result_bytes(), 1);
    /// let wide = BitTable::from_rows(9, vec![u32::MAX; 9])?; // one row of 288 bits
    /// assert_eq!(CpuBackend::builder().threads(1).build(&wide)?.result_bytes(), 2);
    /// # Ok::<(), initret::Error>(())
    /// ```
    fn result_bytes(&self) -> usize;

    /// Writes the popcount of row `queries[i]` into `out[i]` for every `i`,
    /// for queries of any [`QueryIndex`] type (`u32`, `u64`, `i64`) and
    /// results of any [`CountWord`] type (`u8`, `u16`, `u32`) that holds
    /// the table's counts: the lookup method a backend implements.
    ///
    /// The CPU backend reads every query type in place and writes every
    /// result type directly; the GPU backend, whose shaders have no 64-bit
    /// integers, narrows `u64` and `i64` batches on the host after the same
    /// range check, and narrows its `u32` results while copying them out of
    /// the read-back buffer.
    ///
    /// ```
    /// use initret::{BitTable, Error, PopcountBackend, QueryIndex, cpu::CpuBackend};
    ///
    /// fn total<Q: QueryIndex>(backend: &impl PopcountBackend, queries: &[Q]) -> Result<u32, Error> {
    ///     let mut out = vec![0u8; queries.len()];
    ///     backend.popcount_indices_into(queries, &mut out)?;
    ///     Ok(out.iter().map(|&c| u32::from(c)).sum())
    /// }
    ///
    /// let cpu = CpuBackend::builder().threads(1).build(&BitTable::seed(8))?;
    /// assert_eq!(total(&cpu, &[7u32, 3])?, 5);
    /// assert_eq!(total(&cpu, &[7u64, 3])?, 5);
    /// assert_eq!(total(&cpu, &[7i64, 3])?, 5);
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::OutputLength`] when the lengths differ, and
    /// [`Error::OutputTooNarrow`] when `R` is narrower than
    /// [`PopcountBackend::result_bytes`] (both before any work);
    /// [`Error::IndexOutOfRange`] naming the lowest position holding a
    /// negative index or one `>= rows`, and its value (`out` is then only
    /// partly written); [`Error::ConcurrentModification`] when another
    /// thread rewrote that position meanwhile; and whatever the backend's
    /// device can fail with ([`Error::DeviceLost`], [`Error::GpuTimeout`],
    /// [`Error::Gpu`]).
    fn popcount_indices_into<Q: QueryIndex, R: CountWord>(
        &self,
        queries: &[Q],
        out: &mut [R],
    ) -> Result<(), Error>;

    /// The popcount of each queried row, in query order, as `R`: for
    /// example the natural result type ([`PopcountBackend::result_bytes`]).
    ///
    /// ```
    /// use initret::{BitTable, Error, PopcountBackend, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::builder().threads(1).build(&BitTable::seed(8))?;
    /// assert_eq!(cpu.popcount_as::<_, u8>(&[7i64, 0, 3])?, vec![3u8, 0, 2]);
    /// assert_eq!(cpu.popcount_as::<_, u16>(&[7u32])?, vec![3u16]);
    /// let wide = CpuBackend::builder()
    ///     .threads(1)
    ///     .build_with_counts(initret::arch::CountTable::from_counts(&[300]))?;
    /// assert!(matches!(
    ///     wide.popcount_as::<_, u8>(&[0u32]),
    ///     Err(Error::OutputTooNarrow { output_bytes: 1, count_bytes: 2 })
    /// ));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`].
    fn popcount_as<Q: QueryIndex, R: CountWord>(&self, queries: &[Q]) -> Result<Vec<R>, Error> {
        let mut out = vec![R::ZERO; queries.len()];
        self.popcount_indices_into(queries, &mut out)?;
        Ok(out)
    }

    /// [`PopcountBackend::popcount_indices_into`] for `u32` queries.
    ///
    /// ```
    /// use initret::{BitTable, Error, PopcountBackend, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::builder().threads(1).build(&BitTable::seed(4))?;
    /// let mut out = [0; 2];
    /// cpu.popcount_into(&[3, 1], &mut out)?;
    /// assert_eq!(out, [2, 1]);
    /// assert!(matches!(
    ///     cpu.popcount_into(&[1, 9], &mut out),
    ///     Err(Error::IndexOutOfRange { position: 1, index: 9, rows: 4 })
    /// ));
    /// assert!(matches!(cpu.popcount_into(&[1], &mut out), Err(Error::OutputLength { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`].
    fn popcount_into(&self, queries: &[u32], out: &mut [u32]) -> Result<(), Error> {
        self.popcount_indices_into(queries, out)
    }

    /// [`PopcountBackend::popcount_indices_into`] for `u64` queries: a
    /// value `>= rows` is [`Error::IndexOutOfRange`] naming the lowest
    /// offending position and the value.
    ///
    /// ```
    /// use initret::{BitTable, Error, PopcountBackend, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::builder().threads(1).build(&BitTable::seed(8))?;
    /// let mut out = [0; 2];
    /// cpu.popcount_u64_into(&[7, 5], &mut out)?;
    /// assert_eq!(out, [3, 2]);
    /// assert!(matches!(
    ///     cpu.popcount_u64_into(&[8, u64::MAX], &mut out),
    ///     Err(Error::IndexOutOfRange { position: 0, index: 8, rows: 8 })
    /// ));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`].
    fn popcount_u64_into(&self, queries: &[u64], out: &mut [u32]) -> Result<(), Error> {
        self.popcount_indices_into(queries, out)
    }

    /// [`PopcountBackend::popcount_indices_into`] for `i64` queries
    /// (numpy's default integer): a negative value or one `>= rows` is
    /// [`Error::IndexOutOfRange`] naming the lowest offending position and
    /// the value.
    ///
    /// ```
    /// use initret::{BitTable, Error, PopcountBackend, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::builder().threads(1).build(&BitTable::seed(8))?;
    /// let mut out = [0; 3];
    /// cpu.popcount_i64_into(&[5, 7, 0], &mut out)?;
    /// assert_eq!(out, [2, 3, 0]);
    /// assert!(matches!(
    ///     cpu.popcount_i64_into(&[7, i64::MIN, -1], &mut out),
    ///     Err(Error::IndexOutOfRange { position: 1, index, rows: 8 }) if index == i128::from(i64::MIN)
    /// ));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`].
    fn popcount_i64_into(&self, queries: &[i64], out: &mut [u32]) -> Result<(), Error> {
        self.popcount_indices_into(queries, out)
    }

    /// The popcount of row `q` for each `u32` query `q`, in order.
    ///
    /// ```
    /// use initret::{BitTable, PopcountBackend, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::builder().threads(1).build(&BitTable::seed(8))?;
    /// assert_eq!(cpu.popcount(&[7, 0, 3])?, vec![3, 0, 2]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_indices_into`].
    fn popcount(&self, queries: &[u32]) -> Result<Vec<u32>, Error> {
        let mut out = vec![0; queries.len()];
        self.popcount_indices_into(queries, &mut out)?;
        Ok(out)
    }

    /// [`PopcountBackend::popcount`] for `u64` queries.
    ///
    /// ```
    /// use initret::{BitTable, PopcountBackend, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::builder().threads(1).build(&BitTable::seed(8))?;
    /// assert_eq!(cpu.popcount_u64(&[7, 0, 3])?, vec![3, 0, 2]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_u64_into`].
    fn popcount_u64(&self, queries: &[u64]) -> Result<Vec<u32>, Error> {
        let mut out = vec![0; queries.len()];
        self.popcount_indices_into(queries, &mut out)?;
        Ok(out)
    }

    /// [`PopcountBackend::popcount`] for `i64` queries.
    ///
    /// ```
    /// use initret::{BitTable, PopcountBackend, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::builder().threads(1).build(&BitTable::seed(8))?;
    /// assert_eq!(cpu.popcount_i64(&[7, 0, 3])?, vec![3, 0, 2]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_i64_into`].
    fn popcount_i64(&self, queries: &[i64]) -> Result<Vec<u32>, Error> {
        let mut out = vec![0; queries.len()];
        self.popcount_indices_into(queries, &mut out)?;
        Ok(out)
    }
}
