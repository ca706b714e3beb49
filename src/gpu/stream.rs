//! The streaming ring behind [`GpuBackend`](super::GpuBackend)'s lookups
//! and [`DeviceLookup::popcount_timed`](super::DeviceLookup::popcount_timed):
//! reused buffer sets that chunks of a batch cycle through, the shape of
//! wgpu's `repeated_compute` example.

use std::collections::VecDeque;
use std::time::Instant;

use wgpu::BufferUsages;

use super::device::Device;
use super::lookup::{Lookup, LookupBuffers};
use super::timings::GpuTimings;
use crate::Error;
use crate::arch::CountWord;

/// Buffer sets in flight while streaming: with three, chunk k+1 is being
/// uploaded while chunk k computes and chunk k-1 is read back.
const RING_SLOTS: usize = 3;
/// Queries per streamed chunk (4 MiB of indices): big enough that per-submit
/// overhead is small, small enough that a large batch spans several chunks
/// so that transfers and compute overlap.
const DEFAULT_CHUNK_QUERIES: usize = 1 << 20;
/// Ring capacities are rounded up to this many queries, so that a batch a
/// little larger than the last does not reallocate.
const CAPACITY_GRANULE: usize = 1024;

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

/// The streaming ring: its slots, allocated on first use and grown when a
/// larger batch needs them, and the chunk size.
pub(super) struct Ring {
    slots: Vec<RingSlot>,
    /// Queries per streamed chunk.
    chunk_queries: usize,
}

impl Ring {
    /// An empty ring whose chunks fit one dispatch of `lookup`.
    pub(super) fn new(lookup: &Lookup) -> Ring {
        Ring {
            slots: Vec::new(),
            chunk_queries: DEFAULT_CHUNK_QUERIES.min(lookup.max_dispatch_queries()),
        }
    }

    /// Drops the streaming buffers, e.g. after a failure left a map pending;
    /// the next call allocates fresh ones.
    pub(super) fn reset(&mut self) {
        self.slots.clear();
    }

    /// Smaller chunks let tests cover the multi-chunk paths with small
    /// batches.
    #[cfg(test)]
    pub(super) fn set_chunk_queries(&mut self, queries: usize) {
        self.chunk_queries = queries;
        self.reset();
    }

    /// Makes sure ring slots `0..slots` exist and hold `queries` queries,
    /// reallocating only slots that are too small.
    fn ensure(&mut self, device: &Device, lookup: &Lookup, slots: usize, queries: usize) {
        let capacity = queries
            .div_ceil(CAPACITY_GRANULE)
            .saturating_mul(CAPACITY_GRANULE)
            .min(lookup.max_dispatch_queries())
            .max(queries);
        for i in 0..slots {
            if self
                .slots
                .get(i)
                .is_some_and(|slot| slot.lookup.capacity() >= queries)
            {
                continue;
            }
            let query_buffer = device.create_buffer(
                "initret queries",
                4 * capacity as u64,
                BufferUsages::STORAGE | BufferUsages::COPY_DST,
            );
            let slot = RingSlot {
                lookup: lookup.buffers(device, &query_buffer, capacity),
                queries: query_buffer,
            };
            match self.slots.get_mut(i) {
                Some(old) => *old = slot,
                None => self.slots.push(slot),
            }
        }
    }

    fn slot(&self, slot: usize) -> Result<&RingSlot, Error> {
        self.slots
            .get(slot)
            .ok_or_else(|| Error::Internal(format!("ring slot {slot} was never allocated")))
    }

    /// Uploads `chunk` into ring slot `slot`, dispatches, copies the counts to
    /// staging and asks for the mapping.
    fn submit_chunk(
        &self,
        device: &Device,
        lookup: &Lookup,
        slot: usize,
        chunk: &[u32],
    ) -> Result<wgpu::SubmissionIndex, Error> {
        let slot = self.slot(slot)?;
        device
            .queue()
            .write_buffer(&slot.queries, 0, bytemuck::cast_slice(chunk));
        let grid = lookup.prepare(device, &slot.lookup, chunk.len());
        let mut encoder = device.encoder();
        lookup.encode(&mut encoder, &slot.lookup, grid);
        slot.lookup.encode_readback(&mut encoder, chunk.len());
        let submission = device.submit(encoder);
        slot.lookup.request(chunk.len());
        Ok(submission)
    }

