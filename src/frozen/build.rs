//! Building a frozen buffer: containers are written children first (a
//! nested map or list must be finished before the entry that holds it is
//! pushed), then the root, then the directory and the header.

use super::format::*;
use super::hash::DEFAULT_SEED;
use super::read::{Container, Key, Value, key_hash};
use crate::Error;

fn not_freezable(reason: impl Into<String>) -> Error {
    Error::NotFreezable(reason.into())
}

/// A value to store: like [`Value`], with nested containers given as the
/// [`ContainerRef`] the builder returned for them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Input<'v> {
    /// Python's `None`.
    None,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A wider integer: two's complement, little-endian, at least one byte.
    BigInt(&'v [u8]),
    /// A 64-bit float, stored bit-exact.
    Float(f64),
    /// A string.
    Str(&'v str),
    /// A byte string.
    Bytes(&'v [u8]),
    /// An array (see [`ArrayInput`]).
    Array(ArrayInput<'v>),
    /// A map or list finished earlier by the same builder.
    Container(ContainerRef),
}

impl From<i64> for Input<'_> {
    fn from(value: i64) -> Self {
        Input::Int(value)
    }
}
impl From<f64> for Input<'_> {
    fn from(value: f64) -> Self {
        Input::Float(value)
    }
}
impl From<bool> for Input<'_> {
    fn from(value: bool) -> Self {
        Input::Bool(value)
    }
}
impl<'v> From<&'v str> for Input<'v> {
    fn from(value: &'v str) -> Self {
        Input::Str(value)
    }
}
impl<'v> From<&'v [u8]> for Input<'v> {
    fn from(value: &'v [u8]) -> Self {
        Input::Bytes(value)
    }
}
impl From<ContainerRef> for Input<'_> {
    fn from(value: ContainerRef) -> Self {
        Input::Container(value)
    }
}

/// An array to store: numpy's `dtype.str`, the bytes per element, the
/// shape and the elements' bytes in C order (`itemsize × product(shape)`
/// bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayInput<'v> {
    /// numpy's `dtype.str`, such as `"<u4"` (printable ASCII, 1 to
    /// [`MAX_DTYPE_LEN`] bytes).
    pub dtype: &'v str,
    /// Bytes per element (at least 1).
    pub itemsize: usize,
    /// The extent of each dimension (at most [`MAX_NDIM`]).
    pub shape: &'v [u64],
    /// The elements, C order.
    pub data: &'v [u8],
}

/// A finished map or list, to be pushed as a value of a later container or
/// passed to [`FrozenBuilder::finish`] as the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContainerRef {
    offset: u64,
}

/// A map being built: [`FrozenBuilder::push_entry`] adds to it,
/// [`FrozenBuilder::end_map`] writes it.
#[derive(Debug, Default)]
pub struct MapInProgress {
    entries: Vec<[u8; MAP_ENTRY_LEN]>,
    hashes: Vec<u64>,
    depth: u16,
}

impl MapInProgress {
    /// Entries pushed so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A list being built: [`FrozenBuilder::push_item`] adds to it,
/// [`FrozenBuilder::end_list`] writes it.
#[derive(Debug, Default)]
pub struct ListInProgress {
    items: Vec<[u8; SLOT_LEN]>,
    depth: u16,
}

impl ListInProgress {
    /// Items pushed so far.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Writes a frozen buffer.
///
/// ```
/// use initret::frozen::{Frozen, FrozenBuilder, Input, Key, Value};
///
/// let mut builder = FrozenBuilder::new();
/// // Children first: the inner list, then the map that holds it.
/// let inner = builder.list([Input::Int(1), Input::Float(-0.0), Input::None])?;
/// let root = builder.map([
///     (Key::Str("numbers"), Input::Container(inner)),
///     (Key::Bytes(b"raw"), Input::Bytes(b"\x00\xff")),
/// ])?;
/// let bytes = builder.finish(root)?;
///
/// let map = Frozen::open(&bytes)?.root_map().unwrap();
/// let Some(Value::List(numbers)) = map.get("numbers") else { panic!() };
/// assert_eq!(numbers.len(), 3);
/// assert!(matches!(numbers.get(1), Some(Value::Float(z)) if z.to_bits() == (-0.0f64).to_bits()));
/// let keys: Vec<Key> = map.keys().collect();
/// assert_eq!(keys, [Key::Str("numbers"), Key::Bytes(b"raw")]); // insertion order
/// # Ok::<(), initret::Error>(())
/// ```
#[derive(Debug)]
pub struct FrozenBuilder {
    bytes: Vec<u8>,
    seed: u64,
    /// Every finished container: offset (ascending), kind, nesting depth.
    directory: Vec<(u64, u32, u16)>,
}

impl Default for FrozenBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrozenBuilder {
    /// A builder with the format's default hash seed.
    pub fn new() -> FrozenBuilder {
        FrozenBuilder::with_seed(DEFAULT_SEED)
    }

