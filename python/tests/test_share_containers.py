"""The seed's own cache placed once per machine: ``initret.share`` turns
large dicts and lists whose contents fit into :class:`initret.SharedDict`
and :class:`initret.SharedList` over the shared segment, and
``Pool(shared=True)`` runs the seed's three recipes with one copy per
machine under every start method."""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle

import numpy as np
import pytest

import initret
from initret import _bench, _share

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs POSIX shared memory in /dev/shm")

METHODS = [m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()]


def seed_cache(n=initret.SEED_ROWS):
    return {i: bin(i) for i in range(n)}


def test_the_seed_dict_becomes_a_shared_dict_with_a_small_handle():
    cache = seed_cache()
    with initret.share(cache) as shared:
        value = shared.value
        assert isinstance(value, initret.SharedDict)
        assert value == cache and len(value) == len(cache)
        assert value[5] == "0b101" and value.get(-1) is None and 70000 not in value
        assert value[True] == cache[1] and value[2.0] == cache[2]  # Python's equal keys
        with pytest.raises(KeyError):
            value[70000]
        handle = pickle.dumps(shared)
        assert len(handle) < 4096
        again = pickle.loads(handle)
        assert isinstance(again, initret.SharedDict) and again == cache
        # A SharedDict pickled on its own is a small handle to the same segment.
        alone = pickle.dumps(value)
        assert len(alone) < 4096 and pickle.loads(alone) == cache


def test_nested_state_keeps_small_containers_and_shares_large_ones():
    table = np.arange(1000, dtype=np.uint32)
    state = {"cache": seed_cache(1000), "names": [f"n{i}" for i in range(500)], "table": table,
             "small": {"a": 1}, "pair": (1, 2)}
    with initret.share(state) as shared:
        value = pickle.loads(pickle.dumps(shared))
        assert type(value) is dict  # 5 entries: pickled
        assert isinstance(value["cache"], initret.SharedDict) and value["cache"] == state["cache"]
        assert isinstance(value["names"], initret.SharedList) and value["names"] == state["names"]
        assert value["small"] == {"a": 1} and type(value["small"]) is dict
        assert value["pair"] == (1, 2)
        np.testing.assert_array_equal(value["table"], table)


def test_a_dict_that_does_not_fit_is_pickled_and_its_arrays_still_shared():
    state = {i: (i, "tuple values do not fit") for i in range(100)}
    state[1000] = np.arange(10)
    with initret.share(state) as shared:
        value = shared.value
        assert type(value) is dict and value[3] == (3, "tuple values do not fit")
        assert not value[1000].flags.writeable


def test_an_unsupported_value_deep_inside_falls_back_without_losing_anything():
    import decimal

    state = [{"k": i} for i in range(100)] + [decimal.Decimal(1)]
    with initret.share(state) as shared:
        value = shared.value
        assert type(value) is list and len(value) == 101
        assert [v["k"] for v in value[:100]] == list(range(100))


@pytest.mark.parametrize("method", METHODS)
def test_the_seeds_three_recipes_run_with_shared_true(method):
    """Recipe 1 binds the cache with functools.partial (unchanged by the
    pool); recipe 2's initializer sets a global (it returns None: its
    initargs are shared and it runs in each worker over them); recipe 3's
    initret is the shared dict itself."""
    ctx = multiprocessing.get_context(method)
    cache = seed_cache()
    n = initret.SEED_ROWS
    shared_pool = functools.partial(initret.Pool, shared=True, context=ctx)
    partial_counts = _bench.recipe_partial(cache, n, 2, pool_class=shared_pool)
    global_counts = _bench.recipe_global(cache, n, 2, pool_class=shared_pool)
    with initret.Pool(2, initializer=_bench._identity, initargs=(cache,), shared=True, context=ctx) as pool:
        kinds = set(pool.map(type_of_initret, range(8), chunksize=1))
        initret_counts = pool.map(_bench._func_initret, range(n), chunksize=4096)
    assert kinds == {"SharedDict"}
    for counts in (partial_counts, global_counts, initret_counts):
        assert sum(counts) == initret.SEED_CHECKSUM == 524272


