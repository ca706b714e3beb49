"""Task and initializer functions for test_pool.py, in an importable module
so that `spawn` workers can unpickle them by reference."""

from __future__ import annotations

import os
import uuid
from typing import Any, Dict, Optional

import numpy as np

import initret
from initret.pool import _worker_init_calls


def init_token(counter: Any) -> Dict[str, Any]:
    """Counts its runs in a shared Value and returns a token unique to this run."""
    with counter.get_lock():
        counter.value += 1
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
