//! The per-row counts: how they are packed ([`CountLayout`]) and the
//! counting pass that derives them on the device once, at upload
//! ([`RowCounts::derive`]), so that every lookup afterwards is one load
//! (as on the CPU, whose workers derive a `CountTable`), not a pass over
//! the row.
//!
//! The table goes through `shaders/derive_counts.wgsl` in pieces of whole
//! segments (runs of at most [`SEGMENT_WORDS`] words of one row), each piece
//! small enough for one storage binding; only the counts stay on the device.
//! So the binding limit bounds the count buffer, not the table.

use std::ops::Range;

use wgpu::BufferUsages;

use super::device::Device;
use super::summary::human_bytes;
use crate::arch::CountTable;
use crate::{BitTable, Error, MAX_WORDS_PER_ROW};

/// How the per-row counts are packed on the device: `1 << lanes_log2`
/// counts per u32 word, in the narrowest of u8, u16 and u32 that holds the
/// largest count a row of this width can have. The GPU chooses before
/// counting (the CPU's `CountTable` chooses from the actual counts), so
/// that no count has to be read back first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CountLayout {
    pub(super) rows: u32,
    pub(super) words_per_row: u32,
    pub(super) lanes_log2: u32,
}

impl CountLayout {
    /// The layout for a table of this shape, or why the shaders cannot
    /// address it.
    pub(super) fn new(rows: usize, words_per_row: usize) -> Result<CountLayout, Error> {
        let rows = u32::try_from(rows).map_err(|_| {
            Error::GpuUnavailable(format!("{rows} rows do not fit the shader's u32 index"))
        })?;
        // A wider row could hold 2^32 set bits, more than the shader's u32
        // count holds. `BitTable` already refuses such rows; the layout
        // checks again because the shaders depend on it.
        if words_per_row > MAX_WORDS_PER_ROW {
            return Err(Error::InvalidTable(format!(
                "rows of {words_per_row} words (2^27 or more) can hold 2^32 set bits, \
                 more than a u32 count"
            )));
        }
        let words_per_row = u32::try_from(words_per_row).map_err(|_| {
            Error::Internal(format!("{words_per_row} words per row passed a bound"))
        })?;
        let max_count = 32 * u64::from(words_per_row);
        let lanes_log2 = if max_count <= u64::from(u8::MAX) {
            2
        } else if max_count <= u64::from(u16::MAX) {
            1
        } else {
            0
        };
        Ok(CountLayout {
            rows,
            words_per_row,
            lanes_log2,
        })
    }

    /// The layout for a table of this shape whose largest row count is
    /// `max_count` (counted on the host in one pass, before the device
    /// counts): the narrowest lane that holds it, which may be narrower
    /// than [`CountLayout::new`] would pick for such rows. Every partial
    /// count the counting pass adds into a lane is at most its row's count,
    /// so none carries into the next lane.
    pub(super) fn for_max_count(
        rows: usize,
        words_per_row: usize,
        max_count: u32,
    ) -> Result<CountLayout, Error> {
        let mut layout = CountLayout::new(rows, words_per_row)?;
        layout.lanes_log2 = layout.lanes_log2.max(if max_count <= u32::from(u8::MAX) {
            2
        } else if max_count <= u32::from(u16::MAX) {
            1
        } else {
            0
        });
        Ok(layout)
    }

    /// The layout of counts already derived on the host (`counts`, for
    /// rows of `words_per_row` words): their own width, which may be
    /// narrower than [`CountLayout::new`] would pick for such rows.
    pub(super) fn for_counts(
        counts: &CountTable,
        words_per_row: usize,
    ) -> Result<CountLayout, Error> {
        let mut layout = CountLayout::new(counts.rows(), words_per_row)?;
        layout.lanes_log2 = match counts.bytes_per_count() {
            1 => 2,
            2 => 1,
            4 => 0,
            other => {
                return Err(Error::Internal(format!(
                    "a count table of {other}-byte counts"
                )));
            }
        };
        Ok(layout)
    }

    /// Bytes of the packed count buffer (at least one word: a zero-sized
    /// binding is invalid, and a table without rows still gets a buffer).
    pub(super) fn buffer_bytes(&self) -> u64 {
        let lanes = 1u64 << self.lanes_log2;
        4 * u64::from(self.rows).div_ceil(lanes).max(1)
    }

    /// Bytes per stored count: 1, 2 or 4.
    pub(super) fn bytes_per_count(&self) -> u32 {
        4 >> self.lanes_log2
    }

    /// The refusal for a count buffer past `limits` (a storage binding and
    /// a buffer), naming them and `adapter`.
    pub(super) fn check_fits(&self, adapter: &str, limits: &wgpu::Limits) -> Result<(), Error> {
        let bytes = self.buffer_bytes();
        if bytes
            <= limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size)
        {
            return Ok(());
        }
        Err(Error::GpuUnavailable(format!(
            "the table's per-row counts take {} ({} rows at {} bytes each) but adapter {adapter:?} \
             allows at most {} per storage binding (max_storage_buffer_binding_size) and {} \
             per buffer (max_buffer_size)",
            human_bytes(bytes),
            self.rows,
            self.bytes_per_count(),
            human_bytes(limits.max_storage_buffer_binding_size),
            human_bytes(limits.max_buffer_size),
        )))
    }
}

