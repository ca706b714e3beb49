//! [`DeviceLookup`]: the lookups only a GPU backend has: timed, and on
//! batches that stay on the device. A trait, so that the stand-in backend of
//! a build without the `gpu` feature implements the same methods without
//! writing them out again.

use super::{GpuBatch, GpuCounts, GpuTimings};
use crate::Error;

/// The lookups only a GPU backend has, beside [`crate::PopcountBackend`]'s.
/// Implemented by [`GpuBackend`](super::GpuBackend) (and by its stand-in
/// without the `gpu` feature, which can never be built).
pub trait DeviceLookup {
    /// Like [`PopcountBackend::popcount_into`](crate::PopcountBackend::popcount_into), but each phase (upload, dispatch,
    /// read-back) runs to completion before the next starts, and its
    /// wall-clock time is returned. Batches larger than one chunk add up the
    /// phases of every chunk.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # use initret::gpu::DeviceLookup;
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
    /// let mut out = [0u32; 2];
    /// let timings = gpu.popcount_timed(&[7, 3], &mut out)?;
    /// assert_eq!(out, [3, 2]);
    /// assert!(timings.total() >= timings.dispatch);
    /// # Ok(())
    /// # }
    /// ```
    fn popcount_timed(&self, queries: &[u32], out: &mut [u32]) -> Result<GpuTimings, Error>;

    /// Runs the lookups of `batch` into new device-resident counts and waits
    /// for the GPU to finish; nothing is copied to the host.
    ///
    /// Out-of-range indices are not reported here but by
    /// [`GpuBackend::read_back`](super::GpuBackend::read_back), which reads the shader's flag together with
    /// the counts.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # use initret::gpu::DeviceLookup;
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
    /// let batch = gpu.upload_batch(&[1, 9])?;
    /// let counts = gpu.popcount_resident(&batch)?; // succeeds...
    /// assert!(gpu.read_back(&counts).is_err()); // ...index 9 is reported here
    /// # Ok(())
    /// # }
    /// ```
    fn popcount_resident(&self, batch: &GpuBatch) -> Result<GpuCounts, Error>;

    /// Like [`DeviceLookup::popcount_resident`], writing into existing `counts`.
    /// When `counts` last held this same batch, no buffer or bind group is
    /// created; otherwise they are replaced to fit `batch`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # use initret::gpu::DeviceLookup;
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
    /// let batch = gpu.upload_batch(&[7, 6])?;
    /// let mut counts = gpu.popcount_resident(&batch)?;
    /// for _ in 0..3 {
    ///     gpu.popcount_resident_into(&batch, &mut counts)?;
    /// }
    /// assert_eq!(gpu.read_back(&counts)?, vec![3, 2]);
    /// # Ok(())
    /// # }
    /// ```
    fn popcount_resident_into(&self, batch: &GpuBatch, counts: &mut GpuCounts)
    -> Result<(), Error>;
}
