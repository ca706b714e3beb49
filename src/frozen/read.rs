//! Reading a frozen buffer: [`Frozen::open`] validates it once; the views
//! then read it in place.
//!
//! Every read after validation is still bounds-checked (`slice::get`), so
//! even a buffer that something rewrote after it was opened (shared
//! memory written by another process) gives wrong answers at worst, never
//! an out-of-bounds read or a panic. On an unchanged buffer those checks
//! never fail: validation proved them.

use super::format::*;
use super::hash::{DOMAIN_BYTES, DOMAIN_STR, hash_bytes, hash_int};
use crate::Error;

fn corrupt(offset: usize, reason: impl Into<String>) -> Error {
    Error::FrozenCorrupt {
        offset: offset as u64,
        reason: reason.into(),
    }
}

/// A validated frozen buffer: a map or a list (the root) and everything
/// nested in it. Cheap to copy; borrows the bytes.
///
/// ```
/// use initret::frozen::{self, Frozen, Input, Key, Value};
///
/// let bytes = frozen::freeze_map([(Key::Int(1), Input::Str("one")), (Key::Str("two"), Input::Int(2))])?;
/// let frozen = Frozen::open(&bytes)?;
/// let map = frozen.root_map().unwrap();
/// assert_eq!(map.get(1), Some(Value::Str("one")));
/// assert_eq!(map.get("two"), Some(Value::Int(2)));
/// assert_eq!(map.get(true), Some(Value::Str("one"))); // True == 1, as in Python
/// assert_eq!(map.get(b"two".as_slice()), None);        // bytes are not str
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Frozen<'a> {
    bytes: &'a [u8],
    seed: u64,
    root: Container<'a>,
}

/// The container a [`Frozen`] buffer holds at its root.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Container<'a> {
    /// A map (a Python `dict`).
    Map(FrozenMap<'a>),
    /// A sequence (a Python `list`).
    List(FrozenList<'a>),
}

/// A key of a [`FrozenMap`], as stored or as looked up.
///
/// `Int` and `Bool` keys are the same key when their values are equal
/// (`true` is `1`), as in a Python `dict`; `Str` and `Bytes` never equal
/// each other or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    /// A 64-bit signed integer.
    Int(i64),
    /// A boolean, stored as such (so Python gets `True` back) but equal to
    /// `Int(0)` / `Int(1)`.
    Bool(bool),
    /// A UTF-8 string.
    Str(&'a str),
    /// A byte string.
    Bytes(&'a [u8]),
}

impl From<i64> for Key<'_> {
    fn from(value: i64) -> Self {
        Key::Int(value)
    }
}
impl From<bool> for Key<'_> {
    fn from(value: bool) -> Self {
        Key::Bool(value)
    }
}
impl<'k> From<&'k str> for Key<'k> {
    fn from(value: &'k str) -> Self {
        Key::Str(value)
    }
}
impl<'k> From<&'k [u8]> for Key<'k> {
    fn from(value: &'k [u8]) -> Self {
        Key::Bytes(value)
    }
}

