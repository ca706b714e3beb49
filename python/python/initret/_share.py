"""``initret.share``: state placed once per machine, in shared memory.

``share(obj)`` copies every numpy array in ``obj`` (the object itself, or
arrays nested in dicts, lists and tuples, recursively) once into one shared
memory segment and returns a :class:`Shared`:

* ``shared.value`` is ``obj`` rebuilt around read-only, zero-copy views of
  that segment, so the creating process holds one copy (drop the original);
* pickling ``shared`` gives a small handle (segment name and size, the
  host's identity, and a template of the structure in which each array is a
  placeholder: dtype, shape, offset). **Unpickling it returns the rebuilt
  object itself, not a** :class:`Shared`: the same structure, whose arrays
  are read-only numpy views of the same memory, mapped read-only (each
  view's ``base`` is the ``mmap`` that keeps the mapping alive). That is
  what a worker wants as its ``initret``; a worker that needs a handle to
  pass on again can send the creator's ``Shared`` instead.

Values that are not arrays (and arrays of Python objects, and subclasses of
``ndarray`` other than ``np.memmap``) are pickled as usual, when ``share``
is called: a snapshot. Arrays are stored C-contiguous (a Fortran-ordered or
strided array comes back C-ordered, with the same values); an array that
appears twice in ``obj`` is stored once and comes back as one view.

Lifetime: the segment is created through
:class:`multiprocessing.shared_memory.SharedMemory`, so the creator's
resource tracker unlinks it if the creator dies, even by ``SIGKILL``. It is
unlinked when the creator no longer needs it: ``shared.unlink()`` (or the
end of a ``with`` block), or when the :class:`Shared` and every view of
``shared.value`` are gone, or at exit. Processes that attached keep their
mappings (the memory lives until the last one is unmapped); unpickling a
handle after the creator released the segment raises
:class:`SharedMemoryUnavailable`, as does unpickling it on another host
(another machine, container or boot): a clear error, never wrong data.
Attaching processes never register the segment with their resource
tracker (before Python 3.13 that would unlink it when they exit).
"""

from __future__ import annotations

import errno
import mmap
import os
import pickle
import secrets
import socket
import weakref
from multiprocessing import resource_tracker, shared_memory
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ._errors import InitretError

try:  # CPython's module behind multiprocessing.shared_memory, on POSIX.
    import _posixshmem
except ImportError:  # pragma: no cover - Windows
    _posixshmem = None  # type: ignore[assignment]

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["share", "Shared", "SharedMemoryUnavailable", "host_identity", "attach_or_create"]

_MAGIC = b"INITRET\x01"
#: Header: magic (8 bytes), nonce (16), ready flag (1); arrays start at 64.
_HEADER = 64
_ALIGN = 64
_READY = 24
# Room for the pickled (size, dtype, shape, offset) of a derived array.
_DERIVED_META = 256


class SharedMemoryUnavailable(InitretError, OSError):
    """A shared state handle cannot be mapped here: it was made on another
    host (machine, container or boot), or its creator released the segment
    (or died). ``segment`` names the segment, ``host`` the host it was
    created on."""

    def __init__(self, message: str, segment: Optional[str] = None, host: Optional[str] = None) -> None:
        super().__init__(message, "SharedMemoryUnavailable")
        self.segment = segment
        self.host = host

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.segment, self.host))


