// Derives the per-row popcounts once, at upload: the GPU's initializer.
//
// The table arrives in pieces (each fits one storage binding), so tables far
// larger than a binding can be counted; only `row_counts` stays on the
// device. A row is cut into segments of at most SEGMENT_WORDS words, one
// invocation per segment, and the segments' partial counts meet with
// atomicAdd. So no invocation loops more than SEGMENT_WORDS times, however
// wide the row: llvmpipe ends every shader loop after 65535 iterations, and
// real drivers have watchdogs, so one loop per row would be wrong or killed
// for wide rows.
//
// Counts are packed `1 << lanes_log2` to a u32 (u8, u16 or u32 lanes, chosen
// on the host so that the widest possible row fits). Adding a segment's
// partial count shifted into its row's lane never carries into the next
// lane: the partial counts of a row add up to at most the row's count,
// which fits its lane. `row_counts` starts zeroed (wgpu zero-fills buffers).

// Must match SEGMENT_WORDS in src/gpu/counts.rs.
const SEGMENT_WORDS: u32 = 1024u;

struct Params {
    // Segments in this piece.
    segments: u32,
    // Row of the piece's first segment.
    first_row: u32,
    // Index, within `first_row`, of the piece's first segment.
    first_segment: u32,
    words_per_row: u32,
    // ceil(words_per_row / SEGMENT_WORDS).
    segments_per_row: u32,
    // log2 of the counts per u32 word: 2 (u8), 1 (u16) or 0 (u32).
    lanes_log2: u32,
    // Invocations per row of the 2D dispatch grid.
    threads_per_row: u32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read> piece: array<u32>;
@group(0) @binding(1) var<storage, read_write> row_counts: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(64)
fn derive_counts(@builtin(global_invocation_id) id: vec3<u32>) {
    let k = id.y * params.threads_per_row + id.x;
    if k >= params.segments {
        return;
    }
    // Segment k of the piece, counted from the start of `first_row`.
    let s = params.first_segment + k;
    let row_in_piece = s / params.segments_per_row;
    let segment = s % params.segments_per_row;
    let begin = segment * SEGMENT_WORDS;
    let end = min(begin + SEGMENT_WORDS, params.words_per_row);
    // Word 0 of the piece is word `first_segment * SEGMENT_WORDS` of
    // `first_row`; this never goes below 0, since a later row starts past
    // every segment of the first.
    let offset = row_in_piece * params.words_per_row + begin
        - params.first_segment * SEGMENT_WORDS;
    var count = 0u;
    for (var i = 0u; i < end - begin; i++) {
        count += countOneBits(piece[offset + i]);
    }
    let row = params.first_row + row_in_piece;
    let bits = 32u >> params.lanes_log2;
    let lane = row & ((1u << params.lanes_log2) - 1u);
    atomicAdd(&row_counts[row >> params.lanes_log2], count << (lane * bits));
}
