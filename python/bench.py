"""initret against numpy's counts[q] and the seed's recipes, measured in one run.

    python python/bench.py [--repeat N] [--big] [--gpu] [--json]

is ``python -m initret bench``; see python/initret/_bench.py for what is timed.
"""

import sys

from initret._bench import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
