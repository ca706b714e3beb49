"""``initret.share``: state placed once per machine, in shared memory.

``share(obj)`` copies every numpy array in ``obj`` once into one shared
memory segment and returns a :class:`Shared`. Arrays are found wherever
pickle would find them: in dicts, lists, tuples, sets, ``OrderedDict``,
``defaultdict``, dataclasses, namespaces, any object that pickles its
attributes. Dicts and lists of 64 entries or more whose contents fit the
frozen format come back as read-only :class:`initret.SharedDict` and
:class:`initret.SharedList` over the same segment. Everything else is
pickled, with pickle's own rules (cycles and shared references are kept);
``docs/sharing.md`` has the details.

* ``shared.value`` is ``obj`` rebuilt around read-only, zero-copy views of
  that segment, so the creating process holds one copy (drop the original);
* pickling ``shared`` gives a small handle (segment name and size, the
  host's identity, a secret, and the pickled structure in which each array
  is a reference to the segment). **Unpickling it returns the rebuilt
  object itself, not a** :class:`Shared`, its arrays read-only numpy views
  of the same memory, mapped read-only (each view's ``base`` is the
  ``mmap`` that keeps the mapping alive).

Values that are not arrays (and arrays of Python objects, and subclasses of
``ndarray`` other than ``np.memmap``) are a snapshot taken when ``share`` is
called. Arrays are stored C-contiguous (a Fortran-ordered or strided array
comes back C-ordered, with the same values); an array that appears twice in
``obj`` is stored once and comes back as one view.

Trust. A segment is used only if this user made it, for this state:

* it is created with ``O_CREAT | O_EXCL`` and mode ``0600`` under a random
  name (or, for ``initret.dask``, a name derived from the table's content
  and a per-user secret), registered for cleanup before it exists;
* before anything is mapped, ``fstat`` must show a regular file owned by
  this effective uid with no group or other permission bit; otherwise
  :class:`SharedMemoryUntrusted` names the segment and its owner;
* its header is a fixed binary layout (magic, version, sizes, a 16-byte
  secret, one descriptor per array), every field checked against the
  file's real size before a view is made. Nothing is ever unpickled from
  shared memory: the pickled structure travels inside the handle;
* lock files and the per-user secret live in a directory only this user
  can write (``$XDG_RUNTIME_DIR/initret``, else ``<tempdir>/initret-<uid>``,
  mode 0700, checked), opened with ``O_NOFOLLOW``; locks time out with
  :class:`SharedStateLockTimeout`.

What sharing does not promise: a process of the *same* user can still
truncate or rewrite a segment (its readers then get ``SIGBUS`` or wrong
values); POSIX shared memory gives no protection between processes of one
user.

Lifetime (``share``): the segment is unlinked when the creator no longer
needs it: ``shared.unlink()`` (or the end of a ``with`` block), or when the
:class:`Shared` and every view of ``shared.value`` are gone, or at exit. If
the creator dies, even by ``SIGKILL``, a resource tracker unlinks it: the
standard library's for a main process, and a private one for a process that
multiprocessing started (a pool worker, an executor task, a Dask worker),
whose parent's tracker would otherwise keep it until the parent exits.
Processes that attached keep their mappings. Unpickling a handle after the
segment was released, or removed by someone else (systemd-logind's
``RemoveIPC=yes`` at logout, a cleanup script), raises
:class:`SharedMemoryUnavailable`, as does unpickling it on another host
(another machine, container or boot): a clear error, never wrong data.
"""

from __future__ import annotations

import atexit
import copyreg
import dataclasses
import errno
import hashlib
import hmac
import io
import mmap
import multiprocessing
import multiprocessing.util
import os
import pickle
import secrets
import socket
import stat
import struct
import tempfile
import threading
import time
import weakref
from multiprocessing import resource_tracker
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ._errors import InitretError, NotFreezable
from ._initret import Dispatcher

try:  # CPython's module behind multiprocessing.shared_memory, on POSIX.
    import _posixshmem
except ImportError:  # pragma: no cover - Windows
    _posixshmem = None  # type: ignore[assignment]

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "share",
    "Shared",
    "SharedMemoryUnavailable",
    "SharedMemoryUntrusted",
    "SharedStateLockTimeout",
    "host_identity",
    "attach_or_create",
]

# -- errors -----------------------------------------------------------------


class SharedMemoryUnavailable(InitretError, OSError):
    """A shared state handle cannot be mapped here: it was made on another
    host (machine, container or boot), its creator released the segment
    (or died), someone removed it, or it is not a valid initret segment.
    ``segment`` names the segment, ``host`` the host it was created on."""

    def __init__(self, message: str, segment: Optional[str] = None, host: Optional[str] = None) -> None:
        super().__init__(message, "SharedMemoryUnavailable")
        self.segment = segment
        self.host = host

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.segment, self.host))


class SharedMemoryUntrusted(SharedMemoryUnavailable, PermissionError):
    """A file initret would use (a segment in ``/dev/shm``, its private
    directory, a lock file) was not made by this user, or others may write
    it: initret refuses it rather than read it. ``owner`` is the file's
    owner uid, ``mode`` its permission bits."""

    def __init__(self, message: str, segment: Optional[str] = None, owner: Optional[int] = None,
                 mode: Optional[int] = None) -> None:
        super().__init__(message, segment, None)
        self.owner = owner
        self.mode = mode

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.segment, self.owner, self.mode))


class SharedStateLockTimeout(InitretError, TimeoutError):
    """Waiting for another process to finish creating a shared segment took
    longer than the timeout. ``path`` is the lock file."""

    def __init__(self, message: str, path: Optional[str] = None) -> None:
        super().__init__(message, "SharedStateLockTimeout")
        self.path = path

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.path))


# -- the host ----------------------------------------------------------------


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


def _owner_name(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _check_owned(st: os.stat_result, what: str, segment: Optional[str] = None, *, directory: bool = False) -> None:
    """Refuses a file (or directory) this user did not make, or that others
    may write or read: owner must be the effective uid, no group or other
    permission bit set."""
    euid = os.geteuid()
    kind_ok = stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)
    mode = stat.S_IMODE(st.st_mode)
    if not kind_ok or st.st_uid != euid or mode & 0o077:
        kind = "a directory" if directory else "a regular file"
        raise SharedMemoryUntrusted(
            f"{what} is not trusted: it must be {kind} owned by {_owner_name(euid)} with mode 0600/0700, "
            f"but it is owned by {_owner_name(st.st_uid)} with mode {mode:04o}"
            f"{'' if kind_ok else ' and is not ' + kind}; initret never reads state another user can "
            "create or write (remove it, or ask who made it)",
            segment, st.st_uid, mode,
        )


# -- initret's private directory: locks and the per-user secret --------------

_private: Dict[str, Any] = {}
_private_lock = threading.Lock()


