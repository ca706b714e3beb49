"""Initializer and task functions for test_share.py, in an importable module
so that `spawn` and `forkserver` workers can unpickle them by reference."""

from __future__ import annotations

import mmap
import os
from typing import Any, Dict

import numpy as np

from initret import _share

from initret.pool import _worker_init_calls


def make_state(rows: int) -> Dict[str, Any]:
    """A big read-only state: built once, in the parent, under shared=True."""
    return {
        "table": np.arange(rows, dtype=np.uint32),
        "pairs": [np.full((3, 4), 7, dtype=np.int64), ("label", 2.5)],
        "built_in": os.getpid(),
    }


def base_mmap(array: np.ndarray) -> Any:
    """The object at the end of ``array``'s base chain (through numpy's
    memoryview of the buffer): the ``mmap`` for a shared view."""
    base = array
    while isinstance(base, (np.ndarray, memoryview)):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return base


def segment_mapped(name: str) -> bool:
    """Whether this process maps /dev/shm/<name>."""
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        return any(line.rstrip().endswith("/dev/shm/" + name) for line in maps)


def inspect_state(i: int, initret: Dict[str, Any]) -> tuple:
    table = initret["table"]
    small = initret["pairs"][0]
    return (
        int(table[i]),
        os.getpid(),
        initret["built_in"],
        table.flags.writeable,
        small.flags.writeable,
        isinstance(base_mmap(table), mmap.mmap),
        initret["pairs"][1],
        _worker_init_calls(),
    )


def maps_segment(name: str, initret: Dict[str, Any]) -> bool:
    return segment_mapped(name)


def race_attach_or_create(digest: bytes, rows: int, start: Any, done: Any, results: Any) -> None:
    """One of several processes started together: create-or-attach the
    segment for ``digest``, report, and stay until every process reported."""
    from initret._share import attach_or_create

    start.wait()
    view, host_segment = attach_or_create(digest, lambda: np.arange(rows, dtype=np.uint32))
    results.put((host_segment.created, host_segment.name, int(view.sum(dtype=np.int64)), view.flags.writeable,
                 isinstance(base_mmap(view), mmap.mmap)))
    done.wait()


def use_pickled_dispatcher(d: Any, queries: np.ndarray) -> tuple:
    """In a worker: what the unpickled Dispatcher is and what it returns."""
    from initret import IndexOutOfRange

    try:
        d.popcount(np.array([0, d.rows], dtype=np.int64))
        bad = None
    except IndexOutOfRange as error:
        bad = (error.position, error.index, error.rows)
    return (d.counts_shared, d.rows, d.words_per_row, d.backend, d.threads,
            d.popcount(queries).tolist(), bad, os.getpid())


def segment_sent_on(d: Any) -> str:
    """In a worker: the segment a pickle of the Dispatcher it received sends."""
    _rebuild, (handle, *_rest) = _share._reduce_dispatcher(d)
    return handle[1]
