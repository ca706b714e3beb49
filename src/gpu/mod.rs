//! The wgpu backend: popcount lookups into a [`BitTable`] held on the GPU.
//!
//! [`GpuBackend::new`] does all the expensive work once: it picks an adapter
//! (see [`adapters`] and the `INITRET_ADAPTER` variable), opens a device with
//! the adapter's own limits, uploads the table into a read-only storage
//! buffer and compiles the lookup pipeline. Each call then only moves queries
//! and counts:
//!
//! * [`GpuBackend::popcount`] / [`GpuBackend::popcount_into`]: end to end,
//!   any batch size; large batches stream through a ring of reused buffer
//!   sets so that upload, compute and read-back overlap.
//! * [`GpuBackend::upload_batch`], [`GpuBackend::popcount_resident`],
//!   [`GpuBackend::read_back`]: queries and counts stay on the device until
//!   asked for.
//! * [`GpuBackend::popcount_timed`]: upload, dispatch and read-back timed
//!   separately; [`GpuBackend::measure_device_copy`] and
//!   [`GpuBackend::measure_transfer`] are the bench's reference times.
//!
//! An index `>= rows` makes the call fail with [`Error::IndexOutOfRange`]
//! naming the lowest offending position: the shader records it with an
//! `atomicMin`, so no separate pass over the queries is needed.
//!
//! ```
//! use initret::{BitTable, gpu::GpuBackend};
//!
//! # fn main() -> Result<(), initret::Error> {
//! let table = BitTable::seed(65535);
//! let Ok(gpu) = GpuBackend::new(&table) else { return Ok(()) }; // no adapter here
//! let queries: Vec<u32> = (0..65535).collect();
//! let counts = gpu.popcount(&queries)?;
//! assert_eq!(counts.iter().map(|&c| u64::from(c)).sum::<u64>(), 524272);
//! # Ok(())
//! # }
//! ```

mod adapter;
mod context;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use adapter::{ADAPTER_ENV, AdapterSummary, adapters};

use crate::{BitTable, Error};
use context::{Context, QuerySegment, ResultSegment};

/// The longest wait [`GpuBackend::set_timeout`] accepts (one day): a
/// bound that still fits any deadline arithmetic.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// The most bytes the bench references will measure (1 TiB): far past any
/// device, and small enough that sizes round up without overflow.
const MAX_MEASURE_BYTES: u64 = 1 << 40;

/// Repetitions (after one warm-up) of the bench reference measurements.
const MEASURE_REPS: usize = 3;

/// Identities for backends, batches and counts, so that device-resident
/// values are never used with a backend (device) they do not belong to.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn check_measure_bytes(bytes: u64) -> Result<(), Error> {
    if bytes > MAX_MEASURE_BYTES {
        return Err(Error::InvalidArgument(format!(
            "{bytes} bytes is more than the {MAX_MEASURE_BYTES} a reference measurement may move"
        )));
    }
    Ok(())
}

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Popcount lookups on a GPU, into one table uploaded once.
///
/// `GpuBackend` is `Send + Sync`: calls from many threads are serialized on
/// one internal lock (one device queue does the work either way).
///
/// ```
/// use initret::{BitTable, gpu::GpuBackend};
///
/// # fn main() -> Result<(), initret::Error> {
/// let table = BitTable::from_rows(2, vec![0b1011, 0, u32::MAX, 1])?;
/// let Ok(gpu) = GpuBackend::new(&table) else { return Ok(()) };
/// assert_eq!(gpu.popcount(&[1, 0, 1])?, vec![33, 3, 33]);
/// assert!(matches!(
///     gpu.popcount(&[0, 2, 5]),
///     Err(initret::Error::IndexOutOfRange { position: 1, index: 2, rows: 2 })
/// ));
/// # Ok(())
/// # }
/// ```
pub struct GpuBackend {
    id: u64,
    adapter: AdapterSummary,
    device_type: wgpu::DeviceType,
    context: Mutex<Context>,
}

