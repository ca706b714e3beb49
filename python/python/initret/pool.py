"""``initret.Pool``: :class:`multiprocessing.pool.Pool` whose initializer's
return value reaches every call.

This is the CPython proposal bpo-34837 (PR #9627, ``expect_initret``), as a
drop-in subclass: replace ``from multiprocessing import Pool`` with
``from initret import Pool`` and the seed problem's third recipe runs::

    def func(i, initret):
        cache = initret
        return cache[i].count("1")

    def identity(cache):
        return cache

    with Pool(8, initializer=identity, initargs=(cache,)) as pool:
        counts = pool.map(func, range(2**16 - 1))

The initializer runs exactly once in each worker process (as with the
standard library); its return value is kept in that process and passed to
``func`` as the keyword argument ``initret`` on every call, by ``map``,
``map_async``, ``imap``, ``imap_unordered``, ``starmap``, ``starmap_async``,
``apply`` and ``apply_async``, under every start method (``fork``,
``spawn``, ``forkserver``).

Whether ``initret=`` is passed is decided by ``expect_initret``:

* ``None`` (the default, "auto"): passed to a function whose signature has a
  parameter named ``initret`` (positional-or-keyword or keyword-only), and
  not passed otherwise. So the seed's other two recipes run unchanged too:
  ``functools.partial(func, cache=cache)`` and the global-initializer
  recipe's ``func(i)`` have no ``initret`` parameter and are called exactly
  as :mod:`multiprocessing` calls them, whatever their initializer returns.
  A callable whose signature cannot be inspected (some builtins) is not
  passed ``initret``. The check is made once per call of ``map`` (and
  friends), in the parent, and cached per function for as long as the
  function lives (the cache holds it weakly, so it keeps no task function,
  partial, bound method or closure alive).
* A :func:`functools.partial` that already binds ``initret=`` keeps its
  value, whatever ``expect_initret`` says, as :mod:`multiprocessing` would
  call it.
* ``True``: always passed (as in the CPython PR), ``None`` when there is no
  initializer. ``func`` must accept it.
* ``False``: never passed: exactly :class:`multiprocessing.pool.Pool`.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import multiprocessing.pool
import weakref
from typing import Any, Callable, Iterable, Iterator, List, Optional

__all__ = ["Pool", "current_initret", "accepts_initret"]

#: The initializer's return value in this worker process (``None`` outside
#: workers, or before the initializer ran).
_initret: Any = None
#: How many times the initializer ran in this process (1 in every worker).
_init_calls: int = 0


def current_initret() -> Any:
    """The initializer's return value in the current worker process.

    For code that runs inside a task but is not the task function itself.
    ``None`` outside an :class:`initret.Pool` worker.
    """
    return _initret


def _run_initializer(initializer: Optional[Callable[..., Any]], initargs: tuple) -> None:
    """Runs in each worker process, once, when it starts: calls the user's
    initializer and keeps its return value for every later call."""
    global _initret, _init_calls
    _init_calls += 1
    _initret = initializer(*initargs) if initializer is not None else None


def _worker_init_calls() -> int:
    """How many times the initializer ran in this worker (for tests)."""
    return _init_calls


def _raise_unavailable(*_args: Any, **_kwds: Any) -> Any:
    """A task in a ``Pool(shared=True)`` worker that could not attach the
    shared state: raises why, so the caller's ``map`` ends with that error
    (raising in the initializer instead would kill the worker, and the pool
    would start another, forever)."""
    raise _initret.error.with_traceback(None)


def _unavailable() -> bool:
    from ._share import Unavailable

    return type(_initret) is Unavailable


def _bind_initret(func: Callable[..., Any], pass_initret: bool = True) -> Callable[..., Any]:
    """Runs in the worker when a task arrives (its initializer has run by
    then): ``func`` with this worker's ``initret`` bound as a keyword, as a
    C-level :func:`functools.partial`, so each call costs next to nothing.
    (Never raises here: an error while a worker unpickles a task ends the
    worker and loses the task.)"""
    if _unavailable():
        return _raise_unavailable
    return functools.partial(func, initret=_initret) if pass_initret else func


class _WithInitret:
    """``func`` with ``initret=<this worker's initializer return value>``
    added to every call (``pass_initret=False``: called as it is, only
    checked, for ``Pool(shared=True)``).

    It travels to the workers as a reference to ``func`` and is rebuilt
    there, on arrival, by :func:`_bind_initret`.
    """

    def __init__(self, func: Callable[..., Any], pass_initret: bool = True) -> None:
        self.func = func
        self.pass_initret = pass_initret

    def __call__(self, *args: Any, **kwds: Any) -> Any:
        if self.pass_initret:
            return self.func(*args, initret=_initret, **kwds)
        return self.func(*args, **kwds)

    def __reduce__(self) -> Any:
        return (_bind_initret, (self.func, self.pass_initret))

    def __repr__(self) -> str:
        return f"<{self.func!r} with initret>" if self.pass_initret else repr(self.func)


def _binds_initret(func: Callable[..., Any]) -> bool:
    """Whether ``func`` is a :func:`functools.partial` that already binds
    ``initret=``: the caller chose the value, so it is not overridden."""
    return isinstance(func, functools.partial) and "initret" in (func.keywords or {})


def _signature_accepts_initret(func: Callable[..., Any]) -> bool:
    if _binds_initret(func):
        return False
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    parameter = parameters.get("initret")
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


#: The answers of :func:`_signature_accepts_initret`, keyed weakly by the
#: callable: an entry goes when its function, partial or bound method dies,
#: so the cache never keeps a task function (or what it closes over or is
#: bound to) alive.
_accepts_cache: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def accepts_initret(func: Callable[..., Any]) -> bool:
    """Whether ``func`` has a parameter named ``initret`` (positional-or-
    keyword or keyword-only) that is not already bound by a
    :func:`functools.partial`: the ``expect_initret=None`` ("auto") rule."""
    try:
        return _accepts_cache[func]
    except (KeyError, TypeError):  # not seen yet; or unhashable, or no weakrefs
        pass
    answer = _signature_accepts_initret(func)
    try:
        _accepts_cache[func] = answer
    except TypeError:
        pass
    return answer


class Pool(multiprocessing.pool.Pool):
    """A process pool whose initializer's return value is handed to every call.

    ``Pool(processes=None, initializer=None, initargs=(),
    maxtasksperchild=None, context=None, *, expect_initret=None)``

    All arguments but ``expect_initret`` mean what they mean for
    :class:`multiprocessing.pool.Pool`. ``expect_initret`` chooses whether
    task functions get ``initret=``: ``None`` (default) when the function
    has an ``initret`` parameter, ``True`` always, ``False`` never. See the
    module documentation.

    ``shared=False`` (default): the initializer runs in every worker, and
    each worker owns its return value (choose it when workers must own or
    mutate their state). ``shared=True``: the initializer runs once, here,
    in the parent; its return value goes through :func:`initret.share`,
    and every worker receives it as ``initret``, each numpy array a
    read-only view of one shared memory segment and each large dict or
    list a read-only :class:`initret.SharedDict` or
    :class:`initret.SharedList` over it, mapped, not copied (choose it
    when the state is big and read-only). An initializer that returns
    ``None`` works by side effects (the seed's recipe 2 sets a global):
    then its *initargs* are shared, and it runs again in each worker over
    them. Every worker maps
    the same snapshot, under ``fork``, ``spawn`` and ``forkserver`` alike.
    The segment is released by ``terminate()`` (the end of a ``with``
    block) or ``join()``. If it cannot be attached (someone removed it from
    ``/dev/shm``), calls raise :class:`initret.SharedMemoryUnavailable`
    instead of running; the pool never restarts failing workers forever.
    """

    def __init__(
        self,
        processes: Optional[int] = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: Optional[int] = None,
        context: Any = None,
        *,
        expect_initret: Optional[bool] = None,
        shared: bool = False,
    ) -> None:
        # Set before anything can raise, as the standard library does, so
        # that Pool.__del__ finds it on a half-built pool.
        self._state = getattr(multiprocessing.pool, "INIT", "INIT")
        self._pool: List[Any] = []
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if expect_initret not in (None, True, False):
            raise TypeError("expect_initret must be None, True or False")
        self._expect_initret = expect_initret
        self._shared = None
        if shared:  # the initializer runs here, once; workers map its result
            from ._share import pool_initializer

            self._shared, initializer, initargs = pool_initializer(initializer, tuple(initargs))
        super().__init__(
            processes,
            _run_initializer,
            (initializer, tuple(initargs)),
            maxtasksperchild,
            context,
        )

    def terminate(self) -> None:
        super().terminate()
        if getattr(self, "_shared", None) is not None:
            self._shared.unlink()  # shared=True: no worker will attach again

    def join(self) -> None:
        super().join()
        if getattr(self, "_shared", None) is not None:
            self._shared.unlink()

    @property
    def expect_initret(self) -> Optional[bool]:
        """``None`` (auto), ``True`` or ``False``: see the class documentation."""
        return self._expect_initret

    def _wants_initret(self, func: Callable[..., Any]) -> bool:
        expect = self._expect_initret
        if expect is None:
            return accepts_initret(func)
        # A partial that binds initret= keeps its value, whatever expect says.
        return expect and not _binds_initret(func)

    def _check_shared(self) -> None:
        """``shared=True``: a clear error here, at once, when the segment can
        no longer be attached (released, or removed from outside)."""
        shared = getattr(self, "_shared", None)
        if shared is not None:
            shared.check_attachable()

    def _wrap(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if isinstance(func, _WithInitret):
            return func
        if self._wants_initret(func):
            return _WithInitret(func)
        # shared=True: every task checks that its worker attached the state.
        return _WithInitret(func, pass_initret=False) if self._shared is not None else func

    def _map_with(self, func, iterable, star, chunksize, callback=None, error_callback=None):
        """``map_async``/``starmap_async``: chunks run by a mapper that passes
        ``initret=`` itself (a plain keyword call per item, no wrapper), or
        the standard library's mapper when ``func`` does not want it."""
        self._check_shared()
        if isinstance(func, _WithInitret):
            func = func.func
        wants = self._wants_initret(func)
        if (wants or self._shared is not None) and _HAS_MAP_ASYNC:
            if wants:
                mapper = _starmapstar_initret if star else _mapstar_initret
            else:
                mapper = _starmapstar_checked if star else _mapstar_checked
            return self._map_async(func, iterable, mapper, chunksize, callback, error_callback)
        parent = super().starmap_async if star else super().map_async
        return parent(self._wrap(func), iterable, chunksize, callback, error_callback)

    def apply(self, func, args=(), kwds={}):  # noqa: B006 - the stdlib's signature
        self._check_shared()
        return super().apply(self._wrap(func), args, kwds)

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):  # noqa: B006
        self._check_shared()
        return super().apply_async(self._wrap(func), args, kwds, callback, error_callback)

    def map(self, func, iterable, chunksize=None):
        return self._map_with(func, iterable, False, chunksize).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_with(func, iterable, False, chunksize, callback, error_callback)

    def starmap(self, func, iterable, chunksize=None):
        return self._map_with(func, iterable, True, chunksize).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_with(func, iterable, True, chunksize, callback, error_callback)

    def imap(self, func, iterable, chunksize=1):
        return self._imap_with(super().imap, func, iterable, chunksize)

    def imap_unordered(self, func, iterable, chunksize=1):
        return self._imap_with(super().imap_unordered, func, iterable, chunksize)

    def _imap_with(self, parent, func, iterable, chunksize):
        self._check_shared()
        if isinstance(func, _WithInitret):
            func = func.func
        wants = self._wants_initret(func)
        if not wants and self._shared is None:
            return parent(func, iterable, chunksize)
        if chunksize == 1:
            return parent(self._wrap(func), iterable, 1)
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")
        mapper = _mapstar_initret if wants else _mapstar_checked
        chunks = parent(mapper, _chunked(func, iterable, chunksize), 1)
        return _FlatIMapIterator(chunks)


