//! The GPU backend: popcount lookups into a [`BitTable`](crate::BitTable)
//! whose per-row counts live on the GPU.
//!
//! [`GpuBackend::new`] does all the expensive work once: it picks an adapter
//! (see [`adapters`] and the `INITRET_ADAPTER` variable), opens a device with
//! the adapter's own limits, streams the table through a counting pass that
//! leaves one count per row on the device (the GPU's initializer, like the
//! CPU workers' count table) and compiles the lookup pipeline. Each call
//! then only moves queries and counts:
//!
//! * [`GpuBackend::popcount`] / [`GpuBackend::popcount_into`]: end to end,
//!   any batch size; large batches stream through a ring of reused buffer
//!   sets so that upload, compute and read-back overlap.
//! * [`GpuBackend::upload_batch`], [`GpuBackend::popcount_resident`],
//!   [`GpuBackend::read_back`]: queries and counts stay on the device until
//!   asked for.
//! * [`GpuBackend::popcount_timed`]: upload, dispatch and read-back timed
//!   separately; [`GpuBackend::measure_device_copy`] and
//!   [`GpuBackend::measure_transfer`] are the bench's reference times.
//!
//! An index `>= rows` makes the call fail with
//! [`Error::IndexOutOfRange`](crate::Error::IndexOutOfRange) naming the
//! lowest offending position: the shader records it with an `atomicMin`, so
//! no separate pass over the queries is needed.
//!
//! Without the `gpu` cargo feature this module is still here, with the same
//! types: [`GpuBackend::new`] then fails with
//! [`Error::GpuUnavailable`](crate::Error::GpuUnavailable), [`adapters`] is
//! empty and [`ENABLED`] is `false`, so callers need no `cfg` of their own.
//!
//! How the wgpu backend is laid out, one concern per file: `device.rs`
//! (device setup, count layout), `fault.rs` (error scopes, device loss,
//! bounded waits), `staging.rs` (the one map-and-read routine), `derive.rs`
//! (the counting pass), `lookup.rs` (the lookup dispatch), `stream.rs` (the
//! streaming ring), `resident.rs` (resident batches), `measure.rs` (bench
//! references), `backend.rs` (the public API); `disabled.rs` stands in for
//! all of them without the feature.
//!
//! ```
//! use initret::{BitTable, Error, gpu::GpuBackend};
//!
//! let table = BitTable::seed(65535);
//! let gpu = match GpuBackend::new(&table) {
//!     Ok(gpu) => gpu,
//!     // No adapter here: fine, unless the GPU is required (CI on lavapipe).
//!     Err(Error::GpuUnavailable(_))
//!         if !initret::gpu::ENABLED
//!             || std::env::var("INITRET_REQUIRE_GPU").as_deref() != Ok("1") =>
//!     {
//!         return Ok(());
//!     }
//!     Err(error) => return Err(error),
//! };
//! let queries: Vec<u32> = (0..65535).collect();
//! let counts = gpu.popcount(&queries)?;
//! assert_eq!(counts.iter().map(|&c| u64::from(c)).sum::<u64>(), 524272);
//! # Ok::<(), Error>(())
//! ```

use std::time::Duration;

mod error;
mod summary;

#[cfg(feature = "gpu")]
mod adapter;
#[cfg(feature = "gpu")]
mod backend;
#[cfg(feature = "gpu")]
mod derive;
#[cfg(feature = "gpu")]
mod device;
#[cfg(feature = "gpu")]
mod fault;
#[cfg(feature = "gpu")]
mod lookup;
#[cfg(feature = "gpu")]
mod measure;
#[cfg(feature = "gpu")]
mod resident;
#[cfg(feature = "gpu")]
mod staging;
#[cfg(feature = "gpu")]
mod stream;

#[cfg(not(feature = "gpu"))]
mod disabled;

#[cfg(all(test, feature = "gpu"))]
mod tests;

pub use error::GpuError;
pub use summary::{ADAPTER_ENV, AdapterSummary};

#[cfg(feature = "gpu")]
pub use adapter::adapters;
#[cfg(feature = "gpu")]
pub use backend::{GpuBackend, GpuBatch, GpuCounts};

#[cfg(not(feature = "gpu"))]
pub use disabled::{GpuBackend, GpuBatch, GpuCounts, adapters};

/// Whether this build has the wgpu backend (the `gpu` cargo feature). When
/// `false`, [`GpuBackend::new`] always fails with
/// [`Error::GpuUnavailable`](crate::Error::GpuUnavailable).
///
/// ```
/// // A build without the backend lists no adapters.
/// assert!(initret::gpu::ENABLED || initret::gpu::adapters().is_empty());
/// ```
pub const ENABLED: bool = cfg!(feature = "gpu");

/// The longest wait [`GpuBackend::set_timeout`] accepts (one day): a
/// bound that still fits any deadline arithmetic.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Wall-clock time of each phase of one [`GpuBackend::popcount_timed`] call.
///
/// Each phase ends with a wait for the GPU, so the phases do not overlap
/// (unlike [`GpuBackend::popcount`], which overlaps them on large batches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuTimings {
    /// Writing the queries (and the small per-dispatch parameters) into the
    /// device's query buffer, until the device has them.
    pub upload: Duration,
    /// Running the lookup shader, from submit until the GPU has finished.
    pub dispatch: Duration,
    /// Copying the counts to a mappable buffer, mapping it and copying them
    /// into the caller's slice.
    pub readback: Duration,
}

impl GpuTimings {
    /// Sum of the three phases.
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = initret::gpu::GpuTimings {
    ///     upload: Duration::from_millis(1),
    ///     dispatch: Duration::from_millis(2),
    ///     readback: Duration::from_millis(3),
    /// };
    /// assert_eq!(t.total(), Duration::from_millis(6));
    /// ```
    pub fn total(&self) -> Duration {
        self.upload + self.dispatch + self.readback
    }
}

/// The crate's one GPU-or-skip rule for its unit tests: the backend, or
/// `None` after printing why there is none, unless `INITRET_REQUIRE_GPU=1`
/// (CI on lavapipe) makes a missing adapter a failure. Any other error is
/// a failure everywhere.
#[cfg(test)]
pub(crate) fn gpu_or_skip<T>(built: Result<T, crate::Error>) -> Option<T> {
    match built {
        Ok(value) => Some(value),
        Err(crate::Error::GpuUnavailable(reason))
            if !ENABLED || std::env::var("INITRET_REQUIRE_GPU").as_deref() != Ok("1") =>
        {
            eprintln!("skipping: no GPU: {reason}");
            None
        }
        Err(error) => panic!("building the GPU backend failed: {error}"),
    }
}
