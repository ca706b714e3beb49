"""SharedDict, SharedList and freeze against the dicts and lists they froze."""

from __future__ import annotations

import collections
import math
import pickle
import random
import struct
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np
import pytest

import initret
from initret import CorruptBuffer, NotFreezable, SharedDict, SharedList, freeze, open_frozen


def random_str(rng: random.Random) -> str:
    alphabet = "ab01 é€😀\u0000\u200d"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))


def random_scalar(rng: random.Random):
    kind = rng.randrange(9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randrange(-(2**63), 2**63)
    if kind == 3:
        return rng.choice([0.0, -0.0, math.inf, -math.inf, 1.5, -1e308, 5e-324, rng.random()])
    if kind == 4:
        return random_str(rng)
    if kind == 5:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 6)))
    if kind == 6:
        return rng.choice([2**64, -(2**100) + 3, 2**63, -(2**63) - 1])
    if kind == 7:
        return np.arange(rng.randrange(0, 7), dtype=rng.choice(["<u4", "<f8", "|u1", ">i2", "<c16"]))
    return rng.randrange(-3, 3)


def random_key(rng: random.Random):
    kind = rng.randrange(3)
    if kind == 0:
        return rng.choice([rng.randrange(-(2**63), 2**63), rng.randrange(-50, 50)])
    if kind == 1:
        return random_str(rng)
    return random_str(rng).encode()


def random_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth < 3 and roll < 0.1:
        return {random_key(rng): random_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))}
    if depth < 3 and roll < 0.2:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    return random_scalar(rng)


def same(a, b) -> bool:
    """Deep equality where NaN equals NaN, arrays compare by content and
    dtype, and types must match (a SharedDict stands for a dict)."""
    if isinstance(b, dict):
        return isinstance(a, SharedDict) and len(a) == len(b) and all(
            k in a and same(a[k], v) for k, v in b.items()
        ) and list(a.keys()) == list(b.keys())
    if isinstance(b, list):
        return isinstance(a, SharedList) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
            and not a.flags.writeable
        )
    if isinstance(b, float):
        return type(a) is float and struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("seed", range(8))
def test_random_dicts_round_trip(seed):
    rng = random.Random(seed)
    original = {random_key(rng): random_value(rng) for _ in range(200)}
    frozen = SharedDict(original)
    assert isinstance(frozen, Mapping)
    assert same(frozen, original)
    assert frozen == original
    assert original == frozen
    assert not frozen != original
    assert list(frozen) == list(original)
    assert len(frozen.values()) == len(original)
    for (k1, v1), (k2, v2) in zip(frozen.items(), original.items()):
        assert k1 == k2 and same(v1, v2)
    for key in original:
        assert key in frozen
    for _ in range(200):
        probe = random_key(rng)
        assert (probe in frozen) == (probe in original)
        assert frozen.get(probe, "absent") is not "absent" or probe not in original


@pytest.mark.parametrize("seed", range(4))
def test_random_lists_round_trip(seed):
    rng = random.Random(100 + seed)
    original = [random_value(rng) for _ in range(200)]
    frozen = SharedList(original)
    assert isinstance(frozen, Sequence)
    assert same(frozen, original)
    assert frozen == original
    assert all(same(a, b) for a, b in zip(reversed(frozen), reversed(original)))
    assert same(frozen[-1], original[-1])
    sliced = frozen[10:20:3]
    assert type(sliced) is list and len(sliced) == 4
    assert all(same(a, b) for a, b in zip(sliced, original[10:20:3]))
    assert frozen[::-1][0] == frozen[-1] or isinstance(frozen[-1], np.ndarray)
    with pytest.raises(IndexError):
        frozen[len(original)]
    with pytest.raises(TypeError):
        frozen["0"]


def test_seed_dict():
    original = {i: bin(i) for i in range(2**16 - 1)}
    frozen = SharedDict(original)
    assert sum(frozen[i].count("1") for i in range(2**16 - 1)) == initret.SEED_CHECKSUM
    assert frozen == original
    assert frozen.get_many(np.arange(5)) == ["0b0", "0b1", "0b10", "0b11", "0b100"]


