//! The GPU side of the harness behind one interface, built or not: with the
//! `gpu` feature it measures `initret::gpu::GpuBackend`; without it, a
//! stub of the same shape says "not built" where the GPU rows would be, so
//! the rest of the CLI has no `cfg` arms.

#[cfg_attr(feature = "gpu", path = "gpu/enabled.rs")]
#[cfg_attr(not(feature = "gpu"), path = "gpu/disabled.rs")]
mod imp;

pub use imp::{SweepGpu, adapters, seed_rows};

use crate::bench::BenchRow;

/// What [`SweepGpu::measure`] gives for one sweep point: the GPU rows, and
/// a note to show once when there are none for this table (no adapter, a
/// table past the binding limit, a build without the `gpu` feature).
///
/// ```
/// let none = initret_cli::gpu::GpuPointRows::default();
/// assert!(none.rows.is_empty() && none.note.is_none());
/// ```
#[derive(Clone, Debug, Default)]
pub struct GpuPointRows {
    /// `gpu-end-to-end` and `gpu-resident`, when there is a GPU.
    pub rows: Vec<BenchRow>,
    /// Why there are no rows, the first time it happens for a table.
    pub note: Option<String>,
}

/// The `kernel` field of the GPU rows.
pub const GPU_KERNEL: &str = "gpu";
