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

        reason: why (no adapter, the adapter refused a request, the table is
            larger than the adapter's binding limit, ...).
        hint: how to get a software Vulkan adapter on Debian or Ubuntu.
    """

    def __init__(self, reason: str, kind: Optional[str] = "GpuUnavailable") -> None:
        super().__init__(f"GPU unavailable: {reason}; {APT_HINT}", kind)
        self.reason = reason
        self.hint = APT_HINT

    def __reduce__(self) -> Any:
        return (type(self), (self.reason, self.kind))


class GpuError(InitretError, RuntimeError):
    """A GPU operation failed after the device was opened: the device was
    lost, a wait timed out, or wgpu reported a validation or out-of-memory
    error. ``kind`` names which."""


class IsaUnavailable(InitretError, ValueError):
    """``INITRET_FORCE_ISA`` names a CPU kernel that is unknown or that this
    CPU cannot run; initret refuses rather than running another one."""

    def __init__(self, message: str, kind: Optional[str] = "IsaUnavailable") -> None:
        super().__init__(message, kind)
