//! Device-resident batches: queries uploaded once
//! ([`GpuBackend::upload_batch`](super::GpuBackend::upload_batch)), looked
//! up any number of times into counts that stay on the device, read back on
//! request. A batch is cut into segments of at most one dispatch each.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use wgpu::BufferUsages;

use super::device::Device;
use super::lookup::{Lookup, LookupBuffers};
use super::staging::copy_words;
use crate::Error;

/// Identities for backends, batches and counts, so that device-resident
/// values are never used with a backend (device) they do not belong to.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A new identity, never handed out before.
pub(super) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A batch of query indices already uploaded to the GPU, made by
/// [`GpuBackend::upload_batch`](super::GpuBackend::upload_batch) and usable
/// only with that backend.
pub struct GpuBatch {
    owner: u64,
    id: u64,
    len: usize,
    segments: Vec<QuerySegment>,
}

impl GpuBatch {
    /// Number of queries in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch has no queries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The refusal for a batch another backend (`owner`) made.
    pub(super) fn check_owner(&self, owner: u64) -> Result<(), Error> {
        if self.owner == owner {
            Ok(())
        } else {
            Err(Error::ForeignGpuValue { what: "GpuBatch" })
        }
    }
}

impl fmt::Debug for GpuBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuBatch")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Counts of one [`GpuBatch`], kept on the GPU until
/// [`GpuBackend::read_back`](super::GpuBackend::read_back).
///
/// Reusable:
/// [`DeviceLookup::popcount_resident_into`](super::DeviceLookup::popcount_resident_into)
/// writes into existing counts without allocating when the batch is the
/// same.
pub struct GpuCounts {
    owner: u64,
    batch_id: u64,
    len: usize,
    /// False until a lookup into these buffers has completed.
    complete: bool,
    segments: Vec<ResultSegment>,
}

impl GpuCounts {
    /// Number of counts (the batch's number of queries).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no counts.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Result buffers (and bind groups) for `batch`, not yet looked up.
    pub(super) fn new(device: &Device, lookup: &Lookup, batch: &GpuBatch) -> GpuCounts {
        GpuCounts {
            owner: batch.owner,
            batch_id: batch.id,
            len: batch.len,
            complete: false,
            segments: result_segments(device, lookup, &batch.segments),
        }
    }

    /// The refusal for counts another backend (`owner`) made.
    pub(super) fn check_owner(&self, owner: u64) -> Result<(), Error> {
        if self.owner == owner {
            Ok(())
        } else {
            Err(Error::ForeignGpuValue { what: "GpuCounts" })
        }
    }

    /// The refusal for counts whose last lookup did not complete.
    pub(super) fn check_complete(&self) -> Result<(), Error> {
        if self.complete {
            Ok(())
        } else {
            Err(Error::CountsIncomplete)
        }
    }

    pub(super) fn set_complete(&mut self, complete: bool) {
        self.complete = complete;
    }

    /// Looks up `batch` into these counts and waits for the GPU; the
    /// buffers are replaced first when they last held another batch.
    pub(super) fn run(
        &mut self,
        device: &Device,
        lookup: &Lookup,
        batch: &GpuBatch,
    ) -> Result<(), Error> {
        if self.batch_id != batch.id {
            self.segments = result_segments(device, lookup, &batch.segments);
            self.batch_id = batch.id;
            self.len = batch.len;
        }
        run(device, lookup, &self.segments)
    }

