# The seed problem's third recipe ("A (Proposed) New Solution": the
# initializer's return value is passed to func as `initret`), verbatim, with
# `from initret import Pool` in place of the CPython fork's Pool and a
# checksum printed at the end.
from typing import Dict

from initret import Pool

cache = {i: bin(i) for i in range(2**16 - 1)}

def func(i: int, initret: Dict[int, str]) -> int:
    cache = initret  # Re-assign var for illustrative/readability purposes
    return cache[i].count("1")


def identity(cache: Dict[int, str]) -> Dict[int, str]:
    return cache


with Pool(8, initializer=identity, initargs=(cache,)) as pool:
    counts = pool.map(func, [i for i in range(2**16-1)])

print(sum(counts))
