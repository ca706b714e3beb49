//! Frozen containers: read-only maps and lists of Python-like values laid
//! out in one byte buffer, read in place.
//!
//! A buffer holds a header, a directory of its containers, and each
//! container (a map: a hash index and its entries in insertion order; a
//! list: its items), with a heap of str, bytes and array bytes among them.
//! Nested maps and lists are values inside the same buffer. The layout is
//! in the source (`format.rs`); [`FrozenBuilder`] writes it and
//! [`Frozen::open`] reads it.
//!
//! - Keys: [`Key::Int`] (`i64`), [`Key::Bool`] (equal to `0` and `1`, as
//!   in Python), [`Key::Str`], [`Key::Bytes`] (never equal to a str).
//! - Values ([`Value`]): none, bool, int (`i64`, and wider ints as
//!   two's-complement bytes), float (bit-exact), str, bytes, arrays (a
//!   numpy dtype string, a shape, and bytes aligned to [`ARRAY_ALIGN`]
//!   from the buffer's start), and nested maps and lists.
//! - Hashing is the format's own (a seeded folded multiply; the seed is in
//!   the header), so a buffer reads the same in every process.
//! - [`Frozen::open`] validates everything once: header, directory,
//!   indexes, entries, spans (str spans as UTF-8), array descriptors and
//!   nesting (no cycles, at most [`MAX_DEPTH`] deep). A corrupt or forged
//!   buffer is an [`Error::FrozenCorrupt`](crate::Error::FrozenCorrupt),
//!   never a panic or an out-of-bounds read. Lookups then allocate nothing
//!   and copy nothing.
//!
//! ```
//! use initret::frozen::{self, Frozen, Key, Value};
//!
//! // The seed's cache: {i: bin(i)}.
//! let texts: Vec<String> = (0..65535i64).map(|i| format!("{i:#b}")).collect();
//! let bytes = frozen::freeze_map((0..65535i64).map(|i| (i, texts[i as usize].as_str())))?;
//! let cache = Frozen::open(&bytes)?.root_map().unwrap();
//! let ones: usize = (0..65535i64)
//!     .map(|i| match cache.get(i) {
//!         Some(Value::Str(text)) => text.matches('1').count(),
//!         _ => unreachable!(),
//!     })
//!     .sum();
//! assert_eq!(ones, 524272);
//! assert_eq!(cache.keys().next(), Some(Key::Int(0)));
//! # Ok::<(), initret::Error>(())
//! ```

mod build;
mod format;
mod hash;
mod read;
#[cfg(test)]
mod tests;

pub use build::{
    ArrayInput, ContainerRef, FrozenBuilder, Input, ListInProgress, MapInProgress, freeze_copy,
    freeze_list, freeze_map,
};
pub use format::{ARRAY_ALIGN, MAX_DEPTH, MAX_DTYPE_LEN, MAX_NDIM};
pub use hash::DEFAULT_SEED;
pub use read::{
    Container, Frozen, FrozenArray, FrozenList, FrozenMap, Key, ListHandle, MapHandle, Value,
};
