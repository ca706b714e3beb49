//! Device setup: the adapter's device and queue, the lookup pipeline and the
//! count buffer's layout, all made once per [`GpuBackend`](super::GpuBackend).
//! [`Context`] is the state every other part of the backend works on; its
//! methods live beside the concern they serve (faults, staging, lookups,
//! streaming, resident batches, derivation, measurements).

use std::time::Duration;

use wgpu::BufferUsages;

use super::adapter::{new_instance, select_adapter};
use super::fault::Faults;
use super::stream::{DEFAULT_CHUNK_QUERIES, RingSlot};
use super::summary::{AdapterSummary, human_bytes};
use super::{GpuError, lookup};
use crate::{BitTable, Error};

/// Must match `@workgroup_size` in both shaders.
pub(super) const WORKGROUP_SIZE: u32 = 64;
/// How long one wait for the GPU may block before [`Error::GpuTimeout`].
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Rows of at least this many words could hold 2^32 set bits, more than the
/// shader's u32 count (and the `u32` the API returns) can hold.
const MAX_WORDS_PER_ROW: u64 = 1 << 27;

/// How the per-row counts are packed on the device: `1 << lanes_log2`
/// counts per u32 word, in the narrowest of u8, u16 and u32 that holds the
/// largest count a row of this width can have. (The CPU's `CountTable`
/// chooses from the actual counts; the GPU chooses before counting, so that
/// no count has to be read back first. For rows of up to 7 words both give
/// u8, up to 2047 words at most u16.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CountLayout {
    pub(super) rows: u32,
    pub(super) words_per_row: u32,
    pub(super) lanes_log2: u32,
}

impl CountLayout {
    /// The layout for `table`, or why the shaders cannot address it.
    pub(super) fn new(rows: usize, words_per_row: usize) -> Result<CountLayout, Error> {
        let rows = u32::try_from(rows).map_err(|_| {
            Error::GpuUnavailable(format!("{rows} rows do not fit the shader's u32 index"))
        })?;
        if words_per_row as u64 >= MAX_WORDS_PER_ROW {
            return Err(Error::InvalidTable(format!(
                "rows of {words_per_row} words (2^27 or more) can hold 2^32 set bits, \
                 more than a u32 count"
            )));
        }
        let words_per_row = u32::try_from(words_per_row).map_err(|_| {
            Error::Internal(format!("{words_per_row} words per row passed a bound"))
        })?;
        let max_count = 32 * u64::from(words_per_row);
        let lanes_log2 = if max_count <= u64::from(u8::MAX) {
            2
        } else if max_count <= u64::from(u16::MAX) {
            1
        } else {
            0
        };
        Ok(CountLayout {
            rows,
            words_per_row,
            lanes_log2,
        })
    }

    /// Bytes of the packed count buffer (at least one word: a zero-sized
    /// binding is invalid, and a table without rows still gets a buffer).
    pub(super) fn buffer_bytes(&self) -> u64 {
        let lanes = 1u64 << self.lanes_log2;
        4 * u64::from(self.rows).div_ceil(lanes).max(1)
    }

    /// Bytes per stored count: 1, 2 or 4.
    pub(super) fn bytes_per_count(&self) -> u32 {
        4 >> self.lanes_log2
    }
}

/// The refusal for a count buffer past the adapter's limits, naming them.
pub(super) fn check_count_buffer(
    layout: &CountLayout,
    summary: &AdapterSummary,
    limit: u64,
) -> Result<(), Error> {
    let bytes = layout.buffer_bytes();
    if bytes <= limit {
        return Ok(());
    }
    Err(Error::GpuUnavailable(format!(
        "the table's per-row counts take {} ({} rows at {} bytes each) but adapter {:?} \
         allows at most {} per storage binding (max_storage_buffer_binding_size) and {} \
         per buffer (max_buffer_size)",
        human_bytes(bytes),
        layout.rows,
        layout.bytes_per_count(),
        summary.name,
        human_bytes(summary.max_storage_buffer_binding_size),
        human_bytes(summary.max_buffer_size),
    )))
}

/// Everything a backend keeps between calls. The table itself is not
/// here: after [`Context::derive_counts`] only its per-row counts are.
pub(crate) struct Context {
    pub(super) device: wgpu::Device,
    pub(super) queue: wgpu::Queue,
    pub(super) lookup_pipeline: wgpu::ComputePipeline,
    pub(super) lookup_layout: wgpu::BindGroupLayout,
    /// The packed per-row counts (see [`CountLayout`]).
    pub(super) row_counts: wgpu::Buffer,
    pub(super) layout: CountLayout,
    /// Largest storage binding and buffer, the lesser of the two.
    pub(super) binding_limit: u64,
    pub(super) max_workgroups_per_dimension: u32,
    /// Most queries one dispatch can take (binding sizes, dispatch grid).
    pub(super) max_dispatch_queries: usize,
    pub(super) ring: Vec<RingSlot>,
    /// Queries per streamed chunk.
    pub(super) chunk_queries: usize,
    /// Queries per resident segment (one query buffer each).
    pub(super) segment_queries: usize,
    pub(crate) timeout: Duration,
    pub(super) faults: Faults,
    /// Buffers created so far; tests check that calls reuse them.
    pub(crate) allocations: usize,
}

