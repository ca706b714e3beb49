//! The vector lookup algorithm, written once over [`GatherVector`].
//!
//! Per block of `LANES` queries: load the indices, check them all against the
//! last valid row in one compare, gather the counts, store them. A block with
//! a bad index, and the final partial block, go through the scalar routine,
//! which finds the exact position.

use super::all;

/// The handful of vector operations the algorithm needs.
///
/// Implementations are `#[inline(always)]` so that, as in memchr, the
/// intrinsics end up inside the caller's `#[target_feature]` function.
pub(crate) trait GatherVector: Copy {
    /// Number of `u32` lanes.
    const LANES: usize;

    /// Every lane set to `value`.
    ///
    /// # Safety
    /// The CPU supports the vector's ISA.
    unsafe fn splat(value: u32) -> Self;

    /// Unaligned load of `LANES` words.
    ///
    /// # Safety
    /// The ISA is supported and `ptr` is valid for reading `LANES` words.
    unsafe fn load(ptr: *const u32) -> Self;

    /// Whether every lane is `<=` the matching lane of `max` (unsigned).
    ///
    /// # Safety
    /// The ISA is supported.
    unsafe fn all_at_most(self, max: Self) -> bool;

    /// `base[lane]` for every lane.
    ///
    /// # Safety
    /// The ISA is supported, and every lane is a valid index into `base` and
    /// below 2^31 (the gathers take signed 32-bit offsets).
    unsafe fn gather(base: *const u32, indices: Self) -> Self;

    /// Unaligned store of `LANES` words.
    ///
    /// # Safety
    /// The ISA is supported and `ptr` is valid for writing `LANES` words.
    unsafe fn store(self, ptr: *mut u32);

    /// Store of `LANES` words that bypasses the cache where the ISA can
    /// (a non-temporal store), followed at the end of the batch by
    /// [`GatherVector::fence`].
    ///
    /// # Safety
    /// The ISA is supported and `ptr` is valid for writing `LANES` words and
    /// aligned to `4 × LANES` bytes.
    unsafe fn stream(self, ptr: *mut u32);

    /// Orders the streaming stores before any later store.
    ///
    /// # Safety
    /// The ISA is supported.
    unsafe fn fence();
}

/// Outputs at least this long (in words) are written with streaming stores:
/// they are far bigger than the caches, so bypassing them saves the
/// read-for-ownership of every output line. Shorter outputs are stored
/// normally, since the caller is likely to read them while they are cached.
pub(crate) const STREAM_MIN_WORDS: usize = 1 << 18;

/// `out[i] = counts[queries[i]]`, or the first bad position.
///
/// # Safety
/// The CPU supports `V`'s ISA, `counts.len() <= 2^31`, and
/// `out.len() >= queries.len()`.
#[inline(always)]
pub(crate) unsafe fn lookup<V: GatherVector>(
    counts: &[u32],
    queries: &[u32],
    out: &mut [u32],
) -> Result<(), usize> {
    let Some(last_row) = counts.len().checked_sub(1) else {
        return all::lookup(counts, queries, out);
    };
    debug_assert!(out.len() >= queries.len() && last_row < 1 << 31);
    let n = queries.len();
    // SAFETY: the caller guarantees the CPU supports V's ISA.
    let max = unsafe { V::splat(last_row as u32) };
    let streaming = n >= STREAM_MIN_WORDS;
    // Streaming stores need aligned addresses: the scalar routine takes the
    // few queries before the first aligned output word.
    let mut i = if streaming {
        let head = out.as_ptr().align_offset(4 * V::LANES).min(n);
        all::lookup(counts, &queries[..head], &mut out[..head])?;
        head
    } else {
        0
    };
    let mut result = Ok(());
    while i + V::LANES <= n {
        // SAFETY: ISA as above; `i + LANES <= n = queries.len()`, so the
        // LANES words read from `queries + i` are in bounds.
        let indices = unsafe { V::load(queries.as_ptr().add(i)) };
        // SAFETY: ISA as above.
        if !unsafe { indices.all_at_most(max) } {
            let end = i + V::LANES;
            result = all::lookup(counts, &queries[i..end], &mut out[i..end]).map_err(|p| i + p);
            break;
        }
        // SAFETY: ISA as above; `all_at_most(max)` just proved every lane
        // `<= last_row`, an index of `counts`, and `last_row < 2^31` (caller).
        let found = unsafe { V::gather(counts.as_ptr(), indices) };
        // SAFETY: ISA as above; `i + LANES <= n <= out.len()` (caller), so
        // the LANES words written at `out + i` are in bounds. When streaming,
        // `out + head` is aligned to `4 × LANES` bytes and `i - head` is a
        // multiple of LANES, so `out + i` is aligned too.
        unsafe {
            if streaming {
                found.stream(out.as_mut_ptr().add(i));
            } else {
                found.store(out.as_mut_ptr().add(i));
            }
        }
        i += V::LANES;
    }
    if streaming {
        // SAFETY: ISA as above.
        unsafe { V::fence() };
    }
    result?;
    all::lookup(counts, &queries[i..n], &mut out[i..n]).map_err(|p| i + p)
}
