//! The vector lookup algorithm, written once over [`LaneVector`].
//!
//! Per block of `LANES` queries: load the indices, check them all against the
//! last valid row in one compare, fetch the counts, store them. A block with
//! a bad index, and the final partial block, go through the scalar routine,
//! which finds the exact position.
//!
//! The counts are fetched one of two ways, chosen by the `GATHER` parameter:
//! with the ISA's gather instruction, or with unrolled scalar loads of the
//! already range-checked indices. Which is faster depends on the machine,
//! not on the instruction set, so [`Calibration`](super::select::Calibration) times
//! both and keeps the faster. Either way, a non-zero `prefetch` distance asks for the count
//! of the query that many positions ahead, so that tables far larger than
//! the caches keep many DRAM misses in flight.

use super::all::{self, QUERY_PREFETCH_AHEAD, QueryWord};
use super::counts::CountWord;

/// The handful of vector operations the algorithm needs.
///
/// Implementations are `#[inline(always)]` so that, as in memchr, the
/// intrinsics end up inside the caller's `#[target_feature]` function.
pub(crate) trait LaneVector: Copy {
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

    /// Loads `LANES` `u64` words and returns their low 32-bit halves, one
    /// per lane in order, and whether every high half was zero: a 64-bit
    /// batch read directly, never copied into a `u32` one.
    ///
    /// # Safety
    /// The ISA is supported and `ptr` is valid for reading `LANES` `u64`s.
    unsafe fn load_wide(ptr: *const u64) -> (Self, bool);

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

    /// Stores the low byte of every lane: `LANES` `u8` results.
    ///
    /// # Safety
    /// The ISA is supported and `ptr` is valid for writing `LANES` bytes.
    #[inline(always)]
    unsafe fn store_u8(self, ptr: *mut u8) {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { store_each(self, ptr) }
    }

    /// Stores the low 16 bits of every lane: `LANES` `u16` results.
    ///
    /// # Safety
    /// The ISA is supported and `ptr` is valid for writing `LANES` `u16`s.
    #[inline(always)]
    unsafe fn store_u16(self, ptr: *mut u16) {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { store_each(self, ptr) }
    }

    /// Store of `LANES` words that bypasses the cache where the ISA can
    /// (a non-temporal store), followed at the end of the batch by
    /// [`LaneVector::fence`].
    ///
    /// # Safety
    /// The ISA is supported and `ptr` is valid for writing `LANES` words and
    /// aligned to `4 × LANES` bytes.
    unsafe fn stream(self, ptr: *mut u32);

    /// Hints the CPU to bring the cache line at `ptr` into the cache.
    /// Never faults, whatever `ptr` is.
    ///
    /// # Safety
    /// The ISA is supported.
    #[inline(always)]
    unsafe fn prefetch(ptr: *const u8) {
        all::prefetch_read(ptr);
    }

    /// Orders the streaming stores before any later store.
    ///
    /// # Safety
    /// The ISA is supported.
    unsafe fn fence();
}

/// A [`QueryWord`] loaded `LANES` at a time into `u32` lanes.
pub(crate) trait VectorQuery: QueryWord {
    /// The `LANES` words at `ptr` as `u32` lanes, and whether they all fit
    /// (are below 2^32); a word that does not fit is past any table.
    ///
    /// # Safety
    /// The ISA is supported and `ptr` is valid for reading `LANES` words.
    unsafe fn load_lanes<V: LaneVector>(ptr: *const Self) -> (V, bool);
}

impl VectorQuery for u32 {
    #[inline(always)]
    unsafe fn load_lanes<V: LaneVector>(ptr: *const u32) -> (V, bool) {
        // SAFETY: forwarded from this function's contract.
        (unsafe { V::load(ptr) }, true)
    }
}

impl VectorQuery for u64 {
    #[inline(always)]
    unsafe fn load_lanes<V: LaneVector>(ptr: *const u64) -> (V, bool) {
        // SAFETY: forwarded from this function's contract.
        unsafe { V::load_wide(ptr) }
    }
}