/// A value read from a frozen buffer. Strings, bytes and arrays borrow the
/// buffer; nested maps and lists are views into it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// Python's `None`.
    None,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// An integer beyond 64 bits: two's complement, little-endian, as
    /// Python's `int.to_bytes(n, "little", signed=True)` writes it.
    BigInt(&'a [u8]),
    /// A 64-bit float, bit-exact (NaN payloads and `-0.0` kept).
    Float(f64),
    /// A UTF-8 string.
    Str(&'a str),
    /// A byte string.
    Bytes(&'a [u8]),
    /// A numpy-style array: dtype string, shape and raw bytes.
    Array(FrozenArray<'a>),
    /// A nested map.
    Map(FrozenMap<'a>),
    /// A nested list.
    List(FrozenList<'a>),
}

/// An array value: numpy's `dtype.str` (such as `"<u4"`), a shape and
/// C-order bytes that start [`ARRAY_ALIGN`]-aligned from the buffer's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrozenArray<'a> {
    bytes: &'a [u8],
    descriptor: usize,
}

impl<'a> FrozenArray<'a> {
    fn field(&self, at: usize) -> u64 {
        u64_at(self.bytes, self.descriptor + at).unwrap_or(0)
    }

    fn ndim_and_dtype_len(&self) -> (usize, usize) {
        let ndim = u32_at(self.bytes, self.descriptor + A_NDIM).unwrap_or(0) as usize;
        let dtype_len = u32_at(self.bytes, self.descriptor + A_DTYPE_LEN).unwrap_or(0) as usize;
        (ndim.min(MAX_NDIM), dtype_len.min(MAX_DTYPE_LEN))
    }

    /// numpy's dtype string (`dtype.str`), such as `"<f8"` or `"|u1"`.
    pub fn dtype(&self) -> &'a str {
        let (ndim, dtype_len) = self.ndim_and_dtype_len();
        let start = self.descriptor + A_SHAPE + 8 * ndim;
        span_at(self.bytes, start as u64, dtype_len as u64)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// Bytes per element.
    pub fn itemsize(&self) -> usize {
        self.field(A_ITEMSIZE) as usize
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.ndim_and_dtype_len().0
    }

    /// The extent of dimension `axis` (0 past the last).
    pub fn dim(&self, axis: usize) -> u64 {
        if axis >= self.ndim() {
            return 0;
        }
        self.field(A_SHAPE + 8 * axis)
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> impl ExactSizeIterator<Item = u64> + 'a {
        let this = *self;
        (0..this.ndim()).map(move |axis| this.dim(axis))
    }

    /// Where the data starts, in bytes from the buffer's start (a multiple
    /// of [`ARRAY_ALIGN`]): what a zero-copy view needs.
    pub fn data_offset(&self) -> usize {
        self.field(A_DATA_OFFSET) as usize
    }

    /// The elements' bytes, C order.
    pub fn data(&self) -> &'a [u8] {
        span_at(
            self.bytes,
            self.field(A_DATA_OFFSET),
            self.field(A_DATA_LEN),
        )
        .unwrap_or(&[])
    }
}

/// A read-only map in a frozen buffer: lookups by [`Key`], entries in the
/// order they were inserted.
#[derive(Clone, Copy, Debug)]
pub struct FrozenMap<'a> {
    bytes: &'a [u8],
    handle: MapHandle,
}

/// Two views are equal when they are the same container of the same bytes.
impl PartialEq for FrozenMap<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.bytes, other.bytes) && self.handle == other.handle
    }
}

/// A [`FrozenMap`] without its borrow of the bytes: what a binding stores
/// next to the buffer it owns, to [`attach`](MapHandle::attach) again per
/// call. Attaching to other bytes than the ones it came from gives
/// meaningless answers but never reads out of bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapHandle {
    seed: u64,
    offset: usize,
    len: usize,
    slots: usize,
}

impl MapHandle {
    /// The map this handle was taken from, given the same bytes.
    #[inline(always)]
    pub fn attach(self, bytes: &[u8]) -> FrozenMap<'_> {
        FrozenMap {
            bytes,
            handle: self,
        }
    }

    /// Where the container starts in the buffer.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// A read-only list in a frozen buffer.
#[derive(Clone, Copy, Debug)]
pub struct FrozenList<'a> {
    bytes: &'a [u8],
    handle: ListHandle,
}

/// Two views are equal when they are the same container of the same bytes.
impl PartialEq for FrozenList<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.bytes, other.bytes) && self.handle == other.handle
    }
}

/// A [`FrozenList`] without its borrow of the bytes (see [`MapHandle`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListHandle {
    seed: u64,
    offset: usize,
    len: usize,
}

impl ListHandle {
    /// The list this handle was taken from, given the same bytes.
    #[inline(always)]
    pub fn attach(self, bytes: &[u8]) -> FrozenList<'_> {
        FrozenList {
            bytes,
            handle: self,
        }
    }

    /// Where the container starts in the buffer.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// The decoded header of the container at `offset` (no validation: used on
/// offsets that validation accepted, and bounds-checked all the same).
fn container_at(bytes: &[u8], seed: u64, offset: usize) -> Container<'_> {
    let kind = u32_at(bytes, offset + C_KIND).unwrap_or(0);
    let len = u64_at(bytes, offset + C_LEN).unwrap_or(0) as usize;
    if kind == KIND_MAP {
        let slots = u64_at(bytes, offset + C_SLOTS).unwrap_or(0) as usize;
        Container::Map(FrozenMap {
            bytes,
            handle: MapHandle {
                seed,
                offset,
                // A slot count that is not a power of two only comes from a
                // buffer rewritten after validation: look nothing up.
                slots: if slots.is_power_of_two() { slots } else { 0 },
                len,
            },
        })
    } else {
        Container::List(FrozenList {
            bytes,
            handle: ListHandle { seed, offset, len },
        })
    }
}