def _private_dir() -> Tuple[int, str]:
    """``(dirfd, path)`` of the directory only this user can write, where
    lock files and the per-user secret live: ``$XDG_RUNTIME_DIR/initret``
    when that runtime directory is this user's and private, else
    ``<tempdir>/initret-<euid>``. Created with mode 0700; refused
    (:class:`SharedMemoryUntrusted`) if it is a symlink, not this user's,
    or writable by others."""
    with _private_lock:
        if _private.get("pid") == os.getpid():
            return _private["fd"], _private["path"]
        euid = os.geteuid()
        base = os.environ.get("XDG_RUNTIME_DIR", "")
        path = ""
        if base and os.path.isabs(base):
            try:
                st = os.stat(base)
                if stat.S_ISDIR(st.st_mode) and st.st_uid == euid and not stat.S_IMODE(st.st_mode) & 0o077:
                    path = os.path.join(base, "initret")
            except OSError:
                pass
        if not path:
            path = os.path.join(tempfile.gettempdir(), f"initret-{euid}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                st = os.lstat(path)
                raise SharedMemoryUntrusted(
                    f"initret's private directory {path!r} is a symlink or not a directory "
                    f"(owned by {_owner_name(st.st_uid)}); remove it or point TMPDIR elsewhere",
                    path, st.st_uid, stat.S_IMODE(st.st_mode),
                ) from None
            raise
        try:
            _check_owned(os.fstat(fd), f"initret's private directory {path!r}", path, directory=True)
        except BaseException:
            os.close(fd)
            raise
        old = _private.get("fd")
        if old is not None:  # inherited through fork: still valid, replaced by our own
            try:
                os.close(old)
            except OSError:
                pass
        _private.update(pid=os.getpid(), fd=fd, path=path)
        _at_process_exit(_sweep_at_exit)  # atexit does not run in a multiprocessing child
        return fd, path


def _open_private(name: str, flags: int = os.O_RDWR) -> int:
    """Opens (creating, mode 0600) ``name`` in the private directory,
    never following a symlink, and checks it is this user's."""
    dirfd, path = _private_dir()
    fd = os.open(name, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
    return _owned_fd(fd, f"{os.path.join(path, name)!r}", name)


def _owned_fd(fd: int, what: str, segment: Optional[str]) -> int:
    """``fd``, once ``fstat`` showed it is this user's and private; closed
    (and :class:`SharedMemoryUntrusted` raised) otherwise."""
    try:
        _check_owned(os.fstat(fd), what, segment)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _user_secret() -> bytes:
    """32 random bytes, made once per user and host and kept (mode 0600) in
    the private directory: the key that derives ``initret.dask`` segment
    names and secrets from a table's content."""
    cached = _private.get("secret")
    if cached is not None and _private.get("secret_pid") == os.getpid():
        return cached
    dirfd, path = _private_dir()
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open("secret", flags, dir_fd=dirfd)
    except FileNotFoundError:
        temporary = f"secret.{os.getpid()}.{secrets.token_hex(6)}"
        tfd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=dirfd)
        try:
            os.write(tfd, secrets.token_bytes(32))
            os.fsync(tfd)
        finally:
            os.close(tfd)
        try:  # atomic: the first link wins, everyone reads the winner's
            os.link(temporary, "secret", src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary, dir_fd=dirfd)
        fd = os.open("secret", flags, dir_fd=dirfd)
    try:
        st = os.fstat(fd)
        _check_owned(st, f"initret's secret {os.path.join(path, 'secret')!r}", "secret")
        secret = os.pread(fd, 64, 0)
    finally:
        os.close(fd)
    if len(secret) != 32:
        raise SharedMemoryUntrusted(f"initret's secret {os.path.join(path, 'secret')!r} is damaged "
                                    f"({len(secret)} bytes, not 32): remove it", "secret")
    _private.update(secret=secret, secret_pid=os.getpid())
    return secret


def _flock(fd: int, operation: int, timeout: float, path: str) -> None:
    """``flock`` with a timeout: :class:`SharedStateLockTimeout` when another
    process holds the lock longer than ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise SharedStateLockTimeout(
                    f"waited {timeout:g} s for the lock {path!r}: another process of this user holds it "
                    "(creating the same shared state, or stuck); raise lock_timeout= or end that process",
                    path,
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


# -- the segment format -------------------------------------------------------

#: How an existing segment is opened: read-only, never through a symlink,
#: and without blocking (another user may plant a FIFO under a name; opening
#: one blocking would wait forever). Only a regular file is then accepted.
_OPEN_EXISTING = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK

_MAGIC = b"INITRSHM"
_VERSION = 2
#: magic, version, header size, secret, total size, array count, ready.
_HEADER = struct.Struct("<8sII16sQII")
_HEADER_SIZE = 64
_READY_AT = 44
#: One per array: offset, bytes, dtype (numpy's ``dtype.str``, for the
#: arrays ``attach_or_create`` describes; empty otherwise), ndim, shape.
_MAX_NDIM = 8
_DESCRIPTOR = struct.Struct("<QQ16sI4x8Q")
_DESCRIPTOR_SIZE = 128
_ALIGN = 64
#: The dtypes a segment may describe by itself (``attach_or_create``).
_DESCRIBED_DTYPES = frozenset({"|u1", "<u2", "<u4", "<u8", "|i1", "<i2", "<i4", "<i8", "<f4", "<f8"})


@dataclasses.dataclass(frozen=True)
class _Descriptor:
    offset: int
    nbytes: int
    dtype: str
    shape: Tuple[int, ...]


def _layout(arrays: List[np.ndarray]) -> Tuple[int, List[int]]:
    """The header size and each array's offset (64-byte aligned); the
    segment's size is the end of the last array."""
    header = -(-(_HEADER_SIZE + _DESCRIPTOR_SIZE * len(arrays)) // _ALIGN) * _ALIGN
    offsets = []
    offset = header
    for array in arrays:
        offset = -(-offset // _ALIGN) * _ALIGN
        offsets.append(offset)
        offset += array.nbytes
    return header, offsets


def _header_bytes(arrays: List[np.ndarray], offsets: List[int], header_size: int, size: int, secret: bytes,
                  described: bool) -> bytes:
    out = bytearray(header_size)
    _HEADER.pack_into(out, 0, _MAGIC, _VERSION, header_size, secret, size, len(arrays), 0)
    for i, (array, offset) in enumerate(zip(arrays, offsets)):
        dtype = array.dtype.str.encode("ascii") if described else b""
        shape = tuple(array.shape) if described else ()
        _DESCRIPTOR.pack_into(out, _HEADER_SIZE + i * _DESCRIPTOR_SIZE, offset, array.nbytes, dtype, len(shape),
                              *(shape + (0,) * (_MAX_NDIM - len(shape))))
    return bytes(out)


def _parse_header(mm: Any, size: int, secret: bytes, name: str, host: str) -> List[_Descriptor]:
    """Every header field checked against the mapping's real ``size``: the
    descriptors, each of whose spans lies inside the segment."""
    def corrupt(why: str) -> SharedMemoryUnavailable:
        return SharedMemoryUnavailable(f"shared memory segment {name!r} is not a valid initret segment: {why}",
                                       name, host)

    if size < _HEADER_SIZE:
        raise corrupt(f"{size} bytes is smaller than a header")
    magic, version, header_size, stored_secret, total, count, ready = _HEADER.unpack_from(mm, 0)
    if magic != _MAGIC:
        raise corrupt("wrong magic")
    if version != _VERSION:
        raise corrupt(f"format version {version}, this initret reads {_VERSION}")
    if not hmac.compare_digest(stored_secret, secret):
        raise corrupt("its secret does not match the handle's (another state under the same name)")
    if total != size:
        raise corrupt(f"its header says {total} bytes but it has {size} (truncated or grown)")
    if ready != 1:
        raise corrupt("it was never completed (its creator died while writing it)")
    if count > (size - _HEADER_SIZE) // _DESCRIPTOR_SIZE or header_size < _HEADER_SIZE + count * _DESCRIPTOR_SIZE \
            or header_size > size:
        raise corrupt(f"{count} arrays and a {header_size}-byte header do not fit in {size} bytes")
    descriptors = []
    for i in range(count):
        offset, nbytes, dtype, ndim, *shape = _DESCRIPTOR.unpack_from(mm, _HEADER_SIZE + i * _DESCRIPTOR_SIZE)
        if offset % _ALIGN or offset < header_size or offset > size or nbytes > size - offset:
            raise corrupt(f"array {i} at offset {offset} of {nbytes} bytes lies outside the segment")
        if ndim > _MAX_NDIM:
            raise corrupt(f"array {i} has {ndim} dimensions")
        descriptors.append(_Descriptor(offset, nbytes, dtype.rstrip(b"\0").decode("ascii", "replace"),
                                       tuple(shape[:ndim])))
    return descriptors


def _view(mm: Any, descriptor: _Descriptor, dtype: np.dtype, shape: Tuple[int, ...], name: str,
          host: str) -> np.ndarray:
    """A read-only view of one array, after checking that ``dtype`` and
    ``shape`` describe exactly the descriptor's span."""
    count = 1
    for n in shape:
        if not isinstance(n, int) or n < 0:
            raise SharedMemoryUnavailable(f"segment {name!r}: bad shape {shape!r}", name, host)
        count *= n
    if count * dtype.itemsize != descriptor.nbytes:
        raise SharedMemoryUnavailable(
            f"shared memory segment {name!r}: an array of {shape} {dtype} does not fill its "
            f"{descriptor.nbytes}-byte span", name, host)
    if descriptor.nbytes == 0:
        view = np.empty(shape, dtype)
        view.flags.writeable = False
        return view
    return np.frombuffer(mm, dtype, count, descriptor.offset).reshape(shape)


class _Mapping(mmap.mmap):
    """A read-only mapping of a segment; the creator's keeps its
    :class:`_Segment` (and so the segment's name) alive while any view of
    it lives."""

    _segment: Optional["_Segment"] = None
    _keep: tuple = ()


def _gone(name: str, host: str) -> SharedMemoryUnavailable:
    return SharedMemoryUnavailable(
        f"shared memory segment {name!r} (created on host {host!r}) no longer exists: its creator "
        "released it or exited, or another process removed it from /dev/shm (systemd-logind's "
        "RemoveIPC=yes does so at logout); share() the state again",
        name, host,
    )


def _open_checked(name: str, host: str) -> int:
    """A read-only descriptor of segment ``name``, after ``fstat`` showed it
    is this user's and private."""
    try:
        fd = _posixshmem.shm_open("/" + name, _OPEN_EXISTING, 0o600)
    except FileNotFoundError:
        raise _gone(name, host) from None
    except PermissionError:
        raise SharedMemoryUntrusted(
            f"shared memory segment {name!r} cannot be opened: another user made it", name) from None
    return _owned_fd(fd, f"shared memory segment {name!r}", name)


def _map_segment(name: str, secret: bytes, host: str, fd: Optional[int] = None,
                 mapping: type = mmap.mmap) -> Tuple[Any, List[_Descriptor]]:
    """Maps segment ``name`` read-only (through ``fd`` if given, else by
    name after the owner check) and validates its header; never registered
    with a resource tracker."""
    own = fd is None
    if own:
        fd = _open_checked(name, host)
    try:
        size = os.fstat(fd).st_size
        if size < _HEADER_SIZE:
            raise SharedMemoryUnavailable(
                f"shared memory segment {name!r} is not a valid initret segment: {size} bytes", name, host)
        mm = mapping(fd, size, access=mmap.ACCESS_READ)
    finally:
        if own:
            os.close(fd)
    try:
        descriptors = _parse_header(mm, size, secret, name, host)
    except BaseException:
        mm.close()
        raise
    return mm, descriptors


# -- creating a segment -------------------------------------------------------

_trackers: Dict[str, Any] = {}


def _tracker() -> Any:
    """The resource tracker that unlinks this process's segments if it dies:
    the standard library's in a main process; in a process multiprocessing
    started (whose default tracker is its parent's, alive until the parent
    exits) a private one, started once per process."""
    if multiprocessing.parent_process() is None:
        return resource_tracker._resource_tracker
    if _trackers.get("pid") != os.getpid():
        _trackers.update(pid=os.getpid(), tracker=resource_tracker.ResourceTracker())
    return _trackers["tracker"]


class _Segment:
    """A segment this process creates: registered for cleanup (with the
    resource tracker and a finalizer) *before* it is created, so that an
    interrupt at any moment leaves nothing behind. Keeps a descriptor of
    it (to tell whether its name still names it) and unlinks it once, in
    the creating process only (never in a ``fork`` child), when released,
    collected or at exit."""

    def __init__(self, name: str, tracker: Any) -> None:
        self.name = name
        self._fd: List[Optional[int]] = [None]
        if tracker is not None:
            tracker.register("/" + name, "shared_memory")
        self._finalizer = weakref.finalize(self, _release, name, self._fd, os.getpid(), tracker)
        if multiprocessing.parent_process() is not None:
            # A multiprocessing child ends with os._exit: only its own
            # finalizers run (this one leaves the registry with the object).
            multiprocessing.util.Finalize(self, self._finalizer, exitpriority=5)

    @property
    def fd(self) -> int:
        fd = self._fd[0]
        if fd is None:
            raise SharedMemoryUnavailable(f"shared memory segment {self.name!r} was released", self.name)
        return fd

    def open(self) -> int:
        """Creates it: ``O_CREAT | O_EXCL``, mode 0600, never through a link."""
        self._fd[0] = _posixshmem.shm_open("/" + self.name,
                                           os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        return self._fd[0]

    def unlink(self) -> None:
        self._finalizer()

    @property
    def alive(self) -> bool:
        return self._finalizer.alive

    def removed(self) -> bool:
        """Whether the name no longer names this segment: someone else
        removed (or replaced) it while this process still held it."""
        return not _names_inode(self.name, os.fstat(self.fd))


def _at_process_exit(callback: Callable[[], Any]) -> None:
    """Runs ``callback`` when this process exits normally, also in a process
    multiprocessing started (which ends with ``os._exit``, skipping
    ``atexit``: only multiprocessing's own finalizers run there)."""
    if multiprocessing.parent_process() is not None:
        multiprocessing.util.Finalize(None, callback, exitpriority=5)


def _names_inode(name: str, st: Optional[os.stat_result]) -> bool:
    """Whether segment ``name`` exists and is the file ``st`` describes (or,
    with no ``st``, is this user's)."""
    try:
        fd = _posixshmem.shm_open("/" + name, _OPEN_EXISTING, 0o600)
    except OSError:
        return False
    try:
        now = os.fstat(fd)
    finally:
        os.close(fd)
    if st is None:
        return stat.S_ISREG(now.st_mode) and now.st_uid == os.geteuid()
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _release(name: str, fd_box: List[Optional[int]], pid: int, tracker: Any) -> None:
    if os.getpid() != pid:
        return
    fd = fd_box[0]
    try:
        # Interrupted before shm_open returned: the name, created O_EXCL by
        # this process if it exists and is this user's, is removed by name.
        if _names_inode(name, None if fd is None else os.fstat(fd)):
            _posixshmem.shm_unlink("/" + name)
    except OSError:
        pass
    # Removed (or not this process's to remove). Only now is the resource
    # tracker told: an interrupt above leaves the name registered, and the
    # tracker removes it when this process exits.
    if tracker is not None:
        try:
            tracker.unregister("/" + name, "shared_memory")
        except Exception:  # pragma: no cover - the tracker died
            pass
    fd_box[0] = None
    if fd is not None:
        os.close(fd)


def _reserve(fd: int, size: int, name: str) -> None:
    """Sizes the segment and allocates its pages up front: a full /dev/shm
    (Docker's default is 64 MiB) is then an ``OSError(ENOSPC)`` here, not a
    SIGBUS while the arrays are copied in."""
    os.ftruncate(fd, size)
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            return  # not supported here: the copy proceeds as before
        raise OSError(
            errno.ENOSPC,
            f"no room for {size} bytes of shared memory ({name!r}): /dev/shm is full or too small "
            "(a container's default is 64 MiB; docker run --shm-size raises it)",
        ) from None


def _write_at(fd: int, array: np.ndarray, offset: int) -> None:
    """Copies ``array`` into the segment's file at ``offset``. A
    C-contiguous array goes with ``pwrite``: the kernel copies into the
    shared pages directly, with no page fault per page of a mapping
    (measured on the 2-CPU EPYC VM: 1 GiB in 0.47-0.50 s, against 0.91 s
    through a mapping). Others are copied through a writable mapping."""
    if not array.nbytes:
        return
    if array.flags.c_contiguous:
        # Bytes of any dtype (datetimes and records have no buffer format).
        data = memoryview(array.reshape(-1).view(np.uint8))
        step = 64 << 20
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:done + step], offset + done)
        return
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    with mmap.mmap(fd, offset - start + array.nbytes, offset=start) as mm:
        dest = np.ndarray(array.shape, array.dtype, buffer=mm, offset=offset - start)
        np.copyto(dest, array, casting="no")
        del dest


def _create(name: str, arrays: List[np.ndarray], secret: bytes, *, described: bool = False,
            tracked: bool = True) -> Tuple[_Segment, int]:
    """Creates segment ``name`` (``O_CREAT | O_EXCL``, mode 0600), registered
    for cleanup before it exists, copies the arrays in and marks it ready
    last. Returns the :class:`_Segment` and its size.
    ``FileExistsError`` if the name is taken."""
    header_size, offsets = _layout(arrays)
    size = offsets[-1] + arrays[-1].nbytes if arrays else header_size
    tracker = _tracker() if tracked else None
    # Registered for cleanup first, then created: an interrupt (which
    # Python raises between almost any two operations, whichever thread the
    # signal reached) can no longer land between the two.
    segment: Optional[_Segment] = None
    try:
        segment = _Segment(name, tracker)
        fd = segment.open()
        _check_owned(os.fstat(fd), f"shared memory segment {name!r}", name)
        _reserve(fd, size, name)
        os.pwrite(fd, _header_bytes(arrays, offsets, header_size, size, secret, described), 0)
        for array, offset in zip(arrays, offsets):
            _write_at(fd, array, offset)
        os.pwrite(fd, struct.pack("<I", 1), _READY_AT)  # written last: the segment is complete
    except BaseException:
        if segment is not None:
            segment.unlink()
        raise
    return segment, size


# -- share(): the structure pickled, the arrays in the segment -----------------

def _shareable_array(obj: Any) -> bool:
    t = type(obj)
    return (t is np.ndarray or t is np.memmap) and not obj.dtype.hasobject


#: Per thread, while :func:`share` pickles a template: the
#: :class:`Shared` objects that pickling made (a Dispatcher's counts), which
#: the new :class:`Shared` keeps alive, since its value holds only copies.
_made_while_sharing = threading.local()


class _TemplatePickler(pickle.Pickler):
    """Pickles ``obj`` with every shareable array replaced by a reference to
    its place in the segment (pickle finds arrays wherever they are; its
    memo keeps cycles and shared references)."""

    def __init__(self, file: Any, arrays: List[np.ndarray], freeze: bool = True) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.arrays = arrays
        self.freeze = freeze
        self.index: Dict[int, int] = {}
        self.not_frozen: set = set()
        self.kept: List[Any] = []

    def dump_collecting(self, obj: Any) -> List["Shared"]:
        """Pickles ``obj``; returns the :class:`Shared` objects made meanwhile."""
        stack = _made_while_sharing.__dict__.setdefault("stack", [])
        stack.append([])
        try:
            self.dump(obj)
        finally:
            made = stack.pop()
        return made

    def persistent_id(self, obj: Any) -> Any:
        t = type(obj)
        if t is dict or t is list:
            return self._frozen_id(obj, t) if self.freeze else None
        if not _shareable_array(obj):
            return None
        i = self.index.get(id(obj))
        if i is None:
            i = self.index[id(obj)] = len(self.arrays)
            self.arrays.append(obj)  # also keeps id(obj) unique while pickling
        return ("initret.array", i, obj.dtype, tuple(obj.shape))

    def _frozen_id(self, obj: Any, kind: type) -> Any:
        """A dict or list of at least :data:`FREEZE_MIN_ENTRIES` entries
        whose contents fit the frozen format (keys int, str, bytes; values
        str, bytes, int, float, bool, None, numpy arrays, and dicts and
        lists of those) becomes one frozen buffer in the segment, read back
        as a :class:`initret.SharedDict` or :class:`initret.SharedList`;
        anything else is pickled (``None``)."""
        key = id(obj)
        if key in self.not_frozen or len(obj) < FREEZE_MIN_ENTRIES:
            return None
        i = self.index.get(key)
        if i is None:
            try:
                frozen = _freeze(obj)
            except NotFreezable:
                self.not_frozen.add(key)
                return None
            i = self.index[key] = len(self.arrays)
            self.arrays.append(np.frombuffer(frozen, np.uint8))
            self.kept.append(obj)  # keeps id(obj) unique while pickling
        return ("initret.frozen", i, "dict" if kind is dict else "list")


def _pickle_template(obj: Any) -> Tuple[bytes, List[np.ndarray], List["Shared"]]:
    """``obj`` pickled with its arrays (and large dicts and lists) taken
    out: ``(template, arrays, made)``. A dict or list that pickle hands to an
    object to rebuild itself (its ``__setstate__`` state, an object array's
    items) must stay a real dict or list, so when the template does not load
    with frozen containers in their places it is pickled again without
    freezing any."""
    arrays: List[np.ndarray] = []
    buffer = io.BytesIO()
    pickler = _TemplatePickler(buffer, arrays)
    made = pickler.dump_collecting(obj)
    if pickler.kept and not _loads_with_containers(buffer.getvalue(), arrays):
        arrays = []
        buffer = io.BytesIO()
        made += _TemplatePickler(buffer, arrays, freeze=False).dump_collecting(obj)
    return buffer.getvalue(), arrays, made


class _TrialUnpickler(pickle.Unpickler):
    """Loads a template with each array in its place and an empty container
    of the right type for each frozen one: whether the real load can
    succeed."""

    def __init__(self, file: Any, arrays: List[np.ndarray]) -> None:
        super().__init__(file)
        self.arrays = arrays

    def persistent_load(self, pid: Any) -> Any:
        from ._initret import SharedDict, SharedList

        if pid[0] == "initret.frozen":
            return SharedDict() if pid[2] == "dict" else SharedList()
        return self.arrays[pid[1]]


def _loads_with_containers(template: bytes, arrays: List[np.ndarray]) -> bool:
    try:
        _TrialUnpickler(io.BytesIO(template), arrays).load()
    except Exception:  # noqa: BLE001 - any failure means: do not freeze
        return False
    return True


class _TemplateUnpickler(pickle.Unpickler):
    """Unpickles a template (from a handle, never from shared memory), each
    array reference a read-only view of the mapped segment, checked against
    its descriptor."""

    def __init__(self, file: Any, mm: Any, descriptors: List[_Descriptor], name: str, host: str,
                 handle: tuple) -> None:
        super().__init__(file)
        self.mm, self.descriptors, self.name, self.host = mm, descriptors, name, host
        self.handle = handle
        self.views: Dict[int, Any] = {}

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) in (3, 4) and pid[0] in ("initret.array", "initret.frozen")):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        i = pid[1]
        if not (isinstance(i, int) and 0 <= i < len(self.descriptors)):
            raise SharedMemoryUnavailable(f"segment {self.name!r} has no array {i!r}", self.name, self.host)
        view = self.views.get(i)
        if view is None:
            if pid[0] == "initret.array":
                _kind, i, dtype, shape = pid
                view = _view(self.mm, self.descriptors[i], np.dtype(dtype), tuple(shape), self.name, self.host)
            else:
                view = _open_frozen(self.mm, self.descriptors[i], pid[2], self.name, self.host)
                # Pickled on its own, it is a small handle to this segment.
                view._reduce_to = (_attach_frozen, (self.handle[:5] + (b"",), i, pid[2]))
            self.views[i] = view
        return view


