//! The streaming ring behind [`GpuBackend::popcount_into`](super::GpuBackend::popcount_into)
//! and [`GpuBackend::popcount_timed`](super::GpuBackend::popcount_timed):
//! reused buffer sets that chunks of a batch cycle through, the shape of
//! wgpu's `repeated_compute` example.

use std::collections::VecDeque;
use std::time::Instant;

use wgpu::BufferUsages;

use super::GpuTimings;
use super::device::Context;
use super::lookup::{LookupBuffers, output_bytes};
use crate::Error;

/// Buffer sets in flight while streaming: with three, chunk k+1 is being
/// uploaded while chunk k computes and chunk k-1 is read back.
pub(super) const RING_SLOTS: usize = 3;
/// Queries per streamed chunk (4 MiB of indices): big enough that per-submit
/// overhead is small, small enough that a large batch spans several chunks
/// so that transfers and compute overlap.
pub(super) const DEFAULT_CHUNK_QUERIES: usize = 1 << 20;
/// Ring capacities are rounded up to this many queries, so that a batch a
/// little larger than the last does not reallocate.
const CAPACITY_GRANULE: usize = 1024;

/// One buffer set of the streaming ring.
pub(crate) struct RingSlot {
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

impl Context {
    /// Drops the streaming buffers, e.g. after a failure left a map pending;
    /// the next call allocates fresh ones.
    pub(crate) fn reset_ring(&mut self) {
        self.ring.clear();
    }

    /// Smaller chunks and segments let tests cover the multi-chunk paths
    /// with small batches.
    #[cfg(test)]
    pub(crate) fn set_chunk_queries(&mut self, queries: usize) {
        let queries = queries.clamp(1, self.max_dispatch_queries);
        self.chunk_queries = queries;
        self.segment_queries = queries;
        self.reset_ring();
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
            .ok_or_else(|| Error::Internal(format!("ring slot {slot} was never allocated")))
    }

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
        ring_slot.lookup.staging.request(output_bytes(chunk.len()));
        Ok(submission)
    }

    /// Waits for one chunk's counts and copies them into `out`. Returns the
    /// batch position of its first bad index, if any.
    fn finish_chunk(&self, chunk: &InFlight, out: &mut [u32]) -> Result<Option<usize>, Error> {
        let lookup = &self.ring_slot(chunk.slot)?.lookup;
        let part = &mut out[chunk.start..chunk.start + chunk.len];
        let local = self.take_counts(lookup, &chunk.submission, "popcount read-back", part)?;
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
            Some(position) => Err(self.out_of_range(position, queries.get(position).copied())),
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
            self.flush("query upload")?;
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
            slot.lookup.staging.request(output_bytes(part.len()));
            let start = k * chunk;
            let target = &mut out[start..start + part.len()];
            let bad = self.take_counts(&slot.lookup, &submission, "popcount read-back", target)?;
            timings.readback += started.elapsed();
            if let Some(local) = bad {
                let position = start + local;
                return Err(self.out_of_range(position, queries.get(position).copied()));
            }
        }
        Ok(timings)
    }
}
