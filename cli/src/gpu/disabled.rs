//! The stub used without the `gpu` feature: no adapters, no rows, and a note
//! saying why.

use initret::BitTable;

use super::GpuPointRows;
use crate::bench::{Point, References};
use crate::error::CliError;
use crate::seed::SeedRow;

const NOT_BUILT: &str = "not built (the `gpu` feature is off)";

/// The adapters wgpu finds, or why there are none: always "not built" here.
///
/// ```
/// assert!(initret_cli::gpu::adapters().unwrap_err().contains("not built"));
/// ```
pub fn adapters() -> Result<Vec<String>, String> {
    Err(NOT_BUILT.into())
}

/// The GPU rows of the main job: none here, and the note saying so.
///
/// ```
/// let (rows, note) = initret_cli::gpu::seed_rows(&initret::BitTable::seed(4), &[1])?;
/// assert!(rows.is_empty() && note.contains("not built"));
/// # Ok::<(), initret_cli::error::CliError>(())
/// ```
pub fn seed_rows(_cache: &BitTable, _items: &[u32]) -> Result<(Vec<SeedRow>, String), CliError> {
    Ok((Vec::new(), format!("gpu: {NOT_BUILT}")))
}

/// The sweep's GPU backend: never built here.
#[derive(Default)]
pub struct SweepGpu {
    reported: bool,
}

impl SweepGpu {
    /// No rows, and the reason once.
    ///
    /// ```
    /// use initret_cli::bench::{Point, PointSpec, References};
    ///
    /// let spec = PointSpec { rows: 4, words_per_row: 1, queries: 2, threads: 1, baselines: false };
    /// let refs = References { memcpy_seconds: 1.0, naive_rayon_seconds: 1.0 };
    /// let mut gpu = initret_cli::gpu::SweepGpu::default();
    /// let point = Point::new(&spec)?;
    /// assert!(gpu.measure(&point, refs)?.note.is_some());
    /// assert!(gpu.measure(&point, refs)?.note.is_none());
    /// # Ok::<(), initret_cli::error::CliError>(())
    /// ```
    pub fn measure(
        &mut self,
        _point: &Point,
        _references: References,
    ) -> Result<GpuPointRows, CliError> {
        let note = (!std::mem::replace(&mut self.reported, true))
            .then(|| format!("no GPU rows: {NOT_BUILT}"));
        Ok(GpuPointRows {
            rows: Vec::new(),
            note,
        })
    }
}