    /// A builder whose buffer hashes its keys with `seed` (readers take the
    /// seed from the buffer).
    pub fn with_seed(seed: u64) -> FrozenBuilder {
        FrozenBuilder {
            bytes: vec![0; HEADER_LEN],
            seed,
            directory: Vec::new(),
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.bytes.len()
    }

    fn pad_to(&mut self, align: usize) {
        let len = self.bytes.len().next_multiple_of(align);
        self.bytes.resize(len, 0);
    }

    fn span(&mut self, tag: u8, bytes: &[u8]) -> Result<RawSlot, Error> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            not_freezable(format!(
                "a str or bytes value of {} bytes (at most 4 GiB - 1)",
                bytes.len()
            ))
        })?;
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(bytes);
        Ok(RawSlot::new(tag, len, offset))
    }

    fn key_slot(&mut self, key: Key<'_>) -> Result<RawSlot, Error> {
        match key {
            Key::Int(value) => Ok(RawSlot::new(TAG_INT, 0, value as u64)),
            Key::Bool(value) => Ok(RawSlot::new(TAG_BOOL, 0, u64::from(value))),
            Key::Str(text) => self.span(TAG_STR, text.as_bytes()),
            Key::Bytes(bytes) => self.span(TAG_BYTES, bytes),
        }
    }

    /// The slot for `value` and the nesting depth it brings.
    fn value_slot(&mut self, value: Input<'_>) -> Result<(RawSlot, u16), Error> {
        let slot = match value {
            Input::None => RawSlot::new(TAG_NONE, 0, 0),
            Input::Bool(value) => RawSlot::new(TAG_BOOL, 0, u64::from(value)),
            Input::Int(value) => RawSlot::new(TAG_INT, 0, value as u64),
            Input::Float(value) => RawSlot::new(TAG_FLOAT, 0, value.to_bits()),
            Input::Str(text) => self.span(TAG_STR, text.as_bytes())?,
            Input::Bytes(bytes) => self.span(TAG_BYTES, bytes)?,
            Input::BigInt(bytes) => {
                if bytes.is_empty() {
                    return Err(not_freezable("a big int of no bytes"));
                }
                self.span(TAG_BIG_INT, bytes)?
            }
            Input::Array(array) => self.array(array)?,
            Input::Container(container) => {
                let Ok(number) = self
                    .directory
                    .binary_search_by_key(&container.offset, |&(offset, _, _)| offset)
                else {
                    return Err(not_freezable("a container from another builder"));
                };
                let (offset, kind, depth) = self.directory[number];
                let tag = if kind == KIND_MAP { TAG_MAP } else { TAG_LIST };
                return Ok((RawSlot::new(tag, 0, offset), depth));
            }
        };
        Ok((slot, 0))
    }

