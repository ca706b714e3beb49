//! Device-resident batches: queries uploaded once
//! ([`GpuBackend::upload_batch`](super::GpuBackend::upload_batch)), looked
//! up any number of times into counts that stay on the device, read back on
//! request.

use wgpu::BufferUsages;

use super::device::Context;
use super::lookup::{LookupBuffers, output_bytes};
use super::staging::copy_words;
use crate::Error;

/// Queries already on the GPU: one buffer of at most one binding's worth.
#[derive(Clone)]
pub(crate) struct QuerySegment {
    buffer: wgpu::Buffer,
    len: usize,
}

/// One resident segment's results: the queries it read and its buffers.
pub(crate) struct ResultSegment {
    queries: QuerySegment,
    lookup: LookupBuffers,
}

impl Context {
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
            self.flush("batch upload")?;
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
            result
                .lookup
                .staging
                .request(output_bytes(result.queries.len));
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
                result.lookup.staging.cancel();
                continue;
            }
            match self.take_counts(&result.lookup, &submission, "resident read-back", target) {
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
                let index = self.read_query(result, local)?;
                Err(self.out_of_range(position, Some(index)))
            }
        }
    }

    /// Reads query `local` of a resident segment back (through the segment's
    /// staging buffer, which is unmapped at this point).
    fn read_query(&self, result: &ResultSegment, local: usize) -> Result<u32, Error> {
        let mut encoder = self.encoder();
        let staging = &result.lookup.staging;
        encoder.copy_buffer_to_buffer(
            &result.queries.buffer,
            4 * local as u64,
            &staging.buffer,
            0,
            4,
        );
        let submission = self.queue.submit([encoder.finish()]);
        staging.request(4);
        self.read_mapped(staging, &submission, "bad index read-back", 4, |view| {
            let mut index = [0u32];
            copy_words(view, &mut index);
            index[0]
        })
    }
}
