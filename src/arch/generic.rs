//! The vector lookup algorithm, written once over [`GatherVector`].
//!
//! Per block of `LANES` queries: load the indices, check them all against the
//! last valid row in one compare, gather the counts, store them. A block with
//! a bad index, and the final partial block, go through the scalar routine,
//! which finds the exact position.

use super::{CountWord, all};

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

    /// Every lane shifted left by `bits` (`bits < 32`).
    ///
    /// # Safety
    /// The ISA is supported.
    unsafe fn shift_left(self, bits: u32) -> Self;

    /// Lane-wise `self & mask`.
    ///
    /// # Safety
    /// The ISA is supported.
    unsafe fn and(self, mask: Self) -> Self;

    /// The unaligned 32-bit word at `base + offset` (in bytes) for every lane.
    ///
    /// # Safety
    /// The ISA is supported, and for every lane the 4 bytes at
    /// `base + offset` are readable and `offset < 2^31` (the gathers take
    /// signed 32-bit offsets).
    unsafe fn gather(base: *const u8, byte_offsets: Self) -> Self;

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

/// `out[i] = counts[queries[i]]` (the first `rows` entries of `padded`),
/// or the first bad position. With `streaming`, full vectors are written
/// with non-temporal stores.
///
/// # Safety
/// The CPU supports `V`'s ISA; `padded` holds `rows` counts and then enough
/// padding that 4 bytes can be read from the start of any of them (as
/// [`CountTable`](super::CountTable) stores them); `rows × C::BYTES <= 2^31`;
/// and `out.len() >= queries.len()`.
#[inline(always)]
pub(crate) unsafe fn lookup<V: GatherVector, C: CountWord>(
    padded: &[C],
    rows: usize,
    queries: &[u32],
    out: &mut [u32],
    streaming: bool,
) -> Result<(), usize> {
    let counts = &padded[..rows.min(padded.len())];
    let Some(last_row) = rows.checked_sub(1) else {
        return all::lookup(counts, queries, out);
    };
    debug_assert!(out.len() >= queries.len() && rows * C::BYTES <= 1 << 31);
    debug_assert!(padded.len() * C::BYTES >= (rows - 1) * C::BYTES + 4);
    let n = queries.len();
    // SAFETY: the caller guarantees the CPU supports V's ISA.
    let (max, mask) = unsafe { (V::splat(last_row as u32), V::splat(C::MASK)) };
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
        // `<= last_row`, so its byte offset `lane × C::BYTES` is the start of
        // a count, below `rows × C::BYTES <= 2^31`, with 4 readable bytes
        // there thanks to the padding (caller).
        let found = unsafe {
            let words = V::gather(padded.as_ptr().cast(), indices.shift_left(C::SHIFT));
            if C::MASK == u32::MAX {
                words
            } else {
                words.and(mask)
            }
        };
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
