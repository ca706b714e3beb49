// Popcount lookups into one read-only table.
//
// One invocation per query: `counts[p]` = number of set bits in row
// `queries[p]` of `table` (rows of `words_per_row` u32 words, row after row).
//
// An index >= rows is not clamped: the invocation records its position with
// atomicMin on `first_bad`, so that after the dispatch `first_bad` holds the
// lowest offending position (the host resets it to 0xFFFFFFFF beforehand and
// turns anything else into Error::IndexOutOfRange).

struct Params {
    // Number of valid queries in `queries` for this dispatch (buffers may be larger).
    count: u32,
    rows: u32,
    words_per_row: u32,
    // Invocations per row of the 2D dispatch grid (workgroups in x * workgroup size):
    // large batches need y > 1 because one dimension stops at 65535 workgroups.
    threads_per_row: u32,
}

struct Output {
    first_bad: atomic<u32>,
    counts: array<u32>,
}

@group(0) @binding(0) var<storage, read> table: array<u32>;
@group(0) @binding(1) var<storage, read> queries: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: Output;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(64)
fn popcount_lookup(@builtin(global_invocation_id) id: vec3<u32>) {
    let position = id.y * params.threads_per_row + id.x;
    if position >= params.count {
        return;
    }
    let index = queries[position];
    if index >= params.rows {
        atomicMin(&output.first_bad, position);
        output.counts[position] = 0u;
        return;
    }
    let start = index * params.words_per_row;
    var count = 0u;
    for (var w = 0u; w < params.words_per_row; w++) {
        count += countOneBits(table[start + w]);
    }
    output.counts[position] = count;
}
