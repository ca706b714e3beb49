"""Task and initializer functions for test_pool.py, in an importable module
so that `spawn` workers can unpickle them by reference."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import weakref
from typing import Any, Dict, Optional

import numpy as np

import initret
from initret.pool import _worker_init_calls


class RunCounter:
    """Counts initializer runs across processes without a lock.

    Each run creates one file in a directory. A `multiprocessing.Value` needs
    its lock held for `+= 1`, and a worker that a pool terminates inside the
    initializer would hold that lock forever, hanging every later reader and
    every later pool sharing the counter. Creating a file is atomic and holds
    nothing. Pickles by path, so it works under fork, spawn and forkserver.
    """

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="initret-runs-")
        # Only the creating process removes the directory (unpickled copies
        # in workers do not run __init__).
        weakref.finalize(self, shutil.rmtree, self.path, True)

    def __getstate__(self) -> Dict[str, str]:
        return {"path": self.path}

    def __setstate__(self, state: Dict[str, str]) -> None:
        self.path = state["path"]

    def record(self) -> None:
        name = f"{os.getpid()}-{uuid.uuid4().hex}"
        with open(os.path.join(self.path, name), "x"):
            pass

    @property
    def value(self) -> int:
        return len(os.listdir(self.path))


def init_token(counter: RunCounter) -> Dict[str, Any]:
    """Counts its runs in `counter` and returns a token unique to this run."""
    counter.record()
    return {"pid": os.getpid(), "token": uuid.uuid4().hex}


def report(x: int, initret: Dict[str, Any]) -> tuple:
    return (x, os.getpid(), initret["pid"], initret["token"], _worker_init_calls())


def report2(x: int, y: int, initret: Dict[str, Any]) -> tuple:
    return (x + y, os.getpid(), initret["pid"], initret["token"], _worker_init_calls())


def report_kwonly(x: int, *, initret: Optional[Dict[str, Any]] = None, scale: int = 1) -> tuple:
    return (x * scale, os.getpid(), initret["pid"], initret["token"], _worker_init_calls())


def square(x: int) -> int:
    return x * x


def takes_kwargs(x: int, **kwargs: Any) -> tuple:
    return (x, sorted(kwargs))


def has_initret_default(x: int, initret: Any = "default") -> Any:
    return initret


def fails(x: int, initret: Any) -> int:
    if x == 3:
        raise ValueError(f"task {x} failed")
    return x


def returns_answer() -> int:
    return 42


# The initret pattern with a Dispatcher: built once per worker process.

def build_dispatcher(table: np.ndarray) -> initret.Dispatcher:
    return initret.Dispatcher(table, backend="cpu", threads=1)


def popcount_chunk(queries: np.ndarray, initret: initret.Dispatcher) -> int:
    return int(initret.popcount(queries).sum())


PARENT_DISPATCHER: Optional[initret.Dispatcher] = None


def inherited_popcount(n: int) -> int:
    assert PARENT_DISPATCHER is not None
    return int(PARENT_DISPATCHER.popcount(np.arange(n)).sum())


def lookup(i: int, initret: Any) -> Any:
    """``initret[i]``: which table a call got."""
    return initret[i]


def returns_word(word: str) -> str:
    return word


class Holder:
    """A task function bound to an instance, as a bound method."""

    def __init__(self) -> None:
        self.payload = bytearray(1 << 16)

    def method(self, x: int, initret: Any = None) -> int:
        return x + 1