def test_strings_unicode_and_empty():
    original = {"": "", "é": "€", "😀": "\u0000", "a\u200db": "x" * 1000, b"": b"", b"\xff": b"\x00"}
    frozen = SharedDict(original)
    assert same(frozen, original)
    assert frozen[""] == "" and frozen[b""] == b""


def test_large_ints():
    values = [2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**200, -(2**200), 10**50]
    frozen = SharedList(values)
    assert list(frozen) == values
    assert SharedDict({2**63 - 1: 1, -(2**63): 2})[-(2**63)] == 2
    with pytest.raises(NotFreezable, match="64"):
        freeze({2**63: "too large"})
    assert issubclass(NotFreezable, TypeError)
    d = SharedDict({1: "a"})
    assert 2**64 + 1 not in d
    with pytest.raises(KeyError):
        d[2**70]


def test_nan_and_negative_zero_bit_exact():
    nan = float("nan")
    odd_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_1234))[0]
    frozen = SharedList([nan, -0.0, 0.0, odd_nan])
    assert math.isnan(frozen[0])
    assert struct.pack("<d", frozen[1]) == struct.pack("<d", -0.0)
    assert struct.pack("<d", frozen[2]) == struct.pack("<d", 0.0)
    assert struct.pack("<d", frozen[3]) == struct.pack("<d", odd_nan)
    assert frozen == [nan, -0.0, 0.0, odd_nan]


def test_nesting_views_share_the_buffer():
    original = {"a": {"b": [1, {"c": [2.5, None]}], "d": {}}, "e": []}
    frozen = SharedDict(original)
    inner = frozen["a"]["b"][1]
    assert isinstance(inner, SharedDict) and inner == {"c": [2.5, None]}
    assert frozen["a"]["b"]._buffer()[0] is frozen._buffer()[0]
    assert frozen == original
    assert frozen["a"]["d"] == {} and frozen["e"] == []


def test_shared_subcontainers_are_stored_once():
    child = {"x": list(range(100))}
    frozen = SharedList([child, child, child])
    assert frozen == [child, child, child]
    assert len(freeze([child, child, child])) < 2 * len(freeze([child]))


def test_absent_keys():
    frozen = SharedDict({1: "one", "two": 2, b"three": 3})
    for absent in [0, 2, "one", b"two", "three", 1.5, (1,), None, 2**64, float("nan")]:
        assert absent not in frozen
        assert frozen.get(absent) is None
        assert frozen.get(absent, 7) == 7
        with pytest.raises(KeyError):
            frozen[absent]
    # Unhashable lookups miss too (no TypeError).
    assert [1] not in frozen


def test_equal_but_different_keys():
    frozen = SharedDict({1: "int", "1": "str", b"1": "bytes", True if False else 0: "zero"})
    assert frozen[1] == frozen[1.0] == frozen[True] == "int"
    assert frozen[np.int64(1)] == frozen[np.float32(1.0)] == frozen[Fraction(1)] == "int"
    assert frozen[0] == frozen[False] == frozen[0.0] == frozen[-0.0] == "zero"
    assert frozen["1"] == "str" and frozen[b"1"] == "bytes"
    bools = SharedDict({True: "t", False: "f"})
    assert list(bools) == [True, False] and type(next(iter(bools))) is bool
    assert bools[1] == "t" and bools[0] == "f"
    assert bools == {1: "t", 0: "f"}
    with pytest.raises(NotFreezable):
        freeze({1.5: "float keys do not fit"})
    with pytest.raises(NotFreezable):
        freeze({(1, 2): "tuples do not fit"})


def test_not_freezable():
    for bad in [{1: (1, 2)}, {1: {1, 2}}, [object()], [np.array([object()])], {1: "\ud800"}, 5, (1, 2)]:
        with pytest.raises(NotFreezable):
            freeze(bad)
    cyclic = [1]
    cyclic.append(cyclic)
    with pytest.raises(NotFreezable, match="cycle"):
        freeze(cyclic)
    deep = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(NotFreezable, match="deeper"):
        freeze(deep)


