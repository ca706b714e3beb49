from typing import Any, Dict, Optional

import numpy as np

from . import pool as pool
from ._errors import (
    APT_HINT as APT_HINT,
    GpuError as GpuError,
    GpuUnavailable as GpuUnavailable,
    IndexOutOfRange as IndexOutOfRange,
    InitretError as InitretError,
    InvalidTable as InvalidTable,
    IsaUnavailable as IsaUnavailable,
)
from ._initret import (
    SEED_CHECKSUM as SEED_CHECKSUM,
    SEED_ROWS as SEED_ROWS,
    Dispatcher as Dispatcher,
    __version__ as __version__,
)
from .pool import Pool as Pool

__all__ = [
    "Dispatcher",
    "Pool",
    "info",
    "seed_table",
    "InitretError",
    "IndexOutOfRange",
    "InvalidTable",
    "GpuUnavailable",
    "GpuError",
    "IsaUnavailable",
    "APT_HINT",
    "SEED_ROWS",
    "SEED_CHECKSUM",
    "__version__",
]

def info() -> Dict[str, Any]: ...
def seed_table(rows: Optional[int] = None) -> "np.ndarray[Any, np.dtype[np.uint32]]": ...
