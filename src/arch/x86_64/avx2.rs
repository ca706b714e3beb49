//! AVX2: 8 lanes of `u32`, `vpgatherdd ymm`.

use std::arch::x86_64::*;

use crate::arch::generic::{self, LaneVector};

impl LaneVector for __m256i {
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
    unsafe fn load_wide(ptr: *const u64) -> (Self, bool) {
        // SAFETY: the caller guarantees AVX2 and 8 readable `u64`s at `ptr`.
        unsafe {
            let a = _mm256_loadu_si256(ptr.cast());
            let b = _mm256_loadu_si256(ptr.add(4).cast());
            // Even 32-bit halves (the low ones): [a0 a1 b0 b1 | a2 a3 b2 b3],
            // then the 64-bit pairs reordered to [a0 a1 a2 a3 b0 b1 b2 b3].
            let lows = _mm256_castps_si256(_mm256_shuffle_ps::<0b10_00_10_00>(
                _mm256_castsi256_ps(a),
                _mm256_castsi256_ps(b),
            ));
            let lanes = _mm256_permute4x64_epi64::<0b11_01_10_00>(lows);
            let high = _mm256_set1_epi64x(0xFFFF_FFFF_0000_0000_u64 as i64);
            let fit = _mm256_testz_si256(_mm256_or_si256(a, b), high) == 1;
            (lanes, fit)
        }
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
    unsafe fn store_u8(self, ptr: *mut u8) {
        // SAFETY: the caller guarantees AVX2 and 8 writable bytes at `ptr`.
        unsafe {
            // The low byte of each lane to the first 4 bytes of its half,
            // then the two halves' first 32 bits side by side.
            let low_bytes = _mm256_setr_epi8(
                0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, //
                0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
            );
            let packed = _mm256_shuffle_epi8(self, low_bytes);
            let both = _mm_unpacklo_epi32(
                _mm256_castsi256_si128(packed),
                _mm256_extracti128_si256::<1>(packed),
            );
            _mm_storel_epi64(ptr.cast(), both);
        }
    }

    #[inline(always)]
    unsafe fn store_u16(self, ptr: *mut u16) {
        // SAFETY: the caller guarantees AVX2 and 8 writable `u16`s at `ptr`.
        unsafe {
            // The low 16 bits of each lane to the first 8 bytes of its half,
            // then the two halves' first 64 bits side by side.
            let low_halves = _mm256_setr_epi8(
                0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, //
                0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
            );
            let packed = _mm256_shuffle_epi8(self, low_halves);
            let both = _mm_unpacklo_epi64(
                _mm256_castsi256_si128(packed),
                _mm256_extracti128_si256::<1>(packed),
            );
            _mm_storeu_si128(ptr.cast(), both);
        }
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