def test_corrupted_buffers_raise():
    good = freeze({i: str(i) for i in range(100)})
    assert issubclass(CorruptBuffer, ValueError)
    with pytest.raises(CorruptBuffer):
        SharedDict._open(good[:50])
    with pytest.raises(CorruptBuffer):
        SharedDict._open(good[:-8])
    with pytest.raises(CorruptBuffer):
        SharedDict._open(b"\x00" * len(good))
    rng = random.Random(5)
    raised = 0
    for _ in range(300):
        bad = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        try:
            d = SharedDict._open(bytes(bad))
        except CorruptBuffer:
            raised += 1
            continue
        # Still valid after the flips (a value byte changed): readable.
        for k in list(d)[:100]:
            try:
                d[k]
            except (KeyError, UnicodeDecodeError):
                pass
    assert raised > 0


def test_open_buffers():
    data = freeze([1, "two", 3.0])
    ro = np.frombuffer(data, dtype=np.uint8)
    assert not ro.flags.writeable
    view = SharedList._open(ro)
    assert view == [1, "two", 3.0]
    assert view._buffer()[0] is ro  # read in place, kept alive
    writable = np.frombuffer(bytearray(data), dtype=np.uint8)
    assert SharedList._open(writable) == [1, "two", 3.0]  # a copy
    assert SharedList._open(memoryview(data)) == [1, "two", 3.0]
    padded = np.frombuffer(data + b"\x00" * 100, dtype=np.uint8)  # page rounding
    assert SharedList._open(padded) == [1, "two", 3.0]
    with pytest.raises(TypeError, match="holds a list"):
        SharedDict._open(data)
    assert open_frozen(data) == [1, "two", 3.0]
    assert open_frozen(freeze({})) == {}


def test_arrays_are_read_only_zero_copy_views():
    arr = np.arange(12, dtype="<f4").reshape(3, 4)
    fortran = np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3))
    data = freeze({"a": arr, "f": fortran, "empty": np.zeros((0, 3)), "scalar": np.array(5, dtype=np.uint8)})
    buffer = np.frombuffer(data, dtype=np.uint8)
    d = SharedDict._open(buffer)
    view = d["a"]
    assert view.dtype == arr.dtype and view.shape == (3, 4) and (view == arr).all()
    assert not view.flags.writeable
    assert np.shares_memory(view, buffer)
    address = view.__array_interface__["data"][0] - buffer.__array_interface__["data"][0]
    assert address % 64 == 0
    assert (d["f"] == fortran).all()
    assert d["empty"].shape == (0, 3)
    assert d["scalar"].shape == () and d["scalar"] == 5
    assert d == {"a": arr, "f": fortran, "empty": np.zeros((0, 3)), "scalar": np.array(5, dtype=np.uint8)}


def test_numpy_scalars_become_python_numbers():
    frozen = SharedList([np.int64(3), np.float32(0.5), np.bool_(True), np.uint64(2**64 - 1)])
    assert list(frozen) == [3, 0.5, True, 2**64 - 1]
    assert [type(x) for x in frozen] == [int, float, bool, int]


def test_dict_subclasses_and_mappings():
    od = collections.OrderedDict([(2, "b"), (1, "a")])
    od.move_to_end(2)
    frozen = SharedDict(od)
    assert list(frozen) == [1, 2]
    assert SharedDict(frozen) == frozen
    assert SharedDict([(1, 2)]) == {1: 2}
    assert SharedDict() == {}
    assert SharedList() == [] and SharedList(range(3)) == [0, 1, 2]
    assert frozen != {1: "a"} and frozen != {1: "a", 2: "c"} and frozen != [1, 2]
    assert SharedDict({1: "a"}) == SharedDict({1: "a"}) and SharedDict({1: 1}) == SharedDict({1: 1.0})
    assert SharedList([1]) != (1,) and SharedList([1]) == SharedList([True])
    with pytest.raises(TypeError):
        hash(frozen)


