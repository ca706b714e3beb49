//! The GPU side of the sweep, and the adapter list `initret info` prints.
//! (The main job's GPU rows are the main job's, in `seed.rs`.) Without the
//! `gpu` feature the library's stub backend fails to build with "built
//! without the gpu feature", which becomes a note where the rows would be;
//! nothing here needs a `cfg`.

use initret::PopcountBackend;
use initret::gpu::{DeviceLookup, GpuBackend};

use crate::bench::{BenchRow, Point, References, best_time};
use crate::error::CliError;

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

/// The adapters wgpu finds, one line each (possibly none), or why there
/// are none to look for (a build without the `gpu` feature).
///
/// ```
/// assert_eq!(initret_cli::gpu::adapters().is_ok(), initret::gpu::ENABLED);
/// ```
pub fn adapters() -> Result<Vec<String>, String> {
    if !initret::gpu::ENABLED {
        return Err("not built (the `gpu` feature is off)".into());
    }
    Ok(initret::gpu::adapters()
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// The sweep's GPU backend, rebuilt (the table re-uploaded) only when the
/// table changes, and the last reason there was none.
#[derive(Debug, Default)]
pub struct SweepGpu {
    built: Option<((usize, usize), GpuBackend)>,
    last_note: Option<String>,
}

impl SweepGpu {
    /// Measures the GPU at one [`Point`]: `gpu-end-to-end` (queries up,
    /// counts down, [`GpuBackend::popcount_into`]) with `ratio_to_transfer`
    /// against a host→device copy of the queries plus a device→host copy of
    /// the counts in the table's count type (as the device packs them), and
    /// `gpu-resident` (queries and counts stay on the device) with
    /// `ratio_to_device_copy` against a device buffer copy of the same
    /// bytes; both references are measured now, on the same device.
    /// `references` are this point's CPU references. Results are checked
    /// against the point's expected counts. Without a usable GPU for this
    /// table there are no rows, and a note when the reason is new.
    ///
    /// ```
    /// use initret_cli::bench::{Point, PointSpec, References};
    ///
    /// let spec = PointSpec { rows: 64, words_per_row: 1, queries: 256, threads: 1, baselines: false, placement: initret::Placement::PerDomain };
    /// let point = Point::new(&spec)?;
    /// let references = References { memcpy_seconds: 1e-6, naive_rayon_seconds: 1e-5 };
    /// let mut sweep = initret_cli::gpu::SweepGpu::default();
    /// let gpu = sweep.measure(&point, references)?;
    /// assert!(gpu.rows.len() == 2 || gpu.note.is_some());
    /// assert!(gpu.rows.iter().all(|r| r.kernel == "gpu" && r.rows == 64));
    /// // The same reason is not repeated for the next point.
    /// assert!(sweep.measure(&point, references)?.note.is_none());
    /// # Ok::<(), initret_cli::error::CliError>(())
    /// ```
    pub fn measure(
        &mut self,
        point: &Point,
        references: References,
    ) -> Result<GpuPointRows, CliError> {
        let key = (point.table.rows(), point.table.words_per_row());
        if self.built.as_ref().is_none_or(|(k, _)| *k != key) {
            self.built = None;
            match GpuBackend::new(&point.table) {
                Ok(backend) => self.built = Some((key, backend)),
                Err(e) => {
                    let note = format!("no GPU rows: {e}");
                    let new = self.last_note.as_ref() != Some(&note);
                    self.last_note = Some(note.clone());
                    return Ok(GpuPointRows {
                        rows: Vec::new(),
                        note: new.then_some(note),
                    });
                }
            }
        }
        let Some((_, gpu)) = &self.built else {
            return Ok(GpuPointRows::default());
        };
        Ok(GpuPointRows {
            rows: measure_rows(gpu, point, references)?,
            note: None,
        })
    }
}

fn measure_rows(
    gpu: &GpuBackend,
    point: &Point,
    references: References,
) -> Result<Vec<BenchRow>, CliError> {
    let batch = point.queries.as_slice();
    let shape = point.shape();
    let adapter = gpu.adapter().name.clone();
    let bytes = 4 * batch.len() as u64;
    let row = |name: &str, seconds: f64| {
        BenchRow::new(name, adapter.clone(), GPU_KERNEL, shape, seconds).with_references(references)
    };

    let mut out = crate::bench::try_with_capacity(batch.len(), "GPU output counts")?;
    out.resize(batch.len(), 0);
    let end_to_end = best_time(|| gpu.popcount_into(batch, &mut out))?.as_secs_f64();
    point.check("gpu-end-to-end", &out)?;
    // Queries up; counts down packed in the table's count type, as the
    // lookup reads them back.
    let counts_down = (gpu.result_bytes() as u64 * batch.len() as u64).next_multiple_of(4);
    let transfer = initret::harness::measure_transfer(gpu, bytes, counts_down)?.as_secs_f64();
    let mut e2e_row = row("gpu-end-to-end", end_to_end);
    e2e_row.ratio_to_transfer = Some(transfer / end_to_end);

    let resident_batch = gpu.upload_batch(batch)?;
    let mut counts = gpu.popcount_resident(&resident_batch)?;
    let resident =
        best_time(|| gpu.popcount_resident_into(&resident_batch, &mut counts))?.as_secs_f64();
    point.check("gpu-resident", &gpu.read_back(&counts)?)?;
    let device_copy = initret::harness::measure_device_copy(gpu, bytes)?.as_secs_f64();
    let mut resident_row = row("gpu-resident", resident);
    resident_row.ratio_to_device_copy = Some(device_copy / resident);
    Ok(vec![e2e_row, resident_row])
}
