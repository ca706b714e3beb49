"""initret.Pool: the seed's three recipes, once per worker, every map method,
fork and spawn."""

from __future__ import annotations

import functools
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pool_helpers as h
import pytest

import initret
from initret import Pool

RECIPES = Path(__file__).parent / "seed_recipes"
START_METHODS = [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]
PROCESSES = 3


# ---------------------------------------------------------------------------
# The seed's recipes, unchanged but for the import.


@pytest.mark.parametrize("recipe", ["recipe_partial.py", "recipe_global.py", "recipe_initret.py"])
def test_seed_recipes_run_unchanged(recipe):
    source = (RECIPES / recipe).read_text()
    code = [line for line in source.splitlines() if not line.startswith("#")]
    assert "from initret import Pool" in code
    assert not any("multiprocessing" in line for line in code)
    # The seed's scripts have no `if __name__ == "__main__"` guard, so they
    # run (as in the post) under the fork start method.
    if "fork" not in START_METHODS:
        pytest.skip("the seed's unguarded scripts need the fork start method")
    runner = (
        "import multiprocessing, runpy, sys; multiprocessing.set_start_method('fork', force=True); "
        "runpy.run_path(sys.argv[1], run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", runner, str(RECIPES / recipe)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "524272"


def test_third_recipe_needs_initret_pool():
    """The stdlib Pool cannot run the third recipe; initret.Pool can."""
    cache = {i: bin(i) for i in range(100)}
    counter = h.RunCounter()
    with multiprocessing.Pool(2, initializer=h.init_token, initargs=(counter,)) as pool:
        with pytest.raises(TypeError):
            pool.map(h.report, range(4))
    from initret._bench import _func_initret, _identity

    with Pool(2, initializer=_identity, initargs=(cache,)) as pool:
        assert sum(pool.map(_func_initret, range(100))) == sum(bin(i).count("1") for i in range(100))


# ---------------------------------------------------------------------------
# Once per worker, every method, fork and spawn.


def check_reports(reports, counter, expected_values=None):
    """Every call got the initret of the worker it ran on, made by that
    worker's one initializer run."""
    token_of_pid = {}
    for value, pid, init_pid, token, init_calls in reports:
        assert pid == init_pid, "the initret came from another process"
        assert init_calls == 1, "the initializer ran more than once in a worker"
        assert token_of_pid.setdefault(pid, token) == token, "one worker saw two initrets"
    assert 1 <= len(token_of_pid) <= PROCESSES
    # One initializer run per worker process, no more (a spawned worker may
    # still be starting, so not yet all of them).
    assert len(token_of_pid) <= counter.value <= PROCESSES
    if expected_values is not None:
        assert [r[0] for r in reports] == expected_values


@pytest.mark.parametrize("start_method", START_METHODS)
def test_once_per_worker_every_method(start_method):
    ctx = multiprocessing.get_context(start_method)
    counter = h.RunCounter()
    xs = list(range(200))
    values = list(xs)
    with Pool(PROCESSES, initializer=h.init_token, initargs=(counter,), context=ctx) as pool:
        check_reports(pool.map(h.report, xs), counter, values)
        check_reports(pool.map(h.report, xs, chunksize=7), counter, values)
        check_reports(pool.map_async(h.report, xs).get(timeout=60), counter, values)
        check_reports(list(pool.imap(h.report, xs)), counter, values)
        check_reports(list(pool.imap(h.report, xs, chunksize=9)), counter, values)
        # Chunked imap keeps IMapIterator's next(timeout).
        it = pool.imap(h.report, xs, chunksize=9)
        check_reports([it.next(timeout=60) for _ in xs], counter, values)
        with pytest.raises(StopIteration):
            it.next(timeout=60)
        check_reports(sorted(pool.imap_unordered(h.report, xs)), counter, values)
        check_reports(sorted(pool.imap_unordered(h.report, xs, chunksize=11)), counter, values)
        pairs = [(x, 1000) for x in xs]
        check_reports(pool.starmap(h.report2, pairs), counter, [x + 1000 for x in xs])
        check_reports(pool.starmap_async(h.report2, pairs).get(timeout=60), counter, [x + 1000 for x in xs])
        asyncs = [pool.apply_async(h.report, (x,)) for x in xs]
        check_reports([a.get(timeout=60) for a in asyncs], counter, values)
        check_reports([pool.apply(h.report, (5,))], counter, [5])
        check_reports([pool.apply_async(h.report_kwonly, (5,), {"scale": 3}).get(timeout=60)], counter, [15])
        check_reports(pool.map(functools.partial(h.report_kwonly, scale=2), xs), counter, [2 * x for x in xs])
        # Functions without an `initret` parameter are called as by multiprocessing.
        assert pool.map(h.square, xs) == [x * x for x in xs]
        assert pool.apply(h.returns_answer) == 42
        assert sorted(pool.imap_unordered(abs, [-1, -2, 3])) == [1, 2, 3]
        pool.close()
        pool.join()
    # Every worker started, ran its initializer exactly once, and served all
    # of the calls above.
    assert counter.value == PROCESSES


@pytest.mark.parametrize("start_method", START_METHODS)
def test_new_workers_run_the_initializer_once_each(start_method):
    ctx = multiprocessing.get_context(start_method)
    counter = h.RunCounter()
    with Pool(2, initializer=h.init_token, initargs=(counter,), maxtasksperchild=1, context=ctx) as pool:
        reports = [pool.apply_async(h.report, (x,)).get(timeout=60) for x in range(6)]
        # With maxtasksperchild=1 the pool keeps starting workers; close and
        # join so that every started worker has finished its initializer
        # before the count below.
        pool.close()
        pool.join()
    for _value, pid, init_pid, _token, init_calls in reports:
        assert pid == init_pid and init_calls == 1
    # Each task ran in a fresh worker, whose initializer ran once.
    assert len({r[1] for r in reports}) == 6
    assert counter.value >= 6


@pytest.mark.parametrize("start_method", START_METHODS)
def test_dispatcher_per_worker(start_method):
    """The initret pattern end to end: each worker builds one Dispatcher in
    its initializer and every call uses it."""
    ctx = multiprocessing.get_context(start_method)
    table = initret.seed_table()
    chunks = np.array_split(np.arange(initret.SEED_ROWS), 16)
    with Pool(2, initializer=h.build_dispatcher, initargs=(table,), context=ctx) as pool:
        assert sum(pool.map(h.popcount_chunk, chunks)) == initret.SEED_CHECKSUM


def test_expect_initret_choices():
    counter = h.RunCounter()
    with Pool(2, initializer=h.init_token, initargs=(counter,), expect_initret=True) as pool:
        assert pool.expect_initret is True
        assert pool.map(h.takes_kwargs, [1, 2]) == [(1, ["initret"]), (2, ["initret"])]
    with Pool(2, initializer=h.init_token, initargs=(counter,), expect_initret=False) as pool:
        assert pool.map(h.has_initret_default, [1]) == ["default"]
        assert pool.map(h.takes_kwargs, [1]) == [(1, [])]
        with pytest.raises(TypeError):
            pool.map(h.report, [1])
    with Pool(2, initializer=h.init_token, initargs=(counter,)) as pool:
        assert pool.expect_initret is None
        # auto: **kwargs alone does not ask for initret; a named parameter does.
        assert pool.map(h.takes_kwargs, [1]) == [(1, [])]
        assert pool.map(h.has_initret_default, [1])[0]["pid"] > 0
    with Pool(2, expect_initret=True) as pool:  # no initializer: initret is None
        assert pool.map(h.has_initret_default, [1, 2]) == [None, None]
    with pytest.raises(TypeError):
        Pool(2, expect_initret="yes")
    with pytest.raises(TypeError):
        Pool(2, initializer=42)


def test_auto_rule():
    from initret.pool import accepts_initret

    assert accepts_initret(h.report)
    assert accepts_initret(h.report_kwonly)
    # A partial that binds initret= itself keeps its value: not passed again.
    assert not accepts_initret(functools.partial(h.report, initret=None))
    assert accepts_initret(functools.partial(h.report, 1))
    assert not accepts_initret(h.square)
    assert not accepts_initret(h.takes_kwargs)
    assert not accepts_initret(functools.partial(lambda i, cache: 0, cache={}))
    assert not accepts_initret(len)
    assert not accepts_initret(lambda *initret: 0)


def test_task_errors_propagate():
    counter = h.RunCounter()
    with Pool(2, initializer=h.init_token, initargs=(counter,)) as pool:
        with pytest.raises(ValueError, match="task 3 failed"):
            pool.map(h.fails, range(6))
        with pytest.raises(ValueError):
            list(pool.imap(h.fails, range(6)))
        with pytest.raises(ValueError):
            pool.apply_async(h.fails, (3,)).get(timeout=60)
        # The pool keeps serving.
        assert pool.map(h.fails, [1, 2]) == [1, 2]


def test_index_errors_cross_processes_intact():
    table = initret.seed_table()
    with Pool(2, initializer=h.build_dispatcher, initargs=(table,)) as pool:
        with pytest.raises(initret.IndexOutOfRange) as caught:
            pool.map(h.popcount_chunk, [np.array([1, 2, 70000])])
    assert (caught.value.position, caught.value.index, caught.value.rows) == (2, 70000, initret.SEED_ROWS)


@pytest.mark.skipif("fork" not in START_METHODS, reason="needs fork")
def test_dispatcher_inherited_through_fork_is_refused():
    h.PARENT_DISPATCHER = initret.Dispatcher(initret.seed_table(), threads=2)
    try:
        assert h.inherited_popcount(100) > 0  # fine in the process that built it
        ctx = multiprocessing.get_context("fork")
        with Pool(1, context=ctx) as pool:
            with pytest.raises(RuntimeError, match="another process"):
                pool.apply(h.inherited_popcount, (100_000,))
    finally:
        h.PARENT_DISPATCHER = None


def test_current_initret_outside_workers_is_none():
    from initret.pool import current_initret

    assert current_initret() is None
    assert os.getpid() > 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_forked_child_can_collect_an_inherited_dispatcher(backend):
    """A dispatcher left in a reference cycle in the parent is garbage in a
    forked child too; collecting it there must not wait for worker or
    driver threads that only exist in the parent (this once hung a Pool)."""
    import gc
    import signal
    import time

    from conftest import gpu_dispatcher

    d = gpu_dispatcher(initret.seed_table()) if backend == "gpu" else \
        initret.Dispatcher(initret.seed_table(), threads=2)
    d.popcount(np.arange(100_000) % initret.SEED_ROWS)  # start every thread it has
    gc.disable()
    try:
        cycle: list = [d]
        cycle.append(cycle)
        del d, cycle
        pid = os.fork()
        if pid == 0:  # the child: collect the inherited garbage, then leave
            gc.collect()
            os._exit(0)
    finally:
        gc.enable()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung collecting an inherited Dispatcher")
    assert os.waitstatus_to_exitcode(status) == 0
    gc.collect()


# ---------------------------------------------------------------------------
# What a pool keeps alive, and a partial that already binds initret=.


def test_the_initret_check_keeps_no_task_function_alive():
    import gc
    import weakref

    from initret.pool import accepts_initret

    holder = h.Holder()
    payload = [0] * 10

    def closure(x, initret=None):
        return payload[x]

    refs = [weakref.ref(holder), weakref.ref(closure)]
    partial = functools.partial(h.report, initret=None)
    refs.append(weakref.ref(partial))
    assert accepts_initret(holder.method) and accepts_initret(closure)
    assert not accepts_initret(partial)  # binds initret= itself
    with Pool(2, initializer=h.returns_answer) as pool:
        assert pool.map(holder.method, range(4)) == [1, 2, 3, 4]
        assert pool.map(functools.partial(h.lookup, initret=[7, 8]), [1, 0]) == [8, 7]
    pool.join()
    del holder, closure, partial
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


@pytest.mark.parametrize("expect", [None, True])
@pytest.mark.parametrize("initializer", [None, h.returns_answer])
def test_a_partial_that_binds_initret_keeps_its_value(expect, initializer):
    table = ["a", "b", "c"]
    task = functools.partial(h.lookup, initret=table)
    with multiprocessing.Pool(1) as stdlib:
        expected = stdlib.map(task, [2, 0, 1])
    assert expected == ["c", "a", "b"]
    with Pool(2, initializer=initializer, expect_initret=expect) as pool:
        assert pool.map(task, [2, 0, 1]) == expected
        assert list(pool.imap(task, [2, 0, 1], chunksize=2)) == expected
        assert pool.apply(task, (1,)) == "b"
        assert pool.starmap(task, [(0,), (2,)]) == ["a", "c"]
