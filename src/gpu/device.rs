//! The device: one wgpu device and queue, opened once per
//! [`GpuBackend`](super::GpuBackend), with its fault watch, its limits, and
//! the small helpers every pass uses (buffers, pipelines, bind groups, the
//! dispatch grid, bounded waits).

use std::sync::atomic::{AtomicUsize, Ordering};

use wgpu::BufferUsages;

use super::error::GpuError;
use super::fault::Faults;
use crate::Error;

/// The shaders' `@workgroup_size` (checked by the tests).
pub(super) const WORKGROUP_SIZE: u32 = 64;

/// A device and queue with the limits it was opened with.
pub(super) struct Device {
    device: wgpu::Device,
    queue: wgpu::Queue,
    faults: Faults,
    /// Largest storage binding and buffer, the lesser of the two.
    binding_limit: u64,
    max_workgroups_per_dimension: u32,
    /// Buffers created so far; tests check that calls reuse them.
    allocations: AtomicUsize,
}

impl Device {
    /// Opens a device on `adapter` with `limits`, which the caller takes
    /// from the adapter itself: wgpu's defaults cap a storage binding at
    /// 128 MiB and a buffer at 256 MiB.
    pub(super) fn open(adapter: &wgpu::Adapter, limits: wgpu::Limits) -> Result<Device, Error> {
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("initret"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(GpuError::from)?;
        let faults = Faults::install(&device);
        Ok(Device {
            device,
            queue,
            faults,
            binding_limit: limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size),
            max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension.max(1),
            allocations: AtomicUsize::new(0),
        })
    }

    /// Error scopes, device loss and bounded waits (see `fault.rs`).
    pub(super) fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Mutable access, for the timeout.
    pub(super) fn faults_mut(&mut self) -> &mut Faults {
        &mut self.faults
    }

    pub(super) fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Largest storage binding and buffer, the lesser of the two.
    pub(super) fn binding_limit(&self) -> u64 {
        self.binding_limit
    }

    /// Most invocations one dispatch grid holds.
    pub(super) fn max_grid_invocations(&self) -> u64 {
        u64::from(self.max_workgroups_per_dimension).pow(2) * u64::from(WORKGROUP_SIZE)
    }

    /// The dispatch grid for `invocations` invocations (see [`dispatch_grid`]).
    pub(super) fn grid(&self, invocations: usize) -> (u32, u32, u32) {
        dispatch_grid(invocations, self.max_workgroups_per_dimension)
    }

    /// A buffer of at least one word (a zero-sized binding is invalid).
    pub(super) fn create_buffer(
        &self,
        label: &str,
        size: u64,
        usage: BufferUsages,
    ) -> wgpu::Buffer {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4),
            usage,
            mapped_at_creation: false,
        })
    }

    /// Buffers created so far.
    #[cfg(test)]
    pub(super) fn allocations(&self) -> usize {
        self.allocations.load(Ordering::Relaxed)
    }

    pub(super) fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("initret"),
            })
    }

    pub(super) fn submit(&self, encoder: wgpu::CommandEncoder) -> wgpu::SubmissionIndex {
        self.queue.submit([encoder.finish()])
    }

    /// Blocks until `submission` has finished, at most the timeout.
    pub(super) fn wait(
        &self,
        submission: &wgpu::SubmissionIndex,
        what: &'static str,
    ) -> Result<(), Error> {
        self.faults
            .wait_for(submission, what, self.faults.deadline())
    }

    /// Submits nothing new and waits for everything submitted so far (the
    /// writes staged by `Queue::write_buffer` go with this submit).
    pub(super) fn flush(&self, what: &'static str) -> Result<(), Error> {
        let submission = self.queue.submit([]);
        self.wait(&submission, what)
    }

    /// A compute pipeline and its bind group layout from `source`, with one
    /// buffer binding of each kind in `bindings`, numbered in order.
    pub(super) fn compute_pipeline(
        &self,
        source: wgpu::ShaderModuleDescriptor<'_>,
        entry_point: &str,
        bindings: &[wgpu::BufferBindingType],
    ) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
        let shader = self.device.create_shader_module(source);
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
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(entry_point),
                entries: &entries,
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(entry_point),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
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
        &self,
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
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("initret"),
            layout,
            entries: &entries,
        })
    }

    /// Destroys the device, as a driver reset would.
    #[cfg(test)]
    pub(super) fn destroy(&self) {
        self.device.destroy();
    }
}

/// The dispatch grid for `invocations` invocations: `(x, y)` workgroups
/// and the invocations per grid row. One dimension stops at `max_per_dim`
/// workgroups, so large dispatches need `y > 1`; `x` is then evened out so
/// that at most `y - 1` workgroups are padding (filling `x` first would
/// leave up to a whole grid row idle; BENCHMARKS.md, "GPU on llvmpipe").
pub(super) fn dispatch_grid(invocations: usize, max_per_dim: u32) -> (u32, u32, u32) {
    let workgroups = invocations.div_ceil(WORKGROUP_SIZE as usize).max(1) as u64;
    let y = workgroups.div_ceil(u64::from(max_per_dim.max(1)));
    let x = workgroups.div_ceil(y);
    // Both stay within `max_per_dim` for every batch the dispatch limit
    // (`Lookup::max_dispatch_queries`) admits, so the casts are exact.
    (x as u32, y as u32, x as u32 * WORKGROUP_SIZE)
}
