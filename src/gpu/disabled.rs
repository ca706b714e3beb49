//! The GPU backend of a build without the `gpu` feature (candle's
//! `dummy_cuda_backend.rs` is the model): the same types, so that the
//! dispatcher and the CLI need no `cfg` arms, but no value of them can be
//! made. [`GpuBackend::new`] fails with [`Error::GpuUnavailable`], and every
//! method of a value that cannot exist is `match self.never {}`: no panics,
//! no unreachable code paths the compiler cannot see through.

use std::convert::Infallible;
use std::fmt;
use std::time::Duration;

use super::summary::AdapterSummary;
use super::timings::GpuTimings;
use crate::arch::{CountTable, CountWord};
use crate::{BitTable, Error, PopcountBackend, QueryIndex};

const WHY: &str = "built without the gpu feature";

/// No adapters: this build has no GPU backend.
pub fn adapters() -> Vec<AdapterSummary> {
    Vec::new()
}

/// The GPU backend's type in a build without the `gpu` feature; it has no
/// values, so [`GpuBackend::new`] always fails.
pub struct GpuBackend {
    never: Infallible,
}

/// A device-resident batch; no values without the `gpu` feature.
pub struct GpuBatch {
    never: Infallible,
}

/// Device-resident counts; no values without the `gpu` feature.
pub struct GpuCounts {
    never: Infallible,
}

impl fmt::Debug for GpuBackend {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.never {}
    }
}

impl fmt::Debug for GpuBatch {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.never {}
    }
}

impl fmt::Debug for GpuCounts {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.never {}
    }
}

impl GpuBatch {
    /// Number of queries in the batch.
    pub fn len(&self) -> usize {
        match self.never {}
    }

    /// Whether the batch has no queries.
    pub fn is_empty(&self) -> bool {
        match self.never {}
    }
}

impl GpuCounts {
    /// Number of counts.
    pub fn len(&self) -> usize {
        match self.never {}
    }

    /// Whether there are no counts.
    pub fn is_empty(&self) -> bool {
        match self.never {}
    }
}

impl GpuBackend {
    /// Always [`Error::GpuUnavailable`]: this build has no GPU backend.
    pub fn new(_table: &BitTable) -> Result<GpuBackend, Error> {
        Err(Error::GpuUnavailable(WHY.into()))
    }

    /// Always [`Error::GpuUnavailable`]: this build has no GPU backend.
    pub fn from_counts(_counts: &CountTable, _words_per_row: usize) -> Result<GpuBackend, Error> {
        Err(Error::GpuUnavailable(WHY.into()))
    }

    /// The adapter this backend runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        match self.never {}
    }

    /// Whether the adapter is a CPU implementation.
    pub fn is_software(&self) -> bool {
        match self.never {}
    }

    /// How long one wait for the GPU may block.
    pub fn timeout(&self) -> Duration {
        match self.never {}
    }

    /// Sets the wait limit.
    pub fn set_timeout(&self, _timeout: Duration) {
        match self.never {}
    }

    /// Number of rows of the table.
    pub fn rows(&self) -> usize {
        match self.never {}
    }

    /// Uploads a batch of queries to the device.
    pub fn upload_batch(&self, _queries: &[u32]) -> Result<GpuBatch, Error> {
        match self.never {}
    }

    /// Copies resident counts to the host.
    pub fn read_back(&self, _counts: &GpuCounts) -> Result<Vec<u32>, Error> {
        match self.never {}
    }

    /// Time of a device-side copy of `bytes`.
    #[cfg(feature = "harness")]
    pub(crate) fn measure_device_copy(&self, _bytes: u64) -> Result<Duration, Error> {
        match self.never {}
    }

    /// Time of moving `up` bytes to the device and `down` bytes back.
    #[cfg(feature = "harness")]
    pub(crate) fn measure_transfer(&self, _up: u64, _down: u64) -> Result<Duration, Error> {
        match self.never {}
    }

    /// The wgpu backend's test hook, so crate tests compile either way.
    #[cfg(test)]
    pub(crate) fn destroy_device(&self) {
        match self.never {}
    }
}

impl PopcountBackend for GpuBackend {
    fn result_bytes(&self) -> usize {
        match self.never {}
    }

    fn popcount_indices_into<Q: QueryIndex, R: CountWord>(
        &self,
        _queries: &[Q],
        _out: &mut [R],
    ) -> Result<(), Error> {
        match self.never {}
    }
}

impl super::DeviceLookup for GpuBackend {
    fn popcount_timed(&self, _queries: &[u32], _out: &mut [u32]) -> Result<GpuTimings, Error> {
        match self.never {}
    }

    fn popcount_resident(&self, _batch: &GpuBatch) -> Result<GpuCounts, Error> {
        match self.never {}
    }

    fn popcount_resident_into(
        &self,
        _batch: &GpuBatch,
        _counts: &mut GpuCounts,
    ) -> Result<(), Error> {
        match self.never {}
    }
}
