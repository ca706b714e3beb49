"""initret.share and Pool(shared=True): state placed once per machine, in
shared memory, mapped read-only by every process that unpickles it."""

from __future__ import annotations

import collections
import gc
import mmap
import multiprocessing
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import weakref
import pathlib

import numpy as np
import pytest

import initret
from initret import _share
from share_helpers import base_mmap, inspect_state, make_state, maps_segment, race_attach_or_create

Point = collections.namedtuple("Point", "x y")

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs POSIX shared memory in /dev/shm")


def shm_exists(name: str) -> bool:
    return os.path.exists("/dev/shm/" + name)


def wait_gone(name: str, within: float = 30.0) -> bool:
    """Polls (not a timing assertion: a generous bound on a cleanup)."""
    deadline = time.monotonic() + within
    while shm_exists(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def run_python(code: str, cwd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=cwd, **kwargs)


def test_share_array_is_one_read_only_copy():
    table = np.arange(100_000, dtype=np.uint32)
    with initret.share(table) as shared:
        assert isinstance(shared, initret.Shared)
        assert shm_exists(shared.name)
        assert shared.nbytes >= table.nbytes
        value = shared.value
        np.testing.assert_array_equal(value, table)
        assert value.dtype == table.dtype and value.shape == table.shape
        assert value.flags.writeable is False
        assert isinstance(base_mmap(value), mmap.mmap)
        assert not np.shares_memory(value, table)
        with pytest.raises(ValueError):
            value[0] = 1
        # Unpickling gives the rebuilt object (here the array), mapped again.
        handle = pickle.dumps(shared)
        assert len(handle) < 1000  # a handle, not the data
        again = pickle.loads(handle)
        assert type(again) is np.ndarray and again.flags.writeable is False
        assert isinstance(base_mmap(again), mmap.mmap)
        np.testing.assert_array_equal(again, table)
        name = shared.name
    assert not shm_exists(name)
    # Views already mapped stay valid after the segment is released.
    assert int(again.sum()) == int(table.sum()) == int(value.sum())


def test_nested_structures_and_other_values():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    obj = {
        "a": a,
        "again": a,                                  # one slot, one view
        "list": [np.int8([1, -2]), "text", 3, (np.zeros(0), None)],
        "point": Point(np.array(5), 1.5),            # 0-d array, namedtuple
        "fortran": np.asfortranarray(a),
        "strided": np.arange(20)[::3],
        "records": np.array([(1, 2.0)], dtype=[("i", "<i4"), ("f", "<f8")]),
        "objects": np.array([{"x": 1}], dtype=object),  # pickled as usual
        7: b"bytes",
    }
    shared = initret.share(obj)
    for value in (shared.value, pickle.loads(pickle.dumps(shared))):
        assert set(value) == set(obj)
        np.testing.assert_array_equal(value["a"], a)
        assert value["again"] is value["a"]
        assert value["list"][1:3] == ["text", 3] and value["list"][3][1] is None
        np.testing.assert_array_equal(value["list"][0], [1, -2])
        assert value["list"][3][0].shape == (0,) and type(value["list"][3]) is tuple
        assert type(value["point"]) is Point and value["point"].y == 1.5
        assert value["point"].x.shape == () and int(value["point"].x) == 5
        np.testing.assert_array_equal(value["fortran"], a)
        np.testing.assert_array_equal(value["strided"], np.arange(20)[::3])
        assert value["records"].dtype == obj["records"].dtype and value["records"][0]["f"] == 2.0
        assert value["objects"][0] == {"x": 1}
        assert value[7] == b"bytes"
        for key in ("a", "fortran", "strided", "records"):
            assert value[key].flags.writeable is False
            assert isinstance(base_mmap(value[key]), mmap.mmap)
    shared.unlink()


def test_no_arrays_needs_no_segment():
    shared = initret.share({"x": [1, 2, 3]})
    assert shared.name is None and shared.value == {"x": [1, 2, 3]}
    assert pickle.loads(pickle.dumps(shared)) == {"x": [1, 2, 3]}


def test_released_segment_is_a_clear_error():
    shared = initret.share(np.ones(10))
    handle = pickle.dumps(shared)
    name = shared.name
    shared.unlink()
    shared.unlink()  # idempotent
    assert not shm_exists(name)
    with pytest.raises(initret.SharedMemoryUnavailable) as caught:
        pickle.loads(handle)
    assert name in str(caught.value) and "released" in str(caught.value)
    assert caught.value.segment == name
    assert isinstance(caught.value, OSError) and isinstance(caught.value, initret.InitretError)
    with pytest.raises(initret.SharedMemoryUnavailable):
        pickle.dumps(shared)


def test_other_host_is_a_clear_error(monkeypatch):
    shared = initret.share(np.ones(10))
    handle = pickle.dumps(shared)
    here = _share.host_identity()
    for other in (("elsewhere",) + here[1:], here[:1] + ("another-boot", here[2]), here[:2] + (here[2] + 1,)):
        monkeypatch.setattr(_share, "host_identity", lambda other=other: other)
        with pytest.raises(initret.SharedMemoryUnavailable) as caught:
            pickle.loads(handle)
        message = str(caught.value)
        assert shared.name in message and repr(here[0]) in message and repr(other[0]) in message
    shared.unlink()


def test_error_pickles():
    error = initret.SharedMemoryUnavailable("gone", "psm_x", "host")
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.segment, again.host) == ("gone", "psm_x", "host")