class _FlatIMapIterator:
    """What ``imap`` returns when initret calls travel in chunks: the items
    one by one, with ``IMapIterator``'s ``next(timeout)`` (the timeout
    applies to waiting for each chunk)."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = chunks
        self._items: Iterator[Any] = iter(())

    def __iter__(self) -> "_FlatIMapIterator":
        return self

    def next(self, timeout: Optional[float] = None) -> Any:
        while True:
            try:
                return next(self._items)
            except StopIteration:
                # StopIteration from the chunks ends this iterator too.
                self._items = iter(self._chunks.next(timeout))

    __next__ = next


#: Whether this Python's Pool has the (private, but unchanged since 3.3)
#: ``_map_async(func, iterable, mapper, chunksize, callback, error_callback)``.
_HAS_MAP_ASYNC = list(
    inspect.signature(getattr(multiprocessing.pool.Pool, "_map_async", lambda: None)).parameters
)[:7] == ["self", "func", "iterable", "mapper", "chunksize", "callback", "error_callback"]


def _mapstar_initret(args: "tuple[Callable[..., Any], tuple]") -> list:
    """Runs one chunk of ``map`` in a worker: ``func(x, initret=...)`` per item."""
    func, chunk = args
    if _unavailable():
        _raise_unavailable()
    initret = _initret
    return [func(x, initret=initret) for x in chunk]


def _starmapstar_initret(args: "tuple[Callable[..., Any], tuple]") -> list:
    """Runs one chunk of ``starmap`` in a worker: ``func(*x, initret=...)``."""
    func, chunk = args
    if _unavailable():
        _raise_unavailable()
    initret = _initret
    return [func(*x, initret=initret) for x in chunk]


def _mapstar_checked(args: "tuple[Callable[..., Any], tuple]") -> list:
    """One chunk of ``map`` in a ``shared=True`` worker, for a function
    without ``initret``: ``func(x)`` per item, once the state is known to
    be attached."""
    func, chunk = args
    if _unavailable():
        _raise_unavailable()
    return list(map(func, chunk))


def _starmapstar_checked(args: "tuple[Callable[..., Any], tuple]") -> list:
    """As :func:`_mapstar_checked`, for ``starmap``: ``func(*x)``."""
    func, chunk = args
    if _unavailable():
        _raise_unavailable()
    return list(itertools.starmap(func, chunk))


def _chunked(func: Callable[..., Any], iterable: Iterable[Any], size: int):
    """``(func, chunk)`` pairs of ``size`` items, as ``imap`` sends them."""
    it = iter(iterable)
    while True:
        chunk = tuple(itertools.islice(it, size))
        if not chunk:
            return
        yield (func, chunk)
