"""Start-up of ``initret.Pool(4, shared=True)`` under spawn with a large
array as the initializer's return value, against the same pool whose
initializer returns a tiny array (same run, alternated).

    python python/bench_startup.py [--gib 1] [--repeat 5] [--workers 4]

Start-up is the time from ``Pool(...)`` until every worker has answered
a task that reads its ``initret`` (16 tasks of 20 ms for 4 workers, the
same in both pools).
The array is built before the clock starts: what is timed is placing it in
shared memory once and every worker mapping it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time

# Run as a script, this file's folder (python/) must not shadow the
# installed package.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np  # noqa: E402

import initret  # noqa: E402

def touch(i: int, initret) -> tuple:
    """Reads the shared array's first and last element; the short sleep
    spreads the tasks over every worker."""
    time.sleep(0.02)
    return os.getpid(), int(initret[0]) + int(initret[-1])


def start_up(array: np.ndarray, workers: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    with initret.Pool(workers, initializer=lambda: array, shared=True, context=ctx) as pool:
        answers = pool.map(touch, range(4 * workers), chunksize=1)
        seconds = time.perf_counter() - start
    assert len({pid for pid, _ in answers}) == workers, "every worker answered"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    big = np.ones(int(args.gib * (1 << 30)) // 8, dtype=np.int64)
    tiny = np.ones(1, dtype=np.int64)
    print(f"initret.Pool({args.workers}, shared=True), spawn; {big.nbytes / 2**30:.2f} GiB array vs 8 bytes")
    rows = []
    for _ in range(args.repeat):
        small = start_up(tiny, args.workers)
        large = start_up(big, args.workers)
        # The reference: one copy of the same bytes into fresh memory, the
        # least that placing them anywhere new can cost on this machine.
        start = time.perf_counter()
        np.copyto(np.empty_like(big), big)
        copy = time.perf_counter() - start
        rows.append((small, large, copy))
        print(f"  tiny {small:.3f} s   big {large:.3f} s   difference {large - small:+.3f} s   "
              f"one copy {copy:.3f} s   difference / copy {(large - small) / copy:.2f}")
    best = [min(r[i] for r in rows) for i in range(3)]
    print(f"best: tiny {best[0]:.3f} s, big {best[1]:.3f} s, difference {best[1] - best[0]:+.3f} s, "
          f"one copy {best[2]:.3f} s")


if __name__ == "__main__":
    main()