def test_repr_is_short():
    big = SharedDict({i: "x" * 100 for i in range(100_000)})
    text = repr(big)
    assert len(text) < 1000 and "100000 entries" in text
    nested = SharedList([[[[[[1]]]]]] * 1000)
    assert len(repr(nested)) < 1000
    assert repr(SharedDict({1: "a"})) == "SharedDict({1: 'a'})"
    assert repr(SharedList([])) == "SharedList([])"


def test_pickle_round_trip():
    original = {"k": [1, 2, {"x": b"y"}], 5: np.arange(3)}
    frozen = SharedDict(original)
    back = pickle.loads(pickle.dumps(frozen))
    assert isinstance(back, SharedDict) and back == original
    nested = frozen["k"]
    back_nested = pickle.loads(pickle.dumps(nested))
    assert back_nested == [1, 2, {"x": b"y"}]
    # A nested view pickles its own subtree, not the whole buffer.
    assert len(pickle.dumps(nested)) < len(freeze(original))
    lst = SharedList([1, "a"])
    assert pickle.loads(pickle.dumps(lst)) == [1, "a"]
    # The sharing layer's small handle wins when set.
    assert frozen._reduce_to is None
    frozen._reduce_to = (dict, ())
    assert pickle.loads(pickle.dumps(frozen)) == {}
    frozen._reduce_to = None
    assert pickle.loads(pickle.dumps(frozen)) == original


def test_get_many():
    ints = SharedDict({i: i * 2 for i in range(1000)})
    keys = np.array([5, 7, 999], dtype=np.int32)
    result = ints.get_many(keys)
    assert isinstance(result, np.ndarray) and result.dtype == np.int64
    assert result.tolist() == [10, 14, 1998]
    assert ints.get_many([5, 7.0, True]).tolist() == [10, 14, 2]
    assert ints.get_many(np.array([1, 2], dtype=np.uint64)).tolist() == [2, 4]
    with pytest.raises(KeyError):
        ints.get_many([1, 5000])
    with pytest.raises(KeyError):
        ints.get_many(np.array([2**64 - 1], dtype=np.uint64))
    assert ints.get_many([1, 5000], default=-1).tolist() == [2, -1]
    assert ints.get_many([1, 5000], default=None) == [2, None]
    floats = SharedDict({1: 0.5, 2: 3, 3: True})
    assert floats.get_many([1, 2, 3]).dtype == np.float64
    assert SharedDict({1: True}).get_many([1]).dtype == np.bool_
    bools = SharedDict({1: True, 2: False, 3: 7, 4: 0.25, 5: "s"})
    assert bools.get_many(np.array([1, 2])).tolist() == [True, False]
    assert bools.get_many(np.array([1, 2])).dtype == np.bool_
    assert bools.get_many(np.array([1, 3])).tolist() == [1, 7]
    mixed = bools.get_many(np.array([3, 1, 4]))
    assert mixed.dtype == np.float64 and mixed.tolist() == [7.0, 1.0, 0.25]
    assert bools.get_many(np.array([3, 5])) == [7, "s"]
    assert bools.get_many(np.array([3, 9]), default=-1).tolist() == [7, -1]
    strs = SharedDict({1: "a", 2: "b"})
    assert strs.get_many(np.array([2, 1])) == ["b", "a"]
    assert strs.get_many([]) == []
    lst = SharedList([1.5, 2.5, 3.5])
    assert lst.get_many(np.array([0, -1])).tolist() == [1.5, 3.5]
    with pytest.raises(IndexError):
        lst.get_many([3])
    assert lst.get_many([3], default=0.0).tolist() == [0.0]


def test_list_methods():
    frozen = SharedList(["a", 1, "a", None])
    assert frozen.index("a") == 0 and frozen.index("a", 1) == 2
    assert frozen.count("a") == 2
    assert None in frozen and "b" not in frozen
    with pytest.raises(ValueError):
        frozen.index("b")


def test_values_are_built_when_read():
    frozen = SharedDict({1: "x" * 10})
    a, b = frozen[1], frozen[1]
    assert a == b and a is not b  # a new str each read, nothing cached
