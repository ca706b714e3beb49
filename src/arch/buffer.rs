//! [`CountBuffer`]: the memory a count table lives in. Buffers of 2 MiB or
//! more are 2-MiB-aligned and advised `MADV_HUGEPAGE` on Linux, because
//! random lookups into a table past the caches miss the TLB on nearly every
//! 4-KiB page; Debian and Ubuntu set transparent huge pages to `madvise`, so
//! nothing is granted unless it is asked for.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

/// Memory that holds a count table and that someone else owns: a
/// shared-memory mapping made by another process, say. A
/// [`CountTable`](super::counts::CountTable) built over it with
/// [`CountTable::from_memory`](super::counts::CountTable::from_memory) reads it in
/// place and keeps the owner alive.
///
/// # Safety
///
/// Implementors promise that [`bytes`](CountMemory::bytes) returns the same
/// slice (address and length) on every call, and that nothing writes to
/// those bytes for as long as the value lives: a read-only mapping that is
/// unmapped only when the value is dropped meets this. The lookup kernels
/// read the counts without synchronisation.
pub unsafe trait CountMemory: Send + Sync + 'static {
    /// The bytes of the count table, padding included.
    fn bytes(&self) -> &[u8];
}

// SAFETY: a `Vec` owned by the `Arc` is never written through it again and
// its buffer does not move while it is alive.
unsafe impl CountMemory for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// The size of an x86-64 and aarch64 (4-KiB granule) transparent huge page.
pub(crate) const HUGE_PAGE_BYTES: usize = 2 << 20;

/// A fixed-length array of counts: allocated here, or borrowed from a
/// [`CountMemory`] it keeps alive.
pub(crate) struct CountBuffer<C> {
    ptr: NonNull<C>,
    len: usize,
    // Zero-sized for an empty or borrowed buffer, which owns no allocation.
    layout: Layout,
    huge_pages_advised: bool,
    borrowed: Option<Arc<dyn CountMemory>>,
}

// SAFETY: a `CountBuffer<C>` owns its elements exactly as a `Vec<C>` does
// and hands out only `&[C]`, so it may cross threads when `C` may.
unsafe impl<C: Send> Send for CountBuffer<C> {}
// SAFETY: as above; shared access only ever reads.
unsafe impl<C: Sync> Sync for CountBuffer<C> {}

impl<C: Copy> CountBuffer<C> {
    /// A buffer of `len` elements, element `i` being `value(i)`, written in
    /// order by the calling thread (which therefore touches it first).
    pub(crate) fn from_fn(len: usize, mut value: impl FnMut(usize) -> C) -> CountBuffer<C> {
        let mut buffer = CountBuffer::<C>::uninit(len);
        let ptr = buffer.ptr.as_ptr();
        for i in 0..len {
            // SAFETY: `i < len`, and the allocation holds `len` elements.
            unsafe { ptr.add(i).write(value(i)) };
        }
        buffer.len = len;
        buffer
    }

    /// Allocates room for `len` elements (recorded length 0 until filled).
    fn uninit(len: usize) -> CountBuffer<C> {
        let Ok(array) = Layout::array::<C>(len) else {
            // Past isize::MAX bytes: the same failure `Vec` reports.
            panic!("capacity overflow: {len} counts");
        };
        if array.size() == 0 {
            return CountBuffer {
                ptr: NonNull::dangling(),
                len: 0,
                layout: array,
                huge_pages_advised: false,
                borrowed: None,
            };
        }
        let huge = array.size() >= HUGE_PAGE_BYTES && huge_pages_wanted();
        let layout = if huge {
            match Layout::from_size_align(
                array.size().next_multiple_of(HUGE_PAGE_BYTES),
                HUGE_PAGE_BYTES,
            ) {
                Ok(layout) => layout,
                Err(_) => panic!("capacity overflow: {len} counts"),
            }
        } else {
            array
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<C>()) else {
            handle_alloc_error(layout)
        };
        let huge_pages_advised = huge && advise_huge_pages(raw, layout.size());
        CountBuffer {
            ptr,
            len: 0,
            layout,
            huge_pages_advised,
            borrowed: None,
        }
    }

    /// The first `len` counts of `memory`, read in place; `None` when the
    /// memory is too short or not aligned for `C`.
    pub(crate) fn borrowed(memory: Arc<dyn CountMemory>, len: usize) -> Option<CountBuffer<C>> {
        let bytes = memory.bytes();
        let needed = len.checked_mul(size_of::<C>())?;
        if bytes.len() < needed || bytes.as_ptr().align_offset(align_of::<C>()) != 0 {
            return None;
        }
        let ptr = if len == 0 {
            NonNull::dangling()
        } else {
            NonNull::new(bytes.as_ptr().cast::<C>().cast_mut())?
        };
        Some(CountBuffer {
            ptr,
            len,
            layout: Layout::new::<()>(),
            huge_pages_advised: false,
            borrowed: Some(memory),
        })
    }
}

impl<C> CountBuffer<C> {
    /// Whether the counts live in memory someone else owns.
    pub(crate) fn is_borrowed(&self) -> bool {
        self.borrowed.is_some()
    }

    /// Whether the kernel was asked to back this buffer with huge pages
    /// (and accepted the request).
    pub(crate) fn huge_pages_advised(&self) -> bool {
        self.huge_pages_advised
    }

    /// Bytes of this buffer backed by transparent huge pages, from
    /// `/proc/self/smaps`; `None` where that cannot be read.
    pub(crate) fn huge_page_bytes(&self) -> Option<u64> {
        if self.layout.size() == 0 && self.borrowed.is_none() {
            return Some(0);
        }
        huge_page_bytes_at(self.ptr.as_ptr() as usize, self.len * size_of::<C>())
    }
}

