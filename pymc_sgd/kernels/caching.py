"""Numba's disk cache for the kernels, invalidated by a change to any kernel file.

Numba checks a cached function against its own source file only, but the kernels inline helpers
from their sibling modules (e.g. ``batching.next_batch`` inside ``langevin.langevin_updates``): an
edit to batching.py would leave a stale compiled loop. This locator, tried before numba's own for
files of this directory, keeps numba's choice of cache directory and replaces the source stamp by
a digest of every kernel source file.
"""

import hashlib
from pathlib import Path

from numba.core.caching import (CacheImpl, InTreeCacheLocator, UserProvidedCacheLocator, UserWideCacheLocator,
                                _CacheLocator)

KERNELS = Path(__file__).parent
STAMP = hashlib.sha256(b"".join(path.read_bytes() for path in sorted(KERNELS.glob("*.py")))).hexdigest()


class KernelsCacheLocator(_CacheLocator):
    """Numba's locator for the file, with the digest of all kernel sources as its stamp."""

    def __init__(self, inner: _CacheLocator) -> None:
        self._inner = inner

    def ensure_cache_path(self) -> None:
        self._inner.ensure_cache_path()

    def get_cache_path(self) -> str:
        return self._inner.get_cache_path()

    def get_source_stamp(self) -> str:
        return STAMP

    def get_disambiguator(self) -> str:
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        if Path(py_file).parent != KERNELS:
            return None
        for locator in (UserProvidedCacheLocator, InTreeCacheLocator, UserWideCacheLocator):
            inner = locator.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner)
        return None


if KernelsCacheLocator not in CacheImpl._locator_classes:
    CacheImpl._locator_classes.insert(0, KernelsCacheLocator)