/// The value in the slot at `offset` (validated when the buffer was opened).
#[inline]
fn value_at(bytes: &[u8], seed: u64, offset: usize) -> Value<'_> {
    let Some(slot) = RawSlot::read(bytes, offset) else {
        return Value::None;
    };
    let span = || span_at(bytes, slot.payload, u64::from(slot.len)).unwrap_or(&[]);
    match slot.tag {
        TAG_BOOL => Value::Bool(slot.payload != 0),
        TAG_INT => Value::Int(slot.payload as i64),
        TAG_FLOAT => Value::Float(f64::from_bits(slot.payload)),
        TAG_STR => Value::Str(std::str::from_utf8(span()).unwrap_or("")),
        TAG_BYTES => Value::Bytes(span()),
        TAG_BIG_INT => Value::BigInt(span()),
        TAG_ARRAY => Value::Array(FrozenArray {
            bytes,
            descriptor: slot.payload as usize,
        }),
        TAG_MAP | TAG_LIST => match container_at(bytes, seed, slot.payload as usize) {
            Container::Map(map) => Value::Map(map),
            Container::List(list) => Value::List(list),
        },
        _ => Value::None,
    }
}

/// The key in the slot at `offset`.
#[inline]
fn key_at(bytes: &[u8], offset: usize) -> Key<'_> {
    let Some(slot) = RawSlot::read(bytes, offset) else {
        return Key::Int(0);
    };
    let span = || span_at(bytes, slot.payload, u64::from(slot.len)).unwrap_or(&[]);
    match slot.tag {
        TAG_BOOL => Key::Bool(slot.payload != 0),
        TAG_STR => Key::Str(std::str::from_utf8(span()).unwrap_or("")),
        TAG_BYTES => Key::Bytes(span()),
        _ => Key::Int(slot.payload as i64),
    }
}

/// The hash the index uses for `key`.
#[inline(always)]
pub(crate) fn key_hash(seed: u64, key: Key<'_>) -> u64 {
    match key {
        Key::Int(value) => hash_int(seed, value),
        Key::Bool(value) => hash_int(seed, i64::from(value)),
        Key::Str(text) => hash_bytes(seed, DOMAIN_STR, text.as_bytes()),
        Key::Bytes(bytes) => hash_bytes(seed, DOMAIN_BYTES, bytes),
    }
}

/// Whether the key slot at `offset` holds `key` (Python's equality for
/// these types: ints and bools by value; str and bytes by type and bytes).
#[inline(always)]
pub(crate) fn key_matches(bytes: &[u8], offset: usize, key: Key<'_>) -> bool {
    let Some(slot) = RawSlot::read(bytes, offset) else {
        return false;
    };
    let stored = || span_at(bytes, slot.payload, u64::from(slot.len));
    match key {
        Key::Int(value) => {
            (slot.tag == TAG_INT || slot.tag == TAG_BOOL) && slot.payload == value as u64
        }
        Key::Bool(value) => {
            (slot.tag == TAG_INT || slot.tag == TAG_BOOL) && slot.payload == u64::from(value)
        }
        Key::Str(text) => slot.tag == TAG_STR && stored() == Some(text.as_bytes()),
        Key::Bytes(wanted) => slot.tag == TAG_BYTES && stored() == Some(wanted),
    }
}

