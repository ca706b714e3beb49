//! The wgpu backend's public face: [`GpuBackend`] and its device-resident
//! values [`GpuBatch`] and [`GpuCounts`]. The backend owns the parts below
//! it (device, lookup, ring, resident segments) behind one lock; each call
//! runs inside the device's error scopes (see `fault.rs`).

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::DeviceLookup;
use super::adapter::{new_instance, select_adapter, summarize};
use super::counts::{CountLayout, RowCounts};
use super::device::Device;
use super::lookup::Lookup;
#[cfg(feature = "harness")]
use super::measure;
use super::resident::{GpuBatch, GpuCounts, Resident, next_id};
use super::stream::Ring;
use super::summary::AdapterSummary;
use super::timings::{GpuTimings, MAX_TIMEOUT};
use crate::arch::{CountTable, CountWord};
use crate::query::narrow_checked;
use crate::{BitTable, Error, PopcountBackend, QueryIndex};

/// Popcount lookups on a GPU, into per-row counts derived on the device once.
///
/// `GpuBackend` is `Send + Sync`: calls from many threads are serialized on
/// one internal lock (one device queue does the work either way).
///
/// ```
/// use initret::{BitTable, Error, PopcountBackend, gpu::GpuBackend};
///
/// # fn main() -> Result<(), initret::Error> {
/// let table = BitTable::from_rows(2, vec![0b1011, 0, u32::MAX, 1])?;
/// let gpu = match GpuBackend::new(&table) {
///     Ok(gpu) => gpu,
///     // No adapter, or a build without the `gpu` feature.
///     Err(Error::GpuUnavailable(_reason)) => {
/// #       assert!(!initret::harness::gpu_required(), "{_reason}");
///         return Ok(());
///     }
///     Err(other) => return Err(other),
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
    rows: usize,
    /// Bytes of the natural result type (the device's count lanes).
    result_bytes: usize,
    adapter: AdapterSummary,
    device_type: wgpu::DeviceType,
    state: Mutex<State>,
}

/// Everything a backend keeps between calls. The table itself is not
/// here: only its per-row counts, inside `lookup`.
struct State {
    device: Device,
    lookup: Lookup,
    ring: Ring,
    resident: Resident,
}

/// How [`GpuBackend::build`] deviates from [`GpuBackend::new`], for tests.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BuildOptions {
    /// Upload at most this many table bytes at a time.
    pub(crate) piece_bytes: Option<u64>,
    /// Open the device with its storage binding and buffer limits lowered
    /// to this, so that the limits' paths run on any adapter.
    pub(crate) binding_limit: Option<u64>,
}

impl fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuBackend")
            .field("adapter", &self.adapter)
            .finish_non_exhaustive()
    }
}

