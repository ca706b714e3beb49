//! [`GpuBackend`]'s lookups for `u64` and `i64` queries. WGSL has no 64-bit
//! integers, so these batches are narrowed to `u32` on the host, in one
//! pass that also range checks them (the lowest position holding a negative
//! value or one `>= rows` is [`Error::IndexOutOfRange`], before anything
//! reaches the device), and then take the `u32` path.

use super::backend::GpuBackend;
use crate::query::narrow_checked;
use crate::{Error, QueryIndex};

impl GpuBackend {
    /// [`GpuBackend::popcount_into`] for `u64` queries, narrowed to `u32`
    /// on the host first (the shaders have no 64-bit integers). A value
    /// `>= rows` is [`Error::IndexOutOfRange`] naming the lowest such
    /// position and the value; nothing is then sent to the device.
    ///
    /// ```
    /// use initret::{BitTable, Error, gpu::GpuBackend};
    ///
    /// match GpuBackend::new(&BitTable::seed(8)) {
    ///     Ok(gpu) => {
    ///         let mut out = [0; 2];
    ///         gpu.popcount_u64_into(&[7, 5], &mut out)?;
    ///         assert_eq!(out, [3, 2]);
    ///         assert!(matches!(
    ///             gpu.popcount_u64_into(&[1, u64::MAX], &mut out),
    ///             Err(Error::IndexOutOfRange { position: 1, index, rows: 8 }) if index == i128::from(u64::MAX)
    ///         ));
    ///     }
    ///     Err(Error::GpuUnavailable(_reason)) => {
    /// #       assert!(!initret::harness::gpu_required(), "{_reason}");
    ///     }
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok::<(), Error>(())
    /// ```
    pub fn popcount_u64_into(&self, queries: &[u64], out: &mut [u32]) -> Result<(), Error> {
        self.popcount_indices_into(queries, out)
    }

    /// [`GpuBackend::popcount_into`] for `i64` queries, narrowed and range
    /// checked on the host as [`GpuBackend::popcount_u64_into`] does; a
    /// negative value is out of range too.
    ///
    /// ```
    /// use initret::{BitTable, Error, gpu::GpuBackend};
    ///
    /// match GpuBackend::new(&BitTable::seed(8)) {
    ///     Ok(gpu) => {
    ///         assert_eq!(gpu.popcount_i64(&[7, 5])?, vec![3, 2]);
    ///         assert!(matches!(
    ///             gpu.popcount_i64(&[1, 2, -1]),
    ///             Err(Error::IndexOutOfRange { position: 2, index: -1, rows: 8 })
    ///         ));
    ///     }
    ///     Err(Error::GpuUnavailable(_reason)) => {
    /// #       assert!(!initret::harness::gpu_required(), "{_reason}");
    ///     }
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok::<(), Error>(())
    /// ```
    pub fn popcount_i64_into(&self, queries: &[i64], out: &mut [u32]) -> Result<(), Error> {
        self.popcount_indices_into(queries, out)
    }

    /// The popcount of row `q` for each `u64` query `q`, in order; as
    /// [`GpuBackend::popcount_u64_into`].
    pub fn popcount_u64(&self, queries: &[u64]) -> Result<Vec<u32>, Error> {
        let mut out = vec![0; queries.len()];
        self.popcount_indices_into(queries, &mut out)?;
        Ok(out)
    }

    /// The popcount of row `q` for each `i64` query `q`, in order; as
    /// [`GpuBackend::popcount_i64_into`].
    pub fn popcount_i64(&self, queries: &[i64]) -> Result<Vec<u32>, Error> {
        let mut out = vec![0; queries.len()];
        self.popcount_indices_into(queries, &mut out)?;
        Ok(out)
    }

    /// [`GpuBackend::popcount_into`] for queries of any [`QueryIndex`] type:
    /// a `u32` batch goes to the device as it is, a `u64` or `i64` one is
    /// narrowed and range checked on the host first.
    pub fn popcount_indices_into<Q: QueryIndex>(
        &self,
        queries: &[Q],
        out: &mut [u32],
    ) -> Result<(), Error> {
        Error::check_output_len(queries.len(), out.len())?;
        let narrow = narrow_checked(queries, self.rows())?;
        self.popcount_into(&narrow, out)
    }
}
