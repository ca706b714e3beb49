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
//! * the methods of [`PopcountBackend`](crate::PopcountBackend)
//!   (`popcount`, `popcount_into`, ...): end to end, any batch size; large
//!   batches stream through a ring of reused buffer sets so that upload,
//!   compute and read-back overlap.
//! * [`GpuBackend::upload_batch`], [`DeviceLookup::popcount_resident`],
//!   [`GpuBackend::read_back`]: queries and counts stay on the device until
//!   asked for.
//! * [`DeviceLookup::popcount_timed`]: upload, dispatch and read-back timed
//!   separately.
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
//! How the wgpu backend is laid out: owned parts, each file depending only
//! on the ones listed before it, never back.
//!
//! | file | owns |
//! |---|---|
//! | `error.rs`, `summary.rs`, `timings.rs`, `skip.rs` | plain data and the tests' skip rule, with or without wgpu |
//! | `fault.rs` | error scopes, device loss, bounded waits (knows only the wgpu device) |
//! | `device.rs` | the device and queue, its limits, buffers, pipelines, the dispatch grid |
//! | `adapter.rs` | adapter enumeration and choice |
//! | `staging.rs` | a mappable buffer and its map state: the one map-and-read routine |
//! | `counts.rs` | the per-row counts: their packing and the counting pass |
//! | `lookup.rs` | the lookup pipeline over the counts, one dispatch's buffers |
//! | `stream.rs` | the streaming ring and its slots |
//! | `resident.rs` | device-resident batches and their segments |
//! | `measure.rs` | the bench's reference times |
//! | `backend.rs` | [`GpuBackend`], which owns one of each part behind its lock |
//!
//! `disabled.rs` stands in for all of them without the feature; the WGSL
//! is in `shaders/`.
//!
//! ```
//! use initret::{BitTable, Error, PopcountBackend, gpu::GpuBackend};
//!
//! let table = BitTable::seed(65535);
//! let gpu = match GpuBackend::new(&table) {
//!     Ok(gpu) => gpu,
//!     // No adapter, or a build without the `gpu` feature.
//!     Err(Error::GpuUnavailable(_reason)) => {
//! #       assert!(!initret::harness::gpu_required(), "{_reason}");
//!         return Ok(());
//!     }
//!     Err(other) => return Err(other),
//! };
//! let queries: Vec<u32> = (0..65535).collect();
//! let counts = gpu.popcount(&queries)?;
//! assert_eq!(counts.iter().map(|&c| u64::from(c)).sum::<u64>(), 524272);
//! # Ok::<(), Error>(())
//! ```

mod device_lookup;
mod error;
#[cfg(any(test, feature = "harness"))]
pub(crate) mod skip;
mod summary;
mod timings;

#[cfg(feature = "gpu")]
mod adapter;
#[cfg(feature = "gpu")]
mod backend;
#[cfg(feature = "gpu")]
mod counts;
#[cfg(feature = "gpu")]
mod device;
#[cfg(feature = "gpu")]
mod fault;
#[cfg(feature = "gpu")]
mod lookup;
#[cfg(all(feature = "gpu", feature = "harness"))]
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

pub use device_lookup::DeviceLookup;
pub use error::GpuError;
pub use summary::{ADAPTER_ENV, AdapterSummary};
pub use timings::{GpuTimings, MAX_TIMEOUT};

#[cfg(feature = "gpu")]
pub use adapter::adapters;
#[cfg(feature = "gpu")]
pub use backend::GpuBackend;
#[cfg(feature = "gpu")]
pub use resident::{GpuBatch, GpuCounts};

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
