//! [`PopcountBackend`]: the one interface a lookup backend implements, so
//! that code can be written once over any of them.
//!
//! As with rayon's `ParallelIterator`, a backend implements one method,
//! generic over the query type ([`PopcountBackend::popcount_indices_into`]),
//! and every typed convenience (`popcount_into`, `popcount_u64`, ...) is a
//! default method written here once, on top of it.

use crate::{Error, QueryIndex};

/// Popcount lookups into a table the backend placed once, at build.
///
/// Implemented by [`CpuBackend`](crate::cpu::CpuBackend),
/// [`GpuBackend`](crate::gpu::GpuBackend) (including the stand-in of a
/// build without the `gpu` feature, which has no values) and
/// [`Dispatcher`](crate::Dispatcher). A backend implements only
/// [`PopcountBackend::popcount_indices_into`]; the other methods are
/// provided on top of it. Bring the trait into scope to call them on a
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
    /// Writes the popcount of row `queries[i]` into `out[i]` for every `i`,
    /// for queries of any [`QueryIndex`] type (`u32`, `u64`, `i64`): the
    /// one method a backend implements.
    ///
    /// The CPU backend reads every query type in place; the GPU backend,
    /// whose shaders have no 64-bit integers, narrows `u64` and `i64`
    /// batches on the host after the same range check.
    ///
    /// ```
    /// use initret::{BitTable, Error, PopcountBackend, QueryIndex, cpu::CpuBackend};
    ///
    /// fn total<Q: QueryIndex>(backend: &impl PopcountBackend, queries: &[Q]) -> Result<u32, Error> {
    ///     let mut out = vec![0; queries.len()];
    ///     backend.popcount_indices_into(queries, &mut out)?;
    ///     Ok(out.iter().sum())
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
    /// [`Error::OutputLength`] when the lengths differ (before any work);
    /// [`Error::IndexOutOfRange`] naming the lowest position holding a
    /// negative index or one `>= rows`, and its value (`out` is then only
    /// partly written); [`Error::ConcurrentModification`] when another
    /// thread rewrote that position meanwhile; and whatever the backend's
    /// device can fail with ([`Error::DeviceLost`], [`Error::GpuTimeout`],
    /// [`Error::Gpu`]).
    fn popcount_indices_into<Q: QueryIndex>(
        &self,
        queries: &[Q],
        out: &mut [u32],
    ) -> Result<(), Error>;

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