    fn array(&mut self, array: ArrayInput<'_>) -> Result<RawSlot, Error> {
        let dtype = array.dtype.as_bytes();
        if dtype.is_empty()
            || dtype.len() > MAX_DTYPE_LEN
            || !dtype.iter().all(u8::is_ascii_graphic)
        {
            return Err(not_freezable(format!("array dtype {:?}", array.dtype)));
        }
        if array.shape.len() > MAX_NDIM || array.itemsize == 0 {
            return Err(not_freezable(format!(
                "an array of {} dimensions and itemsize {}",
                array.shape.len(),
                array.itemsize
            )));
        }
        let elements = array.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        if elements.and_then(|n| n.checked_mul(array.itemsize as u64))
            != Some(array.data.len() as u64)
        {
            return Err(not_freezable("array data is not itemsize × shape bytes"));
        }
        self.pad_to(ARRAY_ALIGN);
        let data_offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(array.data);
        self.pad_to(8);
        let descriptor = self.bytes.len() as u64;
        self.bytes.extend_from_slice(&data_offset.to_le_bytes());
        self.bytes
            .extend_from_slice(&(array.data.len() as u64).to_le_bytes());
        self.bytes
            .extend_from_slice(&(array.itemsize as u64).to_le_bytes());
        self.bytes
            .extend_from_slice(&(array.shape.len() as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(dtype.len() as u32).to_le_bytes());
        for &dim in array.shape {
            self.bytes.extend_from_slice(&dim.to_le_bytes());
        }
        self.bytes.extend_from_slice(dtype);
        Ok(RawSlot::new(TAG_ARRAY, 0, descriptor))
    }

    /// Starts a map.
    pub fn begin_map(&self) -> MapInProgress {
        MapInProgress::default()
    }

    /// Starts a map that will hold about `entries` entries.
    pub fn begin_map_with_capacity(&self, entries: usize) -> MapInProgress {
        MapInProgress {
            entries: Vec::with_capacity(entries),
            hashes: Vec::with_capacity(entries),
            depth: 0,
        }
    }

    /// Adds an entry to `map` (duplicates are found by [`end_map`](Self::end_map)).
    ///
    /// # Errors
    ///
    /// [`Error::NotFreezable`]: a str, bytes or big int of 4 GiB or more, a
    /// malformed array, a container from another builder.
    pub fn push_entry(
        &mut self,
        map: &mut MapInProgress,
        key: Key<'_>,
        value: Input<'_>,
    ) -> Result<(), Error> {
        self.push_entry_with(map, key, |builder| builder.value_slot(value))
    }

    /// Adds an entry whose value slot `value` writes (after the key's
    /// bytes, so that a map's heap keeps each key before its value).
    fn push_entry_with(
        &mut self,
        map: &mut MapInProgress,
        key: Key<'_>,
        value: impl FnOnce(&mut Self) -> Result<(RawSlot, u16), Error>,
    ) -> Result<(), Error> {
        let hash = key_hash(self.seed, key);
        let key_slot = self.key_slot(key)?;
        let (value_slot, depth) = value(self)?;
        let mut entry = [0u8; MAP_ENTRY_LEN];
        entry[..SLOT_LEN].copy_from_slice(&key_slot.encode());
        entry[SLOT_LEN..].copy_from_slice(&value_slot.encode());
        map.entries.push(entry);
        map.hashes.push(hash);
        map.depth = map.depth.max(depth);
        Ok(())
    }

    /// Whether the key slots `a` and `b` (already written) hold equal keys.
    fn same_key(&self, a: &[u8], b: &[u8]) -> bool {
        let (Some(a), Some(b)) = (RawSlot::read(a, 0), RawSlot::read(b, 0)) else {
            return false;
        };
        let int_like = |tag| tag == TAG_INT || tag == TAG_BOOL;
        if int_like(a.tag) || int_like(b.tag) {
            return int_like(a.tag) && int_like(b.tag) && a.payload == b.payload;
        }
        a.tag == b.tag
            && span_at(&self.bytes, a.payload, u64::from(a.len))
                == span_at(&self.bytes, b.payload, u64::from(b.len))
    }

    fn describe_key(&self, slot: &[u8]) -> String {
        let Some(slot) = RawSlot::read(slot, 0) else {
            return String::new();
        };
        let span = span_at(&self.bytes, slot.payload, u64::from(slot.len)).unwrap_or(&[]);
        match slot.tag {
            TAG_STR => format!("{:?}", String::from_utf8_lossy(span)),
            TAG_BYTES => format!("b{:?}", span.escape_ascii().to_string()),
            _ => format!("{}", slot.payload as i64),
        }
    }

    /// Writes `map`: its index, then its entries.
    ///
    /// # Errors
    ///
    /// [`Error::NotFreezable`]: two equal keys (`1` and `true` are equal),
    /// more than `2^32 - 2` entries, nesting deeper than [`MAX_DEPTH`].
    pub fn end_map(&mut self, map: MapInProgress) -> Result<ContainerRef, Error> {
        let len = map.entries.len();
        if len as u64 > MAX_MAP_LEN {
            return Err(not_freezable(format!(
                "a map of {len} entries (at most {MAX_MAP_LEN})"
            )));
        }
        let slots = if len == 0 {
            0
        } else {
            (len + len / 3 + 1).next_power_of_two()
        };
        let mut index = vec![0u64; slots];
        let mask = slots.wrapping_sub(1);
        // Entries are placed in the order of their home slots, so that the
        // writes into the index sweep it once instead of landing at random
        // (a large map's index is far bigger than the caches). Linear
        // probing gives a valid table whatever the insertion order.
        for (hash, number) in entries_by_home_region(&map.hashes, slots) {
            let tag = hash >> 32 << 32;
            let mut at = hash as usize & mask;
            loop {
                let slot = index[at];
                if slot == 0 {
                    index[at] = tag | (number as u64 + 1);
                    break;
                }
                if slot >> 32 << 32 == tag {
                    let other = (slot as u32 - 1) as usize;
                    if self.same_key(&map.entries[other], &map.entries[number]) {
                        return Err(not_freezable(format!(
                            "the key {} appears twice",
                            self.describe_key(&map.entries[number])
                        )));
                    }
                }
                at = (at + 1) & mask;
            }
        }
        let extra = slots * INDEX_SLOT_LEN + len * MAP_ENTRY_LEN;
        let offset = self.container_header(KIND_MAP, len, slots, map.depth, extra)?;
        for slot in index {
            self.bytes.extend_from_slice(&slot.to_le_bytes());
        }
        for entry in &map.entries {
            self.bytes.extend_from_slice(entry);
        }
        Ok(offset)
    }

    /// Pads, writes a container header and records the container.
    fn container_header(
        &mut self,
        kind: u32,
        len: usize,
        slots: usize,
        child_depth: u16,
        extra: usize,
    ) -> Result<ContainerRef, Error> {
        let depth = child_depth.saturating_add(1);
        if usize::from(depth) > MAX_DEPTH {
            return Err(not_freezable(format!(
                "containers nested deeper than {MAX_DEPTH}"
            )));
        }
        self.pad_to(8);
        let offset = self.bytes.len() as u64;
        self.bytes.reserve(CONTAINER_HEADER_LEN + extra);
        self.bytes.extend_from_slice(&kind.to_le_bytes());
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
        self.bytes.extend_from_slice(&(len as u64).to_le_bytes());
        self.bytes.extend_from_slice(&(slots as u64).to_le_bytes());
        self.bytes.extend_from_slice(&0u64.to_le_bytes());
        self.directory.push((offset, kind, depth));
        Ok(ContainerRef { offset })
    }

    /// Starts a list.
    pub fn begin_list(&self) -> ListInProgress {
        ListInProgress::default()
    }

    /// Starts a list that will hold about `items` items.
    pub fn begin_list_with_capacity(&self, items: usize) -> ListInProgress {
        ListInProgress {
            items: Vec::with_capacity(items),
            depth: 0,
        }
    }

    /// Adds an item to `list`.
    ///
    /// # Errors
    ///
    /// As [`push_entry`](Self::push_entry).
    pub fn push_item(&mut self, list: &mut ListInProgress, value: Input<'_>) -> Result<(), Error> {
        let (slot, depth) = self.value_slot(value)?;
        list.items.push(slot.encode());
        list.depth = list.depth.max(depth);
        Ok(())
    }

    /// Writes `list`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFreezable`]: nesting deeper than [`MAX_DEPTH`].
    pub fn end_list(&mut self, list: ListInProgress) -> Result<ContainerRef, Error> {
        let len = list.items.len();
        let offset = self.container_header(KIND_LIST, len, 0, list.depth, len * LIST_ENTRY_LEN)?;
        for item in &list.items {
            self.bytes.extend_from_slice(item);
        }
        Ok(offset)
    }

    /// Writes a map of `entries`, in their order.
    ///
    /// # Errors
    ///
    /// As [`push_entry`](Self::push_entry) and [`end_map`](Self::end_map).
    pub fn map<'v>(
        &mut self,
        entries: impl IntoIterator<Item = (Key<'v>, Input<'v>)>,
    ) -> Result<ContainerRef, Error> {
        let mut map = self.begin_map();
        for (key, value) in entries {
            self.push_entry(&mut map, key, value)?;
        }
        self.end_map(map)
    }

