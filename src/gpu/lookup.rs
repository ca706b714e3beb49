//! The lookup pass shared by the streamed and resident paths: the pipeline
//! and the per-row counts it reads ([`Lookup`]), the buffers of one
//! dispatch ([`LookupBuffers`]), and how its output (the `first_bad` word,
//! then the counts) becomes counts or [`Error::IndexOutOfRange`].
//!
//! Every lookup reads the derived counts, never the rows: one load per
//! query however wide the rows are (BENCHMARKS.md has the comparison with
//! a row-reading shader).

use wgpu::BufferUsages;

use super::counts::RowCounts;
use super::device::Device;
use super::staging::{Staging, copy_counts, copy_words};
use crate::Error;
use crate::arch::CountWord;

/// Value of the shader's `first_bad` word when every index was in range.
const NO_BAD_POSITION: u32 = u32::MAX;
/// The output buffer starts with the `first_bad` word, then the counts.
const FLAG_BYTES: u64 = 4;

static SHADER: wgpu::ShaderModuleDescriptor<'static> =
    wgpu::include_wgsl!("../../shaders/popcount_lookup.wgsl");

/// The shader's `Params` uniform (its layout is checked against the WGSL
/// struct by the tests).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub(super) count: u32,
    pub(super) rows: u32,
    pub(super) threads_per_row: u32,
    pub(super) lanes_log2: u32,
}

/// Bytes of a dispatch's output: the flag word, then `queries` counts
/// packed `1 << lanes_log2` to a word, as the count table packs them.
fn output_bytes(queries: usize, lanes_log2: u32) -> u64 {
    FLAG_BYTES + 4 * (queries as u64).div_ceil(1 << lanes_log2)
}

/// The lookup pipeline and the row counts it reads.
pub(super) struct Lookup {
    pipeline: wgpu::ComputePipeline,
    bind_layout: wgpu::BindGroupLayout,
    counts: RowCounts,
    /// Most queries one dispatch can take (binding sizes, dispatch grid).
    max_dispatch_queries: usize,
}

impl Lookup {
    /// Compiles the lookup pipeline over `counts`.
    pub(super) fn new(device: &Device, counts: RowCounts) -> Lookup {
        use wgpu::BufferBindingType::{Storage, Uniform};
        let (pipeline, bind_layout) = device.compute_pipeline(
            SHADER.clone(),
            "popcount_lookup",
            &[
                Storage { read_only: true },
                Storage { read_only: true },
                Storage { read_only: false },
                Uniform,
            ],
        );
        let per_binding = (device.binding_limit().saturating_sub(FLAG_BYTES) / 4).max(1);
        // 2^31 keeps the shader's u32 position arithmetic (including the
        // padding invocations of the last grid row) clear of overflow.
        let max_dispatch_queries = per_binding
            .min(device.max_grid_invocations())
            .min(1 << 31)
            .try_into()
            .unwrap_or(1 << 31);
        Lookup {
            pipeline,
            bind_layout,
            counts,
            max_dispatch_queries,
        }
    }

    /// Most queries one dispatch can take.
    pub(super) fn max_dispatch_queries(&self) -> usize {
        self.max_dispatch_queries
    }

    /// Params, output and staging buffers for dispatches of up to
    /// `capacity` queries read from `queries`.
    pub(super) fn buffers(
        &self,
        device: &Device,
        queries: &wgpu::Buffer,
        capacity: usize,
    ) -> LookupBuffers {
        let lanes_log2 = self.counts.layout().lanes_log2;
        let bytes = output_bytes(capacity, lanes_log2);
        let params = device.create_buffer(
            "initret params",
            size_of::<Params>() as u64,
            BufferUsages::UNIFORM | BufferUsages::COPY_DST,
        );
        let output = device.create_buffer(
            "initret counts",
            bytes,
            BufferUsages::STORAGE | BufferUsages::COPY_SRC | BufferUsages::COPY_DST,
        );
        let staging = Staging::new(device, "initret counts staging", bytes);
        let bind_group = device.bind_buffers(
            &self.bind_layout,
            &[self.counts.buffer(), queries, &output, &params],
        );
        LookupBuffers {
            capacity,
            lanes_log2,
            params,
            output,
            staging,
            bind_group,
        }
    }

