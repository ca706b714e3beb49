//! The portable scalar kernel: one bounds-checked load per query. Runs on
//! every target and is the fallback for the vector kernels' tails.

use super::counts::CountWord;

/// A query word the kernels read: `u32`, or `u64`, which also carries `i64`
/// batches (a negative `i64` is a `u64` of at least 2^63, past any table).
/// Every kernel is written once over this; the `u32` instances are the
/// same code as before `u64` existed (`row` is a plain widening).
pub(crate) trait QueryWord: Copy + Send + Sync + 'static {
    /// The row this word names; `usize::MAX` (past any table) for a `u64`
    /// that does not fit a `usize` (32-bit targets only).
    fn row(self) -> usize;
}

impl QueryWord for u32 {
    #[inline(always)]
    fn row(self) -> usize {
        self as usize
    }
}

impl QueryWord for u64 {
    #[inline(always)]
    fn row(self) -> usize {
        usize::try_from(self).unwrap_or(usize::MAX)
    }
}

/// Writes `counts[queries[i]]` to `out[i]`; on the first query
/// `>= counts.len()` stops and returns its position. The results are of any
/// [`CountWord`] type `R` at least as wide as the counts' values (the
/// caller checks; a wider count would be truncated).
///
/// Only `min(queries.len(), out.len())` queries are looked at.
#[inline]
pub(crate) fn lookup<C: CountWord, Q: QueryWord, R: CountWord>(
    counts: &[C],
    queries: &[Q],
    out: &mut [R],
) -> Result<(), usize> {
    for (position, (&index, slot)) in queries.iter().zip(out.iter_mut()).enumerate() {
        match counts.get(index.row()) {
            Some(&count) => *slot = R::truncate(count.into()),
            None => return Err(position),
        }
    }
    Ok(())
}

/// The scalar loop of the `scalar` kernels on large batches: like the vector
/// kernels, it prefetches the query stream ahead, asks for the counts
/// `distance` queries ahead (0: not), so that on tables larger than the
/// caches several DRAM misses are in flight at once, and with `streaming` writes the
/// counts with non-temporal stores where the target has them, so that the
/// measurement between kernels compares fetch strategies, not store paths.
#[inline]
fn lookup_hinted<C: CountWord, Q: QueryWord, R: CountWord>(
    counts: &[C],
    queries: &[Q],
    out: &mut [R],
    distance: usize,
    streaming: bool,
) -> Result<(), usize> {
    let mut result = Ok(());
    for (position, (&index, slot)) in queries.iter().zip(out.iter_mut()).enumerate() {
        if position % 16 == 0 {
            prefetch_read(
                queries
                    .as_ptr()
                    .wrapping_add(position + QUERY_PREFETCH_AHEAD)
                    .cast(),
            );
        }
        if distance != 0
            && let Some(&ahead) = queries.get(position + distance)
        {
            prefetch_read(counts.as_ptr().wrapping_add(ahead.row()).cast());
        }
        match counts.get(index.row()) {
            Some(&count) if streaming => store_streaming(slot, R::truncate(count.into())),
            Some(&count) => *slot = R::truncate(count.into()),
            None => {
                result = Err(position);
                break;
            }
        }
    }
    if streaming {
        store_fence();
    }
    result
}

/// How many queries ahead of the current one the query stream itself is
/// prefetched: the hardware prefetcher falls behind on the sequential query
/// stream while the random count loads keep the load queue full
/// (measurements in BENCHMARKS.md).
pub(crate) const QUERY_PREFETCH_AHEAD: usize = 2048;

/// `*slot = value`, bypassing the caches where the target can (`movnti`,
/// which stores 32-bit words: narrower results are stored normally).
#[inline(always)]
fn store_streaming<R: CountWord>(slot: &mut R, value: R) {
    #[cfg(target_arch = "x86_64")]
    if R::BYTES == 4 {
        // SAFETY: `movnti` is part of SSE2, in the x86-64 baseline. `R` is
        // sealed to `u8`, `u16` and `u32`, so a 4-byte `R` is `u32`: `slot`
        // is a valid, aligned `u32` and `value.into()` is `value` itself.
        // `store_fence` orders the store before later stores.
        unsafe {
            std::arch::x86_64::_mm_stream_si32(
                std::ptr::from_mut(slot).cast(),
                value.into() as i32,
            );
        }
        return;
    }
    *slot = value;
}

/// Orders the streaming stores before any later store.
#[inline(always)]
fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` is part of SSE, in the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_sfence();
    }
}

/// Whether [`prefetch_read`] does anything on this target.
pub(crate) const CAN_PREFETCH: bool = cfg!(target_arch = "x86_64");

/// Hints the CPU to bring the cache line at `ptr` into the caches. Never
/// faults, whatever `ptr` is; a no-op where the target has no stable hint.
#[inline(always)]
pub(crate) fn prefetch_read(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is part of SSE, in the x86-64 baseline; a
    // prefetch is a hint that never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// [`lookup`] or [`lookup_hinted`] with the signature of the vector
/// kernels' function pointers: `padded` holds `rows` counts followed by
/// padding.
///
/// # Safety
///
/// Always safe to call; it is `unsafe fn` only to share a pointer type with
/// routines that need CPU features.
pub(crate) unsafe fn lookup_raw<C: CountWord, Q: QueryWord, R: CountWord>(
    padded: &[C],
    rows: usize,
    queries: &[Q],
    out: &mut [R],
    streaming: bool,
    prefetch: usize,
) -> Result<(), usize> {
    let counts = &padded[..rows.min(padded.len())];
    if prefetch == 0 && !streaming {
        lookup(counts, queries, out)
    } else {
        lookup_hinted(counts, queries, out, prefetch, streaming)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_and_stops_at_the_first_bad_index() {
        let mut out = [0u32; 3];
        assert_eq!(lookup(&[4u8, 5], &[1u32, 0, 1], &mut out), Ok(()));
        assert_eq!(out, [5, 4, 5]);
        assert_eq!(lookup(&[4u32, 5], &[1u32, 2, 3], &mut out), Err(1));
        assert_eq!(lookup(&[4u8, 5], &[1u64, 0, 1], &mut out), Ok(()));
        assert_eq!(out, [5, 4, 5]);
        let negative = (-1i64).cast_unsigned();
        assert_eq!(lookup(&[4u8, 5], &[1, negative, 1 << 32], &mut out), Err(1));
    }

    #[test]
    fn an_index_ahead_out_of_range_is_only_a_hint() {
        let mut out = [0u32; 3];
        assert_eq!(
            lookup_hinted(&[4u8, 5], &[1u32, 0, 1], &mut out, 2, false),
            Ok(())
        );
        assert_eq!(out, [5, 4, 5]);
        assert_eq!(
            lookup_hinted(&[4u8, 5], &[1u32, 0, 9], &mut out, 2, false),
            Err(2)
        );
        assert_eq!(
            lookup_hinted(&[4u8, 5], &[1, 0, u64::MAX], &mut out, 1, true),
            Err(2)
        );
    }

    #[test]
    fn results_of_every_width_hold_the_counts() {
        let counts = [4u8, 255];
        let mut narrow = [0u8; 3];
        assert_eq!(lookup(&counts, &[1u64, 0, 1], &mut narrow), Ok(()));
        assert_eq!(narrow, [255, 4, 255]);
        let mut half = [0u16; 3];
        for streaming in [false, true] {
            assert_eq!(
                lookup_hinted(&[300u16, 7], &[0u32, 1, 0], &mut half, 1, streaming),
                Ok(())
            );
            assert_eq!(half, [300, 7, 300]);
        }
    }
}
