//! The wgpu state a [`GpuBackend`](super::GpuBackend) builds once and reuses:
//! device, queue, pipeline, the table's storage buffer and the ring of
//! per-chunk buffers (the shape of wgpu's `repeated_compute` example).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wgpu::BufferUsages;

use super::GpuTimings;
use super::adapter::{AdapterSummary, human_bytes, new_instance, select_adapter};
use crate::error::panic_message;
use crate::{BitTable, Error};

/// Must match `@workgroup_size` in the shader.
pub(crate) const WORKGROUP_SIZE: u32 = 64;
/// Buffer sets in flight while streaming: with three, chunk k+1 is being
/// uploaded while chunk k computes and chunk k-1 is read back.
pub(crate) const RING_SLOTS: usize = 3;
/// Queries per streamed chunk (4 MiB of indices): big enough that per-submit
/// overhead is small, small enough that a large batch spans several chunks
/// so that transfers and compute overlap.
pub(crate) const DEFAULT_CHUNK_QUERIES: usize = 1 << 20;
/// How long one wait for the GPU may block before [`Error::GpuTimeout`].
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Value of the shader's `first_bad` word when every index was in range.
const NO_BAD_POSITION: u32 = u32::MAX;
/// The output buffer starts with the `first_bad` word, then the counts.
const FLAG_BYTES: u64 = 4;
/// Ring capacities are rounded up to this many queries, so that a batch a
/// little larger than the last does not reallocate.
const CAPACITY_GRANULE: usize = 1024;
/// Largest single buffer the bench references allocate; larger transfers
/// reuse it piece by piece.
const MEASURE_PIECE_BYTES: u64 = 256 << 20;

static SHADER: wgpu::ShaderModuleDescriptor<'static> =
    wgpu::include_wgsl!("../../shaders/popcount_lookup.wgsl");

/// The shader's `Params` uniform.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    count: u32,
    rows: u32,
    words_per_row: u32,
    threads_per_row: u32,
}

const MAP_PENDING: u8 = 0;
const MAP_OK: u8 = 1;
const MAP_FAILED: u8 = 2;

/// Outcome of the latest `map_async` on one staging buffer. The callback runs
/// inside whichever `Device::poll` notices completion, so it can only leave a
/// note here; the waiting code reads it.
#[derive(Clone, Default)]
struct MapSignal(Arc<AtomicU8>);

/// Buffers one dispatch writes and the host reads back: the params uniform,
/// the output (`first_bad` word + counts), its `MAP_READ` staging twin, and
/// the bind group tying them to the table and one query buffer.
pub(crate) struct LookupBuffers {
    capacity: usize,
    params: wgpu::Buffer,
    output: wgpu::Buffer,
    staging: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    mapped: MapSignal,
}

/// Queries already on the GPU: one buffer of at most one binding's worth.
#[derive(Clone)]
pub(crate) struct QuerySegment {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) len: usize,
}

/// One resident segment's results: the queries it read and its buffers.
pub(crate) struct ResultSegment {
    queries: QuerySegment,
    lookup: LookupBuffers,
}

/// One buffer set of the streaming ring.
struct RingSlot {
    queries: wgpu::Buffer,
    lookup: LookupBuffers,
}

/// A streamed chunk whose results have not been read back yet.
struct InFlight {
    slot: usize,
    start: usize,
    len: usize,
    submission: wgpu::SubmissionIndex,
}

fn output_bytes(queries: usize) -> u64 {
    FLAG_BYTES + 4 * queries as u64
}