/// Defines a module's `lookup_gather` and `lookup_loads`: [`lookup`] over
/// the vector type `$vector`, compiled with the target feature `$feature`
/// so that the intrinsics inline, as memchr's per-ISA wrappers do. Only the
/// gather-capable ISAs ask for `lookup_gather`.
macro_rules! target_lookups {
    ($feature:literal, $vector:ty, $isa:literal, [$($name:ident: $gather:literal),+]) => {
        $(
            #[doc = concat!("[`generic::lookup`] over ", $isa, " with `GATHER = ", stringify!($gather), "`.")]
            ///
            /// # Safety
            #[doc = concat!("The CPU supports ", $isa, ", and the rest of [`generic::lookup`]'s contract holds.")]
            #[target_feature(enable = $feature)]
            pub(crate) unsafe fn $name<
                C: $crate::arch::counts::CountWord,
                Q: $crate::arch::generic::VectorQuery,
                R: $crate::arch::counts::CountWord,
            >(
                padded: &[C],
                rows: usize,
                queries: &[Q],
                out: &mut [R],
                streaming: bool,
                prefetch: usize,
            ) -> Result<(), usize> {
                // SAFETY: forwarded from this function's own contract.
                unsafe {
                    $crate::arch::generic::lookup::<$vector, C, Q, R, $gather>(
                        padded, rows, queries, out, streaming, prefetch,
                    )
                }
            }
        )+
    };
}
pub(crate) use target_lookups;

/// The most lanes any [`LaneVector`] has (AVX-512's 16).
const MAX_LANES: usize = 16;

/// `out` as `u32` words, for a result type `R` of 4 bytes.
///
/// # Safety
/// `R::BYTES == 4`. `R` is sealed to `u8`, `u16` and `u32`, so `R` is then
/// `u32` and the pointer is the same pointer to the same type.
#[inline(always)]
unsafe fn as_words<R: CountWord>(out: *mut R) -> *mut u32 {
    debug_assert_eq!(R::BYTES, 4);
    out.cast()
}

/// The portable narrowing store behind [`LaneVector::store_u8`] and
/// [`LaneVector::store_u16`]: the lanes through the stack, truncated one by
/// one.
///
/// # Safety
/// The ISA is supported and `out` is valid for writing `LANES` results.
#[inline(always)]
unsafe fn store_each<V: LaneVector, R: CountWord>(found: V, out: *mut R) {
    let mut lanes = [0u32; MAX_LANES];
    // SAFETY: ISA from the caller; `lanes` holds `MAX_LANES >= LANES` words.
    unsafe { found.store(lanes.as_mut_ptr()) };
    for (k, &lane) in lanes[..V::LANES].iter().enumerate() {
        // SAFETY: `k < LANES`, and the caller guarantees `LANES` writable
        // results at `out`.
        unsafe { out.add(k).write(R::truncate(lane)) };
    }
}

/// Stores the `LANES` counts of `found` at `out`: as one vector store (or
/// a streaming one) for `u32` results, and with the ISA's narrowing store
/// for `u8` and `u16` ones.
///
/// # Safety
/// The ISA is supported; `out` is valid for writing `LANES` results; with
/// `streaming` (only ever set for `u32` results), it is aligned to
/// `4 × LANES` bytes.
#[inline(always)]
unsafe fn store_lanes<V: LaneVector, R: CountWord>(found: V, out: *mut R, streaming: bool) {
    if R::BYTES == 4 {
        // SAFETY: ISA, bounds and alignment from the caller; `R` is `u32`
        // (`as_words`).
        unsafe {
            let words = as_words(out);
            if streaming {
                found.stream(words);
            } else {
                found.store(words);
            }
        }
    } else if R::BYTES == 1 {
        // SAFETY: ISA and bounds from the caller; `R` is sealed to `u8`,
        // `u16` and `u32`, so a 1-byte `R` is `u8`.
        unsafe { found.store_u8(out.cast()) }
    } else {
        // SAFETY: as above; a 2-byte `R` is `u16`.
        unsafe { found.store_u16(out.cast()) }
    }
}

/// `out[i] = counts[queries[i]]` (the first `rows` entries of `padded`),
/// or the first bad position, as results of type `R` (`u8`, `u16` or
/// `u32`; the caller checks that they hold the counts). The queries are
/// `u32` words or 64-bit ones (`Q`), read in place either way: a block of 64-bit words is narrowed in
/// registers ([`LaneVector::load_wide`]) and range checked as `u32` lanes
/// plus one test that every high half is zero. With `GATHER`, the counts are gathered;
/// otherwise they are read with one scalar load per lane. With `streaming`,
/// full vectors of `u32` results are written with non-temporal stores
/// (narrower results are always stored normally). With `prefetch > 0`,
/// the counts `prefetch` queries ahead are prefetched.
///
/// # Safety
/// The CPU supports `V`'s ISA; `V::LANES <= 16`; `padded` holds `rows`
/// counts and then enough padding that 4 bytes can be read from the start of
/// any of them (as [`CountTable`](super::counts::CountTable) stores them); with
/// `GATHER`, `rows × C::BYTES <= 2^31`; and `out.len() >= queries.len()`.
#[inline(always)]
pub(crate) unsafe fn lookup<
    V: LaneVector,
    C: CountWord,
    Q: VectorQuery,
    R: CountWord,
    const GATHER: bool,
