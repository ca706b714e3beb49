"""Frozen dicts and lists: :class:`SharedDict`, :class:`SharedList` and
:func:`freeze`.

A frozen buffer (``freeze(obj) -> bytes``) holds a dict or a list and
everything nested in it in one block of bytes: a header, a hash index per
dict, entries in insertion order, and the str, bytes and array bytes. It is
read in place, so many processes can map one copy (``initret.share`` puts it
in shared memory) and each looks values up without unpickling anything.
The format is described in the Rust crate, ``initret::frozen``.

:class:`SharedDict` and :class:`SharedList` are compiled classes (so that
``d[k]`` runs no Python frame) registered here as
:class:`collections.abc.Mapping` and :class:`collections.abc.Sequence`.

What fits (anything else raises :class:`initret.NotFreezable`, a
``TypeError``):

* keys: ``int`` (64-bit signed; a wider int key is an error), ``bool``
  (kept as a bool, equal to ``0`` / ``1`` as in a dict), ``str``, ``bytes``.
  Subclasses of these are stored as the base type.
* values: ``None``, ``bool``, ``int`` (any size; past 64 bits stored as
  bytes), ``float`` (bit-exact: NaN payloads and ``-0.0`` kept), ``str``,
  ``bytes``, numpy arrays (any dtype whose ``dtype.str`` names it again: no
  object, structured or zero-size dtypes; read back as read-only zero-copy
  views), numpy bool, integer and float scalars (read back as Python
  ``bool`` / ``int`` / ``float``), and dicts and lists of those, nested up to
  256 deep. Dict subclasses are frozen as dicts (in their own iteration
  order), list subclasses as lists. Tuples and sets do not fit. A dict or
  list that appears twice is stored once (and read back as two equal views).

Lookups follow a dict's equality: ``d[1]``, ``d[1.0]`` and ``d[True]`` find
the same entry; ``d["1"]`` and ``d[b"1"]`` do not find it; any other key
(``1.5``, a tuple, an int past 64 bits) is simply absent, a ``KeyError``.
Numbers of other types (``numpy.int64(1)``, ``Fraction(1)``,
``Decimal(1)``) find the int they equal.
"""

from __future__ import annotations

import operator
import reprlib
from collections.abc import ItemsView, KeysView, Mapping, Sequence, ValuesView
from numbers import Integral, Real
from typing import Any, Optional, Tuple, Union

import numpy as np

from ._errors import NotFreezable
from ._initret import SharedDict, SharedIterator, SharedList, _set_container_helpers, freeze

__all__ = ["SharedDict", "SharedList", "freeze", "open_frozen"]

Mapping.register(SharedDict)
Sequence.register(SharedList)


def open_frozen(buffer: Any) -> Union[SharedDict, SharedList]:
    """The :class:`SharedDict` or :class:`SharedList` a frozen buffer holds
    at its root (``bytes``, a read-only ``uint8`` array, or any read-only
    buffer; validated first, kept alive, read in place)."""
    try:
        return SharedDict._open(buffer)
    except TypeError as error:
        if "holds a list" not in str(error):
            raise
        return SharedList._open(buffer)


class SharedKeysView(KeysView):
    """``SharedDict.keys()``."""

    __slots__ = ()


class SharedValuesView(ValuesView):
    """``SharedDict.values()``: iterates the values in place, in order."""

    __slots__ = ()

    def __iter__(self) -> Any:
        return self._mapping._iter_values()


class SharedItemsView(ItemsView):
    """``SharedDict.items()``: iterates the pairs in place, in order."""

    __slots__ = ()

    def __iter__(self) -> Any:
        return self._mapping._iter_items()


# --- helpers the compiled classes call -----------------------------------


def _integral_key(key: Any) -> Optional[int]:
    """The int a key of another numeric type equals, if any (a dict would
    find that int's entry): ``numpy.int64(3)``, ``Fraction(3)``, ``3.0`` as
    a numpy float..."""
    if isinstance(key, (str, bytes)):
        return None
    try:
        if isinstance(key, Integral) or hasattr(type(key), "__index__"):
            value = operator.index(key)
        elif isinstance(key, Real):
            as_float = float(key)
            if not as_float.is_integer():
                return None
            value = int(as_float)
        else:
            return None
        return value if value == key else None
    except (TypeError, ValueError, OverflowError, ArithmeticError):
        return None


