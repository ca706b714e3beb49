"""Shared state no one else can forge, and no leak on any path: what a
hostile local user (files planted in /dev/shm, the private directory, a
FIFO, a held lock) and an unlucky one (Ctrl-C, SIGKILL, a segment removed
from outside, truncation) can do to the sharing layer. The cases that play
another local user run as root and drop to uid/gid 65534 in a forked child;
without root they skip, saying why."""

from __future__ import annotations

import collections
import dataclasses
import mmap
import multiprocessing
import os
import pickle
import signal
import stat
import subprocess
import sys
import tempfile
import time
import types

import numpy as np
import pytest

import initret
from initret import _share
from share_helpers import base_mmap

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs POSIX shared memory in /dev/shm")

OTHER_UID = 65534  # nobody


def as_other_user(action, *args):
    """Runs ``action(*args)`` in a forked child whose uid and gid are 65534:
    another local user. Returns what it returned (or raises what it raised,
    as a RuntimeError with its repr)."""
    if os.geteuid() != 0:
        pytest.skip("playing another local user needs root, to drop to uid 65534 (CI runs as root)")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            try:
                outcome = ("ok", action(*args))
            except BaseException as error:  # noqa: BLE001 - reported to the parent
                outcome = ("error", repr(error))
            os.write(write, pickle.dumps(outcome))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "error":
        raise RuntimeError(f"as uid {OTHER_UID}: {value}")
    return value