    /// Writes the params of a dispatch of `count` queries and resets
    /// `first_bad`; both land before the next submit's commands. Returns
    /// the dispatch grid: one invocation per output word.
    pub(super) fn prepare(
        &self,
        device: &Device,
        lookup: &LookupBuffers,
        count: usize,
    ) -> (u32, u32) {
        let layout = self.counts.layout();
        let (x, y, threads_per_row) = device.grid(count.div_ceil(1 << layout.lanes_log2));
        let params = Params {
            count: count as u32,
            rows: layout.rows,
            threads_per_row,
            lanes_log2: layout.lanes_log2,
        };
        let queue = device.queue();
        queue.write_buffer(&lookup.params, 0, bytemuck::bytes_of(&params));
        queue.write_buffer(&lookup.output, 0, &NO_BAD_POSITION.to_ne_bytes());
        (x, y)
    }

    /// Records the dispatch `prepare` returned `grid` for.
    pub(super) fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        lookup: &LookupBuffers,
        grid: (u32, u32),
    ) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("initret popcount"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &lookup.bind_group, &[]);
        pass.dispatch_workgroups(grid.0, grid.1, 1);
    }

    /// The error for a `position` the shader flagged, whose query now is
    /// `index`: out of range; or, if it now holds a valid index, the batch
    /// was rewritten during the call (see [`Error::flagged`]); a position
    /// past the batch is a broken invariant.
    pub(super) fn out_of_range(&self, position: usize, index: Option<u32>) -> Error {
        let rows = self.counts.layout().rows;
        match index {
            Some(index) => Error::flagged(position, index.into(), rows as usize),
            None => Error::Internal(format!(
                "the shader flagged query position {position}, past the batch"
            )),
        }
    }
}

/// Buffers one dispatch writes and the host reads back: the params uniform,
/// the output (`first_bad` word + counts in the table's count type), its
/// staging twin, and the bind group tying them to the row counts and one
/// query buffer.
pub(super) struct LookupBuffers {
    capacity: usize,
    /// How the output packs its counts (the count table's packing).
    lanes_log2: u32,
    params: wgpu::Buffer,
    output: wgpu::Buffer,
    staging: Staging,
    bind_group: wgpu::BindGroup,
}

impl LookupBuffers {
    /// Most queries these buffers hold.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The staging buffer, which other small read-backs may borrow while
    /// it is unmapped.
    pub(super) fn staging(&self) -> &Staging {
        &self.staging
    }

    /// Copies the output of `count` queries to the staging buffer.
    pub(super) fn encode_readback(&self, encoder: &mut wgpu::CommandEncoder, count: usize) {
        self.staging.encode_copy(
            encoder,
            &self.output,
            0,
            output_bytes(count, self.lanes_log2),
        );
    }

    /// Asks for the mapping of `count` queries' output; must follow the
    /// submit of [`LookupBuffers::encode_readback`].
    pub(super) fn request(&self, count: usize) {
        self.staging.request(output_bytes(count, self.lanes_log2));
    }

    /// Waits for the counts mapped after `submission`, copies them into
    /// `out` and unmaps. Returns the shader's `first_bad` (position within
    /// this dispatch), if any.
    pub(super) fn take_counts<R: CountWord>(
        &self,
        device: &Device,
        submission: &wgpu::SubmissionIndex,
        what: &'static str,
        out: &mut [R],
    ) -> Result<Option<usize>, Error> {
        let bytes = output_bytes(out.len(), self.lanes_log2);
        let first_bad = self.staging.read(device, submission, what, bytes, |view| {
            let (flag, counts) = view.split_at(FLAG_BYTES as usize);
            copy_counts(counts, self.lanes_log2, out);
            let mut first_bad = [0u32];
            copy_words(flag, &mut first_bad);
            first_bad[0]
        })?;
        Ok(match first_bad {
            NO_BAD_POSITION => None,
            position => Some(position as usize),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_holds_the_flag_then_counts_in_the_tables_type() {
        // u32 counts: a word each.
        assert_eq!(output_bytes(5, 0), 4 + 20);
        // u16: two to a word, the last word half used.
        assert_eq!(output_bytes(5, 1), 4 + 12);
        // u8: four to a word.
        assert_eq!(output_bytes(5, 2), 4 + 8);
        assert_eq!(output_bytes(8, 2), 4 + 8);
        assert_eq!(output_bytes(0, 2), 4);
    }
}
