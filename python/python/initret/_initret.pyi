"""Type stubs for the compiled module ``initret._initret`` (see ``initret``)."""

from typing import Any, Dict, Optional, Union, final

import numpy as np
import numpy.typing as npt

__all__ = ["Dispatcher", "info", "SEED_ROWS", "SEED_CHECKSUM", "__version__"]

SEED_ROWS: int
SEED_CHECKSUM: int
__version__: str

_Queries = Union[npt.ArrayLike, "np.ndarray[Any, np.dtype[np.integer[Any]]]"]

@final
class Dispatcher:
    """Popcount lookups into a table placed once on a backend."""

    def __new__(
        cls,
        table: npt.ArrayLike,
        backend: str = "cpu",
        threads: int = 0,
        *,
        kernel: Optional[str] = None,
        isa: Optional[str] = None,
        placement: str = "per-domain",
    ) -> "Dispatcher": ...
    def popcount(
        self,
        queries: _Queries,
        out: Optional["np.ndarray[Any, np.dtype[np.uint32]]"] = None,
    ) -> "np.ndarray[Any, np.dtype[np.uint32]]": ...
    def _pickle_state(self) -> tuple: ...
    _sharing: Any
    @staticmethod
    def _from_counts(
        counts: "np.ndarray[Any, np.dtype[np.uint8]]",
        rows: int,
        bytes_per_count: int,
        words_per_row: int,
        backend: str,
        threads: int,
        placement: str,
        kernel: Optional[str] = None,
        isa: Optional[str] = None,
    ) -> "Dispatcher": ...
    def _counts(self) -> "tuple[np.ndarray[Any, np.dtype[np.uint8]], int]": ...
    @property
    def counts_shared(self) -> bool: ...
    def route(self, queries: int) -> str: ...
    def describe(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def kernel(self) -> str: ...
    @property
    def note(self) -> Optional[str]: ...
    @property
    def adapter(self) -> Optional[str]: ...
    @property
    def rows(self) -> int: ...
    @property
    def words_per_row(self) -> int: ...
    @property
    def threads(self) -> int: ...

def info() -> Dict[str, Any]: ...
def _set_exception_factory(factory: Any) -> None: ...
