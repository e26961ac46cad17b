"""Pure numba update rules and index samplers (no PyMC import).

Every function here is ``@njit(cache=True)`` and takes the model as ``model``, a C function of one
fixed type plus its arrays' addresses (``kernels.model``), so a step method runs all updates of one
recorded draw in a single compiled call, and the kernels compile once for every model and process
(numba's disk cache, invalidated by a change to any kernel file: ``kernels.caching``).
"""

from .caching import KernelsCacheLocator  # registers the kernels' cache locator before any kernel compiles

__all__ = ["KernelsCacheLocator"]