def _big_int(data: bytes) -> int:
    return int.from_bytes(data, "little", signed=True)


def _big_int_bytes(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)


def _array_view(owner: Any, dtype: str, itemsize: int, shape: Tuple[int, ...], offset: int) -> np.ndarray:
    """A read-only view of an array value, without a copy."""
    dt = np.dtype(dtype)
    if dt.hasobject or dt.itemsize != itemsize:
        # A forged buffer: never let numpy read bytes as object pointers.
        raise ValueError(f"frozen array of dtype {dtype!r} with itemsize {itemsize} cannot be read")
    count = 1
    for extent in shape:
        count *= extent
    if count == 0:
        view = np.empty(shape, dtype=dt)
    else:
        view = np.frombuffer(owner, dtype=dt, count=count, offset=offset).reshape(shape)
    view.flags.writeable = False
    return view


def _array_equal(ours: np.ndarray, theirs: Any) -> bool:
    """Array values compare equal to an array of the same dtype, shape and
    values (NaN equal to NaN, as the object equals itself in a dict)."""
    if not isinstance(theirs, np.ndarray) or ours.shape != theirs.shape or ours.dtype != theirs.dtype:
        return False
    if ours.dtype.kind in "fc":
        return bool(np.array_equal(ours, theirs, equal_nan=True))
    return bool(np.array_equal(ours, theirs))


def _freeze_other(value: Any) -> Any:
    """For ``freeze``: a numpy array as ``(dtype.str, itemsize, shape, its
    bytes as a uint8 array)``; a numpy scalar as a Python bool, int or
    float; anything else raises :class:`NotFreezable`."""
    if isinstance(value, np.ndarray):
        dt = value.dtype
        if dt.hasobject or dt.itemsize == 0 or np.dtype(dt.str) != dt:
            raise NotFreezable(f"cannot freeze: an array of dtype {dt!r} (object, structured or zero-size)")
        contiguous = np.ascontiguousarray(value).reshape(-1)
        return dt.str, dt.itemsize, tuple(value.shape), contiguous.view(np.uint8)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating) and value.dtype.itemsize <= 8:
        return float(value)
    if isinstance(value, tuple):
        raise NotFreezable("cannot freeze: a tuple (freeze a list instead)")
    raise NotFreezable(f"cannot freeze: a value of type {type(value).__name__}")


class _Repr(reprlib.Repr):
    """Short reprs: a few entries per container, a few levels, short strings."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxdict = 8
        self.maxlist = 8
        self.maxstring = 40
        self.maxother = 60

    def repr_SharedDict(self, obj: Any, level: int) -> str:
        n = len(obj)
        if n == 0:
            return "SharedDict({})"
        if level <= 0:
            return f"SharedDict({{...}} ({n} entries))"
        shown = []
        for i, (key, value) in enumerate(obj.items()):
            if i >= self.maxdict:
                break
            shown.append(f"{self.repr1(key, level - 1)}: {self.repr1(value, level - 1)}")
        more = f", ... ({n} entries)" if n > self.maxdict else ""
        return "SharedDict({" + ", ".join(shown) + more + "})"

    def repr_SharedList(self, obj: Any, level: int) -> str:
        n = len(obj)
        if n == 0:
            return "SharedList([])"
        if level <= 0:
            return f"SharedList([...] ({n} items))"
        shown = [self.repr1(obj[i], level - 1) for i in range(min(n, self.maxlist))]
        more = f", ... ({n} items)" if n > self.maxlist else ""
        return "SharedList([" + ", ".join(shown) + more + "])"

    def repr_ndarray(self, obj: Any, level: int) -> str:
        return f"array(shape={obj.shape}, dtype={obj.dtype})"


_repr_instance = _Repr()


def _repr(obj: Any) -> str:
    return _repr_instance.repr(obj)


_set_container_helpers(
    {
        "Mapping": Mapping,
        "SharedKeysView": SharedKeysView,
        "SharedValuesView": SharedValuesView,
        "SharedItemsView": SharedItemsView,
        "_integral_key": _integral_key,
        "_big_int": _big_int,
        "_big_int_bytes": _big_int_bytes,
        "_array_view": _array_view,
        "_array_equal": _array_equal,
        "_freeze_other": _freeze_other,
        "_repr": _repr,
    }
)

# SharedIterator is internal; named here so the module lists what it wraps.
del SharedIterator
