"""One Dispatcher shared by Python threads; the GIL is released during lookups."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from conftest import row_counts

import initret


def test_four_threads_share_one_dispatcher(rng):
    table = rng.integers(0, 2**32, size=(50_000, 3), dtype=np.uint64).astype(np.uint32)
    reference = row_counts(table)
    d = initret.Dispatcher(table, backend="cpu", threads=2)
    batches = [rng.integers(0, 50_000, size=int(n)) for n in rng.integers(0, 300_000, size=64)]
    batches += [np.array([], dtype=np.int64), np.arange(50_000)]

    def work(i: int) -> int:
        checked = 0
        for j in range(i, len(batches) * 3, 4):
            q = batches[j % len(batches)]
            q = q.astype(np.uint32) if j % 2 else q  # both the direct and the converting path
            np.testing.assert_array_equal(d.popcount(q), reference[q])
            checked += 1
        return checked

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(work, range(4))) == len(batches) * 3


def _long_call_setup():
    """A dispatcher on one thread and a batch it takes >= 0.2 s to look up."""
    rows = 1 << 22
    table = np.arange(rows, dtype=np.uint32)
    d = initret.Dispatcher(table, backend="cpu", threads=1)
    queries = np.random.default_rng(7).integers(0, rows, size=1 << 22)  # int64: converted too
    start = time.perf_counter()
    d.popcount(queries)
    one = time.perf_counter() - start
    repeats = max(1, int(np.ceil(0.2 / max(one, 1e-6))))
    if repeats > 1:
        queries = np.tile(queries, min(repeats, 16))
    return d, queries


def test_another_thread_runs_during_a_long_call():
    """Proof that the GIL is released: a pure-Python thread keeps counting
    while the main thread is inside one popcount call. With the GIL held,
    it could not run at all between the call's start and end (apart from
    the switch-interval slack at the edges, which the margins exclude)."""
    d, queries = _long_call_setup()
    out = np.empty(queries.shape, dtype=np.uint32)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    stamps: list = []
    stop = threading.Event()

    def count() -> None:
        append, now = stamps.append, time.perf_counter
        while not stop.is_set():
            append(now())

    counter = threading.Thread(target=count)
    counter.start()
    try:
        time.sleep(0.02)  # the counter is running
        start = time.perf_counter()
        d.popcount(queries, out=out)
        end = time.perf_counter()
    finally:
        stop.set()
        counter.join()
        sys.setswitchinterval(old_interval)
    duration = end - start
    margin = 0.02
    assert duration > 3 * margin, f"the call took only {duration:.3f} s; cannot tell"
    inside = [t for t in stamps if start + margin < t < end - margin]
    # The counter appends about a million times a second when it runs; with
    # the GIL held throughout it would append nothing inside the window.
    window = duration - 2 * margin
    assert len(inside) > 1000 * window, (
        f"only {len(inside)} steps of the other thread in {window:.3f} s inside the call"
    )
    assert out[0] == bin(int(queries[0])).count("1")


def test_small_calls_from_many_threads_stay_correct(seed_dispatcher):
    reference = row_counts(initret.seed_table())
    errors = []

    def work(seed: int) -> None:
        r = np.random.default_rng(seed)
        for _ in range(200):
            q = r.integers(0, initret.SEED_ROWS, size=int(r.integers(0, 5000)))
            if not np.array_equal(seed_dispatcher.popcount(q), reference[q]):
                errors.append(seed)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


RACE_SCRIPT = """
import sys, threading, numpy as np, initret
d = initret.Dispatcher(np.zeros(16, dtype=np.uint32))   # every count is 0
q = np.zeros(1 << 22, dtype=np.uint32)
out = np.empty_like(q)
stop = False
def writer():
    while not stop:
        q.fill(4_000_000_000); q.fill(0)
t = threading.Thread(target=writer); t.start()
for _ in range(40):
    try:
        d.popcount(q, out=out)
        assert not out.any(), "a count that no row has"
    except IndexError:
        pass
stop = True; t.join()
print("ok")
"""


def test_queries_rewritten_during_a_call_never_crash():
    # Another thread flips the queries between valid and out-of-range values
    # while calls run with the GIL released. Each call must end in valid
    # counts or IndexOutOfRange: the kernels index only with the values they
    # range-checked (this crashed with SIGSEGV before). Run in a child, so a
    # crash fails the test instead of the test run.
    result = subprocess.run(
        [sys.executable, "-c", RACE_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