/// Where a backend's counts come from.
#[derive(Clone, Copy)]
enum CountSource<'a> {
    /// Derived on the device from the table.
    Table(&'a BitTable),
    /// Derived on the host already, for rows of this many words.
    Counts(&'a CountTable, usize),
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
    /// use initret::{BitTable, Error, PopcountBackend, gpu::GpuBackend};
    ///
    /// match GpuBackend::new(&BitTable::seed(16)) {
    ///     Ok(gpu) => assert_eq!(gpu.popcount(&[15])?, vec![4]),
    ///     // No adapter, or a build without the `gpu` feature.
    ///     Err(Error::GpuUnavailable(_reason)) => {
    /// #       assert!(!initret::harness::gpu_required(), "{_reason}");
    ///     }
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(table: &BitTable) -> Result<GpuBackend, Error> {
        GpuBackend::build(table, BuildOptions::default())
    }

    /// A backend over counts already derived on the host (by
    /// [`CountTable::new`], or read in place from shared memory with
    /// [`CountTable::from_memory`]) for a table of `words_per_row` words a
    /// row: the counts are uploaded as they are, and the table itself is
    /// never needed. Fails as [`GpuBackend::new`] does.
    ///
    /// ```
    /// use initret::{BitTable, Error, PopcountBackend, arch::CountTable, gpu::GpuBackend};
    ///
    /// let counts = CountTable::new(&BitTable::seed(16));
    /// match GpuBackend::from_counts(&counts, 1) {
    ///     Ok(gpu) => assert_eq!(gpu.popcount(&[15, 3])?, vec![4, 2]),
    ///     Err(Error::GpuUnavailable(_reason)) => {
    /// #       assert!(!initret::harness::gpu_required(), "{_reason}");
    ///     }
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok::<(), Error>(())
    /// ```
    pub fn from_counts(counts: &CountTable, words_per_row: usize) -> Result<GpuBackend, Error> {
        GpuBackend::build_from(
            CountSource::Counts(counts, words_per_row),
            BuildOptions::default(),
        )
    }

    /// [`GpuBackend::new`] with the deviations in `options`.
    pub(crate) fn build(table: &BitTable, options: BuildOptions) -> Result<GpuBackend, Error> {
        GpuBackend::build_from(CountSource::Table(table), options)
    }

    fn build_from(source: CountSource<'_>, options: BuildOptions) -> Result<GpuBackend, Error> {
        let adapter = select_adapter(&new_instance()?)?;
        let summary = summarize(&adapter);
        let mut limits = adapter.limits();
        if let Some(limit) = options.binding_limit {
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(limit);
            limits.max_buffer_size = limits.max_buffer_size.min(limit);
        }
        let layout = match source {
            CountSource::Table(table) => CountLayout::for_max_count(
                table.rows(),
                table.words_per_row(),
                table.max_row_count(),
            )?,
            CountSource::Counts(counts, words_per_row) => {
                CountLayout::for_counts(counts, words_per_row)?
            }
        };
        layout.check_fits(&summary.name, &limits)?;

        let device = Device::open(&adapter, limits)?;
        let lookup = device.faults().scoped(|| {
            let counts = match source {
                CountSource::Table(table) => {
                    let counts = RowCounts::new(&device, layout);
                    counts.derive(&device, table, options.piece_bytes)?;
                    counts
                }
                CountSource::Counts(counts, _) => RowCounts::upload(&device, layout, counts)?,
            };
            Ok(Lookup::new(&device, counts))
        })?;
        let mut ring = Ring::new(&lookup);
        // Software drivers (lavapipe) compile the shader at its first
        // dispatch; pay for that here rather than in the first lookup.
        match device
            .faults()
            .scoped(|| ring.popcount(&device, &lookup, &[0], &mut [0u32]))
        {
            Ok(()) | Err(Error::IndexOutOfRange { .. }) => {}
            Err(error) => return Err(error),
        }
        let resident = Resident::new(&lookup);
        Ok(GpuBackend {
            id: next_id(),
            rows: layout.rows as usize,
            result_bytes: layout.bytes_per_count() as usize,
            adapter: summary,
            device_type: adapter.get_info().device_type,
            state: Mutex::new(State {
                device,
                lookup,
                ring,
                resident,
            }),
        })
    }

    /// The adapter this backend runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// Number of rows of the table; valid queries are `0..rows()`.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the adapter is a CPU implementation (e.g. Mesa's lavapipe,
    /// named `llvmpipe`) rather than a GPU.
    pub fn is_software(&self) -> bool {
        self.device_type == wgpu::DeviceType::Cpu
    }

    /// How long one wait for the GPU may block before a call fails with
    /// [`Error::GpuTimeout`] (default 30 s).
    pub fn timeout(&self) -> Duration {
        self.lock().device.faults().timeout()
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
        self.lock()
            .device
            .faults_mut()
            .set_timeout(timeout.min(MAX_TIMEOUT));
    }

    /// Uploads `queries` to the device, to be looked up (perhaps many times)
    /// with [`DeviceLookup::popcount_resident`]. Returns once the device holds
    /// them. Indices are not checked here.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # use initret::gpu::DeviceLookup;
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
    /// let batch = gpu.upload_batch(&[7, 0, 5])?;
    /// let counts = gpu.popcount_resident(&batch)?;
    /// assert_eq!(gpu.read_back(&counts)?, vec![3, 0, 2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn upload_batch(&self, queries: &[u32]) -> Result<GpuBatch, Error> {
        self.with_state(|state| state.resident.upload(state.device, self.id, queries))
    }

    /// Copies device-resident counts to the host.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] when the batch held an index `>= rows`
    /// (lowest position, as for [`PopcountBackend::popcount`]); device failures as
    /// for [`PopcountBackend::popcount_into`]; [`Error::ForeignGpuValue`] when
    /// `counts` belong to another backend, [`Error::CountsIncomplete`] when
    /// their last lookup did not complete.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), initret::Error> {
    /// # use initret::gpu::DeviceLookup;
    /// # let gpu = initret::gpu::GpuBackend::new(&initret::BitTable::seed(8))?;
    /// let counts = gpu.popcount_resident(&gpu.upload_batch(&[3])?)?;
    /// assert_eq!(gpu.read_back(&counts)?, vec![2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn read_back(&self, counts: &GpuCounts) -> Result<Vec<u32>, Error> {
        counts.check_owner(self.id)?;
        counts.check_complete()?;
        self.with_state(|state| counts.read_back(state.device, state.lookup))
    }

    /// Time of a device-side buffer-to-buffer copy of `bytes` (rounded up to
    /// a multiple of 4), from submit until the GPU has finished; best of a few
    /// runs after a warm-up. This is the reference for device-resident
    /// lookups: the least any pass over that much memory costs.
    #[cfg(feature = "harness")]
    pub(crate) fn measure_device_copy(&self, bytes: u64) -> Result<Duration, Error> {
        measure::check_bytes(bytes)?;
        self.with_state(|state| measure::device_copy(state.device, bytes))
    }

    /// Time of writing `up` bytes from host memory to a device buffer plus
    /// reading `down` bytes back into host memory (copy to a mappable
    /// buffer, map, copy out); best of a few runs after a warm-up. This is
    /// the reference for end-to-end lookups, which must move queries in and
    /// counts out.
    #[cfg(feature = "harness")]
    pub(crate) fn measure_transfer(&self, up: u64, down: u64) -> Result<Duration, Error> {
        measure::check_bytes(up)?;
        measure::check_bytes(down)?;
        self.with_state(|state| measure::transfer(state.device, up, down))
    }

    /// Number of GPU buffers this backend has created so far (count, ring,
    /// resident and measurement buffers), for tests that check reuse.
    #[cfg(test)]
    pub(crate) fn buffer_allocations(&self) -> usize {
        self.lock().device.allocations()
    }

    /// Destroys the device, as a driver reset would; later calls must fail
    /// with [`Error::DeviceLost`].
    #[cfg(test)]
    pub(crate) fn destroy_device(&self) {
        self.lock().device.destroy();
    }

    /// Sets the streaming chunk and resident segment size (in queries), so
    /// tests can cover multi-chunk paths with small batches.
    #[cfg(test)]
    pub(crate) fn set_chunk_queries(&self, queries: usize) {
        let mut state = self.lock();
        let queries = queries.clamp(1, state.lookup.max_dispatch_queries());
        state.ring.set_chunk_queries(queries);
        state.resident.set_segment_queries(queries);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => {
                // A panic mid-call may have left a map pending: start over
                // with fresh streaming buffers.
                let mut state = poisoned.into_inner();
                state.ring.reset();
                self.state.clear_poison();
                state
            }
        }
    }

    /// Runs `work` under the lock and the device's error scopes. After a
    /// failure other than a bad index the ring may hold a pending map, so it
    /// is dropped.
    fn with_state<T>(&self, work: impl FnOnce(Parts<'_>) -> Result<T, Error>) -> Result<T, Error> {
        let mut guard = self.lock();
        let State {
            device,
            lookup,
            ring,
            resident,
        } = &mut *guard;
        let (device, lookup, resident): (&Device, &Lookup, &Resident) = (device, lookup, resident);
        let result = device.faults().scoped(|| {
            work(Parts {
                device,
                lookup,
                ring: &mut *ring,
                resident,
            })
        });
        if let Err(error) = &result
            && !matches!(error, Error::IndexOutOfRange { .. })
        {
            ring.reset();
        }
        result
    }
}

