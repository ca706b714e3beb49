"""``python -m initret bench --state``: the seed's own cache (a dict of
strings) placed once per machine, against the recipes users compare.

For the seed's dict at ``2**16 - 1`` and ``2**21`` entries, per recipe and
start method:

* **private memory per worker**: ``Private_Clean + Private_Dirty`` of the
  worker's ``/proc/self/smaps_rollup``, when idle (its state set up) and
  after it read every key once;
* **start-up**: from creating the pool (and ``share()``, for
  ``shared=True``) until every worker answered a task;
* **map**: ``pool.map`` of the seed's ``func`` over every key, start-up
  excluded.

And per lookup, on random keys, in one process: a plain dict's ``d[k]``,
:class:`initret.SharedDict`'s ``d[k]`` and ``get_many``, LMDB's
``txn.get`` (``pip install lmdb``; skipped without it) and
``multiprocessing.Manager().dict()``. Every figure is a ratio against a
reference measured in the same run.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from . import Pool, share
from ._bench import _func_global, _func_initret, _identity, _make_global, machine, table_markdown

# ---------------------------------------------------------------------------
# In the workers.


def private_memory_kib() -> int:
    """This process's private memory (``Private_Clean + Private_Dirty``), KiB."""
    total = 0
    with open("/proc/self/smaps_rollup", encoding="ascii") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def _read_every_key_global(n: int) -> tuple:
    from . import _bench

    idle = private_memory_kib()
    total = sum(_bench.global_cache[i].count("1") for i in range(n))
    time.sleep(0.3)  # hold this worker, so that every worker gets one task
    return os.getpid(), idle, private_memory_kib(), total


def _read_every_key_initret(n: int, initret: Any) -> tuple:
    idle = private_memory_kib()
    total = sum(initret[i].count("1") for i in range(n))
    time.sleep(0.3)
    return os.getpid(), idle, private_memory_kib(), total


def _answer(_i: int) -> int:
    time.sleep(0.05)
    return os.getpid()


# ---------------------------------------------------------------------------
# The recipes.

RECIPES = ("multiprocessing.Pool + global initializer", "initret.Pool", "initret.Pool(shared=True)")


def _start(recipe: str, cache: Dict[int, str], processes: int, ctx: Any) -> tuple:
    """A started pool (every worker answered) and the seconds it took; for
    ``shared=True`` the :func:`share` of the cache is part of it."""
    start = time.perf_counter()
    if recipe == RECIPES[0]:
        pool = multiprocessing.pool.Pool(processes, initializer=_make_global, initargs=(cache,), context=ctx)
    elif recipe == RECIPES[1]:
        pool = Pool(processes, initializer=_identity, initargs=(cache,), context=ctx)
    else:
        pool = Pool(processes, initializer=_identity, initargs=(cache,), context=ctx, shared=True)
    pids = set(pool.map(_answer, range(4 * processes), chunksize=1))
    return pool, time.perf_counter() - start, len(pids)


def measure_recipe(recipe: str, method: str, cache: Dict[int, str], processes: int) -> Dict[str, Any]:
    ctx = multiprocessing.get_context(method)
    n = len(cache)
    pool, startup, _answered = _start(recipe, cache, processes, ctx)
    try:
        func = _func_global if recipe == RECIPES[0] else _func_initret
        chunksize = max(1, n // (8 * processes))
        start = time.perf_counter()
        checksum = sum(pool.map(func, range(n), chunksize=chunksize))
        map_seconds = time.perf_counter() - start
        reader = _read_every_key_global if recipe == RECIPES[0] else _read_every_key_initret
        reports = pool.map(reader, [n] * processes, chunksize=1)
    finally:
        pool.terminate()
        pool.join()
    per_worker = {}
    for pid, idle, after, total in reports:
        per_worker[pid] = (idle, after, total)
    expected = sum(bin(i).count("1") for i in range(n))
    return {
        "recipe": recipe,
        "method": method,
        "entries": n,
        "startup_s": startup,
        "map_s": map_seconds,
        "idle_kib": max(v[0] for v in per_worker.values()),
        "after_read_kib": max(v[1] for v in per_worker.values()),
        "correct": checksum == expected and all(v[2] == expected for v in per_worker.values()),
    }


# ---------------------------------------------------------------------------
# Per lookup.


def _per_lookup(fn: Callable[[], Any], count: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - start) / count)
    return best


