# The seed problem's second recipe ("A Correct Solution": a global set by
# the pool initializer), verbatim, with `from initret import Pool` in place
# of `from multiprocessing import Pool` and a checksum printed at the end.
from typing import Dict

from initret import Pool

cache = {i: bin(i) for i in range(2**16 - 1)}

def func(i: int) -> int:
    return global_cache[i].count("1")


def make_global(cache: Dict[int, str]) -> None:
    # Declare 'global_cache' to be Global
    global global_cache
    # Update 'global_cache' with a value, now *implicitly* accessible in func
    global_cache = cache


with Pool(8, initializer=make_global, initargs=(cache,)) as pool:
    counts = pool.map(func, [i for i in range(2**16-1)])

print(sum(counts))