/// The lookups: any batch size is accepted, and large ones are streamed in
/// chunks through a ring of reused buffer sets, so that upload, compute and
/// read-back overlap. A `u32` batch goes to the device as it is; WGSL has no
/// 64-bit integers, so a `u64` or `i64` batch is narrowed to `u32` on the
/// host first, in one pass that also range checks it (a negative value or
/// one `>= rows` is then [`Error::IndexOutOfRange`] before anything reaches
/// the device). A bad `u32` index is flagged by the shader (an `atomicMin`
/// on the position): an error naming the lowest position, never a clamped
/// count. A device failure is [`Error::DeviceLost`], [`Error::GpuTimeout`]
/// or [`Error::Gpu`].
///
/// ```
/// use initret::{BitTable, Error, PopcountBackend, gpu::GpuBackend};
///
/// match GpuBackend::new(&BitTable::seed(8)) {
///     Ok(gpu) => {
///         let mut out = [0; 3];
///         gpu.popcount_into(&[7, 0, 5], &mut out)?;
///         assert_eq!(out, [3, 0, 2]);
///         assert!(gpu.popcount_into(&[1, 2], &mut out).is_err()); // wrong length
///         assert!(gpu.popcount(&[])?.is_empty());
///         assert_eq!(gpu.popcount_i64(&[7, 5])?, vec![3, 2]);
///         assert!(matches!(
///             gpu.popcount_u64(&[1, u64::MAX]),
///             Err(Error::IndexOutOfRange { position: 1, index, rows: 8 }) if index == i128::from(u64::MAX)
///         ));
///         assert!(matches!(
///             gpu.popcount_i64(&[1, 2, -1]),
///             Err(Error::IndexOutOfRange { position: 2, index: -1, rows: 8 })
///         ));
///     }
///     Err(Error::GpuUnavailable(_reason)) => {
/// #       assert!(!initret::harness::gpu_required(), "{_reason}");
///     }
///     Err(other) => return Err(other),
/// }
/// # Ok::<(), Error>(())
/// ```
impl PopcountBackend for GpuBackend {
    fn result_bytes(&self) -> usize {
        self.result_bytes
    }

