//! The tests' one GPU-or-skip rule, shared by the crate's unit tests and,
//! through [`harness`](crate::harness), its integration tests.

use crate::Error;

/// The variable that turns a missing adapter into a test failure (CI on
/// lavapipe sets it to `1`).
pub const REQUIRE_GPU_ENV: &str = "INITRET_REQUIRE_GPU";

/// Whether `INITRET_REQUIRE_GPU=1` requires an adapter. A build without the
/// `gpu` feature never requires one: it cannot have one.
///
/// ```
/// assert!(initret::gpu::ENABLED || !initret::harness::gpu_required());
/// ```
pub fn gpu_required() -> bool {
    cfg!(feature = "gpu") && std::env::var(REQUIRE_GPU_ENV).as_deref() == Ok("1")
}

/// For tests: the built value, or `None` after printing why there is none
/// ([`Error::GpuUnavailable`]) when the GPU is not [required](gpu_required).
///
/// # Panics
///
/// On any other error, and on [`Error::GpuUnavailable`] when the GPU is
/// required: in a test either is a failure.
///
/// ```
/// use initret::{BitTable, PopcountBackend, gpu::GpuBackend, harness::gpu_or_skip};
///
/// if let Some(gpu) = gpu_or_skip(GpuBackend::new(&BitTable::seed(16))) {
///     assert_eq!(gpu.popcount(&[15]).unwrap(), vec![4]);
/// }
/// ```
pub fn gpu_or_skip<T>(built: Result<T, Error>) -> Option<T> {
    match built {
        Ok(value) => Some(value),
        Err(Error::GpuUnavailable(reason)) if !gpu_required() => {
            eprintln!("skipping the GPU backend: {reason}");
            None
        }
        Err(error) => panic!("building the GPU backend failed: {error}"),
    }
}
