//! AVX-512F: 16 lanes of `u32`, one mask compare for the range check and
//! `vpgatherdd zmm`.

use std::arch::x86_64::*;

use crate::arch::generic::{self, LaneVector};

impl LaneVector for __m512i {
    const LANES: usize = 16;

    #[inline(always)]
    unsafe fn splat(value: u32) -> Self {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { _mm512_set1_epi32(value as i32) }
    }

    #[inline(always)]
    unsafe fn load(ptr: *const u32) -> Self {
        // SAFETY: the caller guarantees 16 readable words at `ptr`.
        unsafe { _mm512_loadu_si512(ptr.cast()) }
    }

    #[inline(always)]
    unsafe fn load_wide(ptr: *const u64) -> (Self, bool) {
        // SAFETY: the caller guarantees AVX-512F and 16 readable `u64`s at
        // `ptr`.
        unsafe {
            let a = _mm512_loadu_si512(ptr.cast());
            let b = _mm512_loadu_si512(ptr.add(8).cast());
            // The low 32-bit half of every 64-bit word, a's then b's.
            let lanes = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm512_cvtepi64_epi32(a)),
                _mm512_cvtepi64_epi32(b),
            );
            let high = _mm512_set1_epi64(0xFFFF_FFFF_0000_0000_u64 as i64);
            let fit = _mm512_test_epi64_mask(_mm512_or_si512(a, b), high) == 0;
            (lanes, fit)
        }
    }

    #[inline(always)]
    unsafe fn all_at_most(self, max: Self) -> bool {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { _mm512_cmple_epu32_mask(self, max) == 0xFFFF }
    }

    #[inline(always)]
    unsafe fn shift_left(self, bits: u32) -> Self {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { _mm512_sll_epi32(self, _mm_cvtsi32_si128(bits as i32)) }
    }

    #[inline(always)]
    unsafe fn and(self, mask: Self) -> Self {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { _mm512_and_si512(self, mask) }
    }

    #[inline(always)]
    unsafe fn gather(base: *const u8, byte_offsets: Self) -> Self {
        // SAFETY: the caller guarantees 4 readable bytes at every
        // `base + offset` and offsets below 2^31, so the signed offsets are
        // the byte offsets.
        unsafe { _mm512_i32gather_epi32::<1>(byte_offsets, base.cast()) }
    }

    #[inline(always)]
    unsafe fn store(self, ptr: *mut u32) {
        // SAFETY: the caller guarantees 16 writable words at `ptr`.
        unsafe { _mm512_storeu_si512(ptr.cast(), self) }
    }

    #[inline(always)]
    unsafe fn store_u8(self, ptr: *mut u8) {
        // SAFETY: the caller guarantees AVX-512F and 16 writable bytes at
        // `ptr`; `vpmovdb` truncates each lane to its low byte.
        unsafe { _mm_storeu_si128(ptr.cast(), _mm512_cvtepi32_epi8(self)) }
    }

    #[inline(always)]
    unsafe fn store_u16(self, ptr: *mut u16) {
        // SAFETY: the caller guarantees AVX-512F and 16 writable `u16`s at
        // `ptr`; `vpmovdw` truncates each lane to its low 16 bits.
        unsafe { _mm256_storeu_si256(ptr.cast(), _mm512_cvtepi32_epi16(self)) }
    }

    #[inline(always)]
    unsafe fn stream(self, ptr: *mut u32) {
        // SAFETY: the caller guarantees 16 writable words at `ptr`, 64-byte aligned.
        unsafe { _mm512_stream_si512(ptr.cast(), self) }
    }

    #[inline(always)]
    unsafe fn fence() {
        // SAFETY: SSE is part of the x86-64 baseline.
        unsafe { _mm_sfence() }
    }
}

generic::target_lookups!("avx512f", __m512i, "AVX-512F", [lookup_gather: true, lookup_loads: false]);
