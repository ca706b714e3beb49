"""The exceptions: defined once in initret._errors, mapped from the Rust
library's error variants by variant and field, never by message text."""

import pickle

import numpy as np
import pytest

import initret
from initret import _errors


def test_every_exception_is_exported_once_from_its_definition():
    assert set(_errors.__all__) <= set(initret.__all__)
    for name in _errors.__all__:
        assert getattr(initret, name) is getattr(_errors, name)
    assert len(initret.__all__) == len(set(initret.__all__))


def test_fields_not_messages_make_the_exception():
    e = _errors.from_library("IndexOutOfRange", "ignored", position=3, index=-7, rows=10)
    assert type(e) is initret.IndexOutOfRange
    assert (e.position, e.index, e.rows) == (3, -7, 10)
    e = _errors.from_library("InvalidTable", "invalid table: the reason", reason="the reason")
    assert type(e) is initret.InvalidTable and str(e) == "the reason"
    e = _errors.from_library("GpuUnavailable", "GPU unavailable: r", reason="r", no_adapter=True)
    assert e.reason == "r" and e.hint == initret.APT_HINT
    e = _errors.from_library("GpuUnavailable", "GPU unavailable: r", reason="r", no_adapter=False)
    assert e.hint is None
    e = _errors.from_library("DeviceLost", "GPU device lost: x", reason="x")
    assert type(e) is initret.GpuError and e.kind == "DeviceLost"
    e = _errors.from_library("ConcurrentModification", "changed", position=5, now=1, rows=4)
    assert type(e) is initret.ConcurrentModification and e.position == 5
    assert type(_errors.from_library("OutputLength", "m", queries=1, output=2)) is ValueError
    # A variant this version of the package does not know: the base class.
    e = _errors.from_library("SomethingNew", "text")
    assert type(e) is initret.InitretError and e.kind == "SomethingNew" and str(e) == "text"


def test_library_errors_arrive_with_their_fields():
    d = initret.Dispatcher(np.arange(10, dtype=np.uint32), backend="cpu", threads=1)
    with pytest.raises(initret.IndexOutOfRange) as caught:
        d.popcount(np.array([1, 2, 10, 11], dtype=np.uint32))
    assert (caught.value.position, caught.value.index, caught.value.rows) == (2, 10, 10)
    # Crosses processes intact.
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.position, again.index, again.rows) == (2, 10, 10)
    with pytest.raises(initret.InvalidTable) as caught:
        initret.Dispatcher(np.zeros((0,), dtype=np.uint32))
    assert not str(caught.value).startswith("invalid table")
    with pytest.raises(ValueError, match="unknown backend"):
        initret.Dispatcher(np.arange(4, dtype=np.uint32), backend="tpu")
    with pytest.raises(initret.IsaUnavailable):
        initret.Dispatcher(np.arange(4, dtype=np.uint32), kernel="no-such-kernel")