    /// Writes a list of `items`.
    ///
    /// # Errors
    ///
    /// As [`push_item`](Self::push_item) and [`end_list`](Self::end_list).
    pub fn list<'v>(
        &mut self,
        items: impl IntoIterator<Item = Input<'v>>,
    ) -> Result<ContainerRef, Error> {
        let mut list = self.begin_list();
        for item in items {
            self.push_item(&mut list, item)?;
        }
        self.end_list(list)
    }

    /// Copies `container`, read from another frozen buffer, and all it
    /// holds into this one.
    ///
    /// # Errors
    ///
    /// As [`push_entry`](Self::push_entry) and [`end_map`](Self::end_map)
    /// (never, for a container read from a valid buffer).
    pub fn copy_container(&mut self, container: Container<'_>) -> Result<ContainerRef, Error> {
        match container {
            Container::Map(source) => {
                let mut map = self.begin_map_with_capacity(source.len());
                for (key, value) in source.iter() {
                    self.push_entry_with(&mut map, key, |builder| builder.copy_value(value))?;
                }
                self.end_map(map)
            }
            Container::List(source) => {
                let mut list = self.begin_list_with_capacity(source.len());
                for value in source.iter() {
                    let (slot, depth) = self.copy_value(value)?;
                    list.items.push(slot.encode());
                    list.depth = list.depth.max(depth);
                }
                self.end_list(list)
            }
        }
    }

    fn copy_value(&mut self, value: Value<'_>) -> Result<(RawSlot, u16), Error> {
        let input = match value {
            Value::None => Input::None,
            Value::Bool(value) => Input::Bool(value),
            Value::Int(value) => Input::Int(value),
            Value::BigInt(bytes) => Input::BigInt(bytes),
            Value::Float(value) => Input::Float(value),
            Value::Str(text) => Input::Str(text),
            Value::Bytes(bytes) => Input::Bytes(bytes),
            Value::Array(array) => {
                let shape: Vec<u64> = array.shape().collect();
                let slot = self.array(ArrayInput {
                    dtype: array.dtype(),
                    itemsize: array.itemsize(),
                    shape: &shape,
                    data: array.data(),
                })?;
                return Ok((slot, 0));
            }
            Value::Map(map) => Input::Container(self.copy_container(Container::Map(map))?),
            Value::List(list) => Input::Container(self.copy_container(Container::List(list))?),
        };
        self.value_slot(input)
    }

    /// Writes the directory and the header, with `root` as the root.
    ///
    /// # Errors
    ///
    /// [`Error::NotFreezable`] if `root` comes from another builder.
    pub fn finish(mut self, root: ContainerRef) -> Result<Vec<u8>, Error> {
        if self
            .directory
            .binary_search_by_key(&root.offset, |&(offset, _, _)| offset)
            .is_err()
        {
            return Err(not_freezable("a root from another builder"));
        }
        self.pad_to(8);
        let directory = self.bytes.len() as u64;
        self.bytes.reserve(8 * self.directory.len());
        for &(offset, _, _) in &self.directory {
            self.bytes.extend_from_slice(&offset.to_le_bytes());
        }
        let total = self.bytes.len() as u64;
        let mut header = [0u8; HEADER_LEN];
        header[H_MAGIC..H_MAGIC + 8].copy_from_slice(&MAGIC);
        header[H_VERSION..H_VERSION + 4].copy_from_slice(&VERSION.to_le_bytes());
        header[H_HEADER_LEN..H_HEADER_LEN + 4].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        header[H_TOTAL_LEN..H_TOTAL_LEN + 8].copy_from_slice(&total.to_le_bytes());
        header[H_SEED..H_SEED + 8].copy_from_slice(&self.seed.to_le_bytes());
        header[H_ROOT..H_ROOT + 8].copy_from_slice(&root.offset.to_le_bytes());
        header[H_CONTAINERS..H_CONTAINERS + 8]
            .copy_from_slice(&(self.directory.len() as u64).to_le_bytes());
        header[H_DIRECTORY..H_DIRECTORY + 8].copy_from_slice(&directory.to_le_bytes());
        self.bytes[..HEADER_LEN].copy_from_slice(&header);
        Ok(self.bytes)
    }
}