    /// Copies the counts to the host (see [`read_back`]).
    pub(super) fn read_back(&self, device: &Device, lookup: &Lookup) -> Result<Vec<u32>, Error> {
        read_back(device, lookup, &self.segments)
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

/// Queries already on the GPU: one buffer of at most one dispatch's worth.
#[derive(Clone)]
pub(super) struct QuerySegment {
    buffer: wgpu::Buffer,
    len: usize,
}

/// One resident segment's results: the queries it read and its buffers.
pub(super) struct ResultSegment {
    queries: QuerySegment,
    lookup: LookupBuffers,
}

/// How resident batches are cut: queries per segment (one query buffer
/// and one dispatch each).
pub(super) struct Resident {
    segment_queries: usize,
}

impl Resident {
    /// Segments as large as one dispatch of `lookup` allows.
    pub(super) fn new(lookup: &Lookup) -> Resident {
        Resident {
            segment_queries: lookup.max_dispatch_queries(),
        }
    }

    /// Smaller segments let tests cover multi-segment batches cheaply.
    #[cfg(test)]
    pub(super) fn set_segment_queries(&mut self, queries: usize) {
        self.segment_queries = queries;
    }

    /// Uploads `queries` into query buffers of at most one segment each and
    /// waits until they are on the device; the batch belongs to `owner`.
    pub(super) fn upload(
        &self,
        device: &Device,
        owner: u64,
        queries: &[u32],
    ) -> Result<GpuBatch, Error> {
        let mut segments = Vec::new();
        for part in queries.chunks(self.segment_queries) {
            let buffer = device.create_buffer(
                "initret resident queries",
                4 * part.len() as u64,
                BufferUsages::STORAGE | BufferUsages::COPY_DST | BufferUsages::COPY_SRC,
            );
            device
                .queue()
                .write_buffer(&buffer, 0, bytemuck::cast_slice(part));
            segments.push(QuerySegment {
                buffer,
                len: part.len(),
            });
        }
        if !segments.is_empty() {
            device.flush("batch upload")?;
        }
        Ok(GpuBatch {
            owner,
            id: next_id(),
            len: queries.len(),
            segments,
        })
    }
}

/// Result buffers (and bind groups) for `segments`.
fn result_segments(
    device: &Device,
    lookup: &Lookup,
    segments: &[QuerySegment],
) -> Vec<ResultSegment> {
    segments
        .iter()
        .map(|segment| ResultSegment {
            queries: segment.clone(),
            lookup: lookup.buffers(device, &segment.buffer, segment.len),
        })
        .collect()
}

/// Dispatches every segment and waits for the GPU to finish.
fn run(device: &Device, lookup: &Lookup, results: &[ResultSegment]) -> Result<(), Error> {
    if results.is_empty() {
        return Ok(());
    }
    let mut encoder = device.encoder();
    for result in results {
        let grid = lookup.prepare(device, &result.lookup, result.queries.len);
        lookup.encode(&mut encoder, &result.lookup, grid);
    }
    let submission = device.submit(encoder);
    device.wait(&submission, "resident popcount dispatch")
}

/// Copies every segment's counts to the host; an out-of-range flag
/// becomes [`Error::IndexOutOfRange`], its index read from the device.
fn read_back(
    device: &Device,
    lookup: &Lookup,
    results: &[ResultSegment],
) -> Result<Vec<u32>, Error> {
    let total = results.iter().map(|r| r.queries.len).sum();
    let mut out = vec![0u32; total];
    if results.is_empty() {
        return Ok(out);
    }
    let mut encoder = device.encoder();
    for result in results {
        result
            .lookup
            .encode_readback(&mut encoder, result.queries.len);
    }
    let submission = device.submit(encoder);
    for result in results {
        result.lookup.request(result.queries.len);
    }
    let mut start = 0;
    let mut first_bad: Option<(usize, &ResultSegment, usize)> = None;
    let mut failed = None;
    for result in results {
        let len = result.queries.len;
        let target = &mut out[start..start + len];
        if failed.is_some() {
            // Waiting on each could take a full timeout apiece; cancel
            // instead, so that the counts can be read again later.
            result.lookup.staging().cancel();
            continue;
        }
        match result
            .lookup
            .take_counts(device, &submission, "resident read-back", target)
        {
            Ok(Some(local)) if first_bad.is_none() => {
                first_bad = Some((start + local, result, local))
            }
            Ok(_) => {}
            Err(error) => failed = Some(error),
        }
        start += len;
    }
    if let Some(error) = failed {
        return Err(error);
    }
    match first_bad {
        None => Ok(out),
        Some((position, result, local)) => {
            let index = read_query(device, result, local)?;
            Err(lookup.out_of_range(position, Some(index)))
        }
    }
}

/// Reads query `local` of a resident segment back (through the segment's
/// staging buffer, which is unmapped at this point).
fn read_query(device: &Device, result: &ResultSegment, local: usize) -> Result<u32, Error> {
    let mut encoder = device.encoder();
    let staging = result.lookup.staging();
    staging.encode_copy(&mut encoder, &result.queries.buffer, 4 * local as u64, 4);
    let submission = device.submit(encoder);
    staging.request(4);
    staging.read(device, &submission, "bad index read-back", 4, |view| {
        let mut index = [0u32];
        copy_words(view, &mut index);
        index[0]
    })
}