/// Copies `u32` words out of mapped bytes (which wgpu aligns, but a failed
/// cast must not panic).
fn copy_words(bytes: &[u8], out: &mut [u32]) {
    match bytemuck::try_cast_slice::<u8, u32>(bytes) {
        Ok(words) if words.len() == out.len() => out.copy_from_slice(words),
        _ => {
            for (word, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *word = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
}

pub(crate) struct Context {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    bind_group_layout: wgpu::BindGroupLayout,
    table: wgpu::Buffer,
    rows: u32,
    words_per_row: u32,
    max_workgroups_per_dimension: u32,
    /// Most queries one dispatch can take (binding sizes, dispatch grid).
    max_dispatch_queries: usize,
    ring: Vec<RingSlot>,
    /// Queries per streamed chunk.
    chunk_queries: usize,
    /// Queries per resident segment (one query buffer each).
    segment_queries: usize,
    pub(crate) timeout: Duration,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    pub(crate) allocations: usize,
}

impl Context {
    pub(crate) fn new(
        table: &BitTable,
    ) -> Result<(Context, AdapterSummary, wgpu::DeviceType), Error> {
        let instance = new_instance()?;
        let adapter = select_adapter(&instance)?;
        let summary = AdapterSummary::from_adapter(&adapter);
        let device_type = adapter.get_info().device_type;
        let limits = adapter.limits();

        let table_bytes = table.size_in_bytes() as u64;
        let table_limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        if table_bytes > table_limit {
            return Err(Error::GpuUnavailable(format!(
                "the table is {} but adapter {:?} allows at most {} per storage binding \
                 (max_storage_buffer_binding_size) and {} per buffer (max_buffer_size)",
                human_bytes(table_bytes),
                summary.name,
                human_bytes(limits.max_storage_buffer_binding_size),
                human_bytes(limits.max_buffer_size),
            )));
        }
        // The shader addresses words with u32 arithmetic.
        if u32::try_from(table.words().len()).is_err() {
            return Err(Error::GpuUnavailable(format!(
                "the table has {} words; the shader indexes at most 2^32 - 1",
                table.words().len()
            )));
        }
        let rows = u32::try_from(table.rows()).map_err(|_| {
            Error::GpuUnavailable(format!("{} rows do not fit the shader's u32", table.rows()))
        })?;
        let words_per_row = u32::try_from(table.words_per_row()).map_err(|_| {
            Error::GpuUnavailable(format!(
                "{} words per row do not fit a u32",
                table.words_per_row()
            ))
        })?;

        // The adapter's own limits, not the defaults: those cap a storage
        // binding at 128 MiB and a buffer at 256 MiB.
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("initret"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| {
            Error::GpuUnavailable(format!(
                "adapter {:?} refused a device with its own limits: {e}",
                summary.name
            ))
        })?;

        let lost = Arc::new(Mutex::new(None));
        let lost_note = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut note) = lost_note.lock() {
                *note = Some(format!("{reason:?}: {message}"));
            }
        });
        // wgpu's default handler panics; keep the message for the next call.
        let uncaptured = Arc::new(Mutex::new(None));
        let uncaptured_note = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            if let Ok(mut note) = uncaptured_note.lock() {
                note.get_or_insert_with(|| error.to_string());
            }
        }));

        let max_workgroups_per_dimension = limits.max_compute_workgroups_per_dimension.max(1);
        let per_binding = (table_limit.saturating_sub(FLAG_BYTES) / 4).max(1);
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
        let shader = device.create_shader_module(SHADER.clone());
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("initret popcount"),
            entries: &[
                storage(0, true),
                storage(1, true),
                storage(2, false),
                wgpu::BindGroupLayoutEntry {
                    binding: 3,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("initret popcount"),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("initret popcount"),
            layout: Some(&pipeline_layout),
            module: &shader,
            entry_point: Some("popcount_lookup"),
            compilation_options: Default::default(),
            cache: None,
        });
        // A zero-sized binding is invalid; a table with no rows gets one
        // unused word (every query is then out of range anyway).
        let table_words: &[u32] = if table.words().is_empty() {
            &[0]
        } else {
            table.words()
        };
        let table_buffer = wgpu::util::DeviceExt::create_buffer_init(
            &device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("initret table"),
                contents: bytemuck::cast_slice(table_words),
                usage: BufferUsages::STORAGE,
            },
        );
        let oom = pollster::block_on(oom_scope.pop());
        let validation = pollster::block_on(scope.pop());
        if let Some(error) = validation.or(oom) {
            return Err(Error::GpuUnavailable(format!(
                "setting up the popcount pipeline on adapter {:?} failed: {error}",
                summary.name
            )));
        }

        let context = Context {
            device,
            queue,
            pipeline,
            bind_group_layout,
            table: table_buffer,
            rows,
            words_per_row,
            max_workgroups_per_dimension,
            max_dispatch_queries,
            ring: Vec::new(),
            chunk_queries: DEFAULT_CHUNK_QUERIES.min(max_dispatch_queries),
            segment_queries: max_dispatch_queries,
            timeout: DEFAULT_TIMEOUT,
            lost,
            uncaptured,
            allocations: 1,
        };
        Ok((context, summary, device_type))
    }

    // ----- error handling -------------------------------------------------

    /// Runs `work` inside validation / out-of-memory / internal error scopes
    /// and turns what they catch into [`Error::Gpu`] (or
    /// [`Error::DeviceLost`] when the device is gone). An error `work`
    /// returns itself wins over what the scopes caught.
    pub(crate) fn scoped<T>(
        &mut self,
        work: impl FnOnce(&mut Context) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.check_device()?;
        let device = self.device.clone();
        let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let result = work(self);
        // Scopes pop in reverse order of pushing.
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        let internal = pollster::block_on(internal.pop());
        let captured = validation
            .or(oom)
            .or(internal)
            .map(|e| e.to_string())
            .or_else(|| self.uncaptured.lock().ok().and_then(|mut note| note.take()));
        match (result, captured) {
            (Err(error @ Error::IndexOutOfRange { .. }), _) => Err(error),
            // A failed submit surfaces later as a vague wait error; the
            // scope holds the real validation message.
            (Err(Error::Gpu(_)), Some(message)) => Err(self.lost_or(Error::Gpu(message))),
            (Err(error), _) => Err(self.lost_or(error)),
            (Ok(_), Some(message)) => Err(self.lost_or(Error::Gpu(message))),
            (Ok(value), None) => Ok(value),
        }
    }

    /// Processes finished work without blocking; this is also where wgpu
    /// reports a destroyed device through the device-lost callback.
    fn poll_quietly(&self) {
        // `Device::poll` panics on device errors other than timeouts.
        let _ = catch_unwind(AssertUnwindSafe(|| self.device.poll(wgpu::PollType::Poll)));
    }

    fn lost_reason(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|note| note.clone())
    }

    fn check_device(&self) -> Result<(), Error> {
        self.poll_quietly();
        match self.lost_reason() {
            Some(reason) => Err(Error::DeviceLost(reason)),
            None => Ok(()),
        }
    }

    /// `error`, unless the device turns out to be lost, which explains it.
    fn lost_or(&self, error: Error) -> Error {
        if matches!(error, Error::DeviceLost(_)) {
            return error;
        }
        self.poll_quietly();
        match self.lost_reason() {
            Some(reason) => Error::DeviceLost(format!("{reason} (while: {error})")),
            None => error,
        }
    }

    fn timeout_error(&self, what: &'static str) -> Error {
        self.lost_or(Error::GpuTimeout {
            what,
            seconds: self.timeout.as_secs_f64(),
        })
    }

    /// Drops the streaming buffers, e.g. after a failure left a map pending;
    /// the next call allocates fresh ones.
    pub(crate) fn reset_ring(&mut self) {
        self.ring.clear();
    }

    pub(crate) fn destroy_device(&self) {
        self.device.destroy();
    }

    /// Test hook: smaller chunks and segments exercise the multi-chunk paths
    /// with small batches.
    pub(crate) fn set_chunk_queries(&mut self, queries: usize) {
        let queries = queries.clamp(1, self.max_dispatch_queries);
        self.chunk_queries = queries;
        self.segment_queries = queries;
        self.reset_ring();
    }

    // ----- waiting --------------------------------------------------------

    /// Blocks until `submission` has finished or `deadline` passes.
    fn wait_for(
        &self,
        submission: &wgpu::SubmissionIndex,
        what: &'static str,
        deadline: Instant,
    ) -> Result<(), Error> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let polled = catch_unwind(AssertUnwindSafe(|| {
            self.device.poll(wgpu::PollType::Wait {
                submission_index: Some(submission.clone()),
                timeout: Some(remaining),
            })
        }));
        match polled {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(wgpu::PollError::Timeout)) => Err(self.timeout_error(what)),
            Ok(Err(error)) => Err(self.lost_or(Error::Gpu(format!("{what}: {error}")))),
            Err(panic) => Err(self.lost_or(Error::DeviceLost(format!(
                "{what}: {}",
                panic_message(&*panic)
            )))),
        }
    }

    fn deadline(&self) -> Instant {
        let now = Instant::now();
        // `set_timeout` clamps to a day, so the sum only overflows on a clock
        // near the end of its range; a timeout error beats a panic there.
        now.checked_add(self.timeout).unwrap_or(now)
    }

    /// Blocks until the `map_async` issued after `submission` has completed.
    fn wait_mapped(
        &self,
        signal: &MapSignal,
        submission: &wgpu::SubmissionIndex,
        what: &'static str,
    ) -> Result<(), Error> {
        let deadline = self.deadline();
        loop {
            match signal.0.load(Ordering::Acquire) {
                MAP_OK => return Ok(()),
                MAP_FAILED => {
                    return Err(self.lost_or(Error::Gpu(format!(
                        "{what}: mapping the staging buffer failed"
                    ))));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(self.timeout_error(what));
            }
            self.wait_for(submission, what, deadline)?;
            // Normally the callback has run inside that poll; if not, the
            // next turn polls again (bounded by the deadline).
            if signal.0.load(Ordering::Acquire) == MAP_PENDING {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    // ----- buffers --------------------------------------------------------

    fn create_buffer(&mut self, label: &str, size: u64, usage: BufferUsages) -> wgpu::Buffer {
        self.allocations += 1;
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4),
            usage,
            mapped_at_creation: false,
        })
    }

    fn new_lookup_buffers(&mut self, queries: &wgpu::Buffer, capacity: usize) -> LookupBuffers {
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
        let staging = self.create_buffer(
            "initret counts staging",
            bytes,
            BufferUsages::MAP_READ | BufferUsages::COPY_DST,
        );
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("initret popcount"),
            layout: &self.bind_group_layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: self.table.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: queries.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: output.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: params.as_entire_binding(),
                },
            ],
        });
        LookupBuffers {
            capacity,
            params,
            output,
            staging,
            bind_group,
            mapped: MapSignal::default(),
        }
    }

    /// Makes sure ring slots `0..slots` exist and hold `queries` queries,
    /// reallocating only slots that are too small.
    fn ensure_ring(&mut self, slots: usize, queries: usize) {
        let capacity = queries
            .div_ceil(CAPACITY_GRANULE)
            .saturating_mul(CAPACITY_GRANULE)
            .min(self.max_dispatch_queries)
            .max(queries);
        for i in 0..slots {
            if self
                .ring
                .get(i)
                .is_some_and(|slot| slot.lookup.capacity >= queries)
            {
                continue;
            }
            let query_buffer = self.create_buffer(
                "initret queries",
                4 * capacity as u64,
                BufferUsages::STORAGE | BufferUsages::COPY_DST,
            );
            let lookup = self.new_lookup_buffers(&query_buffer, capacity);
            let slot = RingSlot {
                queries: query_buffer,
                lookup,
            };
            match self.ring.get_mut(i) {
                Some(old) => *old = slot,
                None => self.ring.push(slot),
            }
        }
    }

    fn ring_slot(&self, slot: usize) -> Result<&RingSlot, Error> {
        self.ring
            .get(slot)
            .ok_or_else(|| Error::Gpu(format!("internal: ring slot {slot} missing")))
    }

    // ----- encoding -------------------------------------------------------

    /// Writes the params and resets `first_bad`; both land before the next
    /// submit's commands. Returns the dispatch grid.
    fn prepare_dispatch(&self, lookup: &LookupBuffers, count: usize) -> (u32, u32) {
        let workgroups = count.div_ceil(WORKGROUP_SIZE as usize).max(1) as u64;
        let x = workgroups.min(u64::from(self.max_workgroups_per_dimension));
        let y = workgroups.div_ceil(x);
        let params = Params {
            count: count as u32,
            rows: self.rows,
            words_per_row: self.words_per_row,
            threads_per_row: x as u32 * WORKGROUP_SIZE,
        };
        self.queue
            .write_buffer(&lookup.params, 0, bytemuck::bytes_of(&params));
        self.queue
            .write_buffer(&lookup.output, 0, &NO_BAD_POSITION.to_ne_bytes());
        (x as u32, y as u32)
    }

    fn encode_dispatch(
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

    fn encode_readback(encoder: &mut wgpu::CommandEncoder, lookup: &LookupBuffers, count: usize) {
        encoder.copy_buffer_to_buffer(&lookup.output, 0, &lookup.staging, 0, output_bytes(count));
    }

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("initret popcount"),
            })
    }

    /// Asks for the staging buffer's first `bytes` once the submission that
    /// fills it is done. Must follow that submit: a buffer with a map pending
    /// may not be used by a submission.
    fn start_map(lookup: &LookupBuffers, bytes: u64) {
        lookup.mapped.0.store(MAP_PENDING, Ordering::Release);
        let signal = lookup.mapped.clone();
        lookup
            .staging
            .map_async(wgpu::MapMode::Read, 0..bytes, move |result| {
                let state = if result.is_ok() { MAP_OK } else { MAP_FAILED };
                signal.0.store(state, Ordering::Release);
            });
    }

    /// Copies the mapped counts into `out` and unmaps. Returns the shader's
    /// `first_bad` (position within this dispatch), if any.
    fn take_counts(&self, lookup: &LookupBuffers, out: &mut [u32]) -> Result<Option<usize>, Error> {
        let mut read = || {
            let view = lookup
                .staging
                .get_mapped_range(0..output_bytes(out.len()))
                .map_err(|e| Error::Gpu(format!("reading mapped counts: {e}")))?;
            let (flag, counts) = view.split_at(FLAG_BYTES as usize);
            copy_words(counts, out);
            let mut first_bad = [0u32];
            copy_words(flag, &mut first_bad);
            Ok(first_bad[0])
        };
        let first_bad = read();
        // The view is gone; unmap so the next chunk may copy into the buffer.
        lookup.staging.unmap();
        match first_bad? {
            NO_BAD_POSITION => Ok(None),
            position => Ok(Some(position as usize)),
        }
    }

    /// The error for the shader's reported `position`, cross-checked with the
    /// host's copy of the queries.
    fn out_of_range(&self, queries: &[u32], position: usize) -> Error {
        match queries.get(position) {
            Some(&index) if index >= self.rows => Error::IndexOutOfRange {
                position,
                index,
                rows: self.rows as usize,
            },
            _ => Error::Gpu(format!(
                "the shader flagged query position {position}, which holds a valid index"
            )),
        }
    }

    // ----- streaming ------------------------------------------------------

    /// Uploads `chunk` into ring slot `slot`, dispatches, copies the counts to
    /// staging and asks for the mapping.
    fn submit_chunk(&self, slot: usize, chunk: &[u32]) -> Result<wgpu::SubmissionIndex, Error> {
        let ring_slot = self.ring_slot(slot)?;
        self.queue
            .write_buffer(&ring_slot.queries, 0, bytemuck::cast_slice(chunk));
        let grid = self.prepare_dispatch(&ring_slot.lookup, chunk.len());
        let mut encoder = self.encoder();
        self.encode_dispatch(&mut encoder, &ring_slot.lookup, grid);
        Self::encode_readback(&mut encoder, &ring_slot.lookup, chunk.len());
        let submission = self.queue.submit([encoder.finish()]);
        Self::start_map(&ring_slot.lookup, output_bytes(chunk.len()));
        Ok(submission)
    }

    /// Waits for one chunk's counts and copies them into `out`. Returns the
    /// batch position of its first bad index, if any.
    fn finish_chunk(&self, chunk: &InFlight, out: &mut [u32]) -> Result<Option<usize>, Error> {
        let lookup = &self.ring_slot(chunk.slot)?.lookup;
        self.wait_mapped(&lookup.mapped, &chunk.submission, "popcount read-back")?;
        let local = self.take_counts(lookup, &mut out[chunk.start..chunk.start + chunk.len])?;
        Ok(local.map(|p| chunk.start + p))
    }

    /// The end-to-end path: the batch is cut into chunks that cycle through
    /// the ring, so that while chunk k computes, chunk k+1's queries are being
    /// written and chunk k-1's counts read. A slot is reused only after its
    /// counts were copied out and its staging buffer unmapped, since wgpu
    /// forbids copying into a buffer that is mapped or has a map pending.
    pub(crate) fn popcount_streaming(
        &mut self,
        queries: &[u32],
        out: &mut [u32],
    ) -> Result<(), Error> {
        let chunk = self.chunk_queries;
        let ring = queries.len().div_ceil(chunk).min(RING_SLOTS);
        self.ensure_ring(ring, queries.len().min(chunk));
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(ring);
        let mut outcome: Result<Option<usize>, Error> = Ok(None);
        for (k, part) in queries.chunks(chunk).enumerate() {
            if in_flight.len() == ring
                && let Some(oldest) = in_flight.pop_front()
            {
                outcome = self.finish_chunk(&oldest, out);
                if !matches!(outcome, Ok(None)) {
                    // Chunks finish in order, so this is the lowest bad
                    // position; submit nothing more.
                    break;
                }
            }
            match self.submit_chunk(k % ring, part) {
                Ok(submission) => in_flight.push_back(InFlight {
                    slot: k % ring,
                    start: k * chunk,
                    len: part.len(),
                    submission,
                }),
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        // Chunks still in flight are drained even after a bad index, so that
        // every staging buffer is unmapped for the next call. After a GPU
        // failure they are abandoned instead (the caller drops the ring):
        // waiting on each could take a full timeout apiece.
        while let Some(chunk) = in_flight.pop_front() {
            if outcome.is_err() {
                break;
            }
            match self.finish_chunk(&chunk, out) {
                Ok(bad) => {
                    if let Ok(None) = outcome {
                        outcome = Ok(bad);
                    }
                }
                Err(error) => outcome = Err(error),
            }
        }
        match outcome? {
            None => Ok(()),
            Some(position) => Err(self.out_of_range(queries, position)),
        }
    }

    /// Like [`Self::popcount_streaming`] but one chunk at a time through ring
    /// slot 0, waiting for the GPU after each phase so that each is timed
    /// on its own.
    pub(crate) fn popcount_timed(
        &mut self,
        queries: &[u32],
        out: &mut [u32],
    ) -> Result<GpuTimings, Error> {
        let chunk = self.chunk_queries;
        self.ensure_ring(1, queries.len().min(chunk));
        let mut timings = GpuTimings::default();
        for (k, part) in queries.chunks(chunk).enumerate() {
            let slot = self.ring_slot(0)?;
            let started = Instant::now();
            self.queue
                .write_buffer(&slot.queries, 0, bytemuck::cast_slice(part));
            let grid = self.prepare_dispatch(&slot.lookup, part.len());
            // An empty submit flushes the staged writes.
            let submission = self.queue.submit([]);
            self.wait_for(&submission, "query upload", self.deadline())?;
            timings.upload += started.elapsed();

            let started = Instant::now();
            let mut encoder = self.encoder();
            self.encode_dispatch(&mut encoder, &slot.lookup, grid);
            let submission = self.queue.submit([encoder.finish()]);
            self.wait_for(&submission, "popcount dispatch", self.deadline())?;
            timings.dispatch += started.elapsed();

            let started = Instant::now();
            let mut encoder = self.encoder();
            Self::encode_readback(&mut encoder, &slot.lookup, part.len());
            let submission = self.queue.submit([encoder.finish()]);
            Self::start_map(&slot.lookup, output_bytes(part.len()));
            self.wait_mapped(&slot.lookup.mapped, &submission, "popcount read-back")?;
            let start = k * chunk;
            let bad = self.take_counts(&slot.lookup, &mut out[start..start + part.len()])?;
            timings.readback += started.elapsed();
            if let Some(local) = bad {
                return Err(self.out_of_range(queries, start + local));
            }
        }
        Ok(timings)
    }

    // ----- device-resident batches ----------------------------------------

    /// Uploads `queries` into query buffers of at most one binding each and
    /// waits until they are on the device.
    pub(crate) fn upload_segments(&mut self, queries: &[u32]) -> Result<Vec<QuerySegment>, Error> {
        let mut segments = Vec::new();
        for part in queries.chunks(self.segment_queries) {
            let buffer = self.create_buffer(
                "initret resident queries",
                4 * part.len() as u64,
                BufferUsages::STORAGE | BufferUsages::COPY_DST | BufferUsages::COPY_SRC,
            );
            self.queue
                .write_buffer(&buffer, 0, bytemuck::cast_slice(part));
            segments.push(QuerySegment {
                buffer,
                len: part.len(),
            });
        }
        if !segments.is_empty() {
            let submission = self.queue.submit([]);
            self.wait_for(&submission, "batch upload", self.deadline())?;
        }
        Ok(segments)
    }

    /// Result buffers (and bind groups) for `segments`.
    pub(crate) fn new_result_segments(&mut self, segments: &[QuerySegment]) -> Vec<ResultSegment> {
        segments
            .iter()
            .map(|segment| ResultSegment {
                queries: segment.clone(),
                lookup: self.new_lookup_buffers(&segment.buffer, segment.len),
            })
            .collect()
    }

    /// Dispatches every segment and waits for the GPU to finish.
    pub(crate) fn run_resident(&self, results: &[ResultSegment]) -> Result<(), Error> {
        if results.is_empty() {
            return Ok(());
        }
        let mut encoder = self.encoder();
        for result in results {
            let grid = self.prepare_dispatch(&result.lookup, result.queries.len);
            self.encode_dispatch(&mut encoder, &result.lookup, grid);
        }
        let submission = self.queue.submit([encoder.finish()]);
        self.wait_for(&submission, "resident popcount dispatch", self.deadline())
    }

    /// Copies every segment's counts to the host; an out-of-range flag
    /// becomes [`Error::IndexOutOfRange`], its index read from the device.
    pub(crate) fn read_back_resident(&self, results: &[ResultSegment]) -> Result<Vec<u32>, Error> {
        let total = results.iter().map(|r| r.queries.len).sum();
        let mut out = vec![0u32; total];
        if results.is_empty() {
            return Ok(out);
        }
        let mut encoder = self.encoder();
        for result in results {
            Self::encode_readback(&mut encoder, &result.lookup, result.queries.len);
        }
        let submission = self.queue.submit([encoder.finish()]);
        for result in results {
            Self::start_map(&result.lookup, output_bytes(result.queries.len));
        }
        let mut start = 0;
        let mut first_bad: Option<(usize, &ResultSegment, usize)> = None;
        let mut outcome = Ok(());
        for result in results {
            let len = result.queries.len;
            let taken = self
                .wait_mapped(&result.lookup.mapped, &submission, "resident read-back")
                .and_then(|()| self.take_counts(&result.lookup, &mut out[start..start + len]));
            match taken {
                Ok(Some(local)) if first_bad.is_none() => {
                    first_bad = Some((start + local, result, local))
                }
                Ok(_) => {}
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
            start += len;
        }
        if let Err(error) = outcome {
            // Cancel maps still pending so the counts can be read again.
            for result in results {
                result.lookup.staging.unmap();
            }
            return Err(error);
        }
        match first_bad {
            None => Ok(out),
            Some((position, result, local)) => {
                let index = self.read_query(result, local)?;
                Err(if index >= self.rows {
                    Error::IndexOutOfRange {
                        position,
                        index,
                        rows: self.rows as usize,
                    }
                } else {
                    Error::Gpu(format!(
                        "the shader flagged position {position}, which holds valid index {index}"
                    ))
                })
            }
        }
    }

    /// Reads query `local` of a resident segment back (through the segment's
    /// staging buffer, which is unmapped at this point).
    fn read_query(&self, result: &ResultSegment, local: usize) -> Result<u32, Error> {
        let mut encoder = self.encoder();
        encoder.copy_buffer_to_buffer(
            &result.queries.buffer,
            4 * local as u64,
            &result.lookup.staging,
            0,
            4,
        );
        let submission = self.queue.submit([encoder.finish()]);
        Self::start_map(&result.lookup, 4);
        if let Err(e) = self.wait_mapped(&result.lookup.mapped, &submission, "bad index read-back")
        {
            // A pending map would make the next copy into this buffer fail.
            result.lookup.staging.unmap();
            return Err(e);
        }
        let read = result
            .lookup
            .staging
            .get_mapped_range(0..4)
            .map_err(|e| Error::Gpu(format!("reading mapped index: {e}")))
            .map(|view| {
                let mut index = [0u32];
                copy_words(&view, &mut index);
                index[0]
            });
        result.lookup.staging.unmap();
        read
    }

    // ----- bench references -------------------------------------------------

    fn measure_piece(bytes: u64) -> (u64, u64) {
        let total = bytes.max(4).next_multiple_of(4);
        (total, total.min(MEASURE_PIECE_BYTES))
    }

    /// Best-of-`reps` time of a device-side copy of `bytes`.
    pub(crate) fn measure_device_copy(
        &mut self,
        bytes: u64,
        reps: usize,
    ) -> Result<Duration, Error> {
        let (total, piece) = Self::measure_piece(bytes);
        let source = self.create_buffer(
            "initret copy source",
            piece,
            BufferUsages::COPY_SRC | BufferUsages::COPY_DST,
        );
        let target = self.create_buffer("initret copy target", piece, BufferUsages::COPY_DST);
        let mut best = Duration::MAX;
        // The first round is a warm-up: it also pays for wgpu's lazy zeroing.
        for round in 0..=reps {
            let started = Instant::now();
            let mut encoder = self.encoder();
            let mut left = total;
            while left > 0 {
                let n = left.min(piece);
                encoder.copy_buffer_to_buffer(&source, 0, &target, 0, n);
                left -= n;
            }
            let submission = self.queue.submit([encoder.finish()]);
            self.wait_for(&submission, "device copy", self.deadline())?;
            if round > 0 {
                best = best.min(started.elapsed());
            }
        }
        Ok(best)
    }

    /// Best-of-`reps` time of writing `bytes` from the host to the device and
    /// reading `bytes` back into host memory.
    pub(crate) fn measure_transfer(&mut self, bytes: u64, reps: usize) -> Result<Duration, Error> {
        let (total, piece) = Self::measure_piece(bytes);
        let device_buffer = self.create_buffer(
            "initret transfer",
            piece,
            BufferUsages::COPY_SRC | BufferUsages::COPY_DST,
        );
        let staging = self.create_buffer(
            "initret transfer staging",
            piece,
            BufferUsages::MAP_READ | BufferUsages::COPY_DST,
        );
        let host_source = vec![0xA5u8; piece as usize];
        let mut host_sink = vec![0u8; piece as usize];
        let signal = MapSignal::default();
        let mut best = Duration::MAX;
        for round in 0..=reps {
            let started = Instant::now();
            let mut left = total;
            while left > 0 {
                let n = left.min(piece);
                self.queue
                    .write_buffer(&device_buffer, 0, &host_source[..n as usize]);
                let mut encoder = self.encoder();
                encoder.copy_buffer_to_buffer(&device_buffer, 0, &staging, 0, n);
                let submission = self.queue.submit([encoder.finish()]);
                signal.0.store(MAP_PENDING, Ordering::Release);
                let note = signal.clone();
                staging.map_async(wgpu::MapMode::Read, 0..n, move |result| {
                    note.0.store(
                        if result.is_ok() { MAP_OK } else { MAP_FAILED },
                        Ordering::Release,
                    );
                });
                if let Err(error) = self.wait_mapped(&signal, &submission, "transfer read-back") {
                    staging.unmap();
                    return Err(error);
                }
                let copied = staging
                    .get_mapped_range(0..n)
                    .map(|view| host_sink[..n as usize].copy_from_slice(&view))
                    .map_err(|e| Error::Gpu(format!("transfer read-back: {e}")));
                staging.unmap();
                copied?;
                left -= n;
            }
            if round > 0 {
                best = best.min(started.elapsed());
            }
        }
        Ok(best)
    }
}
