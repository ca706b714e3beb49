//! Tests of the wgpu backend that need its private hooks (chunk size, piece
//! size, buffer counts, device destruction) or its private arithmetic.
//! Tests of the public API are in `tests/gpu.rs`.

use super::DeviceLookup;
use super::backend::BuildOptions;
use super::backend::GpuBackend;
use super::counts::{CountLayout, Piece, SEGMENT_WORDS, Segments};
use super::device::{WORKGROUP_SIZE, dispatch_grid};
use super::skip::gpu_or_skip;
use crate::random::{SplitMix64, random_queries, random_table};
use crate::{BitTable, Error, PopcountBackend};

fn backend(table: &BitTable) -> Option<GpuBackend> {
    gpu_or_skip(GpuBackend::new(table))
}

/// Build options that upload the table `piece_bytes` at a time.
fn pieces(piece_bytes: u64) -> BuildOptions {
    BuildOptions {
        piece_bytes: Some(piece_bytes),
        ..BuildOptions::default()
    }
}

#[test]
fn grid_pads_at_most_one_workgroup_per_grid_row() {
    for invocations in [
        0usize,
        1,
        64,
        65,
        65535 * 64,
        65535 * 64 + 1,
        1 << 22,
        1 << 31,
    ] {
        let (x, y, per_row) = dispatch_grid(invocations, 65535);
        let needed = invocations.div_ceil(64).max(1) as u64;
        let launched = u64::from(x) * u64::from(y);
        assert!(x <= 65535 && y <= 65535, "{invocations}: {x} x {y}");
        assert!(
            launched >= needed && launched - needed < u64::from(y),
            "{invocations}"
        );
        assert_eq!(per_row, x * WORKGROUP_SIZE);
    }
    // 2^22 queries: two rows of 32768, not 65535 + 65535 with half idle.
    assert_eq!(dispatch_grid(1 << 22, 65535), (32768, 2, 32768 * 64));
}

#[test]
fn count_layout_is_the_narrowest_that_fits_any_row() {
    let lanes = |w| CountLayout::new(10, w).unwrap().lanes_log2;
    assert_eq!((lanes(1), lanes(7)), (2, 2)); // u8: up to 224 bits
    assert_eq!((lanes(8), lanes(2047)), (1, 1)); // u16: up to 65504 bits
    assert_eq!((lanes(2048), lanes(1 << 20)), (0, 0)); // u32
    assert_eq!(CountLayout::new(9, 1).unwrap().buffer_bytes(), 12);
    assert_eq!(CountLayout::new(0, 1).unwrap().buffer_bytes(), 4);
    assert!(matches!(
        CountLayout::new(1, 1 << 27),
        Err(Error::InvalidTable(_))
    ));
}

#[test]
fn pieces_cover_every_segment_once_within_the_limit() {
    let s = SEGMENT_WORDS;
    for (rows, words_per_row, limit) in [
        (1usize, 1usize, s),
        (1000, 16, s),
        (7, 3000, s),
        (7, 3000, 2 * s + 5),
        (3, 70_000, 10 * s),
        (1 << 10, 1, 100 * s),
    ] {
        let pieces: Vec<Piece> = Segments::new(rows, words_per_row).pieces(limit).collect();
        let mut next_segment = 0;
        let mut next_word = 0;
        for piece in &pieces {
            assert_eq!(piece.segments.start, next_segment);
            assert_eq!(piece.words.start, next_word);
            assert!(piece.words.end - piece.words.start <= limit);
            assert!(piece.segments.end > piece.segments.start);
            next_segment = piece.segments.end;
            next_word = piece.words.end;
        }
        let per_row = (words_per_row as u64).div_ceil(s);
        assert_eq!(next_segment, rows as u64 * per_row);
        assert_eq!(next_word, (rows * words_per_row) as u64);
    }
}

