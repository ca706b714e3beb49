"""A Dispatcher pickles to its counts in shared memory: the receiving
process builds one over the same counts, read in place."""

import concurrent.futures
import multiprocessing
import os
import pickle

import numpy as np
import pytest

import initret

import share_helpers as h


def table(rows=5000, words=1, seed=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**32, size=(rows, words), dtype=np.uint32).squeeze()


def reference(t, q):
    rows = t.reshape(len(t), -1)
    return np.array([sum(bin(int(w)).count("1") for w in rows[i]) for i in q], dtype=np.uint32)


@pytest.mark.parametrize("words", [1, 9])
def test_pickle_round_trip_in_this_process(words):
    t = table(words=words)
    d = initret.Dispatcher(t, backend="cpu", threads=2, placement="shared")
    assert not d.counts_shared
    data = pickle.dumps(d)
    assert len(data) < 4096  # a handle, not the counts
    # Pickled twice: one segment, made the first time.
    assert pickle.dumps(d) == data
    e = pickle.loads(data)
    assert e.counts_shared
    assert (e.rows, e.words_per_row, e.backend, e.threads) == (d.rows, words, "cpu", 2)
    q = np.random.default_rng(1).integers(0, len(t), size=3000)
    assert np.array_equal(e.popcount(q), reference(t, q))
    assert np.array_equal(e.popcount(q), d.popcount(q))
    with pytest.raises(initret.IndexOutOfRange) as caught:
        e.popcount([1, -4, 2])
    assert (caught.value.position, caught.value.index) == (1, -4)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_pickled_dispatcher_in_worker_processes(method):
    t = table()
    d = initret.Dispatcher(t, backend="cpu", threads=1)
    q = np.arange(0, len(t), 7)
    ctx = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        results = list(pool.map(h.use_pickled_dispatcher, [d, d], [q, q]))
    for shared, rows, words, backend, threads, counts, bad, pid in results:
        assert pid != os.getpid()
        assert shared and (rows, words, backend, threads) == (len(t), 1, "cpu", 1)
        assert counts == reference(t, q).tolist()
        assert bad == (1, len(t), len(t))


def test_unpickled_dispatcher_reads_the_segment_in_place():
    rows = 1 << 22  # 4 MiB of u8 counts
    d = initret.Dispatcher(np.arange(rows, dtype=np.uint32), backend="cpu", threads=1)
    _rebuild, (shared, *_rest) = d.__reduce__()
    e = pickle.loads(pickle.dumps(d))
    assert e.counts_shared
    # The segment is mapped here (by the handle's owner and the new
    # dispatcher), and the counts in it are those of `d`.
    assert any(line.rstrip().endswith("/dev/shm/" + shared.name) for line in open("/proc/self/maps"))
    assert not shared.value.flags.writeable
    assert shared.value.nbytes >= rows
    assert e.popcount([rows - 1, 3]).tolist() == [bin(rows - 1).count("1"), 2]


def test_gpu_only_dispatcher_does_not_pickle():
    try:
        d = initret.Dispatcher(table(), backend="gpu")
    except initret.GpuUnavailable:
        pytest.skip("no GPU adapter")
    with pytest.raises(TypeError, match="backend='gpu' cannot be pickled"):
        pickle.dumps(d)


@pytest.mark.parametrize("words", [1, 9, 2048])
def test_gpu_dispatcher_uploads_the_shared_counts(words):
    t = table(rows=300, words=words)
    d = initret.Dispatcher(t, backend="cpu", threads=1)
    _rebuild, (shared, rows, bytes_per_count, words_per_row, *_rest) = d.__reduce__()
    try:
        g = initret.Dispatcher._from_counts(shared.value, rows, bytes_per_count, words_per_row, "gpu", 0, "shared")
    except initret.GpuUnavailable:
        if os.environ.get("INITRET_REQUIRE_GPU") == "1":
            raise
        pytest.skip("no GPU adapter")
    q = np.random.default_rng(2).integers(0, rows, size=5000)
    assert np.array_equal(g.popcount(q), reference(t, q))
    with pytest.raises(initret.IndexOutOfRange):
        g.popcount([rows])


def test_writable_counts_are_refused():
    with pytest.raises(ValueError, match="read-only"):
        initret.Dispatcher._from_counts(np.zeros(8, dtype=np.uint8), 1, 1, 1, "cpu", 1, "shared")