def host_identity() -> Tuple[str, str, int]:
    """What a handle must match to be mapped here: ``(hostname, boot_id,
    st_dev of /dev/shm)``. The boot id (Linux) tells reboots and machines
    with one hostname apart; the device of the shared memory file system
    tells containers with their own ``/dev/shm`` apart."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot_id = f.read().strip()
    except OSError:
        boot_id = ""
    try:
        shm_dev = os.stat("/dev/shm").st_dev
    except OSError:
        shm_dev = -1
    return (socket.gethostname(), boot_id, shm_dev)


class _Slot:
    """An array's place in a template: dtype, shape and offset in the segment."""

    __slots__ = ("dtype", "shape", "offset")

    def __init__(self, dtype: np.dtype, shape: Tuple[int, ...], offset: int = 0) -> None:
        self.dtype = dtype
        self.shape = shape
        self.offset = offset

    def __reduce__(self) -> Any:
        return (_Slot, (self.dtype, self.shape, self.offset))

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _map_nested(x: Any, leaf: Callable[[Any], Any]) -> Any:
    """``x`` rebuilt with ``leaf(v)`` for every value ``v`` in it, through
    dicts, lists, tuples and namedtuples: the one walk that both the
    template (arrays to slots) and the rebuild (slots to views) take, so
    the two always agree on which containers are looked into."""
    t = type(x)
    if t is dict:
        return {k: _map_nested(v, leaf) for k, v in x.items()}
    if t is list:
        return [_map_nested(v, leaf) for v in x]
    if t is tuple:
        return tuple(_map_nested(v, leaf) for v in x)
    if isinstance(x, tuple) and hasattr(t, "_make"):  # a namedtuple
        return t._make(_map_nested(v, leaf) for v in x)
    return leaf(x)


def _template(x: Any, arrays: List[Tuple[_Slot, np.ndarray]], memo: Dict[int, _Slot]) -> Any:
    """``x`` with each shareable array replaced by a :class:`_Slot` (an
    array that appears twice gets one slot)."""
    def slot_of(v: Any) -> Any:
        t = type(v)
        if not ((t is np.ndarray or t is np.memmap) and not v.dtype.hasobject):
            return v
        slot = memo.get(id(v))
        if slot is None:
            slot = memo[id(v)] = _Slot(v.dtype, v.shape)
            arrays.append((slot, v))
        return slot

    return _map_nested(x, slot_of)


def _rebuild(x: Any, buf: Any, memo: Dict[int, np.ndarray]) -> Any:
    """The template ``x`` with each slot replaced by a read-only view of ``buf``."""
    def view_of(v: Any) -> Any:
        if type(v) is not _Slot:
            return v
        view = memo.get(id(v))
        if view is None:
            count = int(np.prod(v.shape, dtype=np.int64))
            if v.nbytes == 0:
                view = np.empty(v.shape, v.dtype)
                view.flags.writeable = False
            else:
                view = np.frombuffer(buf, v.dtype, count, v.offset).reshape(v.shape)
            memo[id(v)] = view
        return view

    return _map_nested(x, view_of)


class _Mapping(mmap.mmap):
    """The creator's read-only mapping: keeps its :class:`_Segment` (and so
    the segment's name) alive while any view of it lives."""

    _segment: Optional["_Segment"] = None


class _Segment:
    """Owns a created segment's name: unlinks it once, in the creating
    process only (never in a ``fork`` child), when released, collected or
    at exit."""

    def __init__(self, shm: shared_memory.SharedMemory) -> None:
        self.name = shm.name
        self._finalizer = weakref.finalize(self, _unlink, shm, os.getpid())

    def unlink(self) -> None:
        self._finalizer()

    @property
    def alive(self) -> bool:
        return self._finalizer.alive


def _unlink(shm: shared_memory.SharedMemory, pid: int) -> None:
    if os.getpid() != pid:
        return
    try:
        shm.unlink()
    except FileNotFoundError:
        try:  # someone removed the file; stop the tracker warning about it
            resource_tracker.unregister(getattr(shm, "_name", "/" + shm.name), "shared_memory")
        except Exception:  # pragma: no cover
            pass


def _layout(arrays: List[Tuple[_Slot, np.ndarray]]) -> int:
    """Assigns offsets (64-byte aligned, after the header); the segment size."""
    offset = _HEADER
    for slot, array in arrays:
        offset = -(-offset // _ALIGN) * _ALIGN
        slot.offset = offset
        offset += array.nbytes
    return offset


def _reserve(shm: shared_memory.SharedMemory, size: int) -> None:
    """Allocates the segment's pages up front: a full /dev/shm (Docker's
    default is 64 MiB) is then an ``OSError(ENOSPC)`` here, not a SIGBUS
    while the arrays are copied in."""
    fd = getattr(shm, "_fd", -1)
    if fd < 0 or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            return  # not supported here: the copy proceeds as before
        raise OSError(
            errno.ENOSPC,
            f"no room for {size} bytes of shared memory ({shm.name!r}): /dev/shm is full or too small "
            "(a container's default is 64 MiB; docker run --shm-size raises it)",
        ) from None


def _write_at(fd: int, array: np.ndarray, offset: int) -> None:
    """Copies a C-contiguous array into the segment's file at ``offset``
    with ``pwrite``: the kernel copies into the shared pages directly, with
    no page fault per page of a mapping (measured on the 2-CPU EPYC VM: 1
    GiB in 0.47-0.50 s, against 0.91 s through a mapping and 1.31 s for a
    plain numpy copy into fresh memory)."""
    # Bytes of any dtype (datetimes and records have no buffer format).
    data = memoryview(array.reshape(-1).view(np.uint8))
    step = 64 << 20
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:done + step], offset + done)


