//! What initret's own tests, benchmarks, command and Python binding need
//! from inside the library, and users do not: deterministic data, the
//! tuning constants the tests aim at, the timing loop, the GPU's reference
//! transfer times and the tests' GPU skip rule.
//!
//! Only with the `harness` cargo feature, and hidden from the docs: none of
//! it is API, and any of it may change in any release. `initret-cli` and
//! `initret-python` enable the feature, and so do the library's own tests
//! (through a dev-dependency on itself).
//!
//! ```
//! use initret::harness::{random_queries, random_table};
//!
//! let table = random_table(100, 2, 7)?;
//! let queries = random_queries(1000, table.rows(), 1);
//! assert!(queries.iter().all(|&q| (q as usize) < table.rows()));
//! // Same seed, same data.
//! assert_eq!(queries, random_queries(1000, 100, 1));
//! # Ok::<(), initret::Error>(())
//! ```

use std::time::Duration;

use crate::Error;
use crate::gpu::GpuBackend;

pub use crate::gpu::skip::{REQUIRE_GPU_ENV, gpu_or_skip, gpu_required};
pub use crate::pool::python_chunk_len;
pub use crate::random::{SplitMix64, random_queries, random_table};
pub use crate::timing::best_run;

/// The most queries a measured inline limit can be
/// ([`SplitCalibration`](crate::cpu::SplitCalibration)): a CPU backend with
/// more than one worker and no limit given splits every longer batch
/// across its workers, so the tests aim batch sizes past it.
pub const LONGEST_INLINE_QUERIES: usize = crate::cpu::SPLIT_PROBE_QUERIES[1];

/// Batches of at least this many queries are written with streaming stores.
pub const STREAM_MIN_QUERIES: usize = crate::arch::STREAM_MIN_QUERIES;

/// Queries per timed run of the CPU kernel calibration.
pub const CALIBRATION_QUERIES: usize = crate::arch::CALIBRATION_QUERIES;

/// Timed runs per candidate kernel in the calibration.
pub const CALIBRATION_ROUNDS: usize = crate::arch::CALIBRATION_ROUNDS;

/// The prefetch distances (in queries) the kernels are offered with.
pub const PREFETCH_DISTANCES: [u16; 2] = crate::arch::PREFETCH_DISTANCES;

/// Time of a device-side buffer-to-buffer copy of `bytes` (rounded up to a
/// multiple of 4), best of a few runs after a warm-up: the least any pass
/// over that much device memory costs, the bench's reference for resident
/// lookups. Fails past 1 TiB.
///
/// ```no_run
/// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
/// let t = initret::harness::measure_device_copy(&gpu, 1 << 20)?;
/// assert!(t > std::time::Duration::ZERO);
/// assert!(initret::harness::measure_device_copy(&gpu, u64::MAX).is_err());
/// # Ok::<(), initret::Error>(())
/// ```
pub fn measure_device_copy(gpu: &GpuBackend, bytes: u64) -> Result<Duration, Error> {
    gpu.measure_device_copy(bytes)
}

/// Time of writing `up` bytes from host memory to the device and reading
/// `down` bytes back, best of a few runs after a warm-up: the bench's
/// reference for end-to-end lookups, which must move queries in (`4 ×
/// queries` bytes) and counts out (packed in the table's count type:
/// [`GpuBackend::result_bytes`](crate::PopcountBackend::result_bytes) per
/// query, rounded up to whole words). Fails past 1 TiB either way.
pub fn measure_transfer(gpu: &GpuBackend, up: u64, down: u64) -> Result<Duration, Error> {
    gpu.measure_transfer(up, down)
}