#: Dicts and lists smaller than this are pickled (a copy of a few entries
#: costs less than a lookup through a shared container).
FREEZE_MIN_ENTRIES = 64


def _freeze(obj: Any) -> bytes:
    from ._initret import freeze

    return freeze(obj)


def _open_frozen(mm: Any, descriptor: _Descriptor, kind: Any, name: str, host: str) -> Any:
    """A :class:`initret.SharedDict` or :class:`initret.SharedList` over a
    frozen buffer in the segment (validated when opened)."""
    from ._initret import SharedDict, SharedList

    if kind not in ("dict", "list"):
        raise SharedMemoryUnavailable(f"segment {name!r}: unknown container kind {kind!r}", name, host)
    view = _view(mm, descriptor, np.dtype(np.uint8), (descriptor.nbytes,), name, host)
    try:
        return (SharedDict if kind == "dict" else SharedList)._open(view)
    except ValueError as error:
        raise SharedMemoryUnavailable(f"shared memory segment {name!r} holds a damaged container: {error}", name,
                                      host) from None


def _attach_frozen(handle: tuple, index: int, kind: str) -> Any:
    """Unpickles a :class:`initret.SharedDict` or :class:`initret.SharedList`
    sent on its own: container ``index`` of the segment ``handle`` names."""
    mm, descriptors, name, host = _map_handle(handle)
    if not (isinstance(index, int) and 0 <= index < len(descriptors)):
        mm.close()
        raise SharedMemoryUnavailable(f"segment {name!r} has no container {index!r}", name, host)
    return _open_frozen(mm, descriptors[index], kind, name, host)


