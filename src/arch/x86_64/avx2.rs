//! AVX2: 8 lanes of `u32`, `vpgatherdd ymm`.

use std::arch::x86_64::*;

use crate::arch::generic::{self, GatherVector};

impl GatherVector for __m256i {
    const LANES: usize = 8;

    #[inline(always)]
    unsafe fn splat(value: u32) -> Self {
        // SAFETY: the caller guarantees AVX (implied by AVX2).
        unsafe { _mm256_set1_epi32(value as i32) }
    }

    #[inline(always)]
    unsafe fn load(ptr: *const u32) -> Self {
        // SAFETY: the caller guarantees 8 readable words at `ptr`.
        unsafe { _mm256_loadu_si256(ptr.cast()) }
    }

    #[inline(always)]
    unsafe fn all_at_most(self, max: Self) -> bool {
        // Unsigned `x <= max` is `max(x, max) == max`: AVX2 has no unsigned compare.
        // SAFETY: the caller guarantees AVX2.
        unsafe {
            let ok = _mm256_cmpeq_epi32(_mm256_max_epu32(self, max), max);
            _mm256_movemask_epi8(ok) == -1
        }
    }

    #[inline(always)]
    unsafe fn shift_left(self, bits: u32) -> Self {
        // SAFETY: the caller guarantees AVX2.
        unsafe { _mm256_sll_epi32(self, _mm_cvtsi32_si128(bits as i32)) }
    }

    #[inline(always)]
    unsafe fn and(self, mask: Self) -> Self {
        // SAFETY: the caller guarantees AVX2.
        unsafe { _mm256_and_si256(self, mask) }
    }

    #[inline(always)]
    unsafe fn gather(base: *const u8, byte_offsets: Self) -> Self {
        // SAFETY: the caller guarantees 4 readable bytes at every
        // `base + offset` and offsets below 2^31, so the signed offsets are
        // the byte offsets.
        unsafe { _mm256_i32gather_epi32::<1>(base.cast(), byte_offsets) }
    }

    #[inline(always)]
    unsafe fn store(self, ptr: *mut u32) {
        // SAFETY: the caller guarantees 8 writable words at `ptr`.
        unsafe { _mm256_storeu_si256(ptr.cast(), self) }
    }

    #[inline(always)]
    unsafe fn stream(self, ptr: *mut u32) {
        // SAFETY: the caller guarantees 8 writable words at `ptr`, 32-byte aligned.
        unsafe { _mm256_stream_si256(ptr.cast(), self) }
    }

    #[inline(always)]
    unsafe fn fence() {
        // SAFETY: SSE is part of the x86-64 baseline.
        unsafe { _mm_sfence() }
    }
}

generic::target_lookups!("avx2", __m256i, "AVX2", [lookup_gather: true, lookup_loads: false]);