#[test]
fn counts_derived_in_small_pieces_match() {
    // Pieces of one or a few segments: rows cut mid-way, pieces ending
    // inside a row, many pieces per table.
    for (rows, words_per_row, piece_bytes) in [
        (1000usize, 1usize, 4096u64),
        (300, 16, 4096),
        (5, 3000, 4096),
        (3, 5000, 3 * 4096 + 12),
        (40, 2048, 8192),
        // u16 lanes with rows cut mid-way (two segments a row).
        (31, 2000, 4096),
        (31, 2000, 5000),
    ] {
        let table = random_table(rows, words_per_row, words_per_row as u64).unwrap();
        let Some(gpu) = gpu_or_skip(GpuBackend::build(&table, pieces(piece_bytes))) else {
            return;
        };
        let queries: Vec<u32> = (0..rows as u32).rev().collect();
        assert_eq!(
            gpu.popcount(&queries).unwrap(),
            table.reference_popcount(&queries).unwrap(),
            "{rows} rows of {words_per_row} words, pieces of {piece_bytes} bytes"
        );
    }
}

#[test]
fn many_small_chunks_stream_through_the_ring() {
    let table = random_table(777, 3, 2).unwrap();
    let Some(gpu) = backend(&table) else { return };
    gpu.set_chunk_queries(100);
    for len in [1, 99, 100, 101, 250, 300, 301, 5_000] {
        let queries = random_queries(len, 777, len as u64);
        let expected = table.reference_popcount(&queries).unwrap();
        assert_eq!(gpu.popcount(&queries).unwrap(), expected, "{len} queries");
        let mut out = vec![0; len];
        gpu.popcount_timed(&queries, &mut out).unwrap();
        assert_eq!(out, expected, "{len} queries, timed");
    }
}

#[test]
fn batch_larger_than_one_dispatch_dimension() {
    // Past 65535 workgroups of 64 invocations: needs the 2D grid.
    let len = 65535 * 64 + 1000;
    let table = BitTable::seed(65535);
    let Some(gpu) = backend(&table) else { return };
    let queries = random_queries(len, 65535, 3);
    let expected = table.reference_popcount(&queries).unwrap();
    // Default chunks (streamed), then the whole batch as one dispatch.
    assert_eq!(gpu.popcount(&queries).unwrap(), expected);
    gpu.set_chunk_queries(len);
    assert_eq!(gpu.popcount(&queries).unwrap(), expected);
    let counts = gpu
        .popcount_resident(&gpu.upload_batch(&queries).unwrap())
        .unwrap();
    assert_eq!(gpu.read_back(&counts).unwrap(), expected);
}

#[test]
fn out_of_range_in_a_later_chunk() {
    let rows = 300;
    let table = random_table(rows, 1, 5).unwrap();
    let Some(gpu) = backend(&table) else { return };
    gpu.set_chunk_queries(64);
    let good = random_queries(1000, rows, 5);
    for position in [63, 64, 500, 999] {
        let mut queries = good.clone();
        queries[position] = 300;
        // A second bad index further on must not win.
        if position + 70 < queries.len() {
            queries[position + 70] = u32::MAX;
        }
        let result = gpu.popcount(&queries);
        assert!(
            matches!(result, Err(Error::IndexOutOfRange { position: p, index: 300, rows: 300 }) if p == position),
            "{position}: {result:?}"
        );
        assert_eq!(
            gpu.popcount(&good).unwrap(),
            table.reference_popcount(&good).unwrap()
        );
    }
}