def _load_template(template: bytes, mm: Any, descriptors: List[_Descriptor], name: str, host: str,
                   handle: tuple) -> Any:
    return _TemplateUnpickler(io.BytesIO(template), mm, descriptors, name, host, handle).load()


class Shared:
    """State placed once in shared memory by :func:`share`.

    ``value``: the shared object, its arrays read-only views of the segment.
    ``name``: the segment's name (``None`` when ``obj`` held no array).
    ``nbytes``: the segment's size. ``host``: the creating host's name.
    Pickles to a small handle that unpickles, on the same host, to the
    rebuilt object. ``unlink()`` (or ``with share(obj) as shared:``)
    releases the segment now; views already mapped stay valid.
    """

    def __init__(self, value: Any, handle: tuple, segment: Optional[_Segment], keep: tuple = ()) -> None:
        self._value = value
        self._handle = handle
        self._segment = segment
        self._keep = keep  # segments the handle's template refers to

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

    def check_attachable(self) -> None:
        """Raises :class:`SharedMemoryUnavailable` if another process could
        not attach now: the segment was released, or removed or replaced by
        someone else while this process held it."""
        name = self.name
        if name is None:
            return
        if self._segment is not None:
            if not self._segment.alive:
                raise SharedMemoryUnavailable(
                    f"shared memory segment {name!r} was released; it cannot be sent", name, self.host)
            if self._segment.removed():
                raise SharedMemoryUnavailable(
                    f"shared memory segment {name!r} was removed from /dev/shm by another process while "
                    "this process still held it (systemd-logind's RemoveIPC=yes does so at logout; so may a "
                    "cleanup script): no other process can attach to it; share() the state again",
                    name, self.host)
            return
        _version, _name, _size, secret, host, _template = self._handle
        mm, _ = _map_segment(name, secret, host[0])
        mm.close()

    def attachable(self) -> bool:
        """Whether another process on this host could attach now."""
        try:
            self.check_attachable()
        except SharedMemoryUnavailable:
            return False
        return True

    def __reduce__(self) -> Any:
        self.check_attachable()
        return (_attach, (self._handle,))

    def __repr__(self) -> str:
        return f"<initret.Shared {self.name!r}, {self.nbytes} bytes, on {self.host!r}>"


