//! The bench's reference times: a device-side copy (what any pass over the
//! counts must at least cost) and a host-to-device-to-host transfer (what
//! any end-to-end lookup must at least cost).

use std::time::{Duration, Instant};

use wgpu::BufferUsages;

use super::device::Context;
use super::staging::Staging;
use crate::Error;

/// Largest single buffer the references allocate; larger transfers reuse
/// it piece by piece.
const MEASURE_PIECE_BYTES: u64 = 256 << 20;

/// `bytes` rounded up to whole words, and the piece moved at a time.
fn measure_piece(bytes: u64) -> (u64, u64) {
    let total = bytes.max(4).next_multiple_of(4);
    (total, total.min(MEASURE_PIECE_BYTES))
}

impl Context {
    /// Best-of-`reps` time of a device-side copy of `bytes`.
    pub(crate) fn measure_device_copy(
        &mut self,
        bytes: u64,
        reps: usize,
    ) -> Result<Duration, Error> {
        let (total, piece) = measure_piece(bytes);
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
        let (total, piece) = measure_piece(bytes);
        let device_buffer = self.create_buffer(
            "initret transfer",
            piece,
            BufferUsages::COPY_SRC | BufferUsages::COPY_DST,
        );
        let staging = Staging::new(self, "initret transfer staging", piece);
        let host_source = vec![0xA5u8; piece as usize];
        let mut host_sink = vec![0u8; piece as usize];
        let mut best = Duration::MAX;
        for round in 0..=reps {
            let started = Instant::now();
            let mut left = total;
            while left > 0 {
                let n = left.min(piece);
                self.queue
                    .write_buffer(&device_buffer, 0, &host_source[..n as usize]);
                let mut encoder = self.encoder();
                encoder.copy_buffer_to_buffer(&device_buffer, 0, &staging.buffer, 0, n);
                let submission = self.queue.submit([encoder.finish()]);
                staging.request(n);
                self.read_mapped(&staging, &submission, "transfer read-back", n, |view| {
                    host_sink[..n as usize].copy_from_slice(view)
                })?;
                left -= n;
            }
            if round > 0 {
                best = best.min(started.elapsed());
            }
        }
        Ok(best)
    }
}
