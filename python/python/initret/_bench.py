"""The seed workload and the benchmarks, from Python.

``python -m initret`` runs the seed problem's workload (the 65535 lookups of
``cache[i].count("1")``) through every strategy a Python user has and prints
one table; ``python -m initret bench`` (or ``python python/bench.py``)
compares ``initret.Dispatcher`` with numpy's ``counts[q]`` and
``initret.Pool`` with the seed's global-initializer recipe, in the same run.

Times are the best of ``--repeat`` runs (``time.perf_counter``). The
multiprocessing rows time the seed's whole ``with Pool(...)`` block, pool
start-up and shut-down included, as the seed's code does; the numpy and
``Dispatcher`` rows time the lookups alone, their one-time setup (deriving the
count table, building the dispatcher) is shown separately.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from . import SEED_CHECKSUM, SEED_ROWS, Dispatcher, GpuUnavailable, Pool, info

# ---------------------------------------------------------------------------
# The seed's three recipes, as module-level functions so that worker
# processes can import them under any start method.


def _seed_cache(n: int = SEED_ROWS) -> Dict[int, str]:
    return {i: bin(i) for i in range(n)}


def _func_partial(i: int, cache: Dict[int, str]) -> int:
    return cache[i].count("1")


#: Set in each worker by ``_make_global`` (the seed's recipe 2).
global_cache: Dict[int, str]


def _func_global(i: int) -> int:
    return global_cache[i].count("1")


def _make_global(cache: Dict[int, str]) -> None:
    global global_cache
    global_cache = cache


def _func_initret(i: int, initret: Dict[int, str]) -> int:
    cache = initret
    return cache[i].count("1")


def _identity(cache: Dict[int, str]) -> Dict[int, str]:
    return cache


def recipe_serial(cache: Dict[int, str], n: int) -> List[int]:
    """No pool: the seed's ``func`` in a loop."""
    return [cache[i].count("1") for i in range(n)]


def recipe_partial(cache: Dict[int, str], n: int, processes: int, pool_class: Any = None) -> List[int]:
    """Recipe 1: the cache bound to ``func`` with ``functools.partial``."""
    pool_class = pool_class or multiprocessing.Pool
    with pool_class(processes) as pool:
        return pool.map(functools.partial(_func_partial, cache=cache), [i for i in range(n)])


def recipe_global(cache: Dict[int, str], n: int, processes: int, pool_class: Any = None) -> List[int]:
    """Recipe 2: a global set by the pool initializer."""
    pool_class = pool_class or multiprocessing.Pool
    with pool_class(processes, initializer=_make_global, initargs=(cache,)) as pool:
        return pool.map(_func_global, [i for i in range(n)])


def recipe_initret(cache: Dict[int, str], n: int, processes: int) -> List[int]:
    """Recipe 3: the initializer's return value passed as ``initret``."""
    with Pool(processes, initializer=_identity, initargs=(cache,)) as pool:
        return pool.map(_func_initret, [i for i in range(n)])


# ---------------------------------------------------------------------------
# Timing helpers.


def best_of(fn: Callable[[], Any], repeat: int) -> "tuple[float, Any]":
    """The smallest wall time of ``repeat`` calls of ``fn`` and its last result."""
    best = float("inf")
    result = None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def fmt_rate(per_second: float) -> str:
    if per_second >= 1e9:
        return f"{per_second / 1e9:.2f} G/s"
    if per_second >= 1e6:
        return f"{per_second / 1e6:.1f} M/s"
    return f"{per_second / 1e3:.1f} k/s"


