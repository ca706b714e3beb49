//! NEON: 4-lane range check; NEON has no gather, so the loads are scalar
//! (only the `-loads` kernel exists).

use std::arch::aarch64::*;

use crate::arch::generic::{self, LaneVector};

impl LaneVector for uint32x4_t {
    const LANES: usize = 4;

    #[inline(always)]
    unsafe fn splat(value: u32) -> Self {
        // SAFETY: the caller guarantees NEON.
        unsafe { vdupq_n_u32(value) }
    }

    #[inline(always)]
    unsafe fn load(ptr: *const u32) -> Self {
        // SAFETY: the caller guarantees 4 readable words at `ptr`.
        unsafe { vld1q_u32(ptr) }
    }

    #[inline(always)]
    unsafe fn load_wide(ptr: *const u64) -> (Self, bool) {
        // SAFETY: the caller guarantees NEON and 4 readable `u64`s at `ptr`.
        // Little-endian only (see `Isa::is_available`): each word's low
        // half is its even 32-bit element.
        unsafe {
            let a = vld1q_u32(ptr.cast());
            let b = vld1q_u32(ptr.add(2).cast());
            (vuzp1q_u32(a, b), vmaxvq_u32(vuzp2q_u32(a, b)) == 0)
        }
    }

    #[inline(always)]
    unsafe fn all_at_most(self, max: Self) -> bool {
        // SAFETY: the caller guarantees NEON.
        unsafe { vmaxvq_u32(self) <= vgetq_lane_u32::<0>(max) }
    }

    #[inline(always)]
    unsafe fn shift_left(self, bits: u32) -> Self {
        // SAFETY: the caller guarantees NEON; `bits < 32`.
        unsafe { vshlq_u32(self, vdupq_n_s32(bits as i32)) }
    }

    #[inline(always)]
    unsafe fn and(self, mask: Self) -> Self {
        // SAFETY: the caller guarantees NEON.
        unsafe { vandq_u32(self, mask) }
    }

    #[inline(always)]
    unsafe fn gather(base: *const u8, byte_offsets: Self) -> Self {
        let mut lanes = [0u32; 4];
        // SAFETY: the caller guarantees NEON and 4 readable bytes at every
        // `base + offset`; `lanes` has room for the 4 offsets.
        unsafe {
            vst1q_u32(lanes.as_mut_ptr(), byte_offsets);
            for lane in &mut lanes {
                // Little-endian only (see `Isa::is_available`): the count's
                // bytes come first in the word.
                *lane = base.add(*lane as usize).cast::<u32>().read_unaligned();
            }
            vld1q_u32(lanes.as_ptr())
        }
    }

    #[inline(always)]
    unsafe fn store(self, ptr: *mut u32) {
        // SAFETY: the caller guarantees 4 writable words at `ptr`.
        unsafe { vst1q_u32(ptr, self) }
    }

    #[inline(always)]
    unsafe fn stream(self, ptr: *mut u32) {
        // NEON has no non-temporal vector store worth the name; store normally.
        // SAFETY: the caller guarantees 4 writable words at `ptr`.
        unsafe { vst1q_u32(ptr, self) }
    }

    #[inline(always)]
    unsafe fn fence() {}
}

generic::target_lookups!("neon", uint32x4_t, "NEON", [lookup_loads: false]);