    fn popcount_indices_into<Q: QueryIndex, R: CountWord>(
        &self,
        queries: &[Q],
        out: &mut [R],
    ) -> Result<(), Error> {
        Error::check_output_len(queries.len(), out.len())?;
        Error::check_output_width::<R>(self.result_bytes)?;
        let queries = narrow_checked(queries, self.rows())?;
        if queries.is_empty() {
            return Ok(());
        }
        self.with_state(|state| {
            state
                .ring
                .popcount(state.device, state.lookup, &queries, out)
        })
    }
}

/// What one call works on: the device and lookup shared, the ring its own.
struct Parts<'a> {
    device: &'a Device,
    lookup: &'a Lookup,
    ring: &'a mut Ring,
    resident: &'a Resident,
}

impl DeviceLookup for GpuBackend {
    fn popcount_timed(&self, queries: &[u32], out: &mut [u32]) -> Result<GpuTimings, Error> {
        Error::check_output_len(queries.len(), out.len())?;
        if queries.is_empty() {
            return Ok(GpuTimings::default());
        }
        self.with_state(|state| {
            state
                .ring
                .popcount_timed(state.device, state.lookup, queries, out)
        })
    }

    fn popcount_resident(&self, batch: &GpuBatch) -> Result<GpuCounts, Error> {
        batch.check_owner(self.id)?;
        let mut counts =
            self.with_state(|state| Ok(GpuCounts::new(state.device, state.lookup, batch)))?;
        self.popcount_resident_into(batch, &mut counts)?;
        Ok(counts)
    }

    fn popcount_resident_into(
        &self,
        batch: &GpuBatch,
        counts: &mut GpuCounts,
    ) -> Result<(), Error> {
        batch.check_owner(self.id)?;
        counts.check_owner(self.id)?;
        counts.set_complete(false);
        self.with_state(|state| counts.run(state.device, state.lookup, batch))?;
        counts.set_complete(true);
        Ok(())
    }
}