/// Wall-clock time of each phase of one [`GpuBackend::popcount_timed`] call.
///
/// Each phase ends with a wait for the GPU, so the phases do not overlap
/// (unlike [`GpuBackend::popcount`], which overlaps them on large batches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuTimings {
    /// Writing the queries (and the small per-dispatch parameters) into the
    /// device's query buffer, until the device has them.
    pub upload: Duration,
    /// Running the lookup shader, from submit until the GPU has finished.
    pub dispatch: Duration,
    /// Copying the counts to a mappable buffer, mapping it and copying them
    /// into the caller's slice.
    pub readback: Duration,
}

impl GpuTimings {
    /// Sum of the three phases.
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = initret::gpu::GpuTimings {
    ///     upload: Duration::from_millis(1),
    ///     dispatch: Duration::from_millis(2),
    ///     readback: Duration::from_millis(3),
    /// };
    /// assert_eq!(t.total(), Duration::from_millis(6));
    /// ```
    pub fn total(&self) -> Duration {
        self.upload + self.dispatch + self.readback
    }
}

/// A batch of query indices already uploaded to the GPU, made by
/// [`GpuBackend::upload_batch`] and usable only with that backend.
pub struct GpuBatch {
    backend_id: u64,
    id: u64,
    len: usize,
    segments: Vec<QuerySegment>,
}

impl GpuBatch {
    /// Number of queries in the batch.
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4)) else { return Ok(()) };
    /// let batch = gpu.upload_batch(&[1, 2, 3])?;
    /// assert_eq!(batch.len(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch has no queries.
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4)) else { return Ok(()) };
    /// assert!(gpu.upload_batch(&[])?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for GpuBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuBatch")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Counts of one [`GpuBatch`], kept on the GPU until [`GpuBackend::read_back`].
///
/// Reusable: [`GpuBackend::popcount_resident_into`] writes into existing
/// counts without allocating when the batch is the same.
pub struct GpuCounts {
    backend_id: u64,
    batch_id: u64,
    len: usize,
    /// False until a lookup into these buffers has completed.
    complete: bool,
    segments: Vec<ResultSegment>,
}

impl GpuCounts {
    /// Number of counts (the batch's number of queries).
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4)) else { return Ok(()) };
    /// let counts = gpu.popcount_resident(&gpu.upload_batch(&[1, 2, 3])?)?;
    /// assert_eq!(counts.len(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no counts.
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4)) else { return Ok(()) };
    /// assert!(gpu.popcount_resident(&gpu.upload_batch(&[])?)?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for GpuCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuCounts")
            .field("len", &self.len)
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuBackend")
            .field("adapter", &self.adapter)
            .finish_non_exhaustive()
    }
}

impl GpuBackend {
    /// Picks an adapter, opens a device with the adapter's own limits,
    /// uploads `table` and builds the lookup pipeline.
    ///
    /// The adapter is the one whose name contains `INITRET_ADAPTER`
    /// (case-insensitive) when that variable is set, else the most GPU-like
    /// one (discrete, then integrated, ..., software last).
    ///
    /// # Errors
    ///
    /// [`Error::GpuUnavailable`] when there is no adapter (the message says
    /// how to get the software one), when `INITRET_ADAPTER` matches none, when
    /// the table exceeds the adapter's storage-binding or buffer limit, or
    /// when the device or pipeline cannot be created. The warm-up dispatch
    /// at the end can also fail like any call: [`Error::Gpu`],
    /// [`Error::GpuTimeout`] or [`Error::DeviceLost`].
    ///
    /// ```
    /// use initret::{BitTable, Error, gpu::GpuBackend};
    ///
    /// match GpuBackend::new(&BitTable::seed(16)) {
    ///     Ok(gpu) => println!("using {}", gpu.adapter()),
    ///     Err(Error::GpuUnavailable(reason)) => println!("no GPU: {reason}"),
    ///     Err(other) => panic!("{other}"),
    /// }
    /// ```
    pub fn new(table: &BitTable) -> Result<GpuBackend, Error> {
        let (mut context, adapter, device_type) = Context::new(table)?;
        // Software drivers (lavapipe) compile the shader at its first
        // dispatch; pay for that here rather than in the first lookup.
        match context.scoped(|ctx| ctx.popcount_streaming(&[0], &mut [0])) {
            Ok(()) | Err(Error::IndexOutOfRange { .. }) => {}
            Err(error) => return Err(error),
        }
        Ok(GpuBackend {
            id: next_id(),
            adapter,
            device_type,
            context: Mutex::new(context),
        })
    }

