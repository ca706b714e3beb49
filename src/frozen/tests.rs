//! The frozen containers against a naive reference (`HashMap`, `Vec`), and
//! corrupted buffers against the validator.

use super::*;
use crate::Error;
use proptest::prelude::*;
use std::collections::HashMap;

/// An owned key, for the reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum OwnedKey {
    Int(i64),
    Str(String),
    Bytes(Vec<u8>),
}

impl OwnedKey {
    fn key(&self) -> Key<'_> {
        match self {
            OwnedKey::Int(value) => Key::Int(*value),
            OwnedKey::Str(text) => Key::Str(text),
            OwnedKey::Bytes(bytes) => Key::Bytes(bytes),
        }
    }
}

/// An owned value, for the reference (nested one level: lists of scalars).
#[derive(Clone, Debug)]
enum OwnedValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<OwnedValue>),
    Array(Vec<u64>, Vec<u8>),
}

fn scalar_input(value: &OwnedValue) -> Input<'_> {
    match value {
        OwnedValue::None => Input::None,
        OwnedValue::Bool(value) => Input::Bool(*value),
        OwnedValue::Int(value) => Input::Int(*value),
        OwnedValue::Float(value) => Input::Float(*value),
        OwnedValue::Str(text) => Input::Str(text),
        OwnedValue::Bytes(bytes) => Input::Bytes(bytes),
        OwnedValue::Array(shape, data) => Input::Array(ArrayInput {
            dtype: "<u2",
            itemsize: 2,
            shape,
            data,
        }),
        OwnedValue::List(_) => unreachable!("lists are written first"),
    }
}

fn input_for(builder: &mut FrozenBuilder, value: &OwnedValue) -> Input<'static> {
    // Only containers need the builder; everything else borrows `value`,
    // which the caller keeps alive, so convert through a static-free path.
    match value {
        OwnedValue::List(items) => {
            let mut list = builder.begin_list();
            for item in items {
                let input = scalar_input(item);
                builder.push_item(&mut list, input).unwrap();
            }
            Input::Container(builder.end_list(list).unwrap())
        }
        _ => unreachable!(),
    }
}

fn push(builder: &mut FrozenBuilder, map: &mut MapInProgress, key: &OwnedKey, value: &OwnedValue) {
    let input = match value {
        OwnedValue::List(_) => input_for(builder, value),
        other => scalar_input(other),
    };
    builder.push_entry(map, key.key(), input).unwrap();
}

