//! The wgpu backend's public face: [`GpuBackend`] and its device-resident
//! values [`GpuBatch`] and [`GpuCounts`]. Each call takes the backend's lock
//! and runs on the [`Context`] inside error scopes (see `fault.rs`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::device::Context;
use super::resident::{QuerySegment, ResultSegment};
use super::{AdapterSummary, GpuTimings, MAX_TIMEOUT};
use crate::{BitTable, Error};

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
        return Err(Error::InvalidConfig(format!(
            "{bytes} bytes is more than the {MAX_MEASURE_BYTES} a reference measurement may move"
        )));
    }
    Ok(())
}

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Popcount lookups on a GPU, into per-row counts derived on the device once.
///
/// `GpuBackend` is `Send + Sync`: calls from many threads are serialized on
/// one internal lock (one device queue does the work either way).
///
/// ```
/// use initret::{BitTable, gpu::GpuBackend};
///
/// # fn main() -> Result<(), initret::Error> {
/// let table = BitTable::from_rows(2, vec![0b1011, 0, u32::MAX, 1])?;
/// let gpu = match GpuBackend::new(&table) {
///     Ok(gpu) => gpu,
///     // No adapter here: fine, unless the GPU is required (CI on lavapipe).
///     Err(initret::Error::GpuUnavailable(_))
///         if std::env::var("INITRET_REQUIRE_GPU").as_deref() != Ok("1") => return Ok(()),
///     Err(error) => return Err(error),
/// };
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
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4))?;
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
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4))?;
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
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4))?;
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
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4))?;
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
    /// derives the table's per-row counts on the device (the GPU's
    /// initializer: the table streams through a counting pass in pieces that
    /// fit one storage binding, and only the counts stay) and builds the
    /// lookup pipeline.
    ///
    /// The adapter is the one whose name contains `INITRET_ADAPTER`
    /// (case-insensitive) when that variable is set, else the most GPU-like
    /// one (discrete, then integrated, ..., software last).
    ///
    /// # Errors
    ///
    /// [`Error::GpuUnavailable`] when there is no adapter (the message says
    /// how to get the software one), when `INITRET_ADAPTER` matches none, or
    /// when the per-row counts (1, 2 or 4 bytes a row) exceed the adapter's
    /// storage-binding or buffer limit; the table itself may be far larger.
    /// [`Error::InvalidTable`] for rows of 2^27 words or more, whose count
    /// may not fit a `u32`. [`Error::Gpu`] when the adapter refuses a device
    /// or setting up fails; the derivation and the warm-up dispatch can also
    /// fail like any call: [`Error::GpuTimeout`] or [`Error::DeviceLost`].
    ///
    /// ```
    /// use initret::{BitTable, Error, gpu::GpuBackend};
    ///
    /// match GpuBackend::new(&BitTable::seed(16)) {
    ///     Ok(gpu) => assert_eq!(gpu.popcount(&[15])?, vec![4]),
    ///     Err(Error::GpuUnavailable(reason)) => assert!(
    ///         std::env::var("INITRET_REQUIRE_GPU").as_deref() != Ok("1"),
    ///         "the GPU is required: {reason}"
    ///     ),
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(table: &BitTable) -> Result<GpuBackend, Error> {
        GpuBackend::build(table, None)
    }

    /// [`GpuBackend::new`], uploading at most `piece_bytes` of the table at
    /// a time when given (tests cut small tables into many pieces).
    pub(crate) fn build(table: &BitTable, piece_bytes: Option<u64>) -> Result<GpuBackend, Error> {
        let (mut context, adapter, device_type) = Context::new(table)?;
        context.scoped(|ctx| ctx.derive_counts(table, piece_bytes))?;
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
    /// ```no_run
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4)).unwrap();
    /// let adapter = gpu.adapter();
    /// assert!(initret::gpu::adapters().iter().any(|a| a.name == adapter.name));
    /// ```
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// Whether the adapter is a CPU implementation (e.g. Mesa's lavapipe,
    /// named `llvmpipe`) rather than a GPU.
    ///
    /// ```no_run
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4)).unwrap();
    /// assert_eq!(gpu.is_software(), gpu.adapter().device_type == "Cpu");
    /// ```
    pub fn is_software(&self) -> bool {
        self.device_type == wgpu::DeviceType::Cpu
    }

    /// How long one wait for the GPU may block before a call fails with
    /// [`Error::GpuTimeout`] (default 30 s).
    ///
    /// ```no_run
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4)).unwrap();
    /// assert!(gpu.timeout().as_secs() > 0);
    /// ```
    pub fn timeout(&self) -> Duration {
        self.lock().timeout
    }

    /// Sets the limit [`GpuBackend::timeout`] reports; values above
    /// [`MAX_TIMEOUT`] are clamped to it. Waits for a call in progress, as
    /// it shares that call's lock.
    ///
    /// ```no_run
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(4)).unwrap();
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
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
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
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
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
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
    /// let mut out = [0u32; 2];
    /// let timings = gpu.popcount_timed(&[7, 3], &mut out)?;
    /// assert_eq!(out, [3, 2]);
    /// assert!(timings.total() >= timings.dispatch);
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
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
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
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
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
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
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
    /// for [`GpuBackend::popcount_into`]; [`Error::ForeignGpuValue`] when
    /// `counts` belong to another backend, [`Error::CountsIncomplete`] when
    /// their last lookup did not complete.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
    /// let counts = gpu.popcount_resident(&gpu.upload_batch(&[3])?)?;
    /// assert_eq!(gpu.read_back(&counts)?, vec![2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn read_back(&self, counts: &GpuCounts) -> Result<Vec<u32>, Error> {
        self.check_counts(counts)?;
        if !counts.complete {
            return Err(Error::CountsIncomplete);
        }
        self.with_context(|ctx| ctx.read_back_resident(&counts.segments))
    }

    /// Time of a device-side buffer-to-buffer copy of `bytes` (rounded up to
    /// a multiple of 4), from submit until the GPU has finished; best of a few
    /// runs after a warm-up. This is the reference for device-resident
    /// lookups: the least any pass over that much memory costs.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
    /// let t = gpu.measure_device_copy(1 << 20)?;
    /// assert!(t > std::time::Duration::ZERO);
    /// assert!(gpu.measure_device_copy(u64::MAX).is_err()); // past 1 TiB
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
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
    /// let t = gpu.measure_transfer(1 << 20)?;
    /// assert!(t > std::time::Duration::ZERO);
    /// # Ok(())
    /// # }
    /// ```
    pub fn measure_transfer(&self, bytes: u64) -> Result<Duration, Error> {
        check_measure_bytes(bytes)?;
        self.with_context(|ctx| ctx.measure_transfer(bytes, MEASURE_REPS))
    }

    /// Number of GPU buffers this backend has created so far (count, ring,
    /// resident and measurement buffers), for tests that check reuse.
    #[cfg(test)]
    pub(crate) fn buffer_allocations(&self) -> usize {
        self.lock().allocations
    }

    /// Destroys the device, as a driver reset would; later calls must fail
    /// with [`Error::DeviceLost`].
    #[cfg(test)]
    pub(crate) fn destroy_device(&self) {
        self.lock().destroy_device();
    }

    /// Sets the streaming chunk and resident segment size (in queries), so
    /// tests can cover multi-chunk paths with small batches.
    #[cfg(test)]
    pub(crate) fn set_chunk_queries(&self, queries: usize) {
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
            Err(Error::ForeignGpuValue { what: "GpuBatch" })
        }
    }

    fn check_counts(&self, counts: &GpuCounts) -> Result<(), Error> {
        if counts.backend_id == self.id {
            Ok(())
        } else {
            Err(Error::ForeignGpuValue { what: "GpuCounts" })
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
