//! The portable scalar kernel: one bounds-checked load per query. Runs on
//! every target and is the fallback for the vector kernels' tails.

use super::CountWord;

/// Writes `counts[queries[i]]` to `out[i]`; on the first query
/// `>= counts.len()` stops and returns its position.
///
/// Only `min(queries.len(), out.len())` queries are looked at.
///
/// ```
/// use initret::arch::all::lookup;
///
/// let mut out = [0; 3];
/// assert_eq!(lookup(&[4u8, 5], &[1, 0, 1], &mut out), Ok(()));
/// assert_eq!(out, [5, 4, 5]);
/// assert_eq!(lookup(&[4u32, 5], &[1, 2, 3], &mut out), Err(1));
/// ```
#[inline]
pub fn lookup<C: CountWord>(counts: &[C], queries: &[u32], out: &mut [u32]) -> Result<(), usize> {
    for (position, (&index, slot)) in queries.iter().zip(out.iter_mut()).enumerate() {
        match counts.get(index as usize) {
            Some(&count) => *slot = count.into(),
            None => return Err(position),
        }
    }
    Ok(())
}

/// [`lookup`], asking the CPU `distance` queries ahead for the count it will
/// need then, so that on tables larger than the caches several DRAM misses
/// are in flight at once. Where the target has no prefetch hint, the same
/// as [`lookup`].
///
/// ```
/// use initret::arch::all::lookup_prefetching;
///
/// let mut out = [0; 3];
/// assert_eq!(lookup_prefetching(&[4u8, 5], &[1, 0, 1], &mut out, 2), Ok(()));
/// assert_eq!(out, [5, 4, 5]);
/// // An index ahead that is out of range is only a hint, then an error in turn.
/// assert_eq!(lookup_prefetching(&[4u8, 5], &[1, 0, 9], &mut out, 2), Err(2));
/// ```
#[inline]
pub fn lookup_prefetching<C: CountWord>(
    counts: &[C],
    queries: &[u32],
    out: &mut [u32],
    distance: usize,
) -> Result<(), usize> {
    lookup_hinted(counts, queries, out, distance, false)
}

/// The scalar loop of the `scalar` kernels on large batches: like the vector
/// kernels, it prefetches the query stream ahead, prefetches counts
/// `distance` queries ahead (0: not), and with `streaming` writes the
/// counts with non-temporal stores where the target has them, so that the
/// measurement between kernels compares fetch strategies, not store paths.
#[inline]
fn lookup_hinted<C: CountWord>(
    counts: &[C],
    queries: &[u32],
    out: &mut [u32],
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
            prefetch_read(counts.as_ptr().wrapping_add(ahead as usize).cast());
        }
        match counts.get(index as usize) {
            Some(&count) if streaming => store_streaming(slot, count.into()),
            Some(&count) => *slot = count.into(),
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
/// prefetched. The hardware prefetcher falls behind on the sequential query
/// stream while the random count loads keep the load queue full; asking for
/// the queries 8 KiB ahead doubled the rate at 2^24 queries into 2^16 rows
/// on the 2-core AMD EPYC (Zen 5) VM: 4.9 ms without, 3.2 ms at 256 queries
/// ahead, 2.4–2.6 ms at 1024 to 4096 (BENCHMARKS.md).
pub(crate) const QUERY_PREFETCH_AHEAD: usize = 2048;

/// `*slot = value`, bypassing the caches where the target can (`movnti`).
#[inline(always)]
fn store_streaming(slot: &mut u32, value: u32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `movnti` is part of SSE2, in the x86-64 baseline; `slot` is a
    // valid, aligned `u32`. `store_fence` orders it before later stores.
    unsafe {
        std::arch::x86_64::_mm_stream_si32(std::ptr::from_mut(slot).cast(), value as i32);
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        *slot = value;
    }
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

/// [`lookup`] or [`lookup_prefetching`] with the signature of the vector
/// kernels' function pointers: `padded` holds `rows` counts followed by
/// padding.
///
/// # Safety
///
/// Always safe to call; it is `unsafe fn` only to share a pointer type with
/// routines that need CPU features.
pub(crate) unsafe fn lookup_raw<C: CountWord>(
    padded: &[C],
    rows: usize,
    queries: &[u32],
    out: &mut [u32],
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