/// A buffer holding one map of `entries`, in their order.
///
/// ```
/// use initret::frozen::{self, Frozen, Input, Key, Value};
///
/// let bytes = frozen::freeze_map((0..1000).map(|i| (Key::Int(i), Input::Int(i * i))))?;
/// let map = Frozen::open(&bytes)?.root_map().unwrap();
/// assert_eq!(map.get(12), Some(Value::Int(144)));
/// assert_eq!(map.get(1000), None);
/// # Ok::<(), initret::Error>(())
/// ```
///
/// # Errors
///
/// As [`FrozenBuilder::map`].
pub fn freeze_map<'v, K, V>(entries: impl IntoIterator<Item = (K, V)>) -> Result<Vec<u8>, Error>
where
    K: Into<Key<'v>>,
    V: Into<Input<'v>>,
{
    let mut builder = FrozenBuilder::new();
    let root = builder.map(entries.into_iter().map(|(k, v)| (k.into(), v.into())))?;
    builder.finish(root)
}

/// A buffer holding one list of `items`.
///
/// ```
/// use initret::frozen::{self, Frozen, Value};
///
/// let bytes = frozen::freeze_list(["a", "", "é"])?;
/// let list = Frozen::open(&bytes)?.root_list().unwrap();
/// assert_eq!(list.iter().collect::<Vec<_>>(), [Value::Str("a"), Value::Str(""), Value::Str("é")]);
/// # Ok::<(), initret::Error>(())
/// ```
///
/// # Errors
///
/// As [`FrozenBuilder::list`].
pub fn freeze_list<'v, V: Into<Input<'v>>>(
    items: impl IntoIterator<Item = V>,
) -> Result<Vec<u8>, Error> {
    let mut builder = FrozenBuilder::new();
    let root = builder.list(items.into_iter().map(Into::into))?;
    builder.finish(root)
}

