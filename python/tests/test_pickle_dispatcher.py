"""A Dispatcher pickles to its counts in shared memory: the receiving
process builds one over the same counts, read in place."""

import concurrent.futures
import gc
import multiprocessing
import os
import pickle

import numpy as np

from initret import _share
import pytest

import initret

import share_helpers as h


def table(rows=5000, words=1, seed=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**32, size=(rows, words), dtype=np.uint32).squeeze()


def segment_of(d):
    """The name of the shared memory segment a pickle of ``d`` sends."""
    _rebuild, (handle, *_rest) = _share._reduce_dispatcher(d)
    return handle[1]


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
    _rebuild, (handle, *_rest) = _share._reduce_dispatcher(d)
    counts = initret._share._attach(handle)
    e = pickle.loads(pickle.dumps(d))
    assert e.counts_shared
    # The segment is mapped here (by the handle's owner and the new
    # dispatcher), and the counts in it are those of `d`.
    assert any(line.rstrip().endswith("/dev/shm/" + handle[1]) for line in open("/proc/self/maps"))
    assert not counts.flags.writeable
    assert counts.nbytes >= rows
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
    _rebuild, (handle, rows, bytes_per_count, words_per_row, *_rest) = _share._reduce_dispatcher(d)
    counts = initret._share._attach(handle)
    try:
        g = initret.Dispatcher._from_counts(counts, rows, bytes_per_count, words_per_row, "gpu", 0, "shared")
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


def test_an_unpickled_dispatcher_sends_the_same_segment_on():
    t = table()
    d = initret.Dispatcher(t, backend="cpu", threads=1)
    name = segment_of(d)
    e = pickle.loads(pickle.dumps(d))
    # Pickled again (to a third process, say), it sends the segment it
    # reads: no second copy of the counts on the host.
    assert segment_of(e) == name
    f = pickle.loads(pickle.dumps(e))
    assert f.counts_shared and segment_of(f) == name
    q = np.arange(0, len(t), 3)
    assert np.array_equal(f.popcount(q), reference(t, q))


def test_after_the_creator_released_the_segment_it_is_placed_again():
    t = table()
    d = initret.Dispatcher(t, backend="cpu", threads=1)
    name = segment_of(d)
    e = pickle.loads(pickle.dumps(d))
    del d  # the creator's dispatcher, and with it the segment's name
    gc.collect()
    assert not os.path.exists("/dev/shm/" + name)
    # e still reads its mapping; a pickle of it places its counts anew
    # (once: pickled twice, one segment), and unpickles.
    again = segment_of(e)
    assert again != name and segment_of(e) == again
    f = pickle.loads(pickle.dumps(e))
    q = np.arange(0, len(t), 5)
    assert np.array_equal(e.popcount(q), reference(t, q))
    assert np.array_equal(f.popcount(q), reference(t, q))


def test_a_worker_sends_the_segment_it_received_on():
    d = initret.Dispatcher(table(), backend="cpu", threads=1)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        assert pool.submit(h.segment_sent_on, d).result(timeout=120) == segment_of(d)
