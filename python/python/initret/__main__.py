"""``python -m initret [seed|bench|info]``: the seed workload through every
strategy as one table (default), initret against numpy (``bench``), or what
this machine offers (``info``). See :mod:`initret._bench`."""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command. A closed standard output (``initret | head -2``)
    ends it quietly with status 0, as the Rust ``initret`` does: the reader
    has what it wanted."""
    from ._bench import main as run

    try:
        code = run(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Python would flush stdout again at exit and fail the same way:
        # point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


if __name__ == "__main__":
    sys.exit(main())
