//! [`PopcountBackend`]: the one interface a lookup backend implements, so
//! that callers can hold any of them (candle's `BackendDevice` is the
//! model, kept to what every backend can do).

use crate::Error;

/// Popcount lookups into a table the backend placed once, at build.
///
/// Implemented by [`CpuBackend`](crate::cpu::CpuBackend) and
/// [`GpuBackend`](crate::gpu::GpuBackend), including the
/// stand-in of a build without the `gpu` feature (which has no values, so
/// its implementation is never called).
///
/// ```
/// use initret::{BitTable, Error, PopcountBackend};
/// use initret::gpu::GpuBackend;
///
/// /// The sum of the counts, on whatever backend it is given.
/// fn total(backend: &dyn PopcountBackend, queries: &[u32]) -> Result<u64, Error> {
///     Ok(backend.popcount(queries)?.iter().map(|&c| u64::from(c)).sum())
/// }
///
/// let table = BitTable::seed(65535);
/// let queries: Vec<u32> = (0..65535).collect();
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
    /// Writes the popcount of row `queries[i]` into `out[i]` for every `i`.
    ///
    /// # Errors
    ///
    /// [`Error::OutputLength`] when the lengths differ,
    /// [`Error::IndexOutOfRange`] naming the lowest offending position, and
    /// whatever the backend's device can fail with.
    fn popcount_into(&self, queries: &[u32], out: &mut [u32]) -> Result<(), Error>;

    /// [`PopcountBackend::popcount_into`] for `u64` queries: a value
    /// `>= rows` is [`Error::IndexOutOfRange`] naming the lowest offending
    /// position and the value. The CPU backend reads the 64-bit queries
    /// directly; the GPU one narrows them on the host (its shaders have no
    /// 64-bit integers).
    ///
    /// ```
    /// use initret::{BitTable, Error, PopcountBackend, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::new(&BitTable::seed(8), 1, None)?;
    /// let backend: &dyn PopcountBackend = &cpu;
    /// let mut out = [0; 2];
    /// backend.popcount_u64_into(&[7, 5], &mut out)?;
    /// assert_eq!(out, [3, 2]);
    /// assert!(matches!(
    ///     backend.popcount_u64_into(&[8, u64::MAX], &mut out),
    ///     Err(Error::IndexOutOfRange { position: 0, index: 8, rows: 8 })
    /// ));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_into`].
    fn popcount_u64_into(&self, queries: &[u64], out: &mut [u32]) -> Result<(), Error>;

    /// [`PopcountBackend::popcount_into`] for `i64` queries: a negative
    /// value or one `>= rows` is [`Error::IndexOutOfRange`] naming the
    /// lowest offending position and the value.
    ///
    /// ```
    /// use initret::{BitTable, Error, PopcountBackend, cpu::CpuBackend};
    ///
    /// let cpu = CpuBackend::new(&BitTable::seed(8), 1, None)?;
    /// let backend: &dyn PopcountBackend = &cpu;
    /// assert!(matches!(
    ///     backend.popcount_i64(&[7, i64::MIN, -1]),
    ///     Err(Error::IndexOutOfRange { position: 1, index, rows: 8 }) if index == i128::from(i64::MIN)
    /// ));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PopcountBackend::popcount_into`].
    fn popcount_i64_into(&self, queries: &[i64], out: &mut [u32]) -> Result<(), Error>;

    /// The popcount of row `q` for each query `q`, in order; same errors as
    /// [`PopcountBackend::popcount_into`].
    fn popcount(&self, queries: &[u32]) -> Result<Vec<u32>, Error> {
        let mut out = vec![0; queries.len()];
        self.popcount_into(queries, &mut out)?;
        Ok(out)
    }

    /// [`PopcountBackend::popcount`] for `u64` queries; errors as
    /// [`PopcountBackend::popcount_u64_into`].
    fn popcount_u64(&self, queries: &[u64]) -> Result<Vec<u32>, Error> {
        let mut out = vec![0; queries.len()];
        self.popcount_u64_into(queries, &mut out)?;
        Ok(out)
    }

    /// [`PopcountBackend::popcount`] for `i64` queries; errors as
    /// [`PopcountBackend::popcount_i64_into`].
    fn popcount_i64(&self, queries: &[i64]) -> Result<Vec<u32>, Error> {
        let mut out = vec![0; queries.len()];
        self.popcount_i64_into(queries, &mut out)?;
        Ok(out)
    }
}