impl<C> Deref for CountBuffer<C> {
    type Target = [C];

    fn deref(&self) -> &[C] {
        // SAFETY: `ptr` is valid for `len` initialised elements (dangling
        // and well-aligned when `len` is 0): our own allocation, filled in
        // `from_fn`, or borrowed memory that `borrowed` checked for length
        // and alignment and that the `CountMemory` kept alive here promises
        // stays put and unwritten. Any bit pattern is a valid `u8`, `u16`
        // or `u32`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<C: Copy> Clone for CountBuffer<C> {
    fn clone(&self) -> CountBuffer<C> {
        // Element by element on the cloning thread, so that thread touches
        // the copy first (it lands in that thread's NUMA node).
        CountBuffer::from_fn(self.len, |i| self[i])
    }
}

impl<C: PartialEq> PartialEq for CountBuffer<C> {
    fn eq(&self, other: &CountBuffer<C>) -> bool {
        self[..] == other[..]
    }
}

impl<C: Eq> Eq for CountBuffer<C> {}

impl<C> fmt::Debug for CountBuffer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountBuffer")
            .field("len", &self.len)
            .field("huge_pages_advised", &self.huge_pages_advised)
            .field("borrowed", &self.borrowed.is_some())
            .finish()
    }
}

impl<C> Drop for CountBuffer<C> {
    fn drop(&mut self) {
        if self.layout.size() != 0 && self.borrowed.is_none() {
            // SAFETY: allocated in `uninit` with exactly this layout; the
            // elements are `Copy` (no destructors to run).
            unsafe { dealloc(self.ptr.as_ptr().cast(), self.layout) };
        }
    }
}

/// The environment variable that turns the huge-page request off
/// (`INITRET_HUGE_PAGES=off`), to measure what it gains. Read at every
/// allocation.
pub const HUGE_PAGES_ENV: &str = "INITRET_HUGE_PAGES";

/// Whether count tables should ask for huge pages: unless
/// `INITRET_HUGE_PAGES` is `off`, `0`, `no` or `false`.
fn huge_pages_wanted() -> bool {
    match std::env::var(HUGE_PAGES_ENV) {
        Ok(value) => !matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "off" | "0" | "no" | "false"
        ),
        Err(_) => true,
    }
}

/// Asks for transparent huge pages over `[ptr, ptr + len)`.
fn advise_huge_pages(ptr: *mut u8, len: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `[ptr, ptr + len)` is one live allocation of ours, aligned
        // to a huge page (so to the base page size madvise requires);
        // MADV_HUGEPAGE changes only how it is backed, never its contents.
        unsafe { libc::madvise(ptr.cast(), len, libc::MADV_HUGEPAGE) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (ptr, len);
        false
    }
}

/// `AnonHugePages` of the mapping holding `[start, start + len)`, capped at
/// `len`.
fn huge_page_bytes_at(start: usize, len: usize) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo <= start && start < hi;
                continue;
            }
            if inside && let Some(rest) = line.strip_prefix("AnonHugePages:") {
                let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
                return Some((kib * 1024).min(len as u64));
            }
        }
        None
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (start, len);
        None
    }
}

/// The kernel's transparent-huge-page mode (`always`, `madvise` or
/// `never`), where it says.
pub fn transparent_huge_pages_mode() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_it_was_filled_with() {
        for len in [0, 1, 7, 4096, HUGE_PAGE_BYTES + 3] {
            let buffer = CountBuffer::from_fn(len, |i| (i % 251) as u8);
            assert_eq!(buffer.len(), len);
            assert!(
                buffer
                    .iter()
                    .enumerate()
                    .all(|(i, &c)| c == (i % 251) as u8)
            );
            assert_eq!(buffer.clone(), buffer);
        }
    }

    #[test]
    fn large_buffers_are_huge_page_aligned_and_advised_on_linux() {
        let buffer = CountBuffer::from_fn(HUGE_PAGE_BYTES, |_| 1u8);
        assert_eq!(buffer.as_ptr() as usize % HUGE_PAGE_BYTES, 0);
        if cfg!(target_os = "linux") {
            assert!(buffer.huge_pages_advised());
            let bytes = buffer
                .huge_page_bytes()
                .expect("smaps is readable on Linux");
            assert!(bytes <= HUGE_PAGE_BYTES as u64);
            // Granted or not depends on the kernel's mode and free memory;
            // with THP off, nothing may be granted.
            if transparent_huge_pages_mode().as_deref() == Some("never") {
                assert_eq!(bytes, 0);
            }
        }
    }

    #[test]
    fn borrowed_memory_is_read_in_place_and_checked() {
        let memory: Arc<dyn CountMemory> = Arc::new(vec![1u8, 2, 3, 4, 5, 6, 7, 8]);
        let start = memory.bytes().as_ptr();
        let bytes = CountBuffer::<u8>::borrowed(Arc::clone(&memory), 8).unwrap();
        assert_eq!(&bytes[..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(bytes.as_ptr(), start);
        assert!(bytes.is_borrowed());
        // A copy is our own.
        assert!(!bytes.clone().is_borrowed());
        assert!(CountBuffer::<u8>::borrowed(Arc::clone(&memory), 9).is_none());
        let halves = CountBuffer::<u16>::borrowed(Arc::clone(&memory), 4);
        // Misaligned for u16 only if the Vec's buffer is odd, which it never is.
        assert_eq!(halves.map(|h| h.len()), Some(4));
        drop(bytes);
        // The memory outlives every buffer over it.
        assert_eq!(memory.bytes()[0], 1);
    }

    #[test]
    fn small_buffers_are_not_advised() {
        let buffer = CountBuffer::from_fn(HUGE_PAGE_BYTES / 2 - 1, |_| 0u16);
        assert!(!buffer.huge_pages_advised());
    }
}
