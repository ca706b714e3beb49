"""initret: the pool initializer's return value, done right, for Python.

The problem (from a well-known question about ``multiprocessing.Pool``):
every worker needs one large, read-only table, and every call reads it.
initret places the table once per worker and hands it to every call:

* :class:`Dispatcher` (compiled, Rust): popcount lookups into a table placed
  once on CPU SIMD worker threads or a GPU, called with numpy arrays. The
  GIL is released while the lookups run.
* :class:`Pool`: a drop-in for :class:`multiprocessing.pool.Pool` whose
  initializer's return value is passed to every call as ``initret=`` (the
  CPython proposal bpo-34837 / PR #9627).
* :mod:`initret.dask`: one :class:`Dispatcher` per Dask worker.
* :func:`share` and ``Pool(shared=True)``: big read-only state placed once
  per machine in shared memory, mapped read-only by every worker.

Example::

    >>> import numpy as np, initret
    >>> table = np.arange(2**16 - 1, dtype=np.uint32)     # row i holds i
    >>> d = initret.Dispatcher(table, backend="cpu")
    >>> int(d.popcount(np.arange(2**16 - 1)).sum())
    524272
"""

from __future__ import annotations

from typing import Optional

import numpy as _np

from . import _errors
from ._errors import *  # noqa: F403 (the exception classes: _errors.__all__)
from ._initret import SEED_CHECKSUM, SEED_ROWS, Dispatcher, __version__
from ._initret import _set_exception_factory

# The extension raises the classes of _errors.py through this factory: the
# package hands it over here, so the extension never imports Python code.
_set_exception_factory(_errors.from_library)
from ._initret import info as _info
from ._containers import SharedDict, SharedList, freeze, open_frozen
from .pool import Pool
from ._share import Shared, SharedMemoryUnavailable, SharedMemoryUntrusted, SharedStateLockTimeout, share

__all__ = [
    "Dispatcher",
    "Pool",
    "share",
    "SharedDict",
    "SharedList",
    "freeze",
    "open_frozen",
    "Shared",
    "SharedMemoryUnavailable",
    "SharedMemoryUntrusted",
    "SharedStateLockTimeout",
    "info",
    "seed_table",
    "SEED_ROWS",
    "SEED_CHECKSUM",
    "__version__",
]
# The exceptions and APT_HINT, named once, where they are defined.
__all__ += _errors.__all__


def info() -> dict:
    """What this machine offers initret, as a dict.

    Keys: ``version``, ``cpu_features`` (name -> bool), ``kernels`` (the CPU
    kernels this CPU can run, such as ``"avx512-loads"``; a dispatcher times
    them on its own table and keeps the fastest, see ``Dispatcher.kernel``),
    ``isa`` (the instruction set ``INITRET_FORCE_ISA`` names, or the widest
    detected), ``cpus``, ``gpu_adapters`` (a list of
    dicts with ``name``, ``backend``, ``device_type``, ``driver``,
    ``driver_info``, ``max_storage_buffer_binding_size``,
    ``max_buffer_size``, ``summary``).
    """
    return _info()


def seed_table(rows: Optional[int] = None) -> "_np.ndarray":
    """The seed problem's cache as a table: row ``i`` holds the bits of ``i``.

    ``seed_table()`` is ``{i: bin(i) for i in range(2**16 - 1)}`` as a
    ``uint32`` array of ``2**16 - 1`` rows; the popcounts of all its rows add
    up to ``SEED_CHECKSUM`` (524272).
    """
    n = SEED_ROWS if rows is None else int(rows)
    return _np.arange(n, dtype=_np.uint32)
