// Popcount lookups into the per-row count table `derive_counts.wgsl` built
// once at upload: one load per lookup, however wide the rows are (the GPU
// twin of the CPU's `CountTable`).
//
// Counts are packed `1 << lanes_log2` to a u32 word (u8, u16 or u32 lanes),
// row r in lane `r & (lanes - 1)` of word `r >> lanes_log2`, low lane first.
// The results are packed the same way, in the table's own count type, so a
// u8 table reads back one byte per query instead of four: one invocation
// per output word, looking up that word's `1 << lanes_log2` queries.
//
// An index >= rows is not clamped: the invocation records its position with
// atomicMin on `first_bad`, so that after the dispatch `first_bad` holds the
// lowest offending position (the host resets it to 0xFFFFFFFF beforehand and
// turns anything else into Error::IndexOutOfRange).

struct Params {
    // Number of valid queries in `queries` for this dispatch (buffers may be larger).
    count: u32,
    rows: u32,
    // Invocations (output words) per row of the 2D dispatch grid (workgroups
    // in x * workgroup size): large batches need y > 1 because one dimension
    // stops at 65535 workgroups.
    threads_per_row: u32,
    // log2 of the counts per u32 word, in `row_counts` and in `output.counts`:
    // 2 (u8), 1 (u16) or 0 (u32).
    lanes_log2: u32,
}

struct Output {
    first_bad: atomic<u32>,
    counts: array<u32>,
}

@group(0) @binding(0) var<storage, read> row_counts: array<u32>;
@group(0) @binding(1) var<storage, read> queries: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: Output;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(64)
fn popcount_lookup(@builtin(global_invocation_id) id: vec3<u32>) {
    let word_at = id.y * params.threads_per_row + id.x;
    let first = word_at << params.lanes_log2;
    if first >= params.count {
        return;
    }
    let lanes = 1u << params.lanes_log2;
    let bits = 32u >> params.lanes_log2;
    let mask = 0xFFFFFFFFu >> (32u - bits);
    let last = min(first + lanes, params.count);
    var packed = 0u;
    for (var position = first; position < last; position++) {
        let index = queries[position];
        if index >= params.rows {
            // Its lane stays 0; the host reports the lowest such position.
            atomicMin(&output.first_bad, position);
            continue;
        }
        let word = row_counts[index >> params.lanes_log2];
        let count = (word >> ((index & (lanes - 1u)) * bits)) & mask;
        packed |= count << ((position - first) * bits);
    }
    output.counts[word_at] = packed;
}