/// A buffer of its own holding a copy of `container` (a nested map or list
/// of another buffer, say) and everything in it.
///
/// # Errors
///
/// As [`FrozenBuilder::copy_container`].
pub fn freeze_copy(container: Container<'_>) -> Result<Vec<u8>, Error> {
    let mut builder = FrozenBuilder::new();
    let root = builder.copy_container(container)?;
    builder.finish(root)
}

/// `(hash, entry number)` of each entry of a map, grouped by the region of
/// the index their home slot lies in (a counting sort on the home slot's
/// top bits, 4096 regions), regions in ascending order: inserting in this
/// order touches the index one small window at a time, and reads this list
/// front to back.
fn entries_by_home_region(hashes: &[u64], slots: usize) -> Vec<(u64, usize)> {
    const REGION_BITS: u32 = 12;
    let slot_bits = slots.max(1).trailing_zeros();
    let shift = slot_bits.saturating_sub(REGION_BITS);
    let regions = 1usize << slot_bits.min(REGION_BITS);
    let mask = slots.wrapping_sub(1);
    let region = |hash: u64| (hash as usize & mask) >> shift;
    let mut starts = vec![0usize; regions + 1];
    for &hash in hashes {
        starts[region(hash) + 1] += 1;
    }
    for r in 0..regions {
        starts[r + 1] += starts[r];
    }
    let mut order = vec![(0u64, 0usize); hashes.len()];
    for (number, &hash) in hashes.iter().enumerate() {
        let r = region(hash);
        order[starts[r]] = (hash, number);
        starts[r] += 1;
    }
    order
}