_HANDLE_VERSION = 2


def share(obj: Any) -> Shared:
    """Copies every numpy array in ``obj`` (wherever pickle finds one) once
    into shared memory; returns a :class:`Shared` whose ``value`` is ``obj``
    rebuilt around read-only views of it, and whose pickle unpickles, in
    any process of this user on this host, to the same."""
    template, arrays, made = _pickle_template(obj)
    keep = tuple(made)
    host = host_identity()
    if not arrays:
        return Shared(obj, (_HANDLE_VERSION, None, 0, b"", host, template), None, keep)
    if _posixshmem is None:  # pragma: no cover - Windows
        raise SharedMemoryUnavailable("initret.share needs POSIX shared memory")
    secret = secrets.token_bytes(16)
    segment, size = _create("irt_" + secrets.token_hex(12), arrays, secret)
    del arrays
    try:
        mm, descriptors = _map_segment(segment.name, secret, host[0], fd=segment.fd, mapping=_Mapping)
    except BaseException:
        segment.unlink()
        raise
    mm._segment = segment
    mm._keep = keep  # the value's views keep what its template refers to
    handle = (_HANDLE_VERSION, segment.name, size, secret, host, template)
    value = _load_template(template, mm, descriptors, segment.name, host[0], handle)
    return Shared(value, handle, segment, keep)