def plant_segment(name, content, mode=0o644):
    """As another user: a file of ``content`` at /dev/shm/<name>."""
    fd = os.open("/dev/shm/" + name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    os.write(fd, content)
    os.fchmod(fd, mode)
    os.close(fd)
    return os.stat("/dev/shm/" + name).st_uid


def remove_as_root(name):
    try:
        os.unlink("/dev/shm/" + name)
    except FileNotFoundError:
        pass


class _Exploit:
    """A pickle that, if ever loaded, creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def old_format_forgery(marker, size=4096):
    """What an attacker wrote against the old format: magic, a nonce, the
    ready flag and a pickled header that runs code."""
    header = pickle.dumps(_Exploit(marker))
    content = bytearray(size)
    content[:8] = b"INITRET\x01"
    content[24] = 1
    content[64:64 + len(header)] = header
    return bytes(content)


@pytest.fixture
def private_tmpdir(monkeypatch):
    """A fresh world-writable (sticky, like /tmp) temp dir as initret's
    temp dir, with no runtime dir: initret's private directory goes there."""
    root = tempfile.mkdtemp()
    os.chmod(root, 0o1777)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", root)
    monkeypatch.setattr(_share, "_private", {})
    yield root
    subprocess.run(["rm", "-rf", root], check=False)


# -- another user's file under a segment's name --------------------------------------------------


def test_another_users_segment_under_the_dask_name_is_refused_and_never_unpickled(tmp_path):
    os.chmod(tmp_path, 0o777)
    marker = str(tmp_path / "pwned")
    digest = os.urandom(32)
    name, _secret = _share._host_names(digest)
    assert name.startswith("irt_") and digest.hex()[:16] not in name  # not guessable from the content alone
    owner = as_other_user(plant_segment, name, old_format_forgery(marker))
    try:
        assert owner == OTHER_UID
        with pytest.raises(initret.SharedMemoryUntrusted) as caught:
            _share.attach_or_create(digest, lambda: np.arange(4096, dtype=np.uint8))
        message = str(caught.value)
        assert name in message and f"uid {OTHER_UID}" in message
        assert caught.value.owner == OTHER_UID
        assert isinstance(caught.value, PermissionError) and isinstance(caught.value, initret.InitretError)
        assert not os.path.exists(marker), "code from shared memory ran"
    finally:
        remove_as_root(name)


def test_another_users_segment_under_a_share_handles_name_is_refused(tmp_path):
    os.chmod(tmp_path, 0o777)
    marker = str(tmp_path / "pwned")
    shared = initret.share({"t": np.arange(1000)})
    handle = pickle.dumps(shared)
    name = shared.name
    shared.unlink()
    as_other_user(plant_segment, name, old_format_forgery(marker))
    try:
        with pytest.raises(initret.SharedMemoryUntrusted) as caught:
            pickle.loads(handle)
        assert name in str(caught.value)
        assert not os.path.exists(marker)
    finally:
        remove_as_root(name)


def make_fifo(path):
    os.mkfifo(path, 0o666)


def test_a_fifo_planted_under_a_segments_name_is_refused_without_hanging():
    """Opening a FIFO blocks until a writer comes; initret opens names
    without blocking and accepts only regular files."""
    shared = initret.share(np.arange(1000))
    handle = pickle.dumps(shared)
    name = shared.name
    shared.unlink()
    as_other_user(make_fifo, "/dev/shm/" + name)
    try:
        started = time.monotonic()
        with pytest.raises(initret.SharedMemoryUntrusted):
            pickle.loads(handle)
        _share.sweep()  # never blocks on it either
        assert time.monotonic() - started < 30
    finally:
        remove_as_root(name)


def test_segments_and_secret_are_private_to_this_user():
    with initret.share(np.arange(10)) as shared:
        st = os.stat("/dev/shm/" + shared.name)
        assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o600
    _share._user_secret()
    dirfd, path = _share._private_dir()
    st = os.stat(path)
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700
    st = os.stat(os.path.join(path, "secret"))
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size == 32


def test_a_group_or_world_readable_segment_of_this_user_is_refused():
    shared = initret.share(np.arange(10))
    handle = pickle.dumps(shared)
    os.chmod("/dev/shm/" + shared.name, 0o644)
    with pytest.raises(initret.SharedMemoryUntrusted) as caught:
        pickle.loads(handle)
    assert "0644" in str(caught.value)
    shared.unlink()


@pytest.mark.parametrize("corruption", ["magic", "version", "secret", "size", "ready", "count", "offset",
                                        "nbytes", "truncated"])
def test_a_forged_or_damaged_header_is_a_clear_error(corruption):
    """Same-user damage: every header field is checked before a view is made."""
    import struct

    shared = initret.share({"a": np.arange(1000, dtype=np.uint32), "b": np.ones(3)})
    handle = pickle.dumps(shared)
    path = "/dev/shm/" + shared.name
    with open(path, "r+b") as f:
        if corruption == "magic":
            f.write(b"XXXXXXXX")
        elif corruption == "version":
            f.seek(8), f.write(struct.pack("<I", 99))
        elif corruption == "secret":
            f.seek(16), f.write(b"\0" * 16)
        elif corruption == "size":
            f.seek(32), f.write(struct.pack("<Q", 1 << 40))
        elif corruption == "ready":
            f.seek(44), f.write(struct.pack("<I", 0))
        elif corruption == "count":
            f.seek(40), f.write(struct.pack("<I", 1 << 30))
        elif corruption == "offset":
            f.seek(64), f.write(struct.pack("<Q", 1 << 40))
        elif corruption == "nbytes":
            f.seek(72), f.write(struct.pack("<Q", 1 << 40))
        elif corruption == "truncated":
            f.truncate(200)
    with pytest.raises(initret.SharedMemoryUnavailable) as caught:
        pickle.loads(handle)
    assert shared.name in str(caught.value)
    shared.unlink()


# -- locks and the private directory -------------------------------------------------------------------


def test_a_private_directory_planted_by_another_user_is_refused(private_tmpdir):
    path = os.path.join(private_tmpdir, f"initret-{os.geteuid()}")
    as_other_user(os.mkdir, path, 0o777)
    with pytest.raises(initret.SharedMemoryUntrusted) as caught:
        _share.attach_or_create(os.urandom(32), lambda: np.ones(10))
    assert path in str(caught.value) and f"uid {OTHER_UID}" in str(caught.value)


def test_a_symlink_planted_at_the_private_directory_is_refused(private_tmpdir):
    path = os.path.join(private_tmpdir, f"initret-{os.geteuid()}")
    target = os.path.join(private_tmpdir, "target")
    os.mkdir(target, 0o700)
    as_other_user(os.symlink, target, path)
    with pytest.raises(initret.SharedMemoryUntrusted):
        _share.attach_or_create(os.urandom(32), lambda: np.ones(10))
    assert os.listdir(target) == []  # nothing created through the link


def test_the_old_lock_file_in_dev_shm_no_longer_matters():
    """Another user holding /dev/shm/initret-<uid>.lock (the old, fixed
    name) blocks nothing: locks live in the private directory."""
    path = f"/dev/shm/initret-{os.geteuid()}.lock"
    read, write = os.pipe()
    if os.geteuid() != 0:
        pytest.skip("playing another local user needs root")
    if os.path.exists(path):
        os.unlink(path)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: another user holds the lock
        try:
            os.setgroups([]), os.setgid(OTHER_UID), os.setuid(OTHER_UID)
            import fcntl

            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(write, b"x")
            time.sleep(60)
        finally:
            os._exit(0)
    try:
        assert os.read(read, 1) == b"x"
        view, host_segment = _share.attach_or_create(os.urandom(32), lambda: np.arange(10), lock_timeout=5)
        assert int(view.sum()) == 45
        host_segment.release()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.unlink(path)


def hold_table_lock(name, ready, release):
    import fcntl

    fd = _share._open_private(name + ".lock")
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.set()
    release.wait(60)


def test_a_held_lock_times_out_with_a_clear_error_and_other_tables_go_on():
    ctx = multiprocessing.get_context("fork")
    digest = os.urandom(32)
    name, _ = _share._host_names(digest)
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=hold_table_lock, args=(name, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        started = time.monotonic()
        with pytest.raises(initret.SharedStateLockTimeout) as caught:
            _share.attach_or_create(digest, lambda: np.ones(10), lock_timeout=0.5)
        assert time.monotonic() - started < 30
        assert name in str(caught.value) and isinstance(caught.value, TimeoutError)
        # One lock per table: another table is not held up.
        view, host_segment = _share.attach_or_create(os.urandom(32), lambda: np.arange(5), lock_timeout=0.5)
        assert int(view.sum()) == 10
        host_segment.release()
    finally:
        release.set()
        holder.join(60)


# -- a Dispatcher inside Pool(shared=True) state, every start method -----------


def dispatcher_state():
    return {"d": initret.Dispatcher(initret.seed_table(), threads=1), "t": np.arange(10)}


def popcount_with(i, initret=None):
    return int(initret["d"].popcount(np.array([i]))[0]) + int(initret["t"][1])


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_dispatcher_in_shared_pool_state_works_under_every_start_method(method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method")
    ctx = multiprocessing.get_context(method)
    with initret.Pool(2, initializer=dispatcher_state, context=ctx, shared=True) as pool:
        assert pool.map(popcount_with, [0, 1, 7, 255]) == [1, 2, 4, 9]


# -- Ctrl-C during share() ---------------------------------------------------------


def shm_names():
    return {n for n in os.listdir("/dev/shm") if n.startswith("irt_")}


def test_an_interrupt_right_after_shm_open_leaks_nothing(monkeypatch):
    real_open = _share._posixshmem.shm_open
    delivered = []

    class Fake:
        @staticmethod
        def shm_open(path, flags, mode=0o777):
            fd = real_open(path, flags, mode)
            if flags & os.O_CREAT and not delivered:
                delivered.append(path)
                os.kill(os.getpid(), signal.SIGINT)  # lands where the old code leaked
            return fd

        shm_unlink = staticmethod(_share._posixshmem.shm_unlink)

    monkeypatch.setattr(_share, "_posixshmem", Fake)
    # A shell that starts a job in the background has Python ignore SIGINT.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = shm_names()
    try:
        with pytest.raises(KeyboardInterrupt):
            initret.share(np.ones(1 << 16))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert delivered
    assert shm_names() == before


def test_interrupts_at_random_moments_leak_nothing(tmp_path):
    code = (
        "import numpy as np, initret, signal\n"
        "interrupts, armed = [0], [False]\n"
        "def on_interrupt(*_):  # installed: a background job would ignore SIGINT\n"
        "    interrupts[0] += 1\n"
        "    if armed[0]:  # only inside share(): the loop itself is never cut short\n"
        "        raise KeyboardInterrupt\n"
        "signal.signal(signal.SIGINT, on_interrupt)\n"
        "stop = []\n"
        "signal.signal(signal.SIGTERM, lambda *_: stop.append(1))\n"
        "a = np.ones(1 << 18)\n"
        "print('ready', flush=True)\n"
        "while not stop:\n"
        "    try:\n"
        "        try:\n"
        "            armed[0] = True\n"
        "            initret.share(a).unlink()\n"
        "        except KeyboardInterrupt:\n"
        "            pass\n"
        "        finally:\n"
        "            armed[0] = False\n"
        "    except KeyboardInterrupt:\n"
        "        armed[0] = False\n"
        "print(interrupts[0], flush=True)\n"
    )
    before = shm_names()
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert child.stdout.readline().strip() == "ready"
        rng = np.random.default_rng(5)
        for _ in range(300):
            child.send_signal(signal.SIGINT)
            time.sleep(float(rng.uniform(0, 0.004)))
        time.sleep(0.2)
        child.send_signal(signal.SIGTERM)
        interrupted = child.stdout.readline().strip()
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert interrupted.isdigit() and int(interrupted) > 0, f"no interrupt reached the child: {interrupted!r}"
    deadline = time.monotonic() + 30  # the child's resource tracker may still be at work
    while shm_names() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shm_names() - before == set()


# -- a segment removed from outside ----------------------------------------------


def remove_segment(name):
    os.unlink("/dev/shm/" + name)


def identity_task(i):
    return i


def test_a_removed_segment_ends_the_map_with_a_clear_error_not_endless_restarts():
    ctx = multiprocessing.get_context("spawn")
    with initret.Pool(1, initializer=dict, initargs=({"t": np.arange(10)},), context=ctx, shared=True,
                      maxtasksperchild=1) as pool:
        assert pool.apply(identity_task, (3,)) == 3
        remove_segment(pool._shared.name)
        # The parent says so at once ...
        with pytest.raises(initret.SharedMemoryUnavailable) as caught:
            pool.map(identity_task, range(5))
        assert "removed" in str(caught.value)
        # ... and so do new workers, without the parent's check.
        pool._check_shared = lambda: None
        with pytest.raises(initret.SharedMemoryUnavailable) as caught:
            pool.map_async(identity_task, range(5), chunksize=1).get(timeout=120)
        assert "no longer exists" in str(caught.value)


def test_the_creator_says_removed_and_a_dispatcher_places_its_counts_again():
    shared = initret.share(np.arange(10))
    remove_segment(shared.name)
    with pytest.raises(initret.SharedMemoryUnavailable) as caught:
        pickle.dumps(shared)
    assert "removed" in str(caught.value)
    shared.unlink()  # no error, nothing to do

    d = initret.Dispatcher(initret.seed_table(), threads=1)
    first = _share._reduce_dispatcher(d)[1][0][1]
    remove_segment(first)
    again = pickle.loads(pickle.dumps(d))
    second = _share._reduce_dispatcher(d)[1][0][1]
    assert second != first and os.path.exists("/dev/shm/" + second)
    assert int(again.popcount(np.arange(initret.SEED_ROWS)).sum()) == initret.SEED_CHECKSUM


# -- a SIGKILLed creator started by multiprocessing -------------------------------------


def share_and_wait(conn):
    shared = initret.share(np.ones(1 << 16))
    conn.send(shared.name)
    time.sleep(600)


def wait_gone(name, within=30.0):
    deadline = time.monotonic() + within
    while os.path.exists("/dev/shm/" + name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_killed_creator_started_by_multiprocessing_leaks_nothing_while_its_parent_lives(method):
    ctx = multiprocessing.get_context(method)
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=share_and_wait, args=(child_end,))
    child.start()
    try:
        assert parent_end.poll(120)
        name = parent_end.recv()
        assert os.path.exists("/dev/shm/" + name)
        os.kill(child.pid, signal.SIGKILL)
        child.join(60)
        assert wait_gone(name), f"/dev/shm/{name} outlived its SIGKILLed creator while the parent lives"
    finally:
        if child.is_alive():
            child.kill()


_kept_until_exit = []


def share_in_worker(_):
    shared = initret.share(np.ones(100))
    _kept_until_exit.append(shared)  # released only when the worker exits
    return shared.name


def test_a_pool_worker_that_shares_and_exits_leaves_nothing():
    ctx = multiprocessing.get_context("spawn")
    with initret.Pool(1, context=ctx, maxtasksperchild=1) as pool:
        names = pool.map(share_in_worker, range(2), chunksize=1)
    assert all(wait_gone(n) for n in names)


# -- _from_counts and writable memory --------------------------------------------------


def test_a_read_only_view_of_writable_memory_is_refused():
    counts = np.zeros(32, dtype=np.uint8)  # 16 rows of 1-byte counts, and padding
    view = counts.view()
    view.flags.writeable = False
    with pytest.raises(ValueError, match="writable memory"):
        initret.Dispatcher._from_counts(view, 16, 1, 1, "cpu", 1, "shared")
    owned = np.zeros(32, dtype=np.uint8)
    owned.flags.writeable = False  # its flag could be set back
    with pytest.raises(ValueError, match="writable memory"):
        initret.Dispatcher._from_counts(owned, 16, 1, 1, "cpu", 1, "shared")
    writable_map = mmap.mmap(-1, 32)
    with pytest.raises(ValueError, match="writable memory"):
        initret.Dispatcher._from_counts(np.frombuffer(writable_map, np.uint8), 16, 1, 1, "cpu", 1, "shared")
    # A read-only memoryview does not make what is under it read-only.
    underneath = bytearray(32)
    for view_of_writable in (np.frombuffer(memoryview(underneath).toreadonly(), np.uint8),
                             np.frombuffer(memoryview(np.zeros(32, np.uint8)).toreadonly(), np.uint8)):
        with pytest.raises(ValueError, match="writable memory"):
            initret.Dispatcher._from_counts(view_of_writable, 16, 1, 1, "cpu", 1, "shared")
    # Immutable memory is accepted: bytes, and the shared segment's read-only mapping.
    frozen = np.frombuffer(bytes([0, 1, 2, 3] * 8), np.uint8)
    d = initret.Dispatcher._from_counts(frozen, 16, 1, 1, "cpu", 1, "shared")
    assert d.popcount(np.array([1, 2, 3])).tolist() == [1, 2, 3]


# -- pickle's rules -----------------------------------------------------------


@dataclasses.dataclass
class Holder:
    table: np.ndarray
    label: str


def test_cycles_and_shared_references_are_kept():
    table = np.arange(1000)
    state = {"t": table}
    state["self"] = state
    inner = [table, "x"]
    state["a"], state["b"] = inner, inner
    with initret.share(state) as shared:
        for value in (shared.value, pickle.loads(pickle.dumps(shared))):
            assert value["self"] is value
            assert value["a"] is value["b"]
            assert value["a"][0] is value["t"]
            assert not value["t"].flags.writeable


def test_arrays_inside_any_container_are_shared_not_copied():
    big = np.arange(10 << 20, dtype=np.uint8)  # 10 MiB
    defaults = collections.defaultdict(list)
    defaults["k"].append(big[:100])
    state = {
        "ordered": collections.OrderedDict(a=big),
        "defaults": defaults,
        "dataclass": Holder(big, "h"),
        "namespace": types.SimpleNamespace(table=big, n=3),
        "set": frozenset({"x"}),
    }
    with initret.share(state) as shared:
        handle = pickle.dumps(shared)
        assert len(handle) < 64 << 10, f"a {len(handle)}-byte handle: arrays were pickled into it"
        value = pickle.loads(handle)
        arrays = [value["ordered"]["a"], value["defaults"]["k"][0], value["dataclass"].table,
                  value["namespace"].table]
        for array in arrays:
            assert not array.flags.writeable and isinstance(base_mmap(array), mmap.mmap)
        assert type(value["ordered"]) is collections.OrderedDict and type(value["defaults"]) is collections.defaultdict
        assert value["dataclass"].label == "h" and value["namespace"].n == 3
        np.testing.assert_array_equal(value["dataclass"].table, big)
        assert value["ordered"]["a"] is value["namespace"].table  # one array, one view


# -- a fixed kernel or ISA survives pickling --------------------------------------------


def test_pickling_keeps_a_fixed_kernel_and_isa():
    table = initret.seed_table()
    scalar = initret.Dispatcher(table, threads=1, isa="scalar")
    assert pickle.loads(pickle.dumps(scalar)).kernel.startswith("scalar")
    for kernel in initret.info()["kernels"]:
        fixed = initret.Dispatcher(table, threads=1, kernel=kernel)
        again = pickle.loads(pickle.dumps(fixed))
        assert again.kernel == fixed.kernel, kernel
        assert pickle.loads(pickle.dumps(again)).kernel == fixed.kernel, kernel


# -- same-user truncation ----------------------------------------------------------------


def test_truncation_is_refused_on_attach_and_is_sigbus_for_a_live_reader(tmp_path):
    """Documented, not prevented: a process of the same user that truncates
    a segment kills its live readers with SIGBUS; attaching after it is a
    clear error."""
    shared = initret.share(np.ones(1 << 20))
    handle = pickle.dumps(shared)
    (tmp_path / "handle").write_bytes(handle)
    code = (
        "import pickle, os, sys, numpy as np\n"
        "a = pickle.loads(open('handle', 'rb').read())\n"
        "print('mapped', flush=True)\n"
        "sys.stdin.readline()\n"
        "print(float(a.sum()))\n"
    )
    reader = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=tmp_path)
    try:
        assert reader.stdout.readline().strip() == "mapped"
        os.truncate("/dev/shm/" + shared.name, 64)
        reader.stdin.write("go\n")
        reader.stdin.flush()
        assert reader.wait(60) == -signal.SIGBUS
    finally:
        if reader.poll() is None:
            reader.kill()
        reader.stdin.close()
        reader.stdout.close()
    with pytest.raises(initret.SharedMemoryUnavailable):
        pickle.loads(handle)
    shared.unlink()