#[test]
fn repeated_calls_reuse_buffers() {
    let table = random_table(500, 4, 6).unwrap();
    let Some(gpu) = backend(&table) else { return };
    let queries = random_queries(20_000, 500, 6);
    let expected = table.reference_popcount(&queries).unwrap();
    assert_eq!(gpu.popcount(&queries).unwrap(), expected);
    let after_first = gpu.buffer_allocations();
    for _ in 0..5 {
        assert_eq!(gpu.popcount(&queries).unwrap(), expected);
        // Same or smaller batches fit the buffers already there.
        assert_eq!(gpu.popcount(&queries[..123]).unwrap(), expected[..123]);
    }
    let mut out = vec![0; queries.len()];
    gpu.popcount_timed(&queries, &mut out).unwrap();
    assert_eq!(gpu.buffer_allocations(), after_first);
    // A larger batch grows them once.
    let larger = random_queries(50_000, 500, 7);
    gpu.popcount(&larger).unwrap();
    let after_growth = gpu.buffer_allocations();
    assert!(after_growth > after_first);
    gpu.popcount(&larger).unwrap();
    gpu.popcount(&queries).unwrap();
    assert_eq!(gpu.buffer_allocations(), after_growth);
}

#[test]
fn resident_lookups_reuse_their_counts() {
    let rows = 4096;
    let table = random_table(rows, 3, 7).unwrap();
    let Some(gpu) = backend(&table) else { return };
    let queries = random_queries(10_000, rows, 7);
    let expected = table.reference_popcount(&queries).unwrap();
    let batch = gpu.upload_batch(&queries).unwrap();
    let mut counts = gpu.popcount_resident(&batch).unwrap();
    assert_eq!(gpu.read_back(&counts).unwrap(), expected);
    let allocated = gpu.buffer_allocations();
    for _ in 0..3 {
        gpu.popcount_resident_into(&batch, &mut counts).unwrap();
        assert_eq!(gpu.read_back(&counts).unwrap(), expected);
    }
    assert_eq!(gpu.buffer_allocations(), allocated);
}

#[test]
fn resident_segments_and_bad_indices() {
    let rows = 100;
    let table = random_table(rows, 1, 8).unwrap();
    let Some(gpu) = backend(&table) else { return };
    gpu.set_chunk_queries(256);
    let mut queries = random_queries(1000, rows, 8);
    let batch = gpu.upload_batch(&queries).unwrap();
    let counts = gpu.popcount_resident(&batch).unwrap();
    assert_eq!(
        gpu.read_back(&counts).unwrap(),
        table.reference_popcount(&queries).unwrap()
    );

    queries[700] = 100;
    queries[300] = 12345;
    queries[900] = u32::MAX;
    let bad = gpu.upload_batch(&queries).unwrap();
    // The resident call succeeds; read_back reports the lowest bad position,
    // every time it is asked.
    let counts = gpu.popcount_resident(&bad).unwrap();
    for _ in 0..2 {
        let result = gpu.read_back(&counts);
        assert!(
            matches!(
                result,
                Err(Error::IndexOutOfRange {
                    position: 300,
                    index: 12345,
                    rows: 100
                })
            ),
            "{result:?}"
        );
    }
}

#[test]
fn device_loss_is_reported_not_hung() {
    let table = BitTable::seed(1024);
    let Some(gpu) = backend(&table) else { return };
    let queries: Vec<u32> = (0..1024).collect();
    gpu.popcount(&queries).unwrap();
    let batch = gpu.upload_batch(&queries).unwrap();
    let counts = gpu.popcount_resident(&batch).unwrap();
    gpu.destroy_device();
    for _ in 0..2 {
        assert!(matches!(gpu.popcount(&queries), Err(Error::DeviceLost(_))));
    }
    let mut out = vec![0; queries.len()];
    assert!(matches!(
        gpu.popcount_timed(&queries, &mut out),
        Err(Error::DeviceLost(_))
    ));
    assert!(matches!(
        gpu.upload_batch(&queries),
        Err(Error::DeviceLost(_))
    ));
    assert!(matches!(
        gpu.popcount_resident(&batch),
        Err(Error::DeviceLost(_))
    ));
    assert!(matches!(gpu.read_back(&counts), Err(Error::DeviceLost(_))));
    assert!(matches!(
        gpu.measure_device_copy(1024),
        Err(Error::DeviceLost(_))
    ));
}