impl<'a> FrozenMap<'a> {
    /// The number of entries.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.handle.len
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.handle.len == 0
    }

    /// This view without its borrow (see [`MapHandle`]).
    pub fn handle(&self) -> MapHandle {
        self.handle
    }

    fn entries_offset(&self) -> usize {
        self.handle.offset + CONTAINER_HEADER_LEN + INDEX_SLOT_LEN * self.handle.slots
    }

    /// The position (insertion order) of `key`, if the map holds it.
    #[inline]
    pub fn position<'k>(&self, key: impl Into<Key<'k>>) -> Option<usize> {
        let key = key.into();
        self.position_hashed(key, key_hash(self.handle.seed, key))
    }

    #[inline(always)]
    fn position_hashed(&self, key: Key<'_>, hash: u64) -> Option<usize> {
        let slots = self.handle.slots;
        if slots == 0 {
            return None;
        }
        let tag = (hash >> 32) as u32;
        let mask = slots - 1;
        let index = self.handle.offset + CONTAINER_HEADER_LEN;
        let entries = self.entries_offset();
        let mut at = hash as usize & mask;
        for _ in 0..slots {
            let slot = u64_at(self.bytes, index + INDEX_SLOT_LEN * at)?;
            let entry = slot as u32;
            if entry == 0 {
                return None;
            }
            if (slot >> 32) as u32 == tag {
                let position = entry as usize - 1;
                if key_matches(self.bytes, entries + MAP_ENTRY_LEN * position, key) {
                    return Some(position);
                }
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// Looks up every key of `keys` and calls `found(i, value)` for the
    /// `i`-th, in order. The same answers as [`get`](Self::get) per key,
    /// but keys are taken in batches whose memory accesses overlap (the
    /// index slots of a batch are fetched together, then its entries,
    /// then its values' bytes): several times faster than one `get` after
    /// another on a map larger than the CPU caches.
    ///
    /// ```
    /// use initret::frozen::{self, Frozen, Value};
    ///
    /// let bytes = frozen::freeze_map((0..100i64).map(|i| (i, i * 10)))?;
    /// let map = Frozen::open(&bytes)?.root_map().unwrap();
    /// let mut values = Vec::new();
    /// map.get_each(&[3i64, 200, 7], |_, value| values.push(value));
    /// assert_eq!(values, [Some(Value::Int(30)), None, Some(Value::Int(70))]);
    /// # Ok::<(), initret::Error>(())
    /// ```
    pub fn get_each<'k, K>(&self, keys: &[K], mut found: impl FnMut(usize, Option<Value<'a>>))
    where
        K: Into<Key<'k>> + Copy,
    {
        // A software pipeline: the index slot of key `i + AHEAD` is
        // fetched, the entry of key `i + AHEAD / 2` (its slot arrived by
        // now), then key `i + AHEAD / 4` is found (its entry arrived) and
        // its str or bytes value fetched, and key `i` is answered.
        const AHEAD: usize = 32;
        const RING: usize = 2 * AHEAD;
        let slots = self.handle.slots;
        let mask = slots.wrapping_sub(1);
        let index = self.handle.offset + CONTAINER_HEADER_LEN;
        let entries = self.entries_offset();
        let seed = self.handle.seed;
        let mut hashes = [0u64; RING];
        let mut positions = [None::<usize>; RING];
        let find = |i: usize, hash: u64| {
            let position = self.position_hashed(keys[i].into(), hash);
            if let Some(p) = position
                && let Some(RawSlot {
                    tag: TAG_STR | TAG_BYTES,
                    payload,
                    ..
                }) = RawSlot::read(self.bytes, entries + MAP_ENTRY_LEN * p + SLOT_LEN)
            {
                prefetch(self.bytes, payload as usize);
            }
            position
        };
        let hash_of = |i: usize| key_hash(seed, keys[i].into());
        for (i, hash) in hashes.iter_mut().enumerate().take(AHEAD.min(keys.len())) {
            *hash = hash_of(i);
            prefetch(self.bytes, index + INDEX_SLOT_LEN * (*hash as usize & mask));
        }
        for i in 0..keys.len() {
            let ahead = i + AHEAD;
            if ahead < keys.len() {
                let hash = hash_of(ahead);
                hashes[ahead % RING] = hash;
                prefetch(self.bytes, index + INDEX_SLOT_LEN * (hash as usize & mask));
            }
            let half = i + AHEAD / 2;
            if half < keys.len() && slots != 0 {
                // The entry the first slot with a matching tag names.
                let hash = hashes[half % RING];
                let tag = (hash >> 32) as u32;
                let mut at = hash as usize & mask;
                for _ in 0..4 {
                    let Some(slot) = u64_at(self.bytes, index + INDEX_SLOT_LEN * at) else {
                        break;
                    };
                    if slot as u32 == 0 {
                        break;
                    }
                    if (slot >> 32) as u32 == tag {
                        prefetch(
                            self.bytes,
                            entries + MAP_ENTRY_LEN * (slot as u32 as usize - 1),
                        );
                        break;
                    }
                    at = (at + 1) & mask;
                }
            }
            let quarter = i + AHEAD / 4;
            if quarter < keys.len() {
                positions[quarter % RING] = find(quarter, hashes[quarter % RING]);
            }
            if i < AHEAD / 4 {
                positions[i] = find(i, hashes[i]);
            }
            let value = positions[i % RING]
                .map(|p| value_at(self.bytes, seed, entries + MAP_ENTRY_LEN * p + SLOT_LEN));
            found(i, value);
        }
    }

    /// The value for `key`, if the map holds it.
    #[inline]
    pub fn get<'k>(&self, key: impl Into<Key<'k>>) -> Option<Value<'a>> {
        let position = self.position(key)?;
        Some(value_at(
            self.bytes,
            self.handle.seed,
            self.entries_offset() + MAP_ENTRY_LEN * position + SLOT_LEN,
        ))
    }

    /// Whether the map holds `key`.
    pub fn contains_key<'k>(&self, key: impl Into<Key<'k>>) -> bool {
        self.position(key).is_some()
    }

    /// The entry at `position` in insertion order.
    #[inline]
    pub fn entry(&self, position: usize) -> Option<(Key<'a>, Value<'a>)> {
        if position >= self.handle.len {
            return None;
        }
        let at = self.entries_offset() + MAP_ENTRY_LEN * position;
        Some((
            key_at(self.bytes, at),
            value_at(self.bytes, self.handle.seed, at + SLOT_LEN),
        ))
    }

    /// The key at `position` in insertion order.
    pub fn key_at(&self, position: usize) -> Option<Key<'a>> {
        (position < self.handle.len)
            .then(|| key_at(self.bytes, self.entries_offset() + MAP_ENTRY_LEN * position))
    }

    /// The value at `position` in insertion order.
    pub fn value_at(&self, position: usize) -> Option<Value<'a>> {
        (position < self.handle.len).then(|| {
            value_at(
                self.bytes,
                self.handle.seed,
                self.entries_offset() + MAP_ENTRY_LEN * position + SLOT_LEN,
            )
        })
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (Key<'a>, Value<'a>)> + 'a {
        let this = *self;
        (0..this.len())
            .map(move |position| this.entry(position).unwrap_or((Key::Int(0), Value::None)))
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = Key<'a>> + 'a {
        self.iter().map(|(key, _)| key)
    }

    /// The values in insertion order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = Value<'a>> + 'a {
        self.iter().map(|(_, value)| value)
    }
}