def test_value_keeps_segment_alive_then_released():
    value = initret.share([np.arange(10)]).value  # the Shared itself is gone
    gc.collect()
    name = base_mmap(value[0])._segment.name
    assert shm_exists(name)
    np.testing.assert_array_equal(value[0], np.arange(10))
    del value
    gc.collect()
    assert not shm_exists(name)


def test_attaching_process_maps_read_only_and_does_not_own(tmp_path):
    table = np.arange(1 << 20, dtype=np.uint32)
    shared = initret.share({"table": table})
    (tmp_path / "handle").write_bytes(pickle.dumps(shared))
    code = (
        "import pickle, mmap, numpy as np\n"
        "state = pickle.loads(open('handle', 'rb').read())\n"
        "t = state['table']\n"
        "base = t\n"
        "while isinstance(base, (np.ndarray, memoryview)):\n"
        "    base = base.base if isinstance(base, np.ndarray) else base.obj\n"
        f"mapped = any(l.rstrip().endswith('/dev/shm/{shared.name}') for l in open('/proc/self/maps'))\n"
        "print(int(t.sum()), t.flags.writeable, isinstance(base, mmap.mmap), mapped)\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(int(table.sum())), "False", "True", "True"]
    # The attaching process exited without unlinking the creator's segment.
    assert shm_exists(shared.name)
    shared.unlink()


def test_killed_creator_leaks_nothing(tmp_path):
    code = (
        "import time, numpy as np, initret\n"
        "shared = initret.share({'t': np.ones(1 << 20)})\n"
        "print(shared.name, flush=True)\n"
        "time.sleep(600)\n"
    )
    with open(tmp_path / "stderr", "w") as stderr:
        creator = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                   stderr=stderr, text=True, cwd=tmp_path)
        try:
            name = creator.stdout.readline().strip()
            assert re.fullmatch(r"[\w.-]+", name), name
            assert shm_exists(name)
            creator.send_signal(signal.SIGKILL)
            creator.wait(60)
        finally:
            if creator.poll() is None:
                creator.kill()
            creator.stdout.close()
    assert wait_gone(name), f"/dev/shm/{name} outlived its SIGKILLed creator"