#[test]
fn wide_rows_split_into_segments_of_whole_loops() {
    // The derivation's per-invocation loop stays far below llvmpipe's 65535.
    let per_row = Segments::new(1, 1 << 20).pieces(u64::MAX).next().unwrap();
    assert_eq!(per_row.segments, 0..(1 << 20) / SEGMENT_WORDS);
    let mut rng = SplitMix64::new(1);
    let table = BitTable::from_fn(2, 70_000, |_, _| rng.next_u64() as u32).unwrap();
    let Some(gpu) = gpu_or_skip(GpuBackend::build(&table, pieces(8192))) else {
        return;
    };
    assert_eq!(
        gpu.popcount(&[1, 0]).unwrap(),
        vec![
            table.row_popcount(1).unwrap(),
            table.row_popcount(0).unwrap()
        ]
    );
}

#[test]
fn gpu_errors_keep_their_wgpu_source() {
    use std::error::Error as _;
    // What a caller sees: `Error::Gpu` whose source is the typed GpuError,
    // whose source in turn is wgpu's own error.
    let error = Error::from(super::error::GpuError::from(wgpu::BufferAsyncError));
    let gpu_error = error.source().unwrap();
    assert!(gpu_error.is::<super::error::GpuError>());
    assert!(gpu_error.source().unwrap().is::<wgpu::BufferAsyncError>());
    assert!(
        error
            .to_string()
            .contains("mapping a staging buffer failed")
    );
}

#[test]
fn each_lane_holds_the_largest_count_of_its_width() {
    // All-ones rows at the widest each lane width takes: 7 words (224 in a
    // u8), 2047 words (65504 in a u16), 2048 words (65536 in a u32). A carry
    // into the neighbouring lane would show in the next row's count.
    for words_per_row in [7usize, 2047, 2048] {
        let rows = 9;
        let table = BitTable::from_fn(
            rows,
            words_per_row,
            |row, _| {
                if row % 3 == 1 { 0 } else { u32::MAX }
            },
        )
        .unwrap();
        let Some(gpu) = gpu_or_skip(GpuBackend::build(&table, pieces(4096))) else {
            return;
        };
        let queries: Vec<u32> = (0..rows as u32).collect();
        assert_eq!(
            gpu.popcount(&queries).unwrap(),
            table.reference_popcount(&queries).unwrap(),
            "{words_per_row} words a row"
        );
    }
}

#[test]
fn table_past_the_binding_limit_is_counted_in_pieces() {
    // Only the per-row counts must fit one binding: the table streams
    // through the derivation pass. The device is opened with its binding
    // and buffer limits lowered to 1 MiB, so a table past them is small
    // enough to build on any adapter. 16-word rows take 64 bytes.
    let limit = 1 << 20;
    let options = BuildOptions {
        binding_limit: Some(limit),
        ..BuildOptions::default()
    };
    let rows = (limit / 64 + 1) as usize;
    let mut rng = SplitMix64::new(11);
    let table = BitTable::from_fn(rows, 16, |_, _| rng.next_u64() as u32).unwrap();
    assert!(table.size_in_bytes() as u64 > limit);
    let Some(gpu) = gpu_or_skip(GpuBackend::build(&table, options)) else {
        return;
    };
    // More queries than one 1 MiB binding holds: several chunks, and
    // several resident segments.
    let mut queries = vec![0, rows as u32 - 1, rows as u32 / 2];
    queries.extend((0..300_000).map(|_| rng.below(rows as u64) as u32));
    let expected = table.reference_popcount(&queries).unwrap();
    assert_eq!(gpu.popcount(&queries).unwrap(), expected);
    let counts = gpu
        .popcount_resident(&gpu.upload_batch(&queries).unwrap())
        .unwrap();
    assert_eq!(gpu.read_back(&counts).unwrap(), expected);
    assert!(matches!(
        gpu.popcount(&[rows as u32]),
        Err(Error::IndexOutOfRange { position: 0, .. })
    ));
    // The references move more than one buffer's worth piece by piece.
    gpu.measure_transfer(3 * limit, 3 * limit).unwrap();
    gpu.measure_transfer(3 * limit, 4).unwrap();
    gpu.measure_device_copy(3 * limit).unwrap();
}

