"""initret past one machine: one :class:`~initret.Dispatcher` per Dask worker.

The initret pattern at cluster scale: the table travels to each worker once,
inside a :class:`distributed.WorkerPlugin`, whose ``setup`` (the
initializer) builds that worker's :class:`~initret.Dispatcher`; every task
then uses it. The three lines::

    client.register_plugin(initret.dask.DispatcherPlugin(table))
    counts = initret.dask.popcount(queries)        # queries: a dask array of row indices
    total = int(counts.sum().compute())

``DispatcherPlugin(table)`` places the *counts* once per host (``shared=True``,
the default): the first worker on a host derives them and copies them into a
shared memory segment named after the table's content; the other workers on that
host map the same segment read-only (create-or-attach under a file lock,
so workers that start together race safely), only ever trusting a
segment this user made for this table. Every worker's dispatcher
then reads the counts in place: a host holds one count table, whatever its
number of workers (python/BENCHMARKS-python.md has the measured memory).
Each worker still receives the table inside the plugin and drops it after
setup. ``shared=False`` gives each worker its own dispatcher and counts (a
private copy each worker may rely on alone); where memory cannot be shared
(no ``/dev/shm``, or it is full) each worker derives its own, with a
``RuntimeWarning``.

Needs the ``dask`` extra: ``pip install "./python[dask]"`` (dask[array] and
distributed).
"""

from __future__ import annotations

import os
import warnings
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
from ._share import (HostState, SharedMemoryUntrusted, SharedStateLockTimeout, attach_or_create, content_digest,
                     sweep)

__all__ = ["DispatcherPlugin", "StatePlugin", "get_dispatcher", "get_state", "popcount", "register",
           "DEFAULT_NAME"]

#: The plugin name :func:`popcount` and :func:`get_dispatcher` look for.
DEFAULT_NAME = "initret"


class _PerHostPlugin(WorkerPlugin):
    """What both plugins share: the per-host segment a worker uses, and the
    attributes (``_LOCAL``) that stay on the worker, never travelling with
    the plugin and cleared at teardown."""

    _LOCAL: tuple = ("_host_segment",)
    _host_segment: Any = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in self._LOCAL:
            state[key] = None
        return state

    def _release(self) -> None:
        host_segment, self._host_segment = self._host_segment, None
        if host_segment is not None:
            host_segment.release()

    def teardown(self, worker: Any) -> None:
        """Runs when the worker closes or the plugin is removed: stops using
        the segment (the last user unlinks it) and unlinks any segment of
        this user that no living process uses."""
        for key in self._LOCAL:
            if key != "_host_segment":
                setattr(self, key, None)
        self._release()
        sweep()


class DispatcherPlugin(_PerHostPlugin):
    """Builds one :class:`~initret.Dispatcher` on each Dask worker.

    ``DispatcherPlugin(table, backend="cpu", threads=0, name="initret",
    shared=True, lock_timeout=120.0)``

    The plugin (with the table) is sent to every worker, including workers
    that join later; its :meth:`setup` runs once per worker and builds the
    dispatcher there, after which the plugin drops its copy of the table.

    ``shared=True`` (the default): the counts are placed once per host in
    shared memory, and every worker's dispatcher reads them in place. The
    segment is named after the table's *content* (a digest of the table the
    worker received, keyed by a per-user secret kept in a private
    directory): registering again after the table changed places the new
    counts, and two registrations of one table share one segment. Only a
    segment this user made, mode 0600, with the expected secret in its
    header, is ever used (see :func:`initret.share`'s rules); anything else
    in its place raises :class:`~initret.SharedMemoryUntrusted`. The first
    worker on a host derives the counts under a per-table lock (others wait
    at most ``lock_timeout`` seconds, then raise
    :class:`~initret.SharedStateLockTimeout`) and the others map them.
    Every worker using the segment holds a shared lock on it; the last one
    to tear down (``unregister_worker_plugin``, ``cluster.close()``)
    unlinks it. A worker that dies, even by ``SIGKILL``, simply stops
    counting, so a restarted worker attaches to the same segment rather
    than placing a second, and a dead creator's segment goes with the last
    worker using it.

    ``shared=False``: each worker builds from its own copy. Register it with
    ``client.register_plugin(plugin)`` or :func:`register`.

    Attributes on the worker's copy: ``dispatcher``, ``builds`` (how many
    times ``setup`` built one: 1), ``pid``, ``segment`` (the shared memory
    segment's name, ``""`` when not shared) and ``created_segment``
    (whether this worker created it).
    """

    # The dispatcher (threads, GPU device) never travels; the table does.
    _LOCAL = ("dispatcher", "_host_segment")

    def __init__(self, table: Any, backend: str = "cpu", threads: int = 0, name: str = DEFAULT_NAME,
                 shared: bool = True, lock_timeout: float = 120.0) -> None:
        self.table: Optional[np.ndarray] = np.ascontiguousarray(table)
        self.backend = backend
        self.threads = threads
        self.name = name
        self.shared = shared
        self.lock_timeout = float(lock_timeout)
        self.dispatcher: Optional[Dispatcher] = None
        self.builds = 0
        self.pid: Optional[int] = None
        self.segment = ""
        self.created_segment = False
        self._host_segment: Any = None


    def setup(self, worker: Any) -> None:
        """Runs on the worker when the plugin arrives: builds its dispatcher."""
        if self.table is None:
            raise RuntimeError("this DispatcherPlugin was already set up; register a new one")
        table, self.table = self.table, None
        self.dispatcher = None
        if self.shared:
            self.dispatcher = self._attach_shared_counts(table)
        if self.dispatcher is None:
            self.dispatcher = Dispatcher(table, backend=self.backend, threads=self.threads)
        self.builds += 1
        self.pid = os.getpid()

    def _attach_shared_counts(self, table: np.ndarray) -> Optional[Dispatcher]:
        """The dispatcher over this host's shared counts (derived here if
        this worker is the host's first), or ``None`` where memory cannot
        be shared (each worker then builds its own, with a warning)."""
        def derive() -> np.ndarray:
            counts, width = Dispatcher(table, backend="cpu", threads=1)._counts()
            # Typed by width, so that attaching workers learn it too.
            return counts.view(np.dtype(f"<u{width}"))

        digest = content_digest(table, "initret.dask counts")
        try:
            counts, self._host_segment = attach_or_create(digest, derive, lock_timeout=self.lock_timeout)
        except (SharedMemoryUntrusted, SharedStateLockTimeout):
            raise  # never a silent fallback past another user's file or a stuck lock
        except OSError as error:  # e.g. /dev/shm too small: this worker's own counts
            warnings.warn(f"initret: counts not shared on this host, each worker derives its own: {error}",
                          RuntimeWarning, stacklevel=1)
            return None
        self.segment = self._host_segment.name
        self.created_segment = self._host_segment.created
        words = 1 if table.ndim == 1 else int(table.shape[1])
        try:
            return Dispatcher._from_counts(counts.view(np.uint8), int(table.shape[0]), counts.itemsize, words,
                                           self.backend, self.threads, "per-domain")
        except BaseException:
            self._release()
            raise