def _check_handle(handle: Any) -> tuple:
    if not (isinstance(handle, tuple) and len(handle) == 6 and handle[0] == _HANDLE_VERSION):
        raise SharedMemoryUnavailable(
            "this shared state handle was made by another version of initret; share() the state again")
    return handle


def _map_handle(handle: tuple) -> Tuple[Any, List[_Descriptor], str, str]:
    """Maps the segment a handle names, read-only, after the host, owner,
    mode, secret and header checks: ``(mapping, descriptors, name, host)``."""
    _version, name, size, secret, host, _template = _check_handle(handle)
    here = host_identity()
    if tuple(host) != here:
        raise SharedMemoryUnavailable(
            f"shared memory segment {name!r} was created on host {host[0]!r} "
            f"(boot {host[1] or '?'}, /dev/shm device {host[2]}) and cannot be mapped on "
            f"host {here[0]!r} (boot {here[1] or '?'}, /dev/shm device {here[2]}): "
            "share() the state on each host (or send the object itself)",
            name, host[0],
        )
    mm, descriptors = _map_segment(name, secret, host[0])
    if mm.size() != size:
        mm.close()
        raise SharedMemoryUnavailable(f"shared memory segment {name!r} has {mm.size()} bytes, "
                                      f"the handle says {size}", name, host[0])
    return mm, descriptors, name, host[0]


def _attach(handle: tuple) -> Any:
    """Unpickles a :class:`Shared` handle: the rebuilt object, mapped read-only."""
    _version, name, _size, _secret, _host, template = _check_handle(handle)
    if name is None:
        return pickle.loads(template)
    mm, descriptors, name, host = _map_handle(handle)
    return _load_template(template, mm, descriptors, name, host, handle)


# -- initret.Pool(shared=True) -------------------------------------------------

class SharedHandle:
    """What a ``Pool(shared=True)`` worker receives: the handle of the
    parent's :class:`Shared`, attached by the worker's initializer (not
    while the worker unpickles its arguments, where a failure would kill
    the worker and make the pool start another, forever). The same under
    ``fork``, ``spawn`` and ``forkserver``."""

    __slots__ = ("handle",)

    def __init__(self, handle: tuple) -> None:
        self.handle = handle

    def __reduce__(self) -> Any:
        return (SharedHandle, (self.handle,))


