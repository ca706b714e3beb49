"""The exceptions initret raises.

Each is a subclass of the built-in exception a Python user would catch for
that kind of mistake (``IndexError``, ``ValueError``, ``RuntimeError``) and
of :class:`InitretError`, and each pickles with its attributes, so it
crosses process boundaries (``initret.Pool``, Dask workers) intact.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "InitretError",
    "IndexOutOfRange",
    "InvalidTable",
    "GpuUnavailable",
    "GpuError",
    "IsaUnavailable",
    "ConcurrentModification",
    "OutputTooNarrow",
    "NotFreezable",
    "CorruptBuffer",
    "APT_HINT",
]

#: How to get a software Vulkan adapter (lavapipe) on Debian or Ubuntu.
APT_HINT = (
    "for a software Vulkan adapter on Debian or Ubuntu: "
    "sudo apt-get install mesa-vulkan-drivers (wgpu then finds the llvmpipe adapter)"
)


class InitretError(Exception):
    """Base class of every initret error.

    ``kind`` names the Rust error variant for errors without a more
    specific class (for example ``"ThreadSpawn"``).
    """

    def __init__(self, message: str = "", kind: Optional[str] = None) -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.kind))


class IndexOutOfRange(InitretError, IndexError):
    """A query names a row the table does not have.

    Attributes:
        position: the first offending position in the (flattened, C-order)
            query batch.
        index: the bad value found there (negative, ``>= rows``, or past
            ``2**32 - 1``), as a Python int.
        rows: the number of rows; valid queries are ``0 .. rows - 1``.
    """

    def __init__(self, position: int, index: int, rows: int) -> None:
        message = (
            f"query at position {position} has index {index}, "
            f"but the table has {rows} rows"
        )
        super().__init__(message, "IndexOutOfRange")
        self.position = int(position)
        self.index = int(index)
        self.rows = int(rows)

    def __reduce__(self) -> Any:
        return (type(self), (self.position, self.index, self.rows))


class InvalidTable(InitretError, ValueError):
    """The table cannot be used: zero rows, zero words per row, more than
    two dimensions, or values that do not fit in 32 unsigned bits."""

    def __init__(self, message: str = "invalid table", kind: Optional[str] = "InvalidTable") -> None:
        super().__init__(message, kind)


class GpuUnavailable(InitretError, RuntimeError):
    """``backend="gpu"`` was asked for but no GPU can be used.

    initret never falls back to the CPU silently. Attributes:

        reason: why (no adapter, ``INITRET_ADAPTER`` matches none, the
            adapter refused a request, the table is larger than the
            adapter's binding limit, ...).
        hint: how to get a software Vulkan adapter on Debian or Ubuntu
            (:data:`APT_HINT`) when wgpu found no adapter at all; ``None``
            otherwise.
    """

    def __init__(
        self, reason: str, kind: Optional[str] = "GpuUnavailable", hint: Optional[str] = None
    ) -> None:
        message = f"GPU unavailable: {reason}" + (f"; {hint}" if hint else "")
        super().__init__(message, kind)
        self.reason = reason
        self.hint = hint

    def __reduce__(self) -> Any:
        return (type(self), (self.reason, self.kind, self.hint))


class GpuError(InitretError, RuntimeError):
    """A GPU operation failed after the device was opened: the device was
    lost, a wait timed out, or wgpu reported a validation or out-of-memory
    error. ``kind`` names which."""


class IsaUnavailable(InitretError, ValueError):
    """``INITRET_FORCE_ISA`` names a CPU kernel that is unknown or that this
    CPU cannot run; initret refuses rather than running another one."""

    def __init__(self, message: str, kind: Optional[str] = "IsaUnavailable") -> None:
        super().__init__(message, kind)


class ConcurrentModification(InitretError, RuntimeError):
    """The queries changed while a call was reading them: another thread
    wrote to the query array during the call.

    A check found an out-of-range index that was gone when the call looked
    again, so no count of the call can be trusted and none is returned
    (``out``, if given, may be partly written). Repeat the call with a
    query array no other thread writes to. ``position`` is the query
    position concerned, or ``None`` when only its chunk is known.
    """

    def __init__(
        self, message: str, position: Optional[int] = None, kind: Optional[str] = "ConcurrentModification"
    ) -> None:
        super().__init__(message, kind)
        self.position = None if position is None else int(position)

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.position, self.kind))


class OutputTooNarrow(InitretError, ValueError):
    """The results were asked for in an unsigned type narrower than the
    table's counts (``out=`` or ``dtype=`` of ``uint8`` for a table whose
    largest row count needs ``uint16``). Nothing was written.

    A dispatcher's natural result type, what ``popcount`` returns by
    default, is the smallest of ``uint8``, ``uint16`` and ``uint32`` that
    holds the table's largest row count (``Dispatcher.result_dtype``).

    Attributes:
        output_bytes: bytes of one result asked for (1, 2 or 4).
        count_bytes: bytes the table's counts need (1, 2 or 4).
    """

    def __init__(self, output_bytes: int, count_bytes: int) -> None:
        message = (
            f"results of dtype uint{8 * int(output_bytes)} cannot hold this table's "
            f"counts, which need uint{8 * int(count_bytes)} (the dispatcher's result_dtype); "
            f"pass an out= or dtype= at least that wide"
        )
        super().__init__(message, "OutputTooNarrow")
        self.output_bytes = int(output_bytes)
        self.count_bytes = int(count_bytes)

    def __reduce__(self) -> Any:
        return (type(self), (self.output_bytes, self.count_bytes))


class NotFreezable(InitretError, TypeError):
    """``initret.freeze`` (or ``SharedDict(...)`` / ``SharedList(...)``)
    met contents a frozen container cannot hold: a key that is not an
    int, str or bytes, an int key past 64 signed bits, a value of another
    type (a tuple, a set, an object array, ...), a cycle, nesting deeper
    than 256, a str with lone surrogates."""

    def __init__(self, message: str, kind: Optional[str] = "NotFreezable") -> None:
        super().__init__(message, kind)


class CorruptBuffer(InitretError, ValueError):
    """A buffer given to ``SharedDict._open`` / ``SharedList._open`` is not
    a valid frozen container (truncated, another format, or an offset,
    length or string that does not check out). Nothing was read from it."""

    def __init__(self, message: str, kind: Optional[str] = "FrozenCorrupt") -> None:
        super().__init__(message, kind)


#: The class for each error variant of the Rust library that has a class of
#: its own or shares one; every other variant becomes :class:`InitretError`
#: with ``kind`` set to the variant's name.
_GPU_FAILURES = ("DeviceLost", "GpuTimeout", "Gpu", "ForeignGpuValue", "CountsIncomplete")
_VALUE_ERRORS = ("OutputLength", "InvalidConfig")


def from_library(variant: str, message: str, **fields: Any) -> Exception:
    """The exception for an error of the Rust library (used by the compiled
    module): ``variant`` is the Rust variant's name, ``message`` its text,
    ``fields`` its fields (``position``, ``index``, ``rows``, ``reason``,
    ...), so no message is ever parsed."""
    if variant == "IndexOutOfRange":
        return IndexOutOfRange(fields["position"], fields["index"], fields["rows"])
    if variant == "InvalidTable":
        return InvalidTable(fields.get("reason", message))
    if variant == "GpuUnavailable":
        hint = APT_HINT if fields.get("no_adapter") else None
        return GpuUnavailable(fields.get("reason", message), hint=hint)
    if variant == "IsaUnavailable":
        return IsaUnavailable(message)
    if variant == "OutputTooNarrow":
        return OutputTooNarrow(fields["output_bytes"], fields["count_bytes"])
    if variant == "ConcurrentModification":
        return ConcurrentModification(message, fields.get("position"))
    if variant == "NotFreezable":
        return NotFreezable(message)
    if variant == "FrozenCorrupt":
        return CorruptBuffer(message)
    if variant in _GPU_FAILURES:
        return GpuError(message, variant)
    if variant in _VALUE_ERRORS:
        return ValueError(message)
    return InitretError(message, variant)