def _create(name: Optional[str], size: int, arrays: List[Tuple[_Slot, np.ndarray]],
            nonce: bytes) -> _Segment:
    """Creates the segment (``O_CREAT | O_EXCL``), copies the arrays in,
    marks it ready and releases the writable mapping."""
    shm = shared_memory.SharedMemory(name=name, create=True, size=size)
    try:
        _reserve(shm, size)
        buf = shm.buf
        fd = getattr(shm, "_fd", -1)
        for slot, array in arrays:
            if not array.nbytes:
                continue
            if fd >= 0 and array.flags.c_contiguous:
                _write_at(fd, array, slot.offset)
            else:
                dest = np.ndarray(array.shape, array.dtype, buffer=buf, offset=slot.offset)
                np.copyto(dest, array, casting="no")
                del dest
        buf[: len(_MAGIC)] = _MAGIC
        buf[8:_READY] = nonce
        buf[_READY] = 1  # written last: the segment is complete
        del buf
        segment = _Segment(shm)
    except BaseException:
        shm.close()
        shm.unlink()
        raise
    shm.close()
    return segment


def _map_readonly(name: str, size: int, nonce: bytes, host: str,
                  mapping: type = mmap.mmap) -> mmap.mmap:
    """Maps segment ``name`` read-only, checking that it is the segment the
    handle describes (never registered with the resource tracker)."""
    def gone() -> SharedMemoryUnavailable:
        # Made when raised: an exception kept in a local would hold this
        # frame, and through its traceback the caller's arrays, in a cycle.
        return SharedMemoryUnavailable(
            f"shared memory segment {name!r} (created on host {host!r}) no longer exists: "
            "its creator released it or exited; share() the state again",
            name, host,
        )

    if _posixshmem is not None:
        try:
            fd = _posixshmem.shm_open("/" + name, os.O_RDONLY, 0o600)
        except FileNotFoundError:
            raise gone() from None
        try:
            if os.fstat(fd).st_size < size:
                raise gone()
            mm = mapping(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
    else:  # pragma: no cover - Windows: a named file mapping
        mm = mapping(-1, size, tagname=name, access=mmap.ACCESS_READ)
    if mm[: len(_MAGIC)] != _MAGIC or mm[8:_READY] != nonce or mm[_READY] != 1:
        mm.close()
        raise gone()
    return mm


class Shared:
    """State placed once in shared memory by :func:`share`.

    ``value``: the shared object, its arrays read-only views of the segment.
    ``name``: the segment's name (``None`` when ``obj`` held no array).
    ``nbytes``: the segment's size. ``host``: the creating host's name.
    Pickles to a small handle that unpickles, on the same host, to the
    rebuilt object. ``unlink()`` (or ``with share(obj) as shared:``)
    releases the segment now; views already mapped stay valid.
    """

    def __init__(self, value: Any, handle: tuple, segment: Optional[_Segment]) -> None:
        self._value = value
        self._handle = handle
        self._segment = segment

    @property
    def value(self) -> Any:
        return self._value

    @property
    def name(self) -> Optional[str]:
        return self._handle[1]

    @property
    def nbytes(self) -> int:
        return self._handle[2]

    @property
    def host(self) -> str:
        return self._handle[4][0]

    def unlink(self) -> None:
        """Releases the segment: no process can attach any more (those that
        did keep their views). Idempotent."""
        if self._segment is not None:
            self._segment.unlink()

    close = unlink

    def __enter__(self) -> "Shared":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unlink()

    def __reduce__(self) -> Any:
        if self._segment is not None and not self._segment.alive:
            raise SharedMemoryUnavailable(
                f"shared memory segment {self.name!r} was released; it cannot be sent", self.name, self.host
            )
        return (_attach, (self._handle,))

    def __repr__(self) -> str:
        return f"<initret.Shared {self.name!r}, {self.nbytes} bytes, on {self.host!r}>"


def share(obj: Any) -> Shared:
    """Copies every numpy array in ``obj`` (nested in dicts, lists and
    tuples) once into shared memory; returns a :class:`Shared` whose
    ``value`` is ``obj`` rebuilt around read-only views of it, and whose
    pickle unpickles, in any process on this host, to the same."""
    arrays: List[Tuple[_Slot, np.ndarray]] = []
    template = _template(obj, arrays, {})
    host = host_identity()
    size = _layout(arrays)  # the slots' offsets, before the template is pickled
    template_bytes = pickle.dumps(template, protocol=pickle.HIGHEST_PROTOCOL)
    if not arrays:
        return Shared(obj, (1, None, 0, b"", host, template_bytes), None)
    nonce = secrets.token_bytes(16)
    segment = _create(None, size, arrays, nonce)
    try:
        mm = _map_readonly(segment.name, size, nonce, host[0], _Mapping)
    except BaseException:
        segment.unlink()
        raise
    mm._segment = segment
    del arrays
    value = _rebuild(template, mm, {})
    return Shared(value, (1, segment.name, size, nonce, host, template_bytes), segment)


def _attach(handle: tuple) -> Any:
    """Unpickles a :class:`Shared` handle: the rebuilt object, mapped read-only."""
    _version, name, size, nonce, host, template_bytes = handle
    here = host_identity()
    if name is not None and tuple(host) != here:
        raise SharedMemoryUnavailable(
            f"shared memory segment {name!r} was created on host {host[0]!r} "
            f"(boot {host[1] or '?'}, /dev/shm device {host[2]}) and cannot be mapped on "
            f"host {here[0]!r} (boot {here[1] or '?'}, /dev/shm device {here[2]}): "
            "share() the state on each host (or send the object itself)",
            name, host[0],
        )
    template = pickle.loads(template_bytes)
    if name is None:
        return template
    mm = _map_readonly(name, size, nonce, host[0])
    return _rebuild(template, mm, {})


# initret.Pool(shared=True)

def _pool_initret(state: Any) -> Any:
    """A ``Pool(shared=True)`` worker's initializer: the shared object (a
    :class:`Shared` arrives as itself under ``fork``, already rebuilt
    otherwise)."""
    return state.value if isinstance(state, Shared) else state


def pool_initializer(initializer: Optional[Callable[..., Any]],
                     initargs: tuple) -> Tuple[Optional[Shared], Callable[..., Any], tuple]:
    """Runs ``initializer(*initargs)`` here, once, and shares its return
    value: ``(shared, worker_initializer, worker_initargs)``."""
    value = initializer(*initargs) if initializer is not None else None
    shared = share(value)
    del value
    return shared, _pool_initret, (shared,)


# initret.dask: one segment per host, created by the first worker there.

def _lock_dir() -> str:
    """Lock files live beside the segments (same visibility as /dev/shm)."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    import tempfile

    return tempfile.gettempdir()


def attach_or_create(token: str, array: Any) -> Tuple[np.ndarray, Optional[_Segment], str]:
    """``array`` in the segment named after ``token`` on this host, read-only:
    the first caller on the host creates it (copying ``array`` in), the others
    attach. ``array`` may be a callable that returns the array: it is then
    called only by the creator (under the lock), so state derived from
    something else is derived once per host. Race-free: create-or-attach runs
    under an ``flock`` on a lock file beside the segments
    (``initret-<uid>.lock``, one per user); a segment left half-written by a
    creator that died is replaced. Returns ``(view, segment, name)``:
    ``segment`` is the :class:`_Segment` to keep alive (and unlink when done)
    if this call created it, else ``None``. Without POSIX shared memory and
    ``flock``, ``(array, None, "")``."""
    if _posixshmem is None or fcntl is None:
        return (array() if callable(array) else array), None, ""
    if callable(array):
        return _attach_or_create(token, array)
    if array.dtype.hasobject:
        return array, None, ""
    return _attach_or_create(token, lambda: array)


# Pickled initret.Dispatcher

def _dispatcher_handle(shared: Shared) -> tuple:
    """What a pickled Dispatcher carries: the handle of the segment holding
    its counts (``shared``, made by :func:`share` or inherited)."""
    if shared._segment is not None and not shared._segment.alive:
        raise SharedMemoryUnavailable(
            f"shared memory segment {shared.name!r} was released; it cannot be sent", shared.name, shared.host
        )
    return shared._handle


def _still_attachable(shared: Shared) -> bool:
    """Whether another process on this host can still map the segment of
    ``shared``, a handle this process inherited (its creator may have
    released it since)."""
    # The host matched when the handle was unpickled here (`_attach`).
    _version, name, size, nonce, host, _template_bytes = shared._handle
    if name is None:
        return False
    try:
        _map_readonly(name, size, nonce, host[0]).close()
    except SharedMemoryUnavailable:
        return False
    return True


def _dispatcher_from_counts(handle: tuple, rows: int, bytes_per_count: int, words_per_row: int,
                            backend: str, threads: int, placement: str) -> Any:
    """Unpickles a Dispatcher: maps the segment ``handle`` names read-only
    and builds a Dispatcher over the counts in it. The handle is kept, so
    that pickling this Dispatcher again sends the same segment (while its
    creator still holds it) instead of placing a second copy."""
    from ._initret import Dispatcher

    counts = _attach(handle)
    inherited = Shared(counts, handle, None)
    return Dispatcher._from_counts(counts, rows, bytes_per_count, words_per_row, backend, threads, placement,
                                   inherited=inherited)


def _attach_or_create(token: str, make: Callable[[], np.ndarray]) -> Tuple[np.ndarray, Optional[_Segment], str]:
    """:func:`attach_or_create`, the array made by ``make()`` on the host's
    first caller only: attaching callers do not know its dtype and shape,
    so the segment holds them (pickled, in a small header) before the
    array."""
    name = "irt_" + token[:24]
    nonce = (token.encode("ascii") + b"\0" * 16)[:16]
    host = socket.gethostname()
    # One lock file per user and host (not per table: nothing to clean up).
    lock_path = os.path.join(_lock_dir(), f"initret-{os.getuid()}.lock")
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        segment: Optional[_Segment] = None
        try:
            # The header says how big the segment is and where the array is.
            header = _map_readonly(name, _HEADER + _DERIVED_META, nonce, host)
            size, dtype, shape, offset = pickle.loads(bytes(header[_HEADER:_HEADER + _DERIVED_META]).rstrip(b"\0"))
            header.close()
            slot = _Slot(np.dtype(dtype), tuple(shape), offset)
            mm: mmap.mmap = _map_readonly(name, size, nonce, host)
        except SharedMemoryUnavailable:
            try:  # a half-written segment from a creator that died
                _posixshmem.shm_unlink("/" + name)
            except FileNotFoundError:
                pass
            array = np.ascontiguousarray(make())
            slot = _Slot(array.dtype, array.shape)
            meta_slot = _Slot(np.dtype(np.uint8), (_DERIVED_META,))
            size = _layout([(meta_slot, np.zeros(_DERIVED_META, np.uint8)), (slot, array)])
            meta = pickle.dumps((size, array.dtype.str, array.shape, slot.offset))
            if len(meta) > _DERIVED_META:
                raise ValueError(f"derived state of shape {array.shape} needs a larger header")
            meta_array = np.frombuffer(meta.ljust(_DERIVED_META, b"\0"), np.uint8)
            segment = _create(name, size, [(meta_slot, meta_array), (slot, array)], nonce)
            del array
            mm = _map_readonly(name, size, nonce, host, _Mapping)
            mm._segment = segment  # type: ignore[attr-defined]
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    return _rebuild(slot, mm, {}), segment, name
