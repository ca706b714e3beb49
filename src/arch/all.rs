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

/// [`lookup`] with the signature of the vector kernels' function pointers:
/// `padded` holds `rows` counts followed by padding.
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
    _streaming: bool,
) -> Result<(), usize> {
    lookup(&padded[..rows.min(padded.len())], queries, out)
}
