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

/// Copies the `u32` counts in mapped bytes into `out`, narrowed to `R` on
/// the way (the copy out of the staging buffer happens anyway, so a narrow
/// result costs no pass of its own). The caller has checked that `R` holds
/// every count ([`Error::OutputTooNarrow`](crate::Error::OutputTooNarrow)).
pub(super) fn copy_counts<R: CountWord>(bytes: &[u8], out: &mut [R]) {
    if R::BYTES == 4 {
        // `R` is sealed to `u8`, `u16` and `u32`: a 4-byte `R` is `u32`.
        // SAFETY: `R` is `u32` here (same size, alignment and validity), so
        // reinterpreting the slice changes nothing.
        let words =
            unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u32>(), out.len()) };
        copy_words(bytes, words);
        return;
    }
    match bytemuck::try_cast_slice::<u8, u32>(bytes) {
        Ok(words) if words.len() == out.len() => {
            for (slot, &word) in out.iter_mut().zip(words) {
                *slot = narrow_count::<R>(word);
            }
        }
        _ => {
            for (slot, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *slot = narrow_count::<R>(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            }
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
