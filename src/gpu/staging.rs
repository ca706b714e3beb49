//! Staging and mapping: the one routine that gets bytes from the device to
//! the host ([`Staging::read`]), used by the streamed chunks, the resident
//! read-back and the transfer measurement alike.
//!
//! The protocol wgpu imposes: copy into a `MAP_READ` buffer, submit, *then*
//! ask for the mapping (a buffer with a map pending may not be used by a
//! submission), poll until the callback has run, read, unmap (a mapped
//! buffer may not be copied into again).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wgpu::BufferUsages;

use super::device::Device;
use super::error::GpuError;
use crate::Error;
use crate::arch::{CountWord, narrow_count};

/// Outcome of the latest `map_async` on one staging buffer. The callback
/// runs inside whichever `Device::poll` notices completion, so it can only
/// leave a note here; the waiting code reads it.
#[derive(Clone, Default)]
struct MapState(Arc<Mutex<Option<Result<(), wgpu::BufferAsyncError>>>>);

/// A host-readable buffer and the state of its map request.
pub(super) struct Staging {
    buffer: wgpu::Buffer,
    state: MapState,
}

impl Staging {
    pub(super) fn new(device: &Device, label: &str, bytes: u64) -> Staging {
        Staging {
            buffer: device.create_buffer(
                label,
                bytes,
                BufferUsages::MAP_READ | BufferUsages::COPY_DST,
            ),
            state: MapState::default(),
        }
    }

    /// Asks for the buffer's first `bytes` once the submission that fills
    /// it is done. Must follow that submit.
    pub(super) fn request(&self, bytes: u64) {
        if let Ok(mut state) = self.state.0.lock() {
            *state = None;
        }
        let note = self.state.clone();
        self.buffer
            .map_async(wgpu::MapMode::Read, 0..bytes, move |result| {
                if let Ok(mut state) = note.0.lock() {
                    *state = Some(result);
                }
            });
    }

    /// Ends the mapping, or cancels one still pending, so the buffer can be
    /// copied into again. A failed map left the buffer idle, and unmapping
    /// an idle buffer is itself a validation error that would hide the real
    /// one, so that case is left alone.
    pub(super) fn cancel(&self) {
        if !matches!(self.outcome(), Some(Err(_))) {
            self.buffer.unmap();
        }
    }