def type_of_initret(_i, initret):
    return type(initret).__name__


def private_kib():
    total = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def read_every_key(n, initret):
    before = private_kib()
    total = sum(initret[i].count("1") for i in range(n))
    return before, private_kib(), total


@pytest.mark.parametrize("method", METHODS)
def test_a_workers_private_memory_stays_flat_while_it_reads_every_key(method):
    """2^19 entries (about 60 MiB as a dict): a worker that reads every key
    of the shared dict grows by a few MiB at most, where a private copy (or
    fork's copy-on-read) would grow by tens."""
    n = 1 << 19
    cache = seed_cache(n)
    ctx = multiprocessing.get_context(method)
    with initret.Pool(1, initializer=_bench._identity, initargs=(cache,), shared=True, context=ctx) as pool:
        del cache
        before, after, total = pool.apply(read_every_key, (n,))
    assert total == sum(bin(i).count("1") for i in range(n))
    assert after - before < 8 * 1024, f"the worker grew by {(after - before) / 1024:.1f} MiB reading every key"


def test_get_many_through_the_shared_segment():
    cache = {i: i * 3 for i in range(10_000)}
    with initret.share(cache) as shared:
        keys = np.arange(0, 10_000, 7)
        got = shared.value.get_many(keys)
        np.testing.assert_array_equal(np.asarray(got), keys * 3)


def test_a_damaged_container_in_a_segment_is_a_clear_error():
    with initret.share(seed_cache(1000)) as shared:
        handle = pickle.dumps(shared)
        _mm, descriptors, _name, _host = _share._map_handle(shared._handle)
        with open("/dev/shm/" + shared.name, "r+b") as f:
            f.seek(descriptors[0].offset)
            f.write(b"\xff" * 64)
        with pytest.raises(initret.SharedMemoryUnavailable) as caught:
            pickle.loads(handle)
        assert "damaged container" in str(caught.value)


def test_the_state_benchmark_runs_and_checks_its_answers():
    """`python -m initret bench --state`, small: every recipe gives the
    seed's answers, and every lookup row is measured against the plain
    dict of the same run."""
    from initret import _bench_state

    report = _bench_state.bench_state(processes=1, sizes=(2000,), methods=["fork"], lookups=2000)
    assert {r["recipe"] for r in report["recipes"]} == set(_bench_state.RECIPES)
    assert all(r["correct"] for r in report["recipes"])
    shared = next(r for r in report["recipes"] if r["recipe"] == _bench_state.RECIPES[2])
    assert shared["after_read_kib"] > 0 and shared["idle_kib"] > 0
    (lookups,) = report["lookups"]
    per = lookups["per_lookup_s"]
    assert per["dict d[k]"] > 0 and per["initret.SharedDict d[k]"] > 0
    assert per["dict of ints: SharedDict get_many(int64 array)"] > 0


class ManyAttributes:
    """An object whose pickled state is a dict of 70 entries."""

    def __init__(self):
        for i in range(70):
            setattr(self, f"a{i}", i)


def test_a_dict_or_list_that_rebuilds_an_object_stays_a_dict_or_list():
    """An object's __setstate__ state and an object array's items must come
    back as a real dict and list: share() then freezes nothing."""
    objects = np.array([str(i) for i in range(100)], dtype=object)
    state = {"obj": ManyAttributes(), "objects": objects, "cache": seed_cache(1000), "t": np.arange(5)}
    with initret.share(state) as shared:
        value = pickle.loads(pickle.dumps(shared))
        assert value["obj"].a69 == 69
        assert value["objects"].tolist() == objects.tolist()
        assert value["cache"] == state["cache"]
        assert not value["t"].flags.writeable
    # Without such objects, the same large dict is frozen.
    with initret.share({"cache": seed_cache(1000)}) as shared:
        assert isinstance(shared.value["cache"], initret.SharedDict)