impl<'a> FrozenList<'a> {
    /// The number of items.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.handle.len
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.handle.len == 0
    }

    /// This view without its borrow (see [`ListHandle`]).
    pub fn handle(&self) -> ListHandle {
        self.handle
    }

    /// The item at `position`.
    #[inline]
    pub fn get(&self, position: usize) -> Option<Value<'a>> {
        (position < self.handle.len).then(|| {
            value_at(
                self.bytes,
                self.handle.seed,
                self.handle.offset + CONTAINER_HEADER_LEN + LIST_ENTRY_LEN * position,
            )
        })
    }

    /// The items in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Value<'a>> + 'a {
        let this = *self;
        (0..this.len()).map(move |position| this.get(position).unwrap_or(Value::None))
    }
}

impl<'a> Frozen<'a> {
    /// Validates `bytes` as a frozen buffer: the header, the container
    /// directory, every container's index and entries, every str, bytes
    /// and big-int span (str as UTF-8), every array descriptor and every
    /// reference to a nested container (which must come earlier in the
    /// buffer, so nesting has no cycles, and be at most [`MAX_DEPTH`]
    /// deep). Bytes past the header's total length are ignored.
    ///
    /// Costs one pass over the containers and the strings; allocates one
    /// `u16` per container.
    ///
    /// # Errors
    ///
    /// [`Error::FrozenCorrupt`] naming the first offset found wrong.
    pub fn open(bytes: &'a [u8]) -> Result<Frozen<'a>, Error> {
        let header = array_at::<HEADER_LEN>(bytes, 0)
            .ok_or_else(|| corrupt(0, format!("{} bytes, shorter than the header", bytes.len())))?;
        if header[H_MAGIC..H_MAGIC + 8] != MAGIC {
            return Err(corrupt(H_MAGIC, "not a frozen container (wrong magic)"));
        }
        let field32 = |at: usize| u32_at(&header, at).unwrap_or(0);
        let field64 = |at: usize| u64_at(&header, at).unwrap_or(0);
        if field32(H_VERSION) != VERSION {
            return Err(corrupt(
                H_VERSION,
                format!(
                    "format version {} (this reader reads {VERSION})",
                    field32(H_VERSION)
                ),
            ));
        }
        if field32(H_HEADER_LEN) as usize != HEADER_LEN {
            return Err(corrupt(H_HEADER_LEN, "wrong header length"));
        }
        if field64(H_RESERVED) != 0 {
            return Err(corrupt(H_RESERVED, "reserved header field is not 0"));
        }
        let total = field64(H_TOTAL_LEN);
        if total < HEADER_LEN as u64 || total > bytes.len() as u64 {
            return Err(corrupt(
                H_TOTAL_LEN,
                format!(
                    "total length {total}, but the buffer holds {} bytes",
                    bytes.len()
                ),
            ));
        }
        let bytes = &bytes[..total as usize];
        let seed = field64(H_SEED);
        let mut validator = Validator {
            bytes,
            directory: &[],
            depths: Vec::new(),
            span_budget: bytes.len() as u64,
        };
        let directory = validator.directory(field64(H_DIRECTORY), field64(H_CONTAINERS))?;
        validator.directory = directory;
        validator.depths = vec![0; directory.len() / 8];
        for number in 0..directory.len() / 8 {
            validator.container(number)?;
        }
        let root = field64(H_ROOT);
        if validator.container_number(root).is_none() {
            return Err(corrupt(H_ROOT, format!("root {root} is not a container")));
        }
        Ok(Frozen {
            bytes,
            seed,
            root: container_at(bytes, seed, root as usize),
        })
    }

    /// The root container.
    pub fn root(&self) -> Container<'a> {
        self.root
    }