    /// Waits for one chunk's counts and copies them into `out`. Returns the
    /// batch position of its first bad index, if any.
    fn finish_chunk<R: CountWord>(
        &self,
        device: &Device,
        chunk: &InFlight,
        out: &mut [R],
    ) -> Result<Option<usize>, Error> {
        let buffers = &self.slot(chunk.slot)?.lookup;
        let part = &mut out[chunk.start..chunk.start + chunk.len];
        let local = buffers.take_counts(device, &chunk.submission, "popcount read-back", part)?;
        Ok(local.map(|p| chunk.start + p))
    }

    /// The end-to-end path: the batch is cut into chunks that cycle through
    /// the ring, so that while chunk k computes, chunk k+1's queries are being
    /// written and chunk k-1's counts read. A slot is reused only after its
    /// counts were copied out and its staging buffer unmapped, since wgpu
    /// forbids copying into a buffer that is mapped or has a map pending.
    pub(super) fn popcount<R: CountWord>(
        &mut self,
        device: &Device,
        lookup: &Lookup,
        queries: &[u32],
        out: &mut [R],
    ) -> Result<(), Error> {
        let chunk = self.chunk_queries;
        let ring = queries.len().div_ceil(chunk).min(RING_SLOTS);
        self.ensure(device, lookup, ring, queries.len().min(chunk));
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(ring);
        let mut outcome: Result<Option<usize>, Error> = Ok(None);
        for (k, part) in queries.chunks(chunk).enumerate() {
            if in_flight.len() == ring
                && let Some(oldest) = in_flight.pop_front()
            {
                outcome = self.finish_chunk(device, &oldest, out);
                if !matches!(outcome, Ok(None)) {
                    // Chunks finish in order, so this is the lowest bad
                    // position; submit nothing more.
                    break;
                }
            }
            match self.submit_chunk(device, lookup, k % ring, part) {
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
            match self.finish_chunk(device, &chunk, out) {
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
            Some(position) => Err(lookup.out_of_range(position, queries.get(position).copied())),
        }
    }

    /// Like [`Ring::popcount`] but one chunk at a time through ring
    /// slot 0, waiting for the GPU after each phase so that each is timed
    /// on its own.
    pub(super) fn popcount_timed(
        &mut self,
        device: &Device,
        lookup: &Lookup,
        queries: &[u32],
        out: &mut [u32],
    ) -> Result<GpuTimings, Error> {
        let chunk = self.chunk_queries;
        self.ensure(device, lookup, 1, queries.len().min(chunk));
        let mut timings = GpuTimings::default();
        for (k, part) in queries.chunks(chunk).enumerate() {
            let slot = self.slot(0)?;
            let started = Instant::now();
            device
                .queue()
                .write_buffer(&slot.queries, 0, bytemuck::cast_slice(part));
            let grid = lookup.prepare(device, &slot.lookup, part.len());
            device.flush("query upload")?;
            timings.upload += started.elapsed();

            let started = Instant::now();
            let mut encoder = device.encoder();
            lookup.encode(&mut encoder, &slot.lookup, grid);
            let submission = device.submit(encoder);
            device.wait(&submission, "popcount dispatch")?;
            timings.dispatch += started.elapsed();

            let started = Instant::now();
            let mut encoder = device.encoder();
            slot.lookup.encode_readback(&mut encoder, part.len());
            let submission = device.submit(encoder);
            slot.lookup.request(part.len());
            let start = k * chunk;
            let target = &mut out[start..start + part.len()];
            let bad = slot
                .lookup
                .take_counts(device, &submission, "popcount read-back", target)?;
            timings.readback += started.elapsed();
            if let Some(local) = bad {
                let position = start + local;
                return Err(lookup.out_of_range(position, queries.get(position).copied()));
            }
        }
        Ok(timings)
    }
}