/// Words one shader invocation counts at most: `SEGMENT_WORDS` in
/// `shaders/derive_counts.wgsl` (checked by the tests). Far below the 65535 iterations at which
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

/// The shader's `Params` uniform (its layout is checked against the WGSL
/// struct by the tests).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub(super) segments: u32,
    pub(super) first_row: u32,
    pub(super) first_segment: u32,
    pub(super) words_per_row: u32,
    pub(super) segments_per_row: u32,
    pub(super) lanes_log2: u32,
    pub(super) threads_per_row: u32,
    pub(super) pad: u32,
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

/// The packed per-row counts on the device, and their layout.
pub(super) struct RowCounts {
    buffer: wgpu::Buffer,
    layout: CountLayout,
}

impl RowCounts {
    /// An empty count buffer for `layout`; [`RowCounts::derive`] fills it.
    pub(super) fn new(device: &Device, layout: CountLayout) -> RowCounts {
        RowCounts {
            buffer: device.create_buffer(
                "initret row counts",
                layout.buffer_bytes(),
                BufferUsages::STORAGE,
            ),
            layout,
        }
    }

    /// The count buffer filled with `counts`, derived on the host: their
    /// bytes are the device layout already (little-endian lanes of u32
    /// words), so they are copied as they are.
    pub(super) fn upload(
        device: &Device,
        layout: CountLayout,
        counts: &CountTable,
    ) -> Result<RowCounts, Error> {
        let bytes = counts.as_bytes();
        let wanted = layout.buffer_bytes();
        let buffer = device.create_buffer(
            "initret row counts",
            wanted,
            BufferUsages::STORAGE | BufferUsages::COPY_DST,
        );
        // `as_bytes` carries padding past the last count, so it holds at
        // least the buffer's whole words; a one-row table of u32 counts is
        // exactly one word.
        let Some(words) = bytes.get(..wanted as usize) else {
            return Err(Error::Internal(format!(
                "{} bytes of counts cannot fill a {wanted}-byte count buffer",
                bytes.len()
            )));
        };
        device.queue().write_buffer(&buffer, 0, words);
        Ok(RowCounts { buffer, layout })
    }

    pub(super) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub(super) fn layout(&self) -> CountLayout {
        self.layout
    }

    /// Derives the counts of `table`, uploading at most
    /// `piece_bytes` of it at a time (also capped by the binding limit and
    /// [`DERIVE_PIECE_BYTES`]); waits for each piece so that the transient
    /// memory stays one piece.
    pub(super) fn derive(
        &self,
        device: &Device,
        table: &BitTable,
        piece_bytes: Option<u64>,
    ) -> Result<(), Error> {
        if table.rows() == 0 {
            return Ok(());
        }
        let limit = piece_bytes
            .unwrap_or(DERIVE_PIECE_BYTES)
            .min(DERIVE_PIECE_BYTES)
            .min(device.binding_limit());
        let words = table.words();
        let segments = Segments::new(table.rows(), table.words_per_row());
        let piece_words = (limit / 4).max(SEGMENT_WORDS).min(words.len() as u64);

        use wgpu::BufferBindingType::{Storage, Uniform};
        let (pipeline, layout) = device.compute_pipeline(
            SHADER.clone(),
            "derive_counts",
            &[
                Storage { read_only: true },
                Storage { read_only: false },
                Uniform,
            ],
        );
        let piece_buffer = device.create_buffer(
            "initret table piece",
            4 * piece_words,
            BufferUsages::STORAGE | BufferUsages::COPY_DST,
        );
        let params_buffer = device.create_buffer(
            "initret derive params",
            size_of::<Params>() as u64,
            BufferUsages::UNIFORM | BufferUsages::COPY_DST,
        );
        let bind_group =
            device.bind_buffers(&layout, &[&piece_buffer, &self.buffer, &params_buffer]);
        for piece in segments.pieces(piece_words) {
            let Some(piece_words) = words.get(piece.words.start as usize..piece.words.end as usize)
            else {
                return Err(Error::Internal(format!(
                    "derivation piece {piece:?} lies outside the table's {} words",
                    words.len()
                )));
            };
            let count = (piece.segments.end - piece.segments.start) as usize;
            let (x, y, threads_per_row) = device.grid(count);
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
            let queue = device.queue();
            queue.write_buffer(&piece_buffer, 0, bytemuck::cast_slice(piece_words));
            queue.write_buffer(&params_buffer, 0, bytemuck::bytes_of(&params));
            let mut encoder = device.encoder();
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("initret derive counts"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
            let submission = device.submit(encoder);
            device.wait(&submission, "count derivation")?;
        }
        Ok(())
    }
}