class StatePlugin(_PerHostPlugin):
    """Any read-only state placed once per host for every Dask worker: the
    initret pattern for state that is not a Dispatcher's table.

    ``StatePlugin(state, name="initret-state", lock_timeout=120.0)``;
    a task calls :func:`get_state` (with the same name) to get it::

        client.register_plugin(initret.dask.StatePlugin({"cache": cache, "table": table}), name="seed")

        def task(i):
            state = initret.dask.get_state("seed")
            return state["cache"][i].count("1")

    ``state`` is pickled once, where the plugin is made, with each numpy
    array and each large dict or list whose contents fit taken out (see
    :func:`initret.share`); the plugin carries that template, those arrays
    and a digest of both. On each host the first worker to set it up
    copies them into a shared memory segment named after the digest (keyed
    by a per-user secret); the others map it. Each worker's state is the
    template unpickled around read-only views of that segment (numpy
    arrays, :class:`initret.SharedDict`, :class:`initret.SharedList`):
    one copy per host, whatever the number of workers. The same rules as
    :class:`DispatcherPlugin`: only a segment this user made, for this
    content, is used; the last worker using it unlinks it.
    """

    _LOCAL = ("state", "_host_segment")

    def __init__(self, state: Any, name: str = "initret-state", lock_timeout: float = 120.0) -> None:
        self.host_state: Optional[HostState] = HostState(state)
        self.name = name
        self.lock_timeout = float(lock_timeout)
        self.state: Any = None
        self.segment = ""
        self.created_segment = False
        self._host_segment: Any = None

    def setup(self, worker: Any) -> None:
        """Runs on the worker when the plugin arrives: attaches the host's
        segment (creating it if this worker is the host's first)."""
        if self.host_state is None:
            raise RuntimeError("this StatePlugin was already set up; register a new one")
        host_state, self.host_state = self.host_state, None
        self.state, self._host_segment = host_state.attach_or_create(self.lock_timeout)
        self.segment = self._host_segment.name
        self.created_segment = self._host_segment.created


def get_state(name: str = "initret-state") -> Any:
    """The state the :class:`StatePlugin` called ``name`` placed on this
    worker's host. Call it inside a task; ``RuntimeError`` outside a worker
    or when no such plugin is registered."""
    try:
        worker = get_worker()
    except ValueError as error:
        raise RuntimeError("initret.dask.get_state() must run inside a Dask task") from error
    plugin = worker.plugins.get(name)
    if not isinstance(plugin, StatePlugin) or plugin.state is None:
        raise RuntimeError(
            f"no initret state named {name!r} on worker {worker.address}; register one first: "
            "client.register_plugin(initret.dask.StatePlugin(state), name=...)"
        )
    return plugin.state


def register(client: Any, table: Any, backend: str = "cpu", threads: int = 0,
             name: str = DEFAULT_NAME, shared: bool = True, lock_timeout: float = 120.0) -> DispatcherPlugin:
    """Registers a :class:`DispatcherPlugin` for ``table`` on every worker of
    ``client`` (and on workers that join later); returns the plugin."""
    plugin = DispatcherPlugin(table, backend=backend, threads=threads, name=name, shared=shared,
                              lock_timeout=lock_timeout)
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
        return dispatcher.popcount(block, dtype=np.uint32)
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