def measure_lookups(cache: Dict[int, str], lookups: int = 1_000_000, seed: int = 7) -> Dict[str, Any]:
    n = len(cache)
    rng = random.Random(seed)
    keys = [rng.randrange(n) for _ in range(lookups)]
    rows: Dict[str, Optional[float]] = {}

    def loop(d: Any) -> Callable[[], Any]:
        def run() -> None:
            for k in keys:
                d[k]
        return run

    rows["dict d[k]"] = _per_lookup(loop(cache), lookups)
    with share(cache) as shared:
        shared_dict = shared.value
        rows["initret.SharedDict d[k]"] = _per_lookup(loop(shared_dict), lookups)
        key_array = np.array(keys, dtype=np.int64)
        rows["initret.SharedDict get_many(int64 array)"] = _per_lookup(lambda: shared_dict.get_many(key_array),
                                                                        lookups)
    del shared, shared_dict
    # The same keys into a dict of numbers (each key's popcount, the seed's
    # answers): get_many returns a numpy array.
    numbers = {k: bin(k).count("1") for k in cache}
    rows["dict of ints: Python loop [d[k] for k in keys]"] = _per_lookup(lambda: [numbers[k] for k in keys],
                                                                        lookups)
    with share(numbers) as shared:
        key_array = np.array(keys, dtype=np.int64)
        shared_numbers = shared.value
        rows["dict of ints: SharedDict get_many(int64 array)"] = _per_lookup(
            lambda: shared_numbers.get_many(key_array), lookups)
    del shared, shared_numbers, numbers
    rows["lmdb txn.get"] = rows["lmdb txn.get + encode/decode"] = None
    try:
        import lmdb
    except ImportError:
        lmdb = None
    if lmdb is not None:
        directory = tempfile.mkdtemp()
        try:
            env = lmdb.open(directory, map_size=4 << 30, subdir=True, lock=False, sync=False)
            with env.begin(write=True) as txn:
                for k, v in cache.items():
                    txn.put(k.to_bytes(8, "little"), v.encode())
            encoded = [k.to_bytes(8, "little") for k in keys]
            with env.begin() as txn:
                def raw() -> None:
                    get = txn.get
                    for k in encoded:
                        get(k)

                def decoded() -> None:
                    get = txn.get
                    for k in keys:
                        get(k.to_bytes(8, "little")).decode()

                rows["lmdb txn.get"] = _per_lookup(raw, lookups)
                rows["lmdb txn.get + encode/decode"] = _per_lookup(decoded, lookups)
            env.close()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    manager_lookups = min(lookups, 20_000)
    with multiprocessing.Manager() as manager:
        proxy = manager.dict()
        proxy.update({k: cache[k] for k in keys[:manager_lookups]})
        sample = keys[:manager_lookups]

        def via_manager() -> None:
            for k in sample:
                proxy[k]

        rows["Manager().dict() d[k]"] = _per_lookup(via_manager, manager_lookups, repeat=1)
    return {"entries": n, "lookups": lookups, "per_lookup_s": rows}


# ---------------------------------------------------------------------------
# The report.


def bench_state(processes: int = 2, sizes: tuple = (2**16 - 1, 2**21), methods: Optional[List[str]] = None,
                lookups: int = 1_000_000) -> Dict[str, Any]:
    methods = methods or [m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()]
    report: Dict[str, Any] = {"machine": machine(), "processes": processes, "recipes": [], "lookups": []}
    for n in sizes:
        cache = {i: bin(i) for i in range(n)}
        for method in methods:
            for recipe in RECIPES:
                report["recipes"].append(measure_recipe(recipe, method, cache, processes))
        report["lookups"].append(measure_lookups(cache, lookups))
        del cache
    return report


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def print_state_bench(report: Dict[str, Any]) -> None:
    print(f"Machine: {report['machine']}")
    print(f"Pool size: {report['processes']} workers. Private memory = Private_Clean + Private_Dirty of the "
          "worker's smaps_rollup: idle, and after the worker read every key once.\n")
    header = ["entries", "recipe", "start method", "private / worker idle", "after reading every key",
              "start-up", "map", "map vs global+fork", "correct"]
    rows = []
    by_key = {(r["entries"], r["recipe"], r["method"]): r for r in report["recipes"]}
    for r in report["recipes"]:
        reference = by_key.get((r["entries"], RECIPES[0], "fork"))
        ratio = f"{r['map_s'] / reference['map_s']:.2f}x" if reference else "-"
        rows.append([f"{r['entries']:,}", r["recipe"], r["method"], _mib(r["idle_kib"]), _mib(r["after_read_kib"]),
                     f"{r['startup_s']:.2f} s", f"{r['map_s']:.2f} s", ratio, "yes" if r["correct"] else "NO"])
    print(table_markdown(header, rows))
    print()
    for n in sorted({r["entries"] for r in report["recipes"]}):
        spawn_ref = by_key.get((n, RECIPES[0], "spawn"))
        shared_spawn = by_key.get((n, RECIPES[2], "spawn"))
        if spawn_ref and shared_spawn:
            print(f"{n:,} entries: share() + Pool({report['processes']}, shared=True) start-up under spawn is "
                  f"{shared_spawn['startup_s'] / spawn_ref['startup_s']:.2f}x the stdlib spawn recipe's")
    print()
    for section in report["lookups"]:
        per = section["per_lookup_s"]
        reference = per["dict d[k]"]
        print(f"Per lookup, {section['entries']:,} entries, random int keys "
              f"({section['lookups']:,} lookups; Manager: 20,000):")
        rows = []
        for name, seconds in per.items():
            if seconds is None:
                rows.append([name, "not installed", "-"])
                continue
            own = per.get("dict of ints: Python loop [d[k] for k in keys]") if name.startswith("dict of ints") \
                else reference
            rows.append([name, f"{seconds * 1e9:.0f} ns", f"{seconds / own:.2f}x"])
        print(table_markdown(["lookup", "per lookup", "vs the plain dict's loop (same values)"], rows))
        print()