fn same(value: Value<'_>, expected: &OwnedValue) -> bool {
    match (value, expected) {
        (Value::None, OwnedValue::None) => true,
        (Value::Bool(a), OwnedValue::Bool(b)) => a == *b,
        (Value::Int(a), OwnedValue::Int(b)) => a == *b,
        (Value::Float(a), OwnedValue::Float(b)) => a.to_bits() == b.to_bits(),
        (Value::Str(a), OwnedValue::Str(b)) => a == b,
        (Value::Bytes(a), OwnedValue::Bytes(b)) => a == b.as_slice(),
        (Value::Array(a), OwnedValue::Array(shape, data)) => {
            a.dtype() == "<u2"
                && a.itemsize() == 2
                && a.shape().collect::<Vec<_>>() == *shape
                && a.data() == data.as_slice()
                && a.data_offset() % ARRAY_ALIGN == 0
        }
        (Value::List(a), OwnedValue::List(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        _ => false,
    }
}

/// Two reads of the same entry agree: `==` except that a float compares by its
/// bits, so a stored NaN equals itself.
fn same_read(a: Option<Value<'_>>, b: Option<Value<'_>>) -> bool {
    match (a, b) {
        (Some(Value::Float(x)), Some(Value::Float(y))) => x.to_bits() == y.to_bits(),
        (a, b) => a == b,
    }
}

fn owned_key() -> impl Strategy<Value = OwnedKey> {
    prop_oneof![
        any::<i64>().prop_map(OwnedKey::Int),
        (-20i64..20).prop_map(OwnedKey::Int),
        ".{0,12}".prop_map(OwnedKey::Str),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(OwnedKey::Bytes),
    ]
}

fn scalar() -> impl Strategy<Value = OwnedValue> {
    prop_oneof![
        Just(OwnedValue::None),
        any::<bool>().prop_map(OwnedValue::Bool),
        any::<i64>().prop_map(OwnedValue::Int),
        any::<u64>().prop_map(|bits| OwnedValue::Float(f64::from_bits(bits))),
        Just(OwnedValue::Float(-0.0)),
        ".{0,20}".prop_map(OwnedValue::Str),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(OwnedValue::Bytes),
        (0u64..4, 0u64..4).prop_map(|(a, b)| {
            let data = (0..2 * a * b).map(|i| i as u8).collect();
            OwnedValue::Array(vec![a, b], data)
        }),
    ]
}

fn owned_value() -> impl Strategy<Value = OwnedValue> {
    prop_oneof![
        4 => scalar(),
        1 => proptest::collection::vec(scalar(), 0..5).prop_map(OwnedValue::List),
    ]
}

/// Distinct keys (as the map needs) with values, in a random order.
fn owned_entries() -> impl Strategy<Value = Vec<(OwnedKey, OwnedValue)>> {
    proptest::collection::vec((owned_key(), owned_value()), 0..60).prop_map(|entries| {
        let mut seen = std::collections::HashSet::new();
        entries
            .into_iter()
            .filter(|(k, _)| seen.insert(k.clone()))
            .collect()
    })
}

fn build(entries: &[(OwnedKey, OwnedValue)]) -> Vec<u8> {
    let mut builder = FrozenBuilder::new();
    let mut map = builder.begin_map();
    for (key, value) in entries {
        push(&mut builder, &mut map, key, value);
    }
    let root = builder.end_map(map).unwrap();
    builder.finish(root).unwrap()
}

proptest! {
    #[test]
    fn map_agrees_with_a_hashmap(entries in owned_entries(), probes in proptest::collection::vec(owned_key(), 0..30)) {
        let bytes = build(&entries);
        let frozen = Frozen::open(&bytes).unwrap();
        let map = frozen.root_map().unwrap();
        let reference: HashMap<OwnedKey, OwnedValue> = entries.iter().cloned().collect();
        prop_assert_eq!(map.len(), reference.len());
        for (position, ((key, value), (stored_key, stored_value))) in entries.iter().zip(map.iter()).enumerate() {
            prop_assert_eq!(stored_key, key.key());
            prop_assert!(same(stored_value, value));
            prop_assert_eq!(map.position(key.key()), Some(position));
            prop_assert!(same(map.get(key.key()).unwrap(), value));
        }
        let probe_keys: Vec<Key> = probes.iter().map(OwnedKey::key).collect();
        let mut each = Vec::new();
        map.get_each(&probe_keys, |i, value| each.push((i, value)));
        prop_assert_eq!(each.len(), probes.len());
        for (i, (at, value)) in each.into_iter().enumerate() {
            prop_assert_eq!(at, i);
            prop_assert!(same_read(value, map.get(probe_keys[i])), "{:?} != {:?}", value, map.get(probe_keys[i]));
        }
        for probe in &probes {
            match reference.get(probe) {
                Some(value) => prop_assert!(same(map.get(probe.key()).unwrap(), value)),
                None => prop_assert_eq!(map.get(probe.key()), None),
            }
        }
        // Copying the map into a buffer of its own keeps every entry.
        let copy = freeze_copy(Container::Map(map)).unwrap();
        let copied = Frozen::open(&copy).unwrap().root_map().unwrap();
        prop_assert_eq!(copied.len(), map.len());
        for (key, value) in &entries {
            prop_assert!(same(copied.get(key.key()).unwrap(), value));
        }
    }

    #[test]
    fn list_agrees_with_a_vec(items in proptest::collection::vec(owned_value(), 0..40)) {
        let mut builder = FrozenBuilder::new();
        let mut list = builder.begin_list();
        for item in &items {
            let input = match item {
                OwnedValue::List(_) => input_for(&mut builder, item),
                other => scalar_input(other),
            };
            builder.push_item(&mut list, input).unwrap();
        }
        let root = builder.end_list(list).unwrap();
        let bytes = builder.finish(root).unwrap();
        let list = Frozen::open(&bytes).unwrap().root_list().unwrap();
        prop_assert_eq!(list.len(), items.len());
        for (position, item) in items.iter().enumerate() {
            prop_assert!(same(list.get(position).unwrap(), item));
        }
        prop_assert_eq!(list.get(items.len()), None);
    }

    /// Any corruption of a valid buffer is an error when opened or, if it
    /// still validates, reads without a panic.
    #[test]
    fn corrupted_buffers_never_panic(
        entries in owned_entries(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = build(&entries);
        for (at, byte) in &flips {
            let at = at.index(bytes.len());
            bytes[at] = *byte;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        read_everything(&bytes);
    }

    /// Overwriting any aligned u64 with a nasty value (an offset, a length,
    /// a count) never panics either.
    #[test]
    fn forged_fields_never_panic(
        entries in owned_entries(),
        at in any::<prop::sample::Index>(),
        value in prop_oneof![Just(0u64), Just(1), Just(u64::MAX), Just(u64::MAX / 2), Just(1 << 32), 0u64..4096, any::<u64>()],
    ) {
        let mut bytes = build(&entries);
        let at = at.index(bytes.len() / 8) * 8;
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        read_everything(&bytes);
    }
}

/// Opens `bytes` and, if that works, reads every entry, nested container
/// and array, and looks up a few keys.
fn read_everything(bytes: &[u8]) {
    let Ok(frozen) = Frozen::open(bytes) else {
        return;
    };
    fn walk(value: Value<'_>) {
        match value {
            Value::Map(map) => walk_container(Container::Map(map)),
            Value::List(list) => walk_container(Container::List(list)),
            Value::Array(array) => {
                let _ = (array.dtype(), array.data(), array.shape().count());
            }
            _ => {}
        }
    }
    fn walk_container(container: Container<'_>) {
        match container {
            Container::Map(map) => {
                for (key, value) in map.iter() {
                    let _ = map.get(key);
                    walk(value);
                }
                let _ = map.get(0);
                let _ = map.get("x");
                let _ = map.get(b"x".as_slice());
            }
            Container::List(list) => list.iter().for_each(walk),
        }
    }
    walk_container(frozen.root());
    let _ = freeze_copy(frozen.root());
}

#[test]
fn seed_cache_round_trip() {
    let texts: Vec<String> = (0..(1i64 << 16)).map(|i| format!("{i:#b}")).collect();
    let bytes = freeze_map(
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| (i as i64, t.as_str())),
    )
    .unwrap();
    let map = Frozen::open(&bytes).unwrap().root_map().unwrap();
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(map.get(i as i64), Some(Value::Str(text)));
    }
    assert_eq!(map.get(-1), None);
    assert_eq!(map.get(1 << 16), None);
    assert_eq!(map.get("0b1"), None);
}

#[test]
fn equal_but_different_keys() {
    let bytes = freeze_map([
        (Key::Bool(true), Input::Int(1)),
        (Key::Str("1"), Input::Int(2)),
        (Key::Bytes(b"1"), Input::Int(3)),
    ])
    .unwrap();
    let map = Frozen::open(&bytes).unwrap().root_map().unwrap();
    assert_eq!(map.get(1), Some(Value::Int(1)));
    assert_eq!(map.get(true), Some(Value::Int(1)));
    assert_eq!(map.get(false), None);
    assert_eq!(map.get("1"), Some(Value::Int(2)));
    assert_eq!(map.get(b"1".as_slice()), Some(Value::Int(3)));
    assert_eq!(map.key_at(0), Some(Key::Bool(true)));
}

#[test]
fn duplicate_keys_are_refused() {
    for pair in [
        [(Key::Int(1), Input::None), (Key::Bool(true), Input::None)],
        [(Key::Str("a"), Input::None), (Key::Str("a"), Input::None)],
    ] {
        assert!(matches!(freeze_map(pair), Err(Error::NotFreezable(_))));
    }
    assert!(
        freeze_map([
            (Key::Str("a"), Input::None),
            (Key::Bytes(b"a"), Input::None)
        ])
        .is_ok()
    );
}

#[test]
fn empty_containers() {
    let bytes = freeze_map(std::iter::empty::<(Key, Input)>()).unwrap();
    let map = Frozen::open(&bytes).unwrap().root_map().unwrap();
    assert!(map.is_empty());
    assert_eq!(map.get(0), None);
    let bytes = freeze_list(std::iter::empty::<Input>()).unwrap();
    assert!(
        Frozen::open(&bytes)
            .unwrap()
            .root_list()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn nesting_depth_is_bounded() {
    let mut builder = FrozenBuilder::new();
    let mut inner = builder.list(std::iter::empty::<Input>()).unwrap();
    for _ in 1..MAX_DEPTH {
        inner = builder.list([Input::Container(inner)]).unwrap();
    }
    let deepest = builder.finish(inner).unwrap();
    assert!(Frozen::open(&deepest).is_ok());
    let mut builder = FrozenBuilder::new();
    let mut inner = builder.list(std::iter::empty::<Input>()).unwrap();
    for _ in 1..MAX_DEPTH {
        inner = builder.list([Input::Container(inner)]).unwrap();
    }
    assert!(matches!(
        builder.list([Input::Container(inner)]),
        Err(Error::NotFreezable(_))
    ));
}

#[test]
fn a_shared_child_is_written_once_and_read_twice() {
    let mut builder = FrozenBuilder::new();
    let child = builder.map([(Key::Int(1), Input::Str("x"))]).unwrap();
    let root = builder
        .list([Input::Container(child), Input::Container(child)])
        .unwrap();
    let bytes = builder.finish(root).unwrap();
    let list = Frozen::open(&bytes).unwrap().root_list().unwrap();
    let (Some(Value::Map(a)), Some(Value::Map(b))) = (list.get(0), list.get(1)) else {
        panic!()
    };
    assert_eq!(a, b);
    assert_eq!(a.get(1), Some(Value::Str("x")));
}

#[test]
fn corrupt_buffers_name_the_problem() {
    let good = freeze_list(["text"]).unwrap();
    assert!(matches!(
        Frozen::open(&good[..10]),
        Err(Error::FrozenCorrupt { offset: 0, .. })
    ));
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(
        Frozen::open(&bad),
        Err(Error::FrozenCorrupt { offset: 0, .. })
    ));
    // Truncated: the header's total length is past the end.
    assert!(matches!(
        Frozen::open(&good[..good.len() - 8]),
        Err(Error::FrozenCorrupt { .. })
    ));
    // A str that is not UTF-8.
    let at = good.windows(4).position(|w| w == b"text").unwrap();
    let mut bad = good.clone();
    bad[at] = 0xff;
    let err = Frozen::open(&bad).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
    // Trailing bytes (a page-rounded mapping) are ignored.
    let mut longer = good.clone();
    longer.resize(4096, 0xee);
    assert_eq!(
        Frozen::open(&longer).unwrap().root_list().unwrap().get(0),
        Some(Value::Str("text"))
    );
}

#[test]
fn forward_and_cyclic_references_are_refused() {
    // A list whose item points at the list itself.
    let mut builder = FrozenBuilder::new();
    let inner = builder.list([Input::None]).unwrap();
    let root = builder.list([Input::Container(inner)]).unwrap();
    let mut bytes = builder.finish(root).unwrap();
    let frozen = Frozen::open(&bytes).unwrap();
    let Some(Value::List(inner_view)) = frozen.root_list().unwrap().get(0) else {
        panic!()
    };
    let inner_offset = inner_view.handle().offset() as u64;
    let root_offset = frozen.root_list().unwrap().handle().offset();
    // The root's first slot's payload: make it point at the root.
    let slot = root_offset + 32;
    assert_eq!(
        u64::from_le_bytes(bytes[slot + 8..slot + 16].try_into().unwrap()),
        inner_offset
    );
    bytes[slot + 8..slot + 16].copy_from_slice(&(root_offset as u64).to_le_bytes());
    let err = Frozen::open(&bytes).unwrap_err();
    assert!(err.to_string().contains("forward"), "{err}");
}

#[test]
fn hash_values_are_pinned() {
    // Stored buffers depend on these exact values.
    assert_eq!(read::key_hash(DEFAULT_SEED, Key::Int(0)), PINNED[0]);
    assert_eq!(read::key_hash(DEFAULT_SEED, Key::Int(-1)), PINNED[1]);
    assert_eq!(read::key_hash(DEFAULT_SEED, Key::Str("")), PINNED[2]);
    assert_eq!(read::key_hash(DEFAULT_SEED, Key::Str("0b101")), PINNED[3]);
    assert_eq!(
        read::key_hash(DEFAULT_SEED, Key::Bytes(b"0b101 and a longer tail")),
        PINNED[4]
    );
}

const PINNED: [u64; 5] = [
    0x23c1_2fce_ec4c_f028,
    0xe04e_78ec_b2ce_33df,
    0xba03_4005_831e_95ce,
    0xcfb1_672b_b6d1_0413,
    0xa2e9_82d3_c594_684c,
];

#[test]
fn get_each_agrees_with_get_over_long_key_lists() {
    let texts: Vec<String> = (0..5000i64).map(|i| format!("v{i}")).collect();
    let bytes = freeze_map((0..5000i64).map(|i| (i * 3, texts[i as usize].as_str()))).unwrap();
    let map = Frozen::open(&bytes).unwrap().root_map().unwrap();
    for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 64, 65, 1000] {
        let keys: Vec<i64> = (0..len as i64).map(|i| (i * 7919) % 16000).collect();
        let mut seen = 0;
        map.get_each(&keys, |i, value| {
            assert_eq!(i, seen);
            assert_eq!(value, map.get(keys[i]));
            seen += 1;
        });
        assert_eq!(seen, len);
    }
}