    /// Copies `bytes` from `source` at `offset` into the start of this
    /// buffer.
    pub(super) fn encode_copy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        source: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) {
        encoder.copy_buffer_to_buffer(source, offset, &self.buffer, 0, bytes);
    }

    /// Waits (bounded by the timeout) for the map `self.request(bytes)`
    /// asked for after `submission`, hands the mapped bytes to `read`, and
    /// unmaps, also when anything failed, so that the buffer can be used
    /// again.
    pub(super) fn read<T>(
        &self,
        device: &Device,
        submission: &wgpu::SubmissionIndex,
        what: &'static str,
        bytes: u64,
        read: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, Error> {
        let result = self.wait_mapped(device, submission, what).and_then(|()| {
            let view = self
                .buffer
                .get_mapped_range(0..bytes)
                .map_err(GpuError::from)?;
            Ok(read(&view))
        });
        // The view is gone: end the mapping, or cancel one still pending.
        self.cancel();
        result
    }

    fn wait_mapped(
        &self,
        device: &Device,
        submission: &wgpu::SubmissionIndex,
        what: &'static str,
    ) -> Result<(), Error> {
        let faults = device.faults();
        let deadline = faults.deadline();
        loop {
            match self.outcome() {
                Some(Ok(())) => return Ok(()),
                Some(Err(error)) => return Err(faults.lost_or(GpuError::from(error).into())),
                None => {}
            }
            if std::time::Instant::now() >= deadline {
                return Err(faults.timeout_error(what));
            }
            faults.wait_for(submission, what, deadline)?;
            // Normally the callback has run inside that poll; if not, the
            // next turn polls again (bounded by the deadline).
            if self.outcome().is_none() {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// `None` while the map is pending.
    fn outcome(&self) -> Option<Result<(), wgpu::BufferAsyncError>> {
        self.state.0.lock().ok().and_then(|state| state.clone())
    }
}

/// Copies counts packed `1 << lanes_log2` to a `u32` word (the count
/// table's own type, low lane first, as the lookup shader writes them) out
/// of mapped bytes into `out`, widened to `R` where `R` is wider (the copy
/// out of the staging buffer happens anyway, so a wider result costs no
/// pass of its own). The caller has checked that `R` holds every count
/// ([`Error::OutputTooNarrow`](crate::Error::OutputTooNarrow)).
pub(super) fn copy_counts<R: CountWord>(bytes: &[u8], lanes_log2: u32, out: &mut [R]) {
    let same_width = R::BYTES << lanes_log2 == 4;
    if same_width && cfg!(target_endian = "little") {
        // SAFETY: `R` is sealed to `u8`, `u16` and `u32`, for which every
        // byte pattern is valid, and the slice covers exactly `out`'s bytes.
        let out_bytes = unsafe {
            std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), size_of_val(out))
        };
        // A little-endian word holds its low lane in its first bytes, so the
        // packed words are the counts in order.
        if let Some(counts) = bytes.get(..out_bytes.len()) {
            out_bytes.copy_from_slice(counts);
            return;
        }
    }
    let lanes = 1usize << lanes_log2;
    let bits = 32 >> lanes_log2;
    let mask = u32::MAX >> (32 - bits);
    for (counts, b) in out.chunks_mut(lanes).zip(bytes.chunks_exact(4)) {
        let word = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        for (lane, slot) in (0u32..).zip(counts.iter_mut()) {
            *slot = narrow_count::<R>((word >> (lane * bits)) & mask);
        }
    }
}

/// Copies `u32` words out of mapped bytes (which wgpu aligns, but a failed
/// cast must not panic).
pub(super) fn copy_words(bytes: &[u8], out: &mut [u32]) {
    match bytemuck::try_cast_slice::<u8, u32>(bytes) {
        Ok(words) if words.len() == out.len() => out.copy_from_slice(words),
        _ => {
            for (word, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *word = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs `counts` as the shader does: `1 << lanes_log2` to a word, low lane first.
    fn pack(counts: &[u32], lanes_log2: u32) -> Vec<u8> {
        let bits = 32 >> lanes_log2;
        counts
            .chunks(1 << lanes_log2)
            .map(|lanes| {
                (0u32..)
                    .zip(lanes)
                    .fold(0u32, |word, (lane, &c)| word | c << (lane * bits))
            })
            .flat_map(u32::to_ne_bytes)
            .collect()
    }

    fn unpacked<R: CountWord>(bytes: &[u8], lanes_log2: u32, n: usize) -> Vec<u32> {
        let mut out = vec![R::ZERO; n];
        copy_counts(bytes, lanes_log2, &mut out);
        out.into_iter().map(Into::into).collect()
    }

    #[test]
    fn packed_counts_come_back_in_order_at_every_width_and_length() {
        for lanes_log2 in 0..=2u32 {
            let top = u32::MAX >> (32 - (32 >> lanes_log2));
            for n in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 63] {
                let mut counts: Vec<u32> = (0..n as u32).map(|i| (i * 37 + 1) % 200).collect();
                if let Some(last) = counts.last_mut() {
                    *last = top.min(65535); // a lane's largest count
                }
                let bytes = pack(&counts, lanes_log2);
                assert_eq!(bytes.len(), 4 * n.div_ceil(1 << lanes_log2));
                let widest = counts.clone();
                assert_eq!(
                    unpacked::<u32>(&bytes, lanes_log2, n),
                    widest,
                    "lanes_log2 {lanes_log2} n {n}"
                );
                if lanes_log2 >= 1 {
                    assert_eq!(
                        unpacked::<u16>(&bytes, lanes_log2, n),
                        widest,
                        "u16 lanes_log2 {lanes_log2} n {n}"
                    );
                }
                if lanes_log2 == 2 {
                    assert_eq!(unpacked::<u8>(&bytes, lanes_log2, n), widest, "u8 n {n}");
                }
            }
        }
    }

    #[test]
    fn short_mapped_bytes_fill_what_they_hold_and_never_panic() {
        let bytes = pack(&[1, 2, 3, 4], 2);
        let mut out = [9u8; 8];
        copy_counts(&bytes, 2, &mut out);
        assert_eq!(&out[..4], &[1, 2, 3, 4]);
    }
}