class Unavailable:
    """A worker's ``initret`` when the shared state could not be attached:
    every task raises ``error`` instead of running."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _pool_initret(state: SharedHandle) -> Any:
    """A ``Pool(shared=True)`` worker's initializer when the user's
    initializer returned a value: that value, attached, or
    :class:`Unavailable` when it cannot be attached."""
    try:
        return _attach(state.handle)
    except SharedMemoryUnavailable as error:
        return Unavailable(error)


def _pool_initializer_over_shared_args(initializer: Callable[..., Any], state: SharedHandle) -> Any:
    """A ``Pool(shared=True)`` worker's initializer when the user's
    initializer returned ``None`` (it works by side effects, such as the
    seed's global): runs it here, over the initargs placed once per
    machine."""
    try:
        args = _attach(state.handle)
    except SharedMemoryUnavailable as error:
        return Unavailable(error)
    return initializer(*args)


def pool_initializer(initializer: Optional[Callable[..., Any]],
                     initargs: tuple) -> Tuple[Shared, Callable[..., Any], tuple]:
    """Runs ``initializer(*initargs)`` here, once. If it returns a value,
    that value is shared and every worker's ``initret`` is it. If it
    returns ``None`` (an initializer that sets a global, as the seed's
    recipe 2), the *initargs* are shared instead and the initializer runs
    again in each worker, over them. Returns ``(shared,
    worker_initializer, worker_initargs)``."""
    value = initializer(*initargs) if initializer is not None else None
    if value is None and initializer is not None:
        shared = share(tuple(initargs))
        return shared, _pool_initializer_over_shared_args, (initializer, SharedHandle(shared._handle))
    shared = share(value)
    del value
    return shared, _pool_initret, (SharedHandle(shared._handle),)


# -- initret.dask: one segment per host and table ------------------------------

class HostSegment:
    """This process's use of a per-host segment made by
    :func:`attach_or_create`. While used, it holds a shared ``flock`` on the
    segment's users file; :meth:`release` drops it, and the last user out
    (under the table's lock) unlinks the segment. A user that dies releases
    its lock with it, so a dead creator hands the segment to the others
    instead of leaving it to nobody; :func:`sweep` unlinks segments no
    living process uses."""

    def __init__(self, name: str, users_fd: int, created: bool, lock_timeout: float) -> None:
        self.name = name
        self.created = created
        self._users_fd: Optional[int] = users_fd
        self._lock_timeout = lock_timeout
        self._pid = os.getpid()
        # A normal exit releases it (and the last user out unlinks).
        _live_host_segments.add(self)
        if _private.get("exit_hook_pid") != self._pid:
            _private["exit_hook_pid"] = self._pid
            atexit.register(_release_at_exit)
            _at_process_exit(_release_at_exit)

    def release(self) -> bool:
        """Stops using the segment; unlinks it if no other process uses it.
        Returns whether it was unlinked. Idempotent."""
        fd, self._users_fd = self._users_fd, None
        if fd is None or os.getpid() != self._pid:
            return False
        os.close(fd)
        return _unlink_if_unused(self.name, self._lock_timeout)

    def __del__(self) -> None:
        fd = getattr(self, "_users_fd", None)
        if fd is not None and os.getpid() == self._pid:
            os.close(fd)


_live_host_segments: "weakref.WeakSet[HostSegment]" = weakref.WeakSet()


def _drop_inherited_users_locks() -> None:
    """In a ``fork`` child: closes the users-lock descriptors inherited from
    the parent (an ``flock`` belongs to the open file, so a child that kept
    them would keep the parent's segments in use after the parent
    released them)."""
    for host_segment in list(_live_host_segments):
        fd, host_segment._users_fd = host_segment._users_fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_users_locks)


def _release_at_exit() -> None:
    # Registered after the exit sweep (see _private_dir), so it runs first.
    for host_segment in list(_live_host_segments):
        try:
            host_segment.release()
        except Exception:  # at exit: nothing to report to
            pass


def _unlink_if_unused(name: str, lock_timeout: float, wait: bool = True) -> bool:
    """Under the table's lock: unlinks segment ``name`` if no process holds
    its users lock. Returns whether it did."""
    lock = _open_private(name + ".lock")
    try:
        try:
            _flock(lock, fcntl.LOCK_EX, lock_timeout if wait else 0.0, name + ".lock")
        except SharedStateLockTimeout:
            if wait:
                raise
            return False
        users = _open_private(name + ".users")
        try:
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if not _names_inode(name, None):
                return False  # gone, or not this user's file to remove
            _posixshmem.shm_unlink("/" + name)
            return True
        finally:
            os.close(users)  # also drops the exclusive lock
    finally:
        os.close(lock)


def sweep() -> List[str]:
    """Unlinks the per-host segments (:func:`attach_or_create`) of this user
    that no living process uses: those whose every user died (for example
    by ``SIGKILL``) without releasing them. Returns their names. Never
    waits for a lock another process holds."""
    if _posixshmem is None or fcntl is None:
        return []
    try:
        dirfd, _path = _private_dir()
        entries = os.listdir(dirfd)
    except OSError:
        return []
    removed = []
    for entry in entries:
        if entry.startswith("irt_") and entry.endswith(".users"):
            name = entry[: -len(".users")]
            try:
                if _unlink_if_unused(name, 0.0, wait=False):
                    removed.append(name)
            except OSError:
                pass
    return removed


def _host_names(digest: bytes) -> Tuple[str, bytes]:
    """The segment name and secret for state whose content hashes to
    ``digest``: keyed by this user's secret, so no one else can predict
    either, and the same in every process of this user on this host."""
    key = _user_secret()
    name = "irt_" + hmac.new(key, b"initret segment name\0" + digest, hashlib.sha256).hexdigest()[:32]
    secret = hmac.new(key, b"initret segment secret\0" + digest, hashlib.sha256).digest()[:16]
    return name, secret


def content_digest(array: np.ndarray, *context: Any) -> bytes:
    """A digest of ``array``'s dtype, shape and bytes (and of ``context``):
    what names per-host state, so that different content never shares a
    segment."""
    h = hashlib.blake2b(digest_size=32)
    h.update(repr((array.dtype.str, tuple(array.shape), context)).encode())
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    step = 64 << 20
    for start in range(0, data.size, step):
        h.update(memoryview(data[start:start + step]))
    return h.digest()


def attach_or_create(digest: bytes, make: Callable[[], np.ndarray], *,
                     lock_timeout: float = 120.0) -> Tuple[np.ndarray, HostSegment]:
    """The array ``make()`` returns, placed once per host for state whose
    content hashes to ``digest`` (:func:`content_digest`): the first caller
    on the host calls ``make()`` and creates the segment, the others attach
    to it, read-only. Create-or-attach runs under a per-table ``flock`` in
    the private directory (:class:`SharedStateLockTimeout` after
    ``lock_timeout`` seconds); a segment left incomplete by a creator that
    died is replaced; one whose creator died after completing it is
    adopted. Returns ``(view, host_segment)``; call
    ``host_segment.release()`` when done."""
    def arrays() -> List[np.ndarray]:
        array = np.ascontiguousarray(make())
        if array.dtype.str not in _DESCRIBED_DTYPES or array.ndim > _MAX_NDIM:
            raise TypeError(f"per-host state must be a numeric array, not {array.dtype} "
                            f"with {array.ndim} dimensions")
        return [array]

    def check(mm: Any, descriptors: List[_Descriptor], name: str, host: str) -> np.ndarray:
        return _described_view(mm, descriptors, name, host)

    return _attach_or_create_segment(digest, arrays, check, described=True, lock_timeout=lock_timeout)


def _attach_or_create_segment(digest: bytes, make: Callable[[], List[np.ndarray]],
                              check: Callable[[Any, List[_Descriptor], str, str], Any], *, described: bool,
                              lock_timeout: float) -> Tuple[Any, HostSegment]:
    """The per-host segment for ``digest``: attached if it exists (and
    ``check(mapping, descriptors, name, host)`` accepts it), else created
    from ``make()``'s arrays. Returns ``(check(...), host_segment)``."""
    if _posixshmem is None or fcntl is None:  # pragma: no cover - Windows
        raise SharedMemoryUnavailable("per-host shared state needs POSIX shared memory and flock")
    sweep()  # segments whose every user died (SIGKILL) go first
    name, secret = _host_names(digest)
    host = socket.gethostname()
    lock = _open_private(name + ".lock")
    try:
        _flock(lock, fcntl.LOCK_EX, lock_timeout, name + ".lock")
        users = _open_private(name + ".users")
        try:
            created = False
            try:
                mm, descriptors = _map_segment(name, secret, host, mapping=_Mapping)
                value = check(mm, descriptors, name, host)
            except SharedMemoryUntrusted:
                raise
            except SharedMemoryUnavailable as error:
                if error.segment != name:
                    raise  # another segment's trouble (one the state refers to): this one stays
                # Missing, or left incomplete by a creator that died under
                # this lock: (re)created. Ours (the owner check passed or it
                # does not exist), so ours to replace.
                try:
                    _posixshmem.shm_unlink("/" + name)
                except FileNotFoundError:
                    pass
                arrays = make()
                segment, _size = _create(name, arrays, secret, described=described, tracked=False)
                del arrays
                try:
                    try:
                        mm, descriptors = _map_segment(name, secret, host, fd=segment.fd, mapping=_Mapping)
                    finally:
                        segment._finalizer.detach()  # the users lock, not this object, decides its life
                        fd, segment._fd[0] = segment._fd[0], None
                        if fd is not None:
                            os.close(fd)
                    value = check(mm, descriptors, name, host)
                except BaseException:
                    _posixshmem.shm_unlink("/" + name)  # nobody will use it: no orphan
                    raise
                created = True
            fcntl.flock(users, fcntl.LOCK_SH | fcntl.LOCK_NB)  # never blocks: we hold the table lock
        except BaseException:
            os.close(users)
            raise
    finally:
        os.close(lock)
    return value, HostSegment(name, users, created, lock_timeout)


class HostState:
    """Any picklable state, ready to be placed once per host: what
    :func:`initret.dask.StatePlugin` sends. Made where the state is (the
    client): its template (the state pickled with each array, and each
    large dict or list, a reference) and those arrays, and a digest of
    both, which names the host's segment. Nothing in it is executed until
    :meth:`attach_or_create`, which unpickles the template (it came with
    the plugin, never from shared memory)."""

    def __init__(self, obj: Any) -> None:
        self.template, arrays, _made = _pickle_template(obj)
        self.arrays: Optional[List[np.ndarray]] = [np.ascontiguousarray(a) for a in arrays]
        h = hashlib.blake2b(digest_size=32)
        h.update(b"initret host state\0")
        h.update(len(self.template).to_bytes(8, "little"))
        h.update(self.template)
        for array in self.arrays:
            h.update(repr((array.dtype.str, array.shape)).encode())
            h.update(memoryview(array.reshape(-1).view(np.uint8)))
        self.digest = h.digest()

    def attach_or_create(self, lock_timeout: float = 120.0) -> Tuple[Any, HostSegment]:
        """The state, its arrays and containers read-only views of this
        host's segment (created here by the host's first caller); drops
        this object's own copy of the arrays."""
        arrays, self.arrays = self.arrays, None
        if arrays is None:
            raise RuntimeError("this HostState was already placed; make a new one")
        template = self.template

        def load(mm: Any, descriptors: List[_Descriptor], name: str, host: str) -> Any:
            if len(descriptors) != len(arrays):
                mm.close()
                raise SharedMemoryUnavailable(f"shared memory segment {name!r} holds another state", name, host)
            secret = _host_names(self.digest)[1]
            handle = (_HANDLE_VERSION, name, mm.size(), secret, host_identity(), b"")
            return _load_template(template, mm, descriptors, name, host, handle)

        return _attach_or_create_segment(self.digest, lambda: arrays, load, described=False,
                                         lock_timeout=lock_timeout)


def _described_view(mm: Any, descriptors: List[_Descriptor], name: str, host: str) -> np.ndarray:
    if len(descriptors) != 1 or descriptors[0].dtype not in _DESCRIBED_DTYPES:
        mm.close()
        raise SharedMemoryUnavailable(f"shared memory segment {name!r} is not a valid per-host segment", name,
                                      host)
    d = descriptors[0]
    return _view(mm, d, np.dtype(d.dtype), d.shape, name, host)


# -- a pickled initret.Dispatcher ----------------------------------------------
#
# Python owns pickling: the extension only reports what a pickle must carry
# (``_pickle_state``), hands out its counts (``_counts``) and builds a
# dispatcher over counts (``_from_counts``); ``copyreg`` ties them together.


class _DispatcherSegments:
    """What pickling keeps on a Dispatcher (its ``_sharing`` slot): the
    segment it was unpickled from (``inherited``, another process created
    it and decides how long it lives) and the one it placed itself
    (``own``, kept while the dispatcher lives)."""

    __slots__ = ("own", "inherited")

    def __init__(self, own: Optional[Shared] = None, inherited: Optional[Shared] = None) -> None:
        self.own = own
        self.inherited = inherited


def _dispatcher_shared(dispatcher: Any) -> Shared:
    """The :class:`Shared` a pickled Dispatcher sends: the segment it was
    unpickled from while that can still be attached, else its own (placed
    now if it has none, or if its own was released or removed from
    outside)."""
    segments = dispatcher._sharing
    if segments is None:
        segments = dispatcher._sharing = _DispatcherSegments()
    if segments.inherited is not None and segments.inherited.attachable():
        shared = segments.inherited
    elif segments.own is not None and segments.own.attachable():
        shared = segments.own
    else:
        counts, _width = dispatcher._counts()
        shared = segments.own = share(counts)
    stack = getattr(_made_while_sharing, "stack", None)
    if stack:
        stack[-1].append(shared)
    return shared


def _reduce_dispatcher(dispatcher: Any) -> Any:
    """Pickles a Dispatcher to a handle of its counts in shared memory
    (placed the first time, and kept as long as the dispatcher lives).
    Unpickled in another process on this host, it is a Dispatcher over the
    same counts, mapped read-only: no table, no derivation, no copy; the
    same backend, threads, placement and any fixed kernel, ISA or inline
    limit."""
    state = dispatcher._pickle_state()  # TypeError for a GPU-only dispatcher
    shared = _dispatcher_shared(dispatcher)  # attachable: checked, or placed just now
    return (_dispatcher_from_counts, (shared._handle,) + tuple(state))


def _dispatcher_from_counts(handle: tuple, rows: int, bytes_per_count: int, words_per_row: int,
                            backend: str, threads: int, placement: str, kernel: Optional[str] = None,
                            isa: Optional[str] = None, inline_max_queries: Optional[int] = None) -> Any:
    """Unpickles a Dispatcher: maps the segment ``handle`` names read-only
    and builds a Dispatcher over the counts in it. The handle is kept, so
    that pickling this Dispatcher again sends the same segment (while its
    creator still holds it) instead of placing a second copy."""
    counts = _attach(handle)
    dispatcher = Dispatcher._from_counts(counts, rows, bytes_per_count, words_per_row, backend, threads,
                                         placement, kernel, isa, inline_max_queries)
    dispatcher._sharing = _DispatcherSegments(inherited=Shared(counts, handle, None))
    return dispatcher


copyreg.pickle(Dispatcher, _reduce_dispatcher)


def _sweep_at_exit() -> None:
    # Only in a process that used the private directory: a process that
    # merely imported initret creates nothing at exit.
    if _private.get("pid") == os.getpid():
        sweep()


atexit.register(_sweep_at_exit)