def machine() -> str:
    """The CPU model and core count, for the record."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}"


def table_markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _gpu_dispatcher(table: np.ndarray) -> "tuple[Optional[Dispatcher], str]":
    try:
        d = Dispatcher(table, backend="gpu")
    except GpuUnavailable as e:
        return None, e.reason
    return d, d.adapter or "gpu"


# ---------------------------------------------------------------------------
# `python -m initret`: the seed workload, every strategy, one table.


def seed_workload(processes: int, repeat: int, gpu: bool = True) -> Dict[str, Any]:
    """Runs the seed workload through every strategy; returns the rows."""
    n = SEED_ROWS
    cache = _seed_cache(n)
    results: List[Dict[str, Any]] = []

    def add(name: str, seconds: float, counts: Any, setup: Optional[float] = None, note: str = "") -> None:
        results.append(
            {
                "strategy": name,
                "seconds": seconds,
                "lookups_per_second": n / seconds,
                "checksum": int(np.asarray(counts, dtype=np.int64).sum()),
                "setup_seconds": setup,
                "note": note,
            }
        )

    t, counts = best_of(lambda: recipe_serial(cache, n), repeat)
    add("serial: the seed's func in a loop", t, counts)
    t, counts = best_of(lambda: recipe_partial(cache, n, processes), min(repeat, 3))
    add(f"multiprocessing.Pool({processes}) + functools.partial (recipe 1)", t, counts,
        note="pool start-up included")
    t, counts = best_of(lambda: recipe_global(cache, n, processes), repeat)
    add(f"multiprocessing.Pool({processes}) + global initializer (recipe 2)", t, counts,
        note="pool start-up included")

    table = np.arange(n, dtype=np.uint32)
    queries = np.arange(n)  # int64, numpy's own index type
    setup, row_counts = best_of(lambda: np.bitwise_count(table) if hasattr(np, "bitwise_count")
                                else np.unpackbits(table.view(np.uint8)).reshape(n, -1).sum(1), 1)
    inner = max(repeat, 50)
    t, counts = best_of(lambda: row_counts[queries], inner)
    add("numpy counts[q] (count table derived once)", t, counts, setup)

    t, counts = best_of(lambda: recipe_initret(cache, n, processes), repeat)
    add(f"initret.Pool({processes}) + initret= (recipe 3)", t, counts, note="pool start-up included")

    setup, d = best_of(lambda: Dispatcher(table, backend="cpu"), 1)
    t, counts = best_of(lambda: d.popcount(queries), inner)
    add(f"initret.Dispatcher cpu ({d.kernel}, {d.threads} threads), int64 queries", t, counts, setup)
    queries32 = queries.astype(np.uint32)
    t, counts = best_of(lambda: d.popcount(queries32), inner)
    add(f"initret.Dispatcher cpu ({d.kernel}, {d.threads} threads), uint32 queries", t, counts, setup)
    del d

    if gpu:
        start = time.perf_counter()
        g, what = _gpu_dispatcher(table)
        setup = time.perf_counter() - start
        if g is not None:
            t, counts = best_of(lambda: g.popcount(queries32), max(repeat, 10))
            add(f"initret.Dispatcher gpu ({what})", t, counts, setup)
            del g
        else:
            results.append({"strategy": "initret.Dispatcher gpu", "seconds": None, "note": f"no GPU: {what}"})

    serial = results[0]["seconds"]
    for row in results:
        if row.get("seconds"):
            row["speedup_vs_serial"] = serial / row["seconds"]
    return {"machine": machine(), "processes": processes, "repeat": repeat, "rows": results}


def print_seed_workload(report: Dict[str, Any]) -> None:
    print(f"The seed workload: {SEED_ROWS} lookups of cache[i].count('1'); "
          f"checksum must be {SEED_CHECKSUM}.")
    print(f"Machine: {report['machine']}. Best of {report['repeat']} runs "
          f"(recipe 1: at most 3).\n")
    rows = []
    for r in report["rows"]:
        if r.get("seconds") is None:
            rows.append([r["strategy"], "-", "-", "-", "-", "-", r["note"]])
            continue
        rows.append([
            r["strategy"],
            fmt_time(r["seconds"]),
            fmt_rate(r["lookups_per_second"]),
            f"{r['speedup_vs_serial']:.2f}x",
            str(r["checksum"]) + ("" if r["checksum"] == SEED_CHECKSUM else " WRONG"),
            fmt_time(r["setup_seconds"]) if r.get("setup_seconds") is not None else "-",
            r["note"],
        ])
    print(table_markdown(
        ["strategy", "time", "lookups/s", "speedup vs serial", "checksum", "setup (once)", "note"], rows))


# ---------------------------------------------------------------------------
# `python -m initret bench`: initret against numpy and the seed's recipes.


def bench(repeat: int, queries_log2: int = 24, rows_log2: int = 16, processes: Optional[int] = None,
          big: bool = False, gpu: bool = False) -> Dict[str, Any]:
    """initret vs numpy ``counts[q]`` (large and seed batches) and
    ``initret.Pool`` vs the global-initializer recipe, measured in one run."""
    processes = processes or os.cpu_count() or 1
    rng = np.random.default_rng(12345)
    out: Dict[str, Any] = {"machine": machine(), "repeat": repeat, "sections": []}

    def section(title: str, rows_count: int, n_queries: int, qdtype: Any = np.int64) -> Dict[str, Any]:
        table = rng.integers(0, 2**32, size=rows_count, dtype=np.uint64).astype(np.uint32)
        queries = rng.integers(0, rows_count, size=n_queries).astype(qdtype)
        d = Dispatcher(table, backend="cpu")
        # numpy is asked for the same thing: counts[q] into a table of the
        # counts' own dtype (uint8 here), which is initret's result dtype.
        counts = np.bitwise_count(table) if hasattr(np, "bitwise_count") else \
            np.unpackbits(table.view(np.uint8)).reshape(rows_count, -1).sum(1)
        counts = counts.astype(d.result_dtype)
        q32 = queries.astype(np.uint32)
        outbuf = np.empty(n_queries, dtype=d.result_dtype)
        measurements: List[Dict[str, Any]] = []

        def measure(name: str, fn: Callable[[], Any]) -> None:
            t, result = best_of(fn, repeat)
            ok = bool(np.array_equal(result, expected))
            measurements.append({"name": name, "seconds": t, "lookups_per_second": n_queries / t, "correct": ok})

        expected = counts[queries]
        # Interleaved so that noise from other processes hits both alike.
        measure("numpy counts[q] (int64 q)", lambda: counts[queries])
        measure(f"Dispatcher.popcount(q) (int64 q, {d.kernel})", lambda: d.popcount(queries))
        measure(f"Dispatcher.popcount(q) (uint32 q, {d.kernel})", lambda: d.popcount(q32))
        measure(f"Dispatcher.popcount(q, out=buf) (uint32 q, {d.kernel})", lambda: d.popcount(q32, out=outbuf))
        measure(f"Dispatcher.popcount(q, dtype=uint32) (int64 q, {d.kernel})",
                lambda: d.popcount(queries, dtype=np.uint32))
        measure("numpy counts[q] (int64 q), again", lambda: counts[queries])
        if gpu:
            g, what = _gpu_dispatcher(table)
            if g is not None:
                measure(f"Dispatcher gpu ({what}) (uint32 q)", lambda: g.popcount(q32))
                del g
        base = min(m["seconds"] for m in measurements if m["name"].startswith("numpy"))
        for m in measurements:
            m["speedup_vs_numpy"] = base / m["seconds"]
        return {"title": title, "rows": rows_count, "queries": n_queries, "measurements": measurements}

    out["sections"].append(section(
        f"2^{queries_log2} random queries into 2^{rows_log2} rows (1 word)", 2**rows_log2, 2**queries_log2))
    # The seed batch: 65535 queries 0..65534 into the seed table.
    seed: Dict[str, Any] = {"title": f"the seed batch ({SEED_ROWS} queries 0..{SEED_ROWS - 1})", "rows": SEED_ROWS,
            "queries": SEED_ROWS, "measurements": []}
    table = np.arange(SEED_ROWS, dtype=np.uint32)
    counts = np.array([bin(i).count("1") for i in range(SEED_ROWS)], dtype=np.uint8)  # the counts' own dtype
    queries = np.arange(SEED_ROWS)
    q32 = queries.astype(np.uint32)
    d = Dispatcher(table, backend="cpu")
    inner = max(repeat * 40, 200)
    seed_cases: List["tuple[str, Callable[[], Any]]"] = [
        ("numpy counts[q] (int64 q)", lambda: counts[queries]),
        (f"Dispatcher.popcount(q) (int64 q, {d.kernel})", lambda: d.popcount(queries)),
        (f"Dispatcher.popcount(q) (uint32 q, {d.kernel})", lambda: d.popcount(q32)),
        ("numpy counts[q] (int64 q), again", lambda: counts[queries]),
    ]
    for name, fn in seed_cases:
        t, result = best_of(fn, inner)
        seed["measurements"].append({"name": name, "seconds": t, "lookups_per_second": SEED_ROWS / t,
                                     "correct": int(result.sum()) == SEED_CHECKSUM})
    del d  # joins its threads: the pools below fork this process
    base = min(m["seconds"] for m in seed["measurements"] if m["name"].startswith("numpy"))
    for m in seed["measurements"]:
        m["speedup_vs_numpy"] = base / m["seconds"]
    out["sections"].append(seed)
    if big:
        out["sections"].append(section("2^24 random queries into 2^26 rows (1 word)", 2**26, 2**24))

    # initret.Pool vs the seed's global-initializer recipe, interleaved.
    cache = _seed_cache()
    pools: Dict[str, Any] = {"title": f"the seed workload through Pool({processes}) (pool start-up included)",
             "rows": SEED_ROWS, "queries": SEED_ROWS, "measurements": []}
    times: Dict[str, List[float]] = {"global": [], "initret": []}
    for _ in range(max(repeat, 5)):
        for key, fn in (("global", lambda: recipe_global(cache, SEED_ROWS, processes)),
                        ("initret", lambda: recipe_initret(cache, SEED_ROWS, processes))):
            start = time.perf_counter()
            result = fn()
            times[key].append(time.perf_counter() - start)
            assert sum(result) == SEED_CHECKSUM
    for key, name in (("global", "multiprocessing.Pool + global initializer (recipe 2)"),
                      ("initret", "initret.Pool + initret= (recipe 3)")):
        t = min(times[key])
        pools["measurements"].append({"name": name, "seconds": t, "median_seconds": float(np.median(times[key])),
                                      "lookups_per_second": SEED_ROWS / t, "correct": True})
    base = pools["measurements"][0]["seconds"]
    for m in pools["measurements"]:
        m["speedup_vs_numpy"] = None
        m["speedup_vs_global_recipe"] = base / m["seconds"]
    out["sections"].append(pools)
    return out


def print_bench(report: Dict[str, Any]) -> None:
    print(f"Machine: {report['machine']}. Best of {report['repeat']} runs unless noted.\n")
    for s in report["sections"]:
        print(f"### {s['title']}\n")
        rows = []
        for m in s["measurements"]:
            ratio = m.get("speedup_vs_numpy")
            if ratio is None:
                ratio = m.get("speedup_vs_global_recipe")
                ratio_text = f"{ratio:.2f}x vs recipe 2" if ratio is not None else "-"
            else:
                ratio_text = f"{ratio:.2f}x vs numpy"
            extra = f" (median {fmt_time(m['median_seconds'])})" if "median_seconds" in m else ""
            rows.append([m["name"], fmt_time(m["seconds"]) + extra, fmt_rate(m["lookups_per_second"]),
                         ratio_text, "yes" if m["correct"] else "NO"])
        print(table_markdown(["what", "time", "lookups/s", "ratio", "correct"], rows))
        print()


# ---------------------------------------------------------------------------


def _positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m initret",
        description="The seed workload through every strategy (default), a benchmark "
                    "against numpy (bench), or what this machine offers (info).",
    )
    parser.add_argument("command", nargs="?", default="seed", choices=["seed", "bench", "info"])
    parser.add_argument("--processes", type=_positive, default=os.cpu_count() or 1,
                        help="pool size for the multiprocessing rows (default: CPUs)")
    parser.add_argument("--repeat", type=_positive, default=5, help="runs per measurement; the best is kept")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU row")
    parser.add_argument("--gpu", action="store_true", help="bench: add GPU rows")
    parser.add_argument("--big", action="store_true", help="bench: add 2^24 queries into 2^26 rows")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--state", action="store_true",
                        help="bench: the seed's dict placed once per machine (initret.SharedDict) against the "
                             "recipes, a plain dict, LMDB and Manager().dict() (see initret._bench_state)")
    parser.add_argument("--state-entries", default="65535,2097152",
                        help="bench --state: comma-separated dict sizes (default 65535,2097152)")
    args = parser.parse_args(argv)
    if args.command == "info":
        print(json.dumps(info(), indent=2))
        return 0
    if args.command == "bench" and args.state:
        from ._bench_state import bench_state, print_state_bench

        sizes = tuple(int(x) for x in args.state_entries.split(",") if x.strip())
        state_report = bench_state(processes=args.processes, sizes=sizes)
        if args.json:
            print(json.dumps(state_report, indent=2))
        else:
            print_state_bench(state_report)
        return 0 if all(r["correct"] for r in state_report["recipes"]) else 1
    if args.command == "bench":
        report = bench(args.repeat, processes=args.processes, big=args.big, gpu=args.gpu)
        print(json.dumps(report, indent=2) if args.json else "", end="")
        if not args.json:
            print_bench(report)
        return 0 if all(m["correct"] for s in report["sections"] for m in s["measurements"]) else 1
    report = seed_workload(args.processes, args.repeat, gpu=not args.no_gpu)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_seed_workload(report)
    ok = all(r.get("checksum", SEED_CHECKSUM) == SEED_CHECKSUM for r in report["rows"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
