//! The GPU's initializer: derives the per-row count buffer once, at upload,
//! so that every lookup afterwards is one load (as on the CPU, whose workers
//! derive a `CountTable`), not a pass over the row.
//!
//! The table goes through `shaders/derive_counts.wgsl` in pieces of whole
//! segments (runs of at most [`SEGMENT_WORDS`] words of one row), each piece
//! small enough for one storage binding; only the counts stay on the device.
//! So the binding limit bounds the count buffer, not the table: a 2^22-row ×
//! 16-word table (256 MiB of words, twice lavapipe's 128 MiB binding) keeps
//! 8 MiB of counts.

use std::ops::Range;

use wgpu::BufferUsages;

use super::device::{Context, bind_buffers, compute_pipeline};
use crate::{BitTable, Error};

/// Words one shader invocation counts at most. Must match `SEGMENT_WORDS`
/// in `shaders/derive_counts.wgsl`. Far below the 65535 iterations at which
/// llvmpipe ends a shader loop (and a driver's watchdog), and large enough
/// that each invocation does real work.
pub(super) const SEGMENT_WORDS: u64 = 1024;
const _: () = assert!(
    SEGMENT_WORDS < 65535,
    "a segment must stay below llvmpipe's loop limit"
);

/// Most table bytes uploaded at once: bounds the transient memory (piece
/// buffer and wgpu's staging copy) however large the table is.
pub(super) const DERIVE_PIECE_BYTES: u64 = 64 << 20;

static SHADER: wgpu::ShaderModuleDescriptor<'static> =
    wgpu::include_wgsl!("../../shaders/derive_counts.wgsl");

/// The shader's `Params` uniform.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    segments: u32,
    first_row: u32,
    first_segment: u32,
    words_per_row: u32,
    segments_per_row: u32,
    lanes_log2: u32,
    threads_per_row: u32,
    pad: u32,
}

/// Rows cut into segments, numbered row after row.
#[derive(Clone, Copy, Debug)]
pub(super) struct Segments {
    rows: u64,
    words_per_row: u64,
    per_row: u64,
}

/// One upload: segments `segments` of the table, which are its words `words`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Piece {
    pub(super) segments: Range<u64>,
    pub(super) words: Range<u64>,
}

impl Segments {
    pub(super) fn new(rows: usize, words_per_row: usize) -> Segments {
        let words_per_row = words_per_row as u64;
        Segments {
            rows: rows as u64,
            words_per_row,
            per_row: words_per_row.div_ceil(SEGMENT_WORDS),
        }
    }

    fn total(&self) -> u64 {
        self.rows * self.per_row
    }

    fn start(&self, segment: u64) -> u64 {
        (segment / self.per_row) * self.words_per_row + (segment % self.per_row) * SEGMENT_WORDS
    }

    fn end(&self, segment: u64) -> u64 {
        let within = ((segment % self.per_row + 1) * SEGMENT_WORDS).min(self.words_per_row);
        (segment / self.per_row) * self.words_per_row + within
    }

    /// The table cut into pieces of at most `max_words` words (at least
    /// [`SEGMENT_WORDS`]), each a run of whole segments. A piece may end
    /// inside a row: the shader adds each segment's count into its row.
    pub(super) fn pieces(self, max_words: u64) -> impl Iterator<Item = Piece> {
        let max_words = max_words.max(SEGMENT_WORDS);
        let total = self.total();
        let mut first = 0;
        std::iter::from_fn(move || {
            if first >= total {
                return None;
            }
            let target = self.start(first).saturating_add(max_words);
            let end = if target >= self.rows * self.words_per_row {
                total
            } else {
                // Segments of row `row` that end by `target`, and every
                // earlier one; at least one, since no segment is longer
                // than `max_words`.
                let (row, within) = (target / self.words_per_row, target % self.words_per_row);
                (row * self.per_row + within / SEGMENT_WORDS).clamp(first + 1, total)
            };
            let piece = Piece {
                segments: first..end,
                words: self.start(first)..self.end(end - 1),
            };
            first = end;
            Some(piece)
        })
    }
}

impl Context {
    /// Derives the count buffer from `table`, uploading at most
    /// `piece_bytes` of it at a time (also capped by the binding limit and
    /// [`DERIVE_PIECE_BYTES`]); waits for each piece so that the transient
    /// memory stays one piece.
    pub(crate) fn derive_counts(
        &mut self,
        table: &BitTable,
        piece_bytes: Option<u64>,
    ) -> Result<(), Error> {
        if table.rows() == 0 {
            return Ok(());
        }
        let limit = piece_bytes
            .unwrap_or(DERIVE_PIECE_BYTES)
            .min(DERIVE_PIECE_BYTES)
            .min(self.binding_limit);
        let words = table.words();
        let segments = Segments::new(table.rows(), table.words_per_row());
        let piece_words = (limit / 4).max(SEGMENT_WORDS).min(words.len() as u64);

        use wgpu::BufferBindingType::{Storage, Uniform};
        let (pipeline, layout) = compute_pipeline(
            &self.device,
            SHADER.clone(),
            "derive_counts",
            &[
                Storage { read_only: true },
                Storage { read_only: false },
                Uniform,
            ],
        );
        let piece_buffer = self.create_buffer(
            "initret table piece",
            4 * piece_words,
            BufferUsages::STORAGE | BufferUsages::COPY_DST,
        );
        let params_buffer = self.create_buffer(
            "initret derive params",
            size_of::<Params>() as u64,
            BufferUsages::UNIFORM | BufferUsages::COPY_DST,
        );
        let bind_group = bind_buffers(
            &self.device,
            &layout,
            &[&piece_buffer, &self.row_counts, &params_buffer],
        );
        for piece in segments.pieces(piece_words) {
            let Some(piece_words) = words.get(piece.words.start as usize..piece.words.end as usize)
            else {
                return Err(Error::Internal(format!(
                    "derivation piece {piece:?} lies outside the table's {} words",
                    words.len()
                )));
            };
            let count = (piece.segments.end - piece.segments.start) as usize;
            let (x, y, threads_per_row) = self.grid(count);
            let params = Params {
                segments: count as u32,
                first_row: (piece.segments.start / segments.per_row) as u32,
                first_segment: (piece.segments.start % segments.per_row) as u32,
                words_per_row: self.layout.words_per_row,
                segments_per_row: segments.per_row as u32,
                lanes_log2: self.layout.lanes_log2,
                threads_per_row,
                pad: 0,
            };
            self.queue
                .write_buffer(&piece_buffer, 0, bytemuck::cast_slice(piece_words));
            self.queue
                .write_buffer(&params_buffer, 0, bytemuck::bytes_of(&params));
            let mut encoder = self.encoder();
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("initret derive counts"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
            let submission = self.queue.submit([encoder.finish()]);
            self.wait_for(&submission, "count derivation", self.deadline())?;
        }
        Ok(())
    }
}