def test_creator_exit_releases(tmp_path):
    code = (
        "import numpy as np, initret\n"
        "shared = initret.share(np.ones(100))\n"
        "print(shared.name, flush=True)\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert not shm_exists(result.stdout.strip())
    assert "leaked" not in result.stderr


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_pool_shared(method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method")
    ctx = multiprocessing.get_context(method)
    rows = 1 << 20
    with initret.Pool(2, initializer=make_state, initargs=(rows,), context=ctx, shared=True) as pool:
        name = pool._shared.name
        assert shm_exists(name)
        results = pool.map(inspect_state, range(0, rows, rows // 64))
        assert all(pool.map(maps_segment, [name] * 8, chunksize=1))
    assert not shm_exists(name)  # released with the pool
    for i, (value, pid, built_in, writeable, small_writeable, is_mmap, pair, calls) in zip(
            range(0, rows, rows // 64), results):
        assert value == i
        assert built_in == os.getpid() != pid  # the initializer ran once, in the parent
        assert writeable is False and small_writeable is False
        assert is_mmap is True
        assert pair == ("label", 2.5)
        assert calls == 1


def test_pool_default_stays_per_worker():
    ctx = multiprocessing.get_context("spawn")
    with initret.Pool(2, initializer=make_state, initargs=(1000,), context=ctx) as pool:
        results = pool.map(inspect_state, range(10))
    for value, pid, built_in, writeable, _, is_mmap, _, calls in results:
        assert built_in == pid and writeable is True and is_mmap is False and calls == 1


def test_pool_shared_without_arrays_and_errors():
    ctx = multiprocessing.get_context("spawn")
    with initret.Pool(1, initializer=dict, initargs=({"k": 1},), context=ctx, shared=True) as pool:
        assert pool._shared.name is None
        assert pool.apply(maps_segment, ("nothing",)) is False
    with pytest.raises(ZeroDivisionError):  # the initializer's error, here, at once
        initret.Pool(1, initializer=divmod, initargs=(1, 0), context=ctx, shared=True)


def test_readme_shared_state_examples_run(tmp_path):
    for readme in ("README.md", "python/README.md"):
        text = (ROOT / readme).read_text(encoding="utf-8")
        blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "initret.share(" in b]
        assert blocks, f"{readme} has no shared state example"
        script = tmp_path / "example.py"
        script.write_text(blocks[0], encoding="utf-8")
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                timeout=300, cwd=tmp_path)
        assert result.returncode == 0, result.stderr


def test_attach_or_create_race_has_one_creator():
    ctx = multiprocessing.get_context("spawn")
    n, rows = 6, 1 << 16
    digest = os.urandom(32)
    start, done, results = ctx.Barrier(n), ctx.Barrier(n + 1), ctx.Queue()
    workers = [ctx.Process(target=race_attach_or_create, args=(digest, rows, start, done, results))
               for _ in range(n)]
    for w in workers:
        w.start()
    try:
        reports = [results.get(timeout=120) for _ in range(n)]
        name = reports[0][1]
        assert shm_exists(name)
        done.wait(timeout=120)
    finally:
        for w in workers:
            w.join(60)
            if w.is_alive():
                w.kill()
    assert sum(created for created, *_ in reports) == 1
    assert {r[1:] for r in reports} == {(name, rows * (rows - 1) // 2, False, True)}
    assert wait_gone(name)  # the last user out released it when it exited


def test_attach_or_create_keeps_no_reference_cycle():
    # The creator's path catches "segment missing" first; no cycle may keep
    # the caller's table or the mapping alive after the caller drops them.
    table = np.arange(1 << 16, dtype=np.uint32)
    table_ref = weakref.ref(table)
    view, host_segment = _share.attach_or_create(os.urandom(32), lambda: table)
    mapping_ref = weakref.ref(base_mmap(view))
    assert host_segment.created and shm_exists(host_segment.name)
    del table, view
    assert table_ref() is None and mapping_ref() is None  # freed without a gc pass
    assert shm_exists(host_segment.name)  # the segment lives while a user holds it
    assert host_segment.release() is True
    assert not shm_exists(host_segment.name)


def test_full_dev_shm_is_enospc_not_sigbus(monkeypatch):
    def full(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    before = {n for n in os.listdir("/dev/shm") if n.startswith("irt_")}
    with pytest.raises(OSError) as caught:
        initret.share(np.ones(1000))
    assert caught.value.errno == 28 and "/dev/shm" in str(caught.value)
    with pytest.raises(OSError):
        _share.attach_or_create(os.urandom(32), lambda: np.ones(1000))
    after = {n for n in os.listdir("/dev/shm") if n.startswith("irt_")}
    assert after - before == set()  # nothing left behind


def test_pool_shared_replacement_workers_attach():
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                      else "spawn")
    with initret.Pool(1, initializer=make_state, initargs=(1000,), context=ctx, shared=True,
                      maxtasksperchild=1) as pool:
        results = [pool.apply(inspect_state, (i,)) for i in range(3)]
    assert len({pid for _, pid, *_ in results}) == 3  # three workers, one after another
    assert all(r[0] == i and r[3] is False and r[5] is True for i, r in enumerate(results))


def test_every_kind_of_array_is_copied_in_exactly():
    """Contiguous arrays are written with pwrite, others through the
    mapping: records, datetimes, big-endian, 2-D and strided views all come
    back equal, with their dtype."""
    arrays = {
        "ints": np.arange(100_003, dtype=np.int64),
        "records": np.array([(1, 2.5), (3, -1.0)], dtype=[("a", "i4"), ("b", "f8")]),
        "dates": np.array(["2020-01-01", "2026-12-02"], dtype="M8[D]"),
        "big_endian": np.arange(7, dtype=">u4"),
        "matrix": np.arange(24, dtype=np.float32).reshape(4, 6),
        "strided": np.arange(24).reshape(4, 6)[:, ::2],
        "empty": np.zeros((0, 3), dtype=np.uint8),
    }
    with initret.share(arrays) as shared:
        back = pickle.loads(pickle.dumps(shared))
        for name, array in arrays.items():
            assert back[name].dtype == array.dtype and back[name].shape == array.shape, name
            np.testing.assert_array_equal(back[name], array)
            assert not back[name].flags.writeable
