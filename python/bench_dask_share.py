"""Per-worker memory of initret.dask.DispatcherPlugin, table per worker
(shared=False) against table once per host (shared=True).

    python python/bench_dask_share.py [--rows-log2 26] [--workers 3] [--pool]

Starts a LocalCluster of worker processes (one thread each), registers a
plugin with a uint32 table of 2**rows_log2 rows, and prints, for each worker,
its private memory (Private_Clean + Private_Dirty of /proc/<pid>/smaps_rollup),
its Rss, Pss and peak Rss (VmHWM), before registering and after the
dispatchers were built. ``--pool``: the same for ``initret.Pool(shared=False)``
against ``initret.Pool(shared=True)`` (spawn), each worker reading the whole
table. Linux only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# Run as a script, this file's folder (python/) would shadow the installed
# package with the source tree, which has no compiled extension.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]


def memory(dask_worker=None) -> dict:
    fields = {}
    with open(f"/proc/{os.getpid()}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                fields["VmHWM"] = int(line.split()[1])
    fields["private"] = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return fields


def measure(shared: bool, rows_log2: int, workers: int) -> None:
    import numpy as np
    from distributed import Client, LocalCluster

    import initret.dask

    table = np.arange(1 << rows_log2, dtype=np.uint32)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        before = client.run(memory)
        start = time.perf_counter()
        plugin = initret.dask.register(client, table, threads=1, shared=shared)
        seconds = time.perf_counter() - start
        total = int(initret.dask.popcount(np.arange(0, 1 << rows_log2, 4097)).sum().compute())
        assert total == int(np.bitwise_count(table[::4097]).sum()) if hasattr(np, "bitwise_count") else True
        after = client.run(memory)
        segments = client.run(lambda dask_worker: (dask_worker.plugins["initret"].segment,
                                                   dask_worker.plugins["initret"].created_segment))
        print(f"\nshared={shared}: table {table.nbytes >> 20} MiB, register took {seconds:.1f} s")
        print(f"{'worker':>24} {'private MiB before':>18} {'after':>7} {'Rss':>7} {'Pss':>7} {'peak Rss':>9}  segment")
        for address in sorted(after):
            b, a = before[address], after[address]
            print(f"{address:>24} {b['private'] / 1024:>18.0f} {a['private'] / 1024:>7.0f} "
                  f"{a['Rss'] / 1024:>7.0f} {a['Pss'] / 1024:>7.0f} {a['VmHWM'] / 1024:>9.0f}  {segments[address]}")
        print(f"{'sum':>24} {sum(b['private'] for b in before.values()) / 1024:>18.0f} "
              f"{sum(a['private'] for a in after.values()) / 1024:>7.0f} "
              f"{sum(a['Rss'] for a in after.values()) / 1024:>7.0f} "
              f"{sum(a['Pss'] for a in after.values()) / 1024:>7.0f} "
              f"{sum(a['VmHWM'] for a in after.values()) / 1024:>9.0f}")
        del plugin


def make_table(rows_log2: int):
    import numpy as np

    return {"table": np.arange(1 << rows_log2, dtype=np.uint32)}


def touch_and_measure(i: int, initret: dict) -> tuple:
    """Reads the whole table (so its pages are mapped), then this worker's memory."""
    import numpy as np

    total = int(initret["table"].sum(dtype=np.uint64))
    time.sleep(0.2)  # let every worker take a task
    return os.getpid(), total, memory()


def measure_pool(shared: bool, rows_log2: int, workers: int) -> None:
    import multiprocessing

    import initret

    ctx = multiprocessing.get_context("spawn")
    with initret.Pool(workers, initializer=make_table, initargs=(rows_log2,), context=ctx,
                      shared=shared) as pool:
        results = pool.map(touch_and_measure, range(4 * workers), chunksize=1)
    last = {pid: fields for pid, _, fields in results}
    print(f"\ninitret.Pool({workers}, shared={shared}), spawn, a {(4 << rows_log2) >> 20} MiB table, "
          "each worker reads all of it:")
    print(f"{'worker pid':>12} {'private MiB':>12} {'Rss':>7} {'Pss':>7} {'peak Rss':>9}")
    for pid, f in sorted(last.items()):
        print(f"{pid:>12} {f['private'] / 1024:>12.0f} {f['Rss'] / 1024:>7.0f} {f['Pss'] / 1024:>7.0f} "
              f"{f['VmHWM'] / 1024:>9.0f}")
    print(f"{'sum':>12} {sum(f['private'] for f in last.values()) / 1024:>12.0f} "
          f"{sum(f['Rss'] for f in last.values()) / 1024:>7.0f} {sum(f['Pss'] for f in last.values()) / 1024:>7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-log2", type=int, default=26)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--only", choices=["shared", "per-worker"], default=None)
    parser.add_argument("--pool", action="store_true", help="measure initret.Pool(shared=...) instead of Dask")
    args = parser.parse_args()
    if args.pool:
        for shared in (False, True):
            if args.only is None or args.only == ("shared" if shared else "per-worker"):
                measure_pool(shared, args.rows_log2, args.workers)
        return
    for shared in (False, True):
        if args.only is None or args.only == ("shared" if shared else "per-worker"):
            measure(shared, args.rows_log2, args.workers)


if __name__ == "__main__":
    main()