#[test]
fn counts_past_the_binding_limit_are_refused_by_name() {
    // 16388 one-word rows keep 16388 bytes of u8 counts: past 4 KiB.
    let options = BuildOptions {
        binding_limit: Some(4096),
        ..BuildOptions::default()
    };
    let table = BitTable::seed(16388);
    match GpuBackend::build(&table, options) {
        Err(Error::GpuUnavailable(reason)) if reason.contains("per-row counts") => {
            assert!(
                reason.contains("max_storage_buffer_binding_size"),
                "{reason}"
            );
        }
        Ok(_) => panic!("counts past the binding limit were accepted"),
        // No adapter at all: skipped, unless the GPU is required.
        Err(other) => {
            gpu_or_skip(Err::<(), _>(other));
        }
    }
}

const LOOKUP_WGSL: &str = include_str!("../../shaders/popcount_lookup.wgsl");
const DERIVE_WGSL: &str = include_str!("../../shaders/derive_counts.wgsl");

/// The shader `source` as naga's IR.
fn parse(source: &str) -> naga::Module {
    naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|error| panic!("{}", error.emit_to_string(source)))
}

/// A WGSL struct's size and its members' names and offsets, as naga lays
/// it out.
fn wgsl_struct(source: &str, name: &str) -> (u32, Vec<(String, u32)>) {
    parse(source)
        .types
        .iter()
        .find_map(|(_, ty)| match (&ty.name, &ty.inner) {
            (Some(found), naga::TypeInner::Struct { members, span }) if found == name => {
                let members = members
                    .iter()
                    .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                    .collect();
                Some((*span, members))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("the shader has no struct {name}"))
}

/// A host struct's size and the names and offsets of `fields`, in order.
macro_rules! host_struct {
    ($ty:ty; $($field:ident),* $(,)?) => {
        (
            size_of::<$ty>() as u32,
            vec![$((stringify!($field).to_string(), std::mem::offset_of!($ty, $field) as u32)),*],
        )
    };
}

#[test]
fn host_params_match_the_wgsl_structs() {
    assert_eq!(
        host_struct!(super::lookup::Params; count, rows, threads_per_row, lanes_log2),
        wgsl_struct(LOOKUP_WGSL, "Params"),
    );
    assert_eq!(
        host_struct!(
            super::counts::Params;
            segments,
            first_row,
            first_segment,
            words_per_row,
            segments_per_row,
            lanes_log2,
            threads_per_row,
            pad,
        ),
        wgsl_struct(DERIVE_WGSL, "Params"),
    );
}

#[test]
fn host_constants_match_the_shaders() {
    for (source, entry_point) in [
        (LOOKUP_WGSL, "popcount_lookup"),
        (DERIVE_WGSL, "derive_counts"),
    ] {
        let module = parse(source);
        let entry = module
            .entry_points
            .iter()
            .find(|e| e.name == entry_point)
            .unwrap_or_else(|| panic!("no entry point {entry_point}"));
        assert_eq!(
            entry.workgroup_size,
            [WORKGROUP_SIZE, 1, 1],
            "{entry_point}"
        );
    }
    let module = parse(DERIVE_WGSL);
    let (_, constant) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some("SEGMENT_WORDS"))
        .expect("derive_counts.wgsl declares SEGMENT_WORDS");
    match module.global_expressions[constant.init] {
        naga::Expression::Literal(naga::Literal::U32(words)) => {
            assert_eq!(u64::from(words), SEGMENT_WORDS)
        }
        ref other => panic!("SEGMENT_WORDS is {other:?}, not a u32 literal"),
    }
}