impl Context {
    /// Opens a device on the chosen adapter with the adapter's own limits,
    /// builds the lookup pipeline and an empty count buffer for `table`.
    /// The counts are derived afterwards ([`Context::derive_counts`]).
    pub(crate) fn new(
        table: &BitTable,
    ) -> Result<(Context, AdapterSummary, wgpu::DeviceType), Error> {
        let instance = new_instance()?;
        let adapter = select_adapter(&instance)?;
        let summary = AdapterSummary::from_adapter(&adapter);
        let device_type = adapter.get_info().device_type;
        let limits = adapter.limits();
        let binding_limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);

        let layout = CountLayout::new(table.rows(), table.words_per_row())?;
        check_count_buffer(&layout, &summary, binding_limit)?;

        // The adapter's own limits, not the defaults: those cap a storage
        // binding at 128 MiB and a buffer at 256 MiB.
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("initret"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(GpuError::from)?;
        let faults = Faults::install(&device);

        let max_workgroups_per_dimension = limits.max_compute_workgroups_per_dimension.max(1);
        let per_binding = (binding_limit.saturating_sub(lookup::FLAG_BYTES) / 4).max(1);
        let per_grid = u64::from(max_workgroups_per_dimension).pow(2) * u64::from(WORKGROUP_SIZE);
        // 2^31 keeps the shader's u32 position arithmetic (including the
        // padding invocations of the last grid row) clear of overflow.
        let max_dispatch_queries = per_binding
            .min(per_grid)
            .min(1 << 31)
            .try_into()
            .unwrap_or(1 << 31);

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom_scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let (lookup_pipeline, lookup_layout) = lookup::pipeline(&device);
        let row_counts = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("initret row counts"),
            size: layout.buffer_bytes(),
            usage: BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let oom = pollster::block_on(oom_scope.pop());
        let validation = pollster::block_on(scope.pop());
        if let Some(error) = validation.or(oom) {
            return Err(GpuError::from(error).into());
        }

        let context = Context {
            device,
            queue,
            lookup_pipeline,
            lookup_layout,
            row_counts,
            layout,
            binding_limit,
            max_workgroups_per_dimension,
            max_dispatch_queries,
            ring: Vec::new(),
            chunk_queries: DEFAULT_CHUNK_QUERIES.min(max_dispatch_queries),
            segment_queries: max_dispatch_queries,
            timeout: DEFAULT_TIMEOUT,
            faults,
            allocations: 1,
        };
        Ok((context, summary, device_type))
    }

    /// The dispatch grid for `invocations` invocations (see [`dispatch_grid`]).
    pub(super) fn grid(&self, invocations: usize) -> (u32, u32, u32) {
        dispatch_grid(invocations, self.max_workgroups_per_dimension)
    }

    pub(super) fn create_buffer(
        &mut self,
        label: &str,
        size: u64,
        usage: BufferUsages,
    ) -> wgpu::Buffer {
        self.allocations += 1;
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4),
            usage,
            mapped_at_creation: false,
        })
    }

    pub(super) fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("initret"),
            })
    }

    #[cfg(test)]
    pub(crate) fn destroy_device(&self) {
        self.device.destroy();
    }
}

/// The dispatch grid for `invocations` invocations: `(x, y)` workgroups
/// and the invocations per grid row. One dimension stops at `max_per_dim`
/// workgroups, so large dispatches need `y > 1`; `x` is then evened out so
/// that at most `y - 1` workgroups are padding. (Filling `x` to the limit
/// first left up to a whole grid row idle: 2^22 queries became 65535 × 2
/// workgroups, half of them empty. That is why the resident path, which
/// dispatches the whole batch at once, ran slower than the streamed one,
/// which dispatches 2^20 at a time: on lavapipe 151–153 against 245–250 M
/// lookups/s; with this grid the resident path does 300–306 M/s.)
pub(super) fn dispatch_grid(invocations: usize, max_per_dim: u32) -> (u32, u32, u32) {
    let workgroups = invocations.div_ceil(WORKGROUP_SIZE as usize).max(1) as u64;
    let y = workgroups.div_ceil(u64::from(max_per_dim.max(1)));
    let x = workgroups.div_ceil(y);
    // Both stay within `max_per_dim` for every batch the dispatch limit
    // (`max_dispatch_queries`) admits, so the casts are exact.
    (x as u32, y as u32, x as u32 * WORKGROUP_SIZE)
}

/// A compute pipeline and its bind group layout from `source`, with the
/// given bindings (`(binding, kind)`).
pub(super) fn compute_pipeline(
    device: &wgpu::Device,
    source: wgpu::ShaderModuleDescriptor<'_>,
    entry_point: &str,
    bindings: &[wgpu::BufferBindingType],
) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
    let shader = device.create_shader_module(source);
    let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
        .iter()
        .enumerate()
        .map(|(binding, &ty)| wgpu::BindGroupLayoutEntry {
            binding: binding as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(entry_point),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry_point),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry_point),
        layout: Some(&pipeline_layout),
        module: &shader,
        entry_point: Some(entry_point),
        compilation_options: Default::default(),
        cache: None,
    });
    (pipeline, layout)
}

/// A bind group over whole buffers, bound in order.
pub(super) fn bind_buffers(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
        .iter()
        .enumerate()
        .map(|(binding, buffer)| wgpu::BindGroupEntry {
            binding: binding as u32,
            resource: buffer.as_entire_binding(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("initret"),
        layout,
        entries: &entries,
    })
}
