//! The lookup dispatch shared by the streamed and resident paths: its
//! buffers, how it is encoded, and how its output (the `first_bad` word,
//! then the counts) becomes counts or [`Error::IndexOutOfRange`].
//!
//! Every lookup reads the derived counts, never the rows. The one width
//! where reading the row could compete is one word per row (one load
//! either way); measured on lavapipe (2-core EPYC VM, 2^22 queries into
//! 2^16 rows, alternating runs) the count path did 240–254 M lookups/s end
//! to end against 219–253 M/s for the row-reading shader it replaced, so no
//! row-reading path is kept. At 16 words per row the row path did 70–76 M/s
//! and the count path 243–253 M/s.

use wgpu::BufferUsages;

use super::device::{Context, bind_buffers, compute_pipeline};
use super::staging::{Staging, copy_words};
use crate::Error;

/// Value of the shader's `first_bad` word when every index was in range.
const NO_BAD_POSITION: u32 = u32::MAX;
/// The output buffer starts with the `first_bad` word, then the counts.
pub(super) const FLAG_BYTES: u64 = 4;

static SHADER: wgpu::ShaderModuleDescriptor<'static> =
    wgpu::include_wgsl!("../../shaders/popcount_lookup.wgsl");

/// The shader's `Params` uniform.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    count: u32,
    rows: u32,
    threads_per_row: u32,
    lanes_log2: u32,
}

pub(super) fn output_bytes(queries: usize) -> u64 {
    FLAG_BYTES + 4 * queries as u64
}

/// The lookup pipeline: row counts, queries, output, params.
pub(super) fn pipeline(device: &wgpu::Device) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
    use wgpu::BufferBindingType::{Storage, Uniform};
    compute_pipeline(
        device,
        SHADER.clone(),
        "popcount_lookup",
        &[
            Storage { read_only: true },
            Storage { read_only: true },
            Storage { read_only: false },
            Uniform,
        ],
    )
}

/// Buffers one dispatch writes and the host reads back: the params uniform,
/// the output (`first_bad` word + counts), its staging twin, and the bind
/// group tying them to the row counts and one query buffer.
pub(super) struct LookupBuffers {
    pub(super) capacity: usize,
    params: wgpu::Buffer,
    output: wgpu::Buffer,
    pub(super) staging: Staging,
    bind_group: wgpu::BindGroup,
}

impl Context {
    pub(super) fn new_lookup_buffers(
        &mut self,
        queries: &wgpu::Buffer,
        capacity: usize,
    ) -> LookupBuffers {
        let bytes = output_bytes(capacity);
        let params = self.create_buffer(
            "initret params",
            size_of::<Params>() as u64,
            BufferUsages::UNIFORM | BufferUsages::COPY_DST,
        );
        let output = self.create_buffer(
            "initret counts",
            bytes,
            BufferUsages::STORAGE | BufferUsages::COPY_SRC | BufferUsages::COPY_DST,
        );
        let staging = Staging::new(self, "initret counts staging", bytes);
        let bind_group = bind_buffers(
            &self.device,
            &self.lookup_layout,
            &[&self.row_counts, queries, &output, &params],
        );
        LookupBuffers {
            capacity,
            params,
            output,
            staging,
            bind_group,
        }
    }

    /// Writes the params and resets `first_bad`; both land before the next
    /// submit's commands. Returns the dispatch grid.
    pub(super) fn prepare_dispatch(&self, lookup: &LookupBuffers, count: usize) -> (u32, u32) {
        let (x, y, threads_per_row) = self.grid(count);
        let params = Params {
            count: count as u32,
            rows: self.layout.rows,
            threads_per_row,
            lanes_log2: self.layout.lanes_log2,
        };
        self.queue
            .write_buffer(&lookup.params, 0, bytemuck::bytes_of(&params));
        self.queue
            .write_buffer(&lookup.output, 0, &NO_BAD_POSITION.to_ne_bytes());
        (x, y)
    }

    pub(super) fn encode_dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        lookup: &LookupBuffers,
        grid: (u32, u32),
    ) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("initret popcount"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.lookup_pipeline);
        pass.set_bind_group(0, &lookup.bind_group, &[]);
        pass.dispatch_workgroups(grid.0, grid.1, 1);
    }

    /// Copies the output of `count` queries to the staging buffer.
    pub(super) fn encode_readback(
        encoder: &mut wgpu::CommandEncoder,
        lookup: &LookupBuffers,
        count: usize,
    ) {
        encoder.copy_buffer_to_buffer(
            &lookup.output,
            0,
            &lookup.staging.buffer,
            0,
            output_bytes(count),
        );
    }

    /// Waits for the counts mapped after `submission`, copies them into
    /// `out` and unmaps. Returns the shader's `first_bad` (position within
    /// this dispatch), if any.
    pub(super) fn take_counts(
        &self,
        lookup: &LookupBuffers,
        submission: &wgpu::SubmissionIndex,
        what: &'static str,
        out: &mut [u32],
    ) -> Result<Option<usize>, Error> {
        let bytes = output_bytes(out.len());
        let first_bad = self.read_mapped(&lookup.staging, submission, what, bytes, |view| {
            let (flag, counts) = view.split_at(FLAG_BYTES as usize);
            copy_words(counts, out);
            let mut first_bad = [0u32];
            copy_words(flag, &mut first_bad);
            first_bad[0]
        })?;
        Ok(match first_bad {
            NO_BAD_POSITION => None,
            position => Some(position as usize),
        })
    }

    /// The error for a `position` the shader flagged, whose query is
    /// `index`: out of range, or else a broken invariant.
    pub(super) fn out_of_range(&self, position: usize, index: Option<u32>) -> Error {
        match index {
            Some(index) if index >= self.layout.rows => Error::IndexOutOfRange {
                position,
                index,
                rows: self.layout.rows as usize,
            },
            _ => Error::Internal(format!(
                "the shader flagged query position {position}, which holds valid index {index:?}"
            )),
        }
    }
}
