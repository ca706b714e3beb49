"""``python -m initret [seed|bench|info]``: the seed workload through every
strategy as one table (default), initret against numpy (``bench``), or what
this machine offers (``info``). See :mod:`initret._bench`."""

from __future__ import annotations

import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ._bench import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
