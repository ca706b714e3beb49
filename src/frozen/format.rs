//! The byte layout of a frozen buffer: offsets, sizes and tags, and the
//! bounds-checked little-endian reads every reader goes through.
//!
//! All integers are little-endian. All offsets are absolute (from the
//! first byte of the buffer), so a nested container is read in place.
//!
//! ```text
//! buffer header (64 bytes)
//!   0  magic            b"IRFROZEN"
//!   8  version          u32 (1)
//!  12  header length    u32 (64)
//!  16  total length     u64: the bytes that belong to the buffer (a mapping
//!                       may be longer: page rounding; the rest is ignored)
//!  24  hash seed        u64
//!  32  root             u64: offset of the root container
//!  40  container count  u64
//!  48  directory        u64: offset of `container count` u64 offsets of
//!                       every container, ascending
//!  56  reserved         u64 (0)
//! container (8-aligned)
//!   0  kind             u32 (1 map, 2 list)
//!   4  flags            u32 (0)
//!   8  len              u64: entries
//!  16  index slots      u64: a power of two > len (maps), 0 (lists and empty maps)
//!  24  reserved         u64 (0)
//!  32  index            `index slots` u64: entry number + 1 in the low 32
//!                       bits (0: empty), the hash's high 32 bits above
//!   …  entries          maps: (key slot, value slot) each; lists: a value slot each
//! slot (16 bytes)
//!   0  tag              u8
//!   1  reserved         3 bytes (0)
//!   4  len              u32: byte length of str, bytes and big-int spans
//!  8   payload          u64: the value (bool, int, float bits) or an offset
//! array descriptor (8-aligned)
//!   0  data offset      u64, a multiple of 64
//!   8  data length      u64 = itemsize × product(shape)
//!  16  itemsize         u64 (≥ 1)
//!  24  ndim             u32 (≤ 64)
//!  28  dtype length     u32 (1..=64)
//!  32  shape            `ndim` u64
//!   …  dtype            `dtype length` ASCII bytes (numpy's `dtype.str`)
//! ```
//!
//! Str, bytes and big-int spans lie in the buffer and do not overlap: their
//! lengths add up to at most the buffer's length (so validating them all
//! costs at most one pass over the buffer).

pub(crate) const MAGIC: [u8; 8] = *b"IRFROZEN";
pub(crate) const VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 64;

pub(crate) const H_MAGIC: usize = 0;
pub(crate) const H_VERSION: usize = 8;
pub(crate) const H_HEADER_LEN: usize = 12;
pub(crate) const H_TOTAL_LEN: usize = 16;
pub(crate) const H_SEED: usize = 24;
pub(crate) const H_ROOT: usize = 32;
pub(crate) const H_CONTAINERS: usize = 40;
pub(crate) const H_DIRECTORY: usize = 48;
pub(crate) const H_RESERVED: usize = 56;

pub(crate) const CONTAINER_HEADER_LEN: usize = 32;
pub(crate) const C_KIND: usize = 0;
pub(crate) const C_FLAGS: usize = 4;
pub(crate) const C_LEN: usize = 8;
pub(crate) const C_SLOTS: usize = 16;
pub(crate) const C_RESERVED: usize = 24;
pub(crate) const KIND_MAP: u32 = 1;
pub(crate) const KIND_LIST: u32 = 2;

pub(crate) const INDEX_SLOT_LEN: usize = 8;
pub(crate) const SLOT_LEN: usize = 16;
pub(crate) const MAP_ENTRY_LEN: usize = 2 * SLOT_LEN;
pub(crate) const LIST_ENTRY_LEN: usize = SLOT_LEN;
/// Entries per map: the index stores an entry number + 1 in 32 bits.
pub(crate) const MAX_MAP_LEN: u64 = u32::MAX as u64 - 1;

pub(crate) const TAG_NONE: u8 = 0;
pub(crate) const TAG_BOOL: u8 = 1;
pub(crate) const TAG_INT: u8 = 2;
pub(crate) const TAG_FLOAT: u8 = 3;
pub(crate) const TAG_STR: u8 = 4;
pub(crate) const TAG_BYTES: u8 = 5;
pub(crate) const TAG_BIG_INT: u8 = 6;
pub(crate) const TAG_ARRAY: u8 = 7;
pub(crate) const TAG_MAP: u8 = 8;
pub(crate) const TAG_LIST: u8 = 9;

pub(crate) const A_DATA_OFFSET: usize = 0;
pub(crate) const A_DATA_LEN: usize = 8;
pub(crate) const A_ITEMSIZE: usize = 16;
pub(crate) const A_NDIM: usize = 24;
pub(crate) const A_DTYPE_LEN: usize = 28;
pub(crate) const A_SHAPE: usize = 32;

/// Array data starts at a multiple of this many bytes from the buffer's
/// start (a cache line; numpy's SIMD loops like it).
pub const ARRAY_ALIGN: usize = 64;
/// The most dimensions an array value may have (numpy's own limit).
pub const MAX_NDIM: usize = 64;
/// The longest dtype string an array value may have.
pub const MAX_DTYPE_LEN: usize = 64;
/// The deepest nesting of containers (the root counts as 1).
pub const MAX_DEPTH: usize = 256;

/// The `N` bytes at `offset`, or `None` past the end.
#[inline(always)]
pub(crate) fn array_at<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    let end = offset.checked_add(N)?;
    bytes.get(offset..end)?.try_into().ok()
}

/// The `u64` at `offset`, or `None` past the end.
#[inline(always)]
pub(crate) fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    array_at::<8>(bytes, offset).map(u64::from_le_bytes)
}

/// The `u32` at `offset`, or `None` past the end.
#[inline(always)]
pub(crate) fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    array_at::<4>(bytes, offset).map(u32::from_le_bytes)
}

/// `len` bytes at `offset`, or `None` past the end.
#[inline(always)]
pub(crate) fn span_at(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

/// Asks the CPU to bring the cache line holding `bytes[offset]` closer (a
/// hint: no effect past the end, on other architectures, or if ignored).
#[inline(always)]
pub(crate) fn prefetch(bytes: &[u8], offset: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(byte) = bytes.get(offset) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is a hint that never faults and changes no
        // state a program can observe, and `byte` is a valid address of
        // this slice anyway; SSE, which `_mm_prefetch` needs, is part of
        // every x86-64 CPU.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, offset);
}

/// One 16-byte slot, decoded but not interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawSlot {
    pub(crate) tag: u8,
    pub(crate) reserved: [u8; 3],
    pub(crate) len: u32,
    pub(crate) payload: u64,
}

impl RawSlot {
    #[inline(always)]
    pub(crate) fn read(bytes: &[u8], offset: usize) -> Option<RawSlot> {
        let raw = array_at::<SLOT_LEN>(bytes, offset)?;
        let [tag, r0, r1, r2, l0, l1, l2, l3, p @ ..] = raw;
        Some(RawSlot {
            tag,
            reserved: [r0, r1, r2],
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            payload: u64::from_le_bytes(p),
        })
    }

    pub(crate) fn encode(self) -> [u8; SLOT_LEN] {
        let mut out = [0u8; SLOT_LEN];
        out[0] = self.tag;
        out[1..4].copy_from_slice(&self.reserved);
        out[4..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..16].copy_from_slice(&self.payload.to_le_bytes());
        out
    }

    pub(crate) fn new(tag: u8, len: u32, payload: u64) -> RawSlot {
        RawSlot {
            tag,
            reserved: [0; 3],
            len,
            payload,
        }
    }
}