    /// The root, if it is a map.
    pub fn root_map(&self) -> Option<FrozenMap<'a>> {
        match self.root {
            Container::Map(map) => Some(map),
            Container::List(_) => None,
        }
    }

    /// The root, if it is a list.
    pub fn root_list(&self) -> Option<FrozenList<'a>> {
        match self.root {
            Container::List(list) => Some(list),
            Container::Map(_) => None,
        }
    }

    /// The buffer's bytes (up to its total length).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The hash seed the buffer was built with.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// One pass of checks over a buffer.
struct Validator<'a> {
    bytes: &'a [u8],
    /// The directory's bytes: ascending container offsets.
    directory: &'a [u8],
    /// Nesting depth per container (1: holds no container).
    depths: Vec<u16>,
    /// What str, bytes and big-int spans may still add up to.
    span_budget: u64,
}

impl<'a> Validator<'a> {
    fn directory(&self, offset: u64, count: u64) -> Result<&'a [u8], Error> {
        let len = count
            .checked_mul(8)
            .ok_or_else(|| corrupt(H_CONTAINERS, "container count overflows"))?;
        if count == 0 {
            return Err(corrupt(H_CONTAINERS, "no containers"));
        }
        if !offset.is_multiple_of(8) || offset < HEADER_LEN as u64 {
            return Err(corrupt(
                H_DIRECTORY,
                format!("directory offset {offset} misplaced"),
            ));
        }
        span_at(self.bytes, offset, len)
            .ok_or_else(|| corrupt(H_DIRECTORY, "directory runs past the end"))
    }

    fn directory_entry(&self, number: usize) -> u64 {
        u64_at(self.directory, 8 * number).unwrap_or(u64::MAX)
    }

    /// The directory number of the container at `offset`, if one starts there.
    fn container_number(&self, offset: u64) -> Option<usize> {
        let count = self.directory.len() / 8;
        let (mut low, mut high) = (0usize, count);
        while low < high {
            let middle = low + (high - low) / 2;
            let here = self.directory_entry(middle);
            if here == offset {
                return Some(middle);
            }
            if here < offset {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        None
    }

    fn container(&mut self, number: usize) -> Result<(), Error> {
        let offset64 = self.directory_entry(number);
        let offset = usize::try_from(offset64).unwrap_or(usize::MAX);
        let at = 8 * number;
        if number > 0 && self.directory_entry(number - 1) >= offset64 {
            return Err(corrupt(at, "directory offsets are not ascending"));
        }
        if !offset.is_multiple_of(8) || offset < HEADER_LEN {
            return Err(corrupt(
                at,
                format!("container offset {offset64} misplaced"),
            ));
        }
        let header = array_at::<CONTAINER_HEADER_LEN>(self.bytes, offset)
            .ok_or_else(|| corrupt(offset, "container header runs past the end"))?;
        let kind = u32_at(&header, C_KIND).unwrap_or(0);
        let len = u64_at(&header, C_LEN).unwrap_or(0);
        let slots = u64_at(&header, C_SLOTS).unwrap_or(0);
        if u32_at(&header, C_FLAGS) != Some(0) || u64_at(&header, C_RESERVED) != Some(0) {
            return Err(corrupt(offset, "reserved container field is not 0"));
        }
        let entry_len = match kind {
            KIND_MAP => {
                if len > MAX_MAP_LEN {
                    return Err(corrupt(offset, format!("map of {len} entries")));
                }
                let ok = if len == 0 {
                    slots == 0 || slots.is_power_of_two()
                } else {
                    slots.is_power_of_two() && slots > len
                };
                if !ok {
                    return Err(corrupt(
                        offset,
                        format!("{slots} index slots for {len} entries"),
                    ));
                }
                MAP_ENTRY_LEN
            }
            KIND_LIST => {
                if slots != 0 {
                    return Err(corrupt(offset, "a list with an index"));
                }
                LIST_ENTRY_LEN
            }
            _ => return Err(corrupt(offset, format!("unknown container kind {kind}"))),
        };
        let index_len = slots.checked_mul(INDEX_SLOT_LEN as u64);
        let entries_len = len.checked_mul(entry_len as u64);
        let size = index_len
            .zip(entries_len)
            .and_then(|(i, e)| i.checked_add(e))
            .and_then(|s| s.checked_add(CONTAINER_HEADER_LEN as u64));
        let end = size.and_then(|s| s.checked_add(offset64));
        let end = match end {
            Some(end) if end <= self.bytes.len() as u64 => end,
            _ => return Err(corrupt(offset, "container runs past the end")),
        };
        let next = number + 1;
        if next < self.directory.len() / 8 && self.directory_entry(next) < end {
            return Err(corrupt(offset, "containers overlap"));
        }
        let index_start = offset + CONTAINER_HEADER_LEN;
        let entries = index_start + INDEX_SLOT_LEN * slots as usize;
        // The index: every entry number in range.
        if let Some(index) = self.bytes.get(index_start..entries) {
            for (slot_number, slot) in index.chunks_exact(INDEX_SLOT_LEN).enumerate() {
                let entry = u32_at(slot, 0).unwrap_or(u32::MAX);
                if u64::from(entry) > len {
                    return Err(corrupt(
                        index_start + INDEX_SLOT_LEN * slot_number,
                        format!("index names entry {entry} of {len}"),
                    ));
                }
            }
        }
        let mut depth = 1u16;
        for position in 0..len as usize {
            let at = entries + entry_len * position;
            let value_at = if kind == KIND_MAP {
                self.key(at)?;
                at + SLOT_LEN
            } else {
                at
            };
            if let Some(child) = self.value(value_at, offset64)? {
                depth = depth.max(self.depths[child].saturating_add(1));
            }
        }
        if usize::from(depth) > MAX_DEPTH {
            return Err(corrupt(offset, format!("nested deeper than {MAX_DEPTH}")));
        }
        self.depths[number] = depth;
        Ok(())
    }

    fn slot(&self, at: usize) -> Result<RawSlot, Error> {
        let slot = RawSlot::read(self.bytes, at).ok_or_else(|| corrupt(at, "slot past the end"))?;
        if slot.reserved != [0; 3] {
            return Err(corrupt(at, "reserved slot bytes are not 0"));
        }
        Ok(slot)
    }

    /// A str, bytes or big-int span: in bounds, within the budget, UTF-8 if
    /// `text`.
    fn span(&mut self, at: usize, slot: RawSlot, text: bool) -> Result<(), Error> {
        let len = u64::from(slot.len);
        let span = span_at(self.bytes, slot.payload, len)
            .filter(|_| slot.payload >= HEADER_LEN as u64)
            .ok_or_else(|| corrupt(at, format!("span {}+{len} out of bounds", slot.payload)))?;
        self.span_budget = self
            .span_budget
            .checked_sub(len)
            .ok_or_else(|| corrupt(at, "str and bytes spans overlap"))?;
        if text && std::str::from_utf8(span).is_err() {
            return Err(corrupt(at, "str is not UTF-8"));
        }
        Ok(())
    }

    fn key(&mut self, at: usize) -> Result<(), Error> {
        let slot = self.slot(at)?;
        match slot.tag {
            TAG_INT | TAG_BOOL => {
                if slot.len != 0 || (slot.tag == TAG_BOOL && slot.payload > 1) {
                    return Err(corrupt(at, "malformed int key"));
                }
                Ok(())
            }
            TAG_STR | TAG_BYTES => self.span(at, slot, slot.tag == TAG_STR),
            tag => Err(corrupt(at, format!("tag {tag} cannot be a key"))),
        }
    }

    /// Checks the value slot at `at`, inside the container at `parent`;
    /// returns the directory number of the container it refers to, if any.
    fn value(&mut self, at: usize, parent: u64) -> Result<Option<usize>, Error> {
        let slot = self.slot(at)?;
        match slot.tag {
            TAG_NONE | TAG_BOOL | TAG_INT | TAG_FLOAT => {
                let payload_ok = match slot.tag {
                    TAG_NONE => slot.payload == 0,
                    TAG_BOOL => slot.payload <= 1,
                    _ => true,
                };
                if slot.len != 0 || !payload_ok {
                    return Err(corrupt(at, "malformed scalar"));
                }
                Ok(None)
            }
            TAG_STR | TAG_BYTES => self.span(at, slot, slot.tag == TAG_STR).map(|()| None),
            TAG_BIG_INT => {
                if slot.len == 0 {
                    return Err(corrupt(at, "empty big int"));
                }
                self.span(at, slot, false).map(|()| None)
            }
            TAG_ARRAY => self.array(at, slot).map(|()| None),
            TAG_MAP | TAG_LIST => {
                if slot.len != 0 {
                    return Err(corrupt(at, "malformed container reference"));
                }
                let child = slot.payload;
                if child >= parent {
                    return Err(corrupt(
                        at,
                        "a container refers forward (nesting must point back)",
                    ));
                }
                let number = self
                    .container_number(child)
                    .ok_or_else(|| corrupt(at, format!("{child} is not a container")))?;
                let kind = u32_at(self.bytes, child as usize + C_KIND).unwrap_or(0);
                let expected = if slot.tag == TAG_MAP {
                    KIND_MAP
                } else {
                    KIND_LIST
                };
                if kind != expected {
                    return Err(corrupt(at, "container reference of the wrong kind"));
                }
                Ok(Some(number))
            }
            tag => Err(corrupt(at, format!("unknown value tag {tag}"))),
        }
    }

    fn array(&mut self, at: usize, slot: RawSlot) -> Result<(), Error> {
        let descriptor = usize::try_from(slot.payload).unwrap_or(usize::MAX);
        if slot.len != 0 || !descriptor.is_multiple_of(8) || descriptor < HEADER_LEN {
            return Err(corrupt(at, "malformed array reference"));
        }
        let fixed = array_at::<A_SHAPE>(self.bytes, descriptor)
            .ok_or_else(|| corrupt(descriptor, "array descriptor past the end"))?;
        let data_offset = u64_at(&fixed, A_DATA_OFFSET).unwrap_or(0);
        let data_len = u64_at(&fixed, A_DATA_LEN).unwrap_or(0);
        let itemsize = u64_at(&fixed, A_ITEMSIZE).unwrap_or(0);
        let ndim = u32_at(&fixed, A_NDIM).unwrap_or(0) as usize;
        let dtype_len = u32_at(&fixed, A_DTYPE_LEN).unwrap_or(0) as usize;
        if ndim > MAX_NDIM || dtype_len == 0 || dtype_len > MAX_DTYPE_LEN || itemsize == 0 {
            return Err(corrupt(descriptor, "malformed array descriptor"));
        }
        let shape = self
            .bytes
            .get(descriptor + A_SHAPE..descriptor + A_SHAPE + 8 * ndim + dtype_len)
            .ok_or_else(|| corrupt(descriptor, "array descriptor past the end"))?;
        let (dims, dtype) = shape.split_at(8 * ndim);
        if !dtype.iter().all(|b| b.is_ascii_graphic()) {
            return Err(corrupt(descriptor, "dtype is not printable ASCII"));
        }
        let elements = dims
            .chunks_exact(8)
            .try_fold(1u64, |n, d| n.checked_mul(u64_at(d, 0).unwrap_or(0)));
        if elements.and_then(|n| n.checked_mul(itemsize)) != Some(data_len) {
            return Err(corrupt(descriptor, "array length is not itemsize × shape"));
        }
        if !data_offset.is_multiple_of(ARRAY_ALIGN as u64)
            || data_offset < HEADER_LEN as u64
            || span_at(self.bytes, data_offset, data_len).is_none()
        {
            return Err(corrupt(descriptor, "array data misplaced or out of bounds"));
        }
        Ok(())
    }
}
