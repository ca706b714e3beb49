//! The bench's reference times: a device-side copy (what any pass over the
//! counts must at least cost) and a host-to-device-to-host transfer (what
//! any end-to-end lookup must at least cost).

use std::time::Duration;

use wgpu::BufferUsages;

use super::device::Device;
use super::staging::Staging;
use crate::Error;
use crate::timing::best_of;

/// The most bytes a reference measurement may move (1 TiB): far past any
/// device, and small enough that sizes round up without overflow.
const MAX_MEASURE_BYTES: u64 = 1 << 40;

/// Repetitions (after one warm-up) of each measurement.
const MEASURE_REPS: usize = 3;

/// Largest single buffer the references allocate; larger transfers reuse
/// it piece by piece.
const MEASURE_PIECE_BYTES: u64 = 256 << 20;

/// The refusal for more than [`MAX_MEASURE_BYTES`].
pub(super) fn check_bytes(bytes: u64) -> Result<(), Error> {
    if bytes > MAX_MEASURE_BYTES {
        return Err(Error::InvalidConfig(format!(
            "{bytes} bytes is more than the {MAX_MEASURE_BYTES} a reference measurement may move"
        )));
    }
    Ok(())
}

/// `bytes` rounded up to whole words, and the piece moved at a time (at
/// most one buffer of `device`).
fn measure_piece(device: &Device, bytes: u64) -> (u64, u64) {
    let total = bytes.max(4).next_multiple_of(4);
    let largest = MEASURE_PIECE_BYTES
        .min(device.binding_limit() / 4 * 4)
        .max(4);
    (total, total.min(largest))
}

/// Best time of a device-side copy of `bytes`.
pub(super) fn device_copy(device: &Device, bytes: u64) -> Result<Duration, Error> {
    let (total, piece) = measure_piece(device, bytes);
    let source = device.create_buffer(
        "initret copy source",
        piece,
        BufferUsages::COPY_SRC | BufferUsages::COPY_DST,
    );
    let target = device.create_buffer("initret copy target", piece, BufferUsages::COPY_DST);
    let copy = || {
        let mut encoder = device.encoder();
        let mut left = total;
        while left > 0 {
            let n = left.min(piece);
            encoder.copy_buffer_to_buffer(&source, 0, &target, 0, n);
            left -= n;
        }
        let submission = device.submit(encoder);
        device.wait(&submission, "device copy")
    };
    // A warm-up first: it also pays for wgpu's lazy zeroing.
    copy()?;
    best_of(MEASURE_REPS, copy)
}

/// Best time of writing `up` bytes from the host to the device and reading
/// `down` bytes back into host memory.
pub(super) fn transfer(device: &Device, up: u64, down: u64) -> Result<Duration, Error> {
    let (up, piece) = measure_piece(device, up);
    let (down, down_piece) = measure_piece(device, down);
    let piece = piece.max(down_piece);
    let device_buffer = device.create_buffer(
        "initret transfer",
        piece,
        BufferUsages::COPY_SRC | BufferUsages::COPY_DST,
    );
    let staging = Staging::new(device, "initret transfer staging", piece);
    let host_source = vec![0xA5u8; piece as usize];
    let mut host_sink = vec![0u8; piece as usize];
    let mut round_trip = || {
        // Pieces up and down in step, as a streamed lookup moves them; once
        // one direction is done, the other goes on alone.
        let (mut up_left, mut down_left) = (up, down);
        while up_left > 0 || down_left > 0 {
            let (n_up, n_down) = (up_left.min(piece), down_left.min(piece));
            if n_up > 0 {
                device
                    .queue()
                    .write_buffer(&device_buffer, 0, &host_source[..n_up as usize]);
            }
            let mut encoder = device.encoder();
            if n_down > 0 {
                staging.encode_copy(&mut encoder, &device_buffer, 0, n_down);
            }
            let submission = device.submit(encoder);
            if n_down > 0 {
                staging.request(n_down);
                staging.read(device, &submission, "transfer read-back", n_down, |view| {
                    host_sink[..n_down as usize].copy_from_slice(view)
                })?;
            } else {
                device.wait(&submission, "transfer upload")?;
            }
            (up_left, down_left) = (up_left - n_up, down_left - n_down);
        }
        Ok::<(), Error>(())
    };
    round_trip()?;
    best_of(MEASURE_REPS, round_trip)
}
