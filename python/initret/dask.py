"""initret past one machine: one :class:`~initret.Dispatcher` per Dask worker.

The initret pattern at cluster scale: the table travels to each worker once,
inside a :class:`distributed.WorkerPlugin`, whose ``setup`` (the
initializer) builds that worker's :class:`~initret.Dispatcher`; every task
then uses it. The three lines::

    client.register_plugin(initret.dask.DispatcherPlugin(table))
    counts = initret.dask.popcount(queries)        # queries: a dask array of row indices
    total = int(counts.sum().compute())

Needs the ``dask`` extra: ``pip install "./python[dask]"`` (dask[array] and
distributed).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

try:
    import dask.array as da
    from distributed import WorkerPlugin, get_worker
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "initret.dask needs dask and distributed: pip install 'initret[dask]' "
        "(from a checkout: pip install './python[dask]')"
    ) from error

from . import Dispatcher, IndexOutOfRange

__all__ = ["DispatcherPlugin", "get_dispatcher", "popcount", "register", "DEFAULT_NAME"]

#: The plugin name :func:`popcount` and :func:`get_dispatcher` look for.
DEFAULT_NAME = "initret"


class DispatcherPlugin(WorkerPlugin):
    """Builds one :class:`~initret.Dispatcher` on each Dask worker.

    ``DispatcherPlugin(table, backend="cpu", threads=0, name="initret")``

    The plugin (with the table) is sent to every worker, including workers
    that join later; its :meth:`setup` runs once per worker and builds the
    dispatcher there, after which the plugin drops its copy of the table
    (the dispatcher holds its own). Register it with
    ``client.register_plugin(plugin)`` or :func:`register`.

    Attributes on the worker's copy: ``dispatcher``, ``builds`` (how many
    times ``setup`` built one: 1), ``pid``.
    """

    def __init__(self, table: Any, backend: str = "cpu", threads: int = 0, name: str = DEFAULT_NAME) -> None:
        self.table: Optional[np.ndarray] = np.ascontiguousarray(table)
        self.backend = backend
        self.threads = threads
        self.name = name
        self.dispatcher: Optional[Dispatcher] = None
        self.builds = 0
        self.pid: Optional[int] = None

    def __getstate__(self) -> dict:
        # The dispatcher (threads, GPU device) never travels; the table does.
        state = self.__dict__.copy()
        state["dispatcher"] = None
        return state

    def setup(self, worker: Any) -> None:
        """Runs on the worker when the plugin arrives: builds its dispatcher."""
        if self.table is None:
            raise RuntimeError("this DispatcherPlugin was already set up; register a new one")
        self.dispatcher = Dispatcher(self.table, backend=self.backend, threads=self.threads)
        self.builds += 1
        self.pid = os.getpid()
        self.table = None

    def teardown(self, worker: Any) -> None:
        """Runs when the worker closes or the plugin is removed."""
        self.dispatcher = None


def register(client: Any, table: Any, backend: str = "cpu", threads: int = 0,
             name: str = DEFAULT_NAME) -> DispatcherPlugin:
    """Registers a :class:`DispatcherPlugin` for ``table`` on every worker of
    ``client`` (and on workers that join later); returns the plugin."""
    plugin = DispatcherPlugin(table, backend=backend, threads=threads, name=name)
    if hasattr(client, "register_plugin"):
        client.register_plugin(plugin, name=name)
    else:  # distributed < 2023.9.2
        client.register_worker_plugin(plugin, name=name)
    return plugin


def get_dispatcher(name: str = DEFAULT_NAME) -> Dispatcher:
    """The dispatcher the plugin called ``name`` built on this worker.

    Call it inside a task. Raises ``RuntimeError`` outside a worker or when
    no such plugin is registered.
    """
    try:
        worker = get_worker()
    except ValueError as error:
        raise RuntimeError("initret.dask.get_dispatcher() must run inside a Dask task") from error
    plugin = worker.plugins.get(name)
    dispatcher = getattr(plugin, "dispatcher", None)
    if dispatcher is None:
        raise RuntimeError(
            f"no initret dispatcher named {name!r} on worker {worker.address}; "
            "register one first: client.register_plugin(initret.dask.DispatcherPlugin(table))"
        )
    return dispatcher


def _popcount_block(block: np.ndarray, name: str, block_info: Optional[dict] = None) -> np.ndarray:
    """One block of :func:`popcount`, on a worker, through its dispatcher.
    A bad query's position is reported in the whole array (flat, C order)."""
    dispatcher = get_dispatcher(name)
    try:
        return dispatcher.popcount(block)
    except IndexOutOfRange as error:
        if not block_info or block.ndim == 0:
            raise
        location = block_info[0]["array-location"]
        shape = block_info[0]["shape"]
        local = np.unravel_index(error.position, block.shape)
        whole = tuple(int(i) + start for i, (start, _) in zip(local, location))
        position = int(np.ravel_multi_index(whole, shape))
        raise IndexOutOfRange(position, error.index, error.rows) from None


def popcount(queries: Any, name: str = DEFAULT_NAME) -> "da.Array":
    """``popcount`` mapped over a Dask array of queries, block by block.

    Each block runs on a worker through the dispatcher its
    :class:`DispatcherPlugin` built (the table is never sent with the
    tasks). Returns a lazy ``uint32`` Dask array of the queries' shape and
    chunks. An out-of-range query raises :class:`~initret.IndexOutOfRange`
    (at ``compute()``) naming its position in the whole array.
    """
    array = da.asarray(queries)
    meta = np.empty((0,) * array.ndim, dtype=np.uint32)
    return array.map_blocks(_popcount_block, name, dtype=np.uint32, meta=meta)