>(
    padded: &[C],
    rows: usize,
    queries: &[Q],
    out: &mut [R],
    streaming: bool,
    prefetch: usize,
) -> Result<(), usize> {
    // The vector streaming stores write 32-bit lanes.
    let streaming = streaming && R::BYTES == 4;
    let counts = &padded[..rows.min(padded.len())];
    let Some(last_row) = rows.checked_sub(1) else {
        return all::lookup(counts, queries, out);
    };
    debug_assert!(V::LANES <= MAX_LANES && out.len() >= queries.len());
    debug_assert!(!GATHER || rows * C::BYTES <= 1 << 31);
    debug_assert!(padded.len() * C::BYTES >= (rows - 1) * C::BYTES + 4);
    let n = queries.len();
    let base = padded.as_ptr();
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
        let (indices, fit) = unsafe { Q::load_lanes::<V>(queries.as_ptr().add(i)) };
        // SAFETY: ISA as above. (`fit` is the constant `true` for `u32`.)
        if !(fit && unsafe { indices.all_at_most(max) }) {
            let end = i + V::LANES;
            result = all::lookup(counts, &queries[i..end], &mut out[i..end]).map_err(|p| i + p);
            break;
        }
        // SAFETY: ISA as above; a prefetch never faults, and the address is
        // formed with `wrapping_add`, so running past the end is harmless.
        unsafe {
            V::prefetch(
                queries
                    .as_ptr()
                    .wrapping_add(i + QUERY_PREFETCH_AHEAD)
                    .cast(),
            )
        };
        if prefetch != 0 && i + prefetch + V::LANES <= n {
            for k in 0..V::LANES {
                // SAFETY: `i + prefetch + k < n`, so the query read is in
                // bounds; the address is only a hint (`wrapping_add`, and
                // prefetches never fault), so an out-of-range index ahead is
                // harmless: it is range-checked when its own block comes.
                unsafe {
                    let ahead = queries.get_unchecked(i + prefetch + k).row();
                    V::prefetch(base.cast::<u8>().wrapping_add(ahead << C::SHIFT));
                }
            }
        }
        if GATHER {
            // SAFETY: ISA as above; `fit && all_at_most(max)` just proved
            // every lane (the whole query) `<= last_row`, so its byte offset `lane × C::BYTES` is the start
            // of a count, below `rows × C::BYTES <= 2^31` (caller, with
            // GATHER), with 4 readable bytes there thanks to the padding.
            let found = unsafe {
                let words = V::gather(base.cast(), indices.shift_left(C::SHIFT));
                if C::MASK == u32::MAX {
                    words
                } else {
                    words.and(mask)
                }
            };
            // SAFETY: ISA as above; `i + LANES <= n <= out.len()` (caller),
            // so the LANES results written at `out + i` are in bounds. When
            // streaming (`u32` results), `out + head` is aligned to
            // `4 × LANES` bytes and `i - head` is a multiple of LANES, so
            // `out + i` is aligned too.
            unsafe { store_lanes(found, out.as_mut_ptr().add(i), streaming) };
        } else {
            // The loads take their indices from the register that was range
            // checked, never from `queries` again: the caller's memory may
            // change between the check and a second read (a Python thread
            // writing a shared numpy array while the GIL is released), and
            // only the values checked are known to be in range.
            let mut checked = [0u32; MAX_LANES];
            // SAFETY: ISA as above; `checked` holds `MAX_LANES >= LANES`
            // words.
            unsafe { indices.store(checked.as_mut_ptr()) };
            if streaming {
                let mut lanes = [0u32; MAX_LANES];
                for (lane, &index) in lanes.iter_mut().zip(&checked[..V::LANES]) {
                    // SAFETY: `all_at_most(max)` proved `index <= last_row <
                    // rows <= padded.len()`, so the count read is in bounds.
                    *lane = unsafe { (*padded.get_unchecked(index as usize)).into() };
                }
                // SAFETY: ISA as above; `lanes` holds `MAX_LANES >= LANES`
                // words; the store is in bounds and aligned as in the gather
                // branch above, and streaming means `u32` results.
                unsafe {
                    V::load(lanes.as_ptr()).stream(as_words(out.as_mut_ptr().add(i)));
                }
            } else {
                // Outputs that stay in the cache take the counts with scalar
                // stores: assembling a vector first measured slower
                // (BENCHMARKS.md).
                for (k, &index) in checked[..V::LANES].iter().enumerate() {
                    // SAFETY: the count read as in the streaming branch;
                    // `i + k < n <= out.len()` (caller) for the write.
                    unsafe {
                        *out.get_unchecked_mut(i + k) =
                            R::truncate((*padded.get_unchecked(index as usize)).into());
                    }
                }
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
