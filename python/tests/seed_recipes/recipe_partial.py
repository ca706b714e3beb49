# The seed problem's first recipe ("A Naive Solution"), verbatim, with
# `from initret import Pool` in place of `from multiprocessing import Pool`
# and a checksum printed at the end.
import functools
from typing import Dict

from initret import Pool

cache = {i: bin(i) for i in range(2**16 - 1)}

def func(i: int, cache: Dict[int, str]) -> int:
    return cache[i].count("1")


with Pool(8) as pool:
    # Bind 'cache' to 'func' and pass the partial to map()
    counts = pool.map(functools.partial(func, cache=cache),
                      [i for i in range(2**16-1)])

print(sum(counts))