    /// The adapter this backend runs on.
    ///
    /// ```
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4)) else { return };
    /// println!("{}", gpu.adapter());
    /// ```
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// Whether the adapter is a CPU implementation (e.g. Mesa's lavapipe,
    /// named `llvmpipe`) rather than a GPU.
    ///
    /// ```
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4)) else { return };
    /// if gpu.is_software() {
    ///     println!("running on a software rasterizer: expect CPU-like speed");
    /// }
    /// ```
    pub fn is_software(&self) -> bool {
        self.device_type == wgpu::DeviceType::Cpu
    }

    /// How long one wait for the GPU may block before a call fails with
    /// [`Error::GpuTimeout`] (default 30 s).
    ///
    /// ```
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4)) else { return };
    /// assert!(gpu.timeout().as_secs() > 0);
    /// ```
    pub fn timeout(&self) -> Duration {
        self.lock().timeout
    }

    /// Sets the limit [`GpuBackend::timeout`] reports; values above
    /// [`MAX_TIMEOUT`] are clamped to it. Waits for a call in progress, as
    /// it shares that call's lock.
    ///
    /// ```
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4)) else { return };
    /// gpu.set_timeout(std::time::Duration::from_secs(5));
    /// assert_eq!(gpu.timeout().as_secs(), 5);
    /// ```
    pub fn set_timeout(&self, timeout: Duration) {
        self.lock().timeout = timeout.min(MAX_TIMEOUT);
    }

    /// Writes the popcount of row `queries[i]` into `out[i]` for every `i`.
    ///
    /// Any batch size is accepted; large ones are streamed in chunks.
    ///
    /// # Errors
    ///
    /// [`Error::OutputLength`] when `out.len() != queries.len()`;
    /// [`Error::IndexOutOfRange`] for the lowest position whose index is
    /// `>= rows` (`out` then holds unspecified values);
    /// [`Error::DeviceLost`], [`Error::GpuTimeout`] or [`Error::Gpu`] when the
    /// device fails.
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8)) else { return Ok(()) };
    /// let mut out = [0u32; 3];
    /// gpu.popcount_into(&[7, 0, 5], &mut out)?;
    /// assert_eq!(out, [3, 0, 2]);
    /// assert!(gpu.popcount_into(&[1, 2], &mut out).is_err()); // wrong length
    /// # Ok(())
    /// # }
    /// ```
    pub fn popcount_into(&self, queries: &[u32], out: &mut [u32]) -> Result<(), Error> {
        check_output(queries, out)?;
        if queries.is_empty() {
            return Ok(());
        }
        self.with_context(|ctx| ctx.popcount_streaming(queries, out))
    }

    /// The popcount of row `q` for each query `q`, in order.
    ///
    /// Same contract as [`GpuBackend::popcount_into`].
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8)) else { return Ok(()) };
    /// assert_eq!(gpu.popcount(&[7, 0, 5])?, vec![3, 0, 2]);
    /// assert!(gpu.popcount(&[])?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn popcount(&self, queries: &[u32]) -> Result<Vec<u32>, Error> {
        let mut out = vec![0; queries.len()];
        self.popcount_into(queries, &mut out)?;
        Ok(out)
    }

    /// Like [`GpuBackend::popcount_into`], but each phase (upload, dispatch,
    /// read-back) runs to completion before the next starts, and its
    /// wall-clock time is returned. Batches larger than one chunk add up the
    /// phases of every chunk.
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8)) else { return Ok(()) };
    /// let mut out = [0u32; 2];
    /// let timings = gpu.popcount_timed(&[7, 3], &mut out)?;
    /// assert_eq!(out, [3, 2]);
    /// println!("upload {:?}, dispatch {:?}, read-back {:?}",
    ///          timings.upload, timings.dispatch, timings.readback);
    /// # Ok(())
    /// # }
    /// ```
    pub fn popcount_timed(&self, queries: &[u32], out: &mut [u32]) -> Result<GpuTimings, Error> {
        check_output(queries, out)?;
        if queries.is_empty() {
            return Ok(GpuTimings::default());
        }
        self.with_context(|ctx| ctx.popcount_timed(queries, out))
    }

    /// Uploads `queries` to the device, to be looked up (perhaps many times)
    /// with [`GpuBackend::popcount_resident`]. Returns once the device holds
    /// them. Indices are not checked here.
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8)) else { return Ok(()) };
    /// let batch = gpu.upload_batch(&[7, 0, 5])?;
    /// let counts = gpu.popcount_resident(&batch)?;
    /// assert_eq!(gpu.read_back(&counts)?, vec![3, 0, 2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn upload_batch(&self, queries: &[u32]) -> Result<GpuBatch, Error> {
        let segments = self.with_context(|ctx| ctx.upload_segments(queries))?;
        Ok(GpuBatch {
            backend_id: self.id,
            id: next_id(),
            len: queries.len(),
            segments,
        })
    }

    /// Runs the lookups of `batch` into new device-resident counts and waits
    /// for the GPU to finish; nothing is copied to the host.
    ///
    /// Out-of-range indices are not reported here but by
    /// [`GpuBackend::read_back`], which reads the shader's flag together with
    /// the counts.
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8)) else { return Ok(()) };
    /// let batch = gpu.upload_batch(&[1, 9])?;
    /// let counts = gpu.popcount_resident(&batch)?; // succeeds...
    /// assert!(gpu.read_back(&counts).is_err()); // ...index 9 is reported here
    /// # Ok(())
    /// # }
    /// ```
    pub fn popcount_resident(&self, batch: &GpuBatch) -> Result<GpuCounts, Error> {
        self.check_batch(batch)?;
        let mut counts = self.with_context(|ctx| {
            Ok(GpuCounts {
                backend_id: self.id,
                batch_id: batch.id,
                len: batch.len,
                complete: false,
                segments: ctx.new_result_segments(&batch.segments),
            })
        })?;
        self.popcount_resident_into(batch, &mut counts)?;
        Ok(counts)
    }

    /// Like [`GpuBackend::popcount_resident`], writing into existing `counts`.
    /// When `counts` last held this same batch, no buffer or bind group is
    /// created; otherwise they are replaced to fit `batch`.
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8)) else { return Ok(()) };
    /// let batch = gpu.upload_batch(&[7, 6])?;
    /// let mut counts = gpu.popcount_resident(&batch)?;
    /// for _ in 0..3 {
    ///     gpu.popcount_resident_into(&batch, &mut counts)?;
    /// }
    /// assert_eq!(gpu.read_back(&counts)?, vec![3, 2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn popcount_resident_into(
        &self,
        batch: &GpuBatch,
        counts: &mut GpuCounts,
    ) -> Result<(), Error> {
        self.check_batch(batch)?;
        self.check_counts(counts)?;
        counts.complete = false;
        self.with_context(|ctx| {
            if counts.batch_id != batch.id {
                counts.segments = ctx.new_result_segments(&batch.segments);
                counts.batch_id = batch.id;
                counts.len = batch.len;
            }
            ctx.run_resident(&counts.segments)
        })?;
        counts.complete = true;
        Ok(())
    }

    /// Copies device-resident counts to the host.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] when the batch held an index `>= rows`
    /// (lowest position, as for [`GpuBackend::popcount`]); device failures as
    /// for [`GpuBackend::popcount_into`]; [`Error::InvalidArgument`] when
    /// `counts` belong to another backend or their last lookup did not
    /// complete.
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8)) else { return Ok(()) };
    /// let counts = gpu.popcount_resident(&gpu.upload_batch(&[3])?)?;
    /// assert_eq!(gpu.read_back(&counts)?, vec![2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn read_back(&self, counts: &GpuCounts) -> Result<Vec<u32>, Error> {
        self.check_counts(counts)?;
        if !counts.complete {
            return Err(Error::InvalidArgument(
                "these GpuCounts hold no completed lookup (the last one failed)".into(),
            ));
        }
        self.with_context(|ctx| ctx.read_back_resident(&counts.segments))
    }

    /// Time of a device-side buffer-to-buffer copy of `bytes` (rounded up to
    /// a multiple of 4), from submit until the GPU has finished; best of a few
    /// runs after a warm-up. This is the reference for device-resident
    /// lookups: the least any pass over that much memory costs.
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8)) else { return Ok(()) };
    /// let t = gpu.measure_device_copy(1 << 20)?;
    /// println!("1 MiB device copy: {t:?}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn measure_device_copy(&self, bytes: u64) -> Result<Duration, Error> {
        check_measure_bytes(bytes)?;
        self.with_context(|ctx| ctx.measure_device_copy(bytes, MEASURE_REPS))
    }

    /// Time of writing `bytes` from host memory to a device buffer plus
    /// reading `bytes` back into host memory (copy to a mappable buffer, map,
    /// copy out); best of a few runs after a warm-up. This is the reference
    /// for end-to-end lookups, which must move queries in and counts out.
    ///
    /// ```
    /// # fn main() -> Result<(), initret::Error> {
    /// # let Ok(gpu) = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8)) else { return Ok(()) };
    /// let t = gpu.measure_transfer(1 << 20)?;
    /// println!("1 MiB there and back: {t:?}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn measure_transfer(&self, bytes: u64) -> Result<Duration, Error> {
        check_measure_bytes(bytes)?;
        self.with_context(|ctx| ctx.measure_transfer(bytes, MEASURE_REPS))
    }

    /// Number of GPU buffers this backend has created so far (table, ring,
    /// resident and measurement buffers). For tests that check reuse.
    #[doc(hidden)]
    pub fn buffer_allocations(&self) -> usize {
        self.lock().allocations
    }

    /// Destroys the device, as a driver reset would; later calls must fail
    /// with [`Error::DeviceLost`].
    #[doc(hidden)]
    pub fn destroy_device_for_test(&self) {
        self.lock().destroy_device();
    }

    /// Sets the streaming chunk and resident segment size (in queries), so
    /// tests can cover multi-chunk paths with small batches.
    #[doc(hidden)]
    pub fn set_chunk_queries_for_test(&self, queries: usize) {
        self.lock().set_chunk_queries(queries);
    }

    fn lock(&self) -> MutexGuard<'_, Context> {
        match self.context.lock() {
            Ok(context) => context,
            Err(poisoned) => {
                // A panic mid-call may have left a map pending: start over
                // with fresh streaming buffers.
                let mut context = poisoned.into_inner();
                context.reset_ring();
                self.context.clear_poison();
                context
            }
        }
    }

    /// Runs `work` under the lock and the device's error scopes. After a
    /// failure other than a bad index the ring may hold a pending map, so it
    /// is dropped.
    fn with_context<T>(
        &self,
        work: impl FnOnce(&mut Context) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut context = self.lock();
        let result = context.scoped(work);
        if let Err(error) = &result
            && !matches!(error, Error::IndexOutOfRange { .. })
        {
            context.reset_ring();
        }
        result
    }

    fn check_batch(&self, batch: &GpuBatch) -> Result<(), Error> {
        if batch.backend_id == self.id {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "this GpuBatch was uploaded by another GpuBackend".into(),
            ))
        }
    }

    fn check_counts(&self, counts: &GpuCounts) -> Result<(), Error> {
        if counts.backend_id == self.id {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "these GpuCounts belong to another GpuBackend".into(),
            ))
        }
    }
}

fn check_output(queries: &[u32], out: &[u32]) -> Result<(), Error> {
    if queries.len() == out.len() {
        Ok(())
    } else {
        Err(Error::OutputLength {
            queries: queries.len(),
            output: out.len(),
        })
    }
}
