"""Pure numba update rules and index samplers (no PyMC import).

Every function here is ``@njit(cache=True)`` and takes the model as ``model``, a C function of one
fixed type plus its arrays' addresses (``kernels.model``), so a step method runs all updates of one
recorded draw in a single compiled call, and the kernels compile once for every model and process
(numba's disk cache, invalidated by a change to any kernel file: ``kernels.caching``).

Every family's entry point has one shape,

    family_updates(model, batch, estimator, preconditioner, state, params, n_updates, rng) -> (state, info)

on NamedTuples: the minibatch sampler ``batching.Batch``, the gradient estimator ``estimator.Estimator``, the
metric or preconditioner ``langevin.Preconditioner``, the family's ``State`` (what the step keeps across
draws) and ``Params``, and one ``info.Info`` for every family; ``rng`` is the chain's generator. A family that
reads no minibatches (MALA) or computes its own gradient (contour, replica exchange) leaves those out.
"""

import warnings

from numba.core.errors import NumbaIRAssumptionWarning

from .caching import KernelsCacheLocator  # registers the kernels' cache locator before any kernel compiles

# numba's inliner trips its own pedantic IR check on the loops of the overloads inlined here ("variable ... is not
# in scope ... please report", once per cold compile); the compiled code is checked by the tests, and the message
# is no business of the user's.
warnings.filterwarnings("ignore", category=NumbaIRAssumptionWarning, module=r".*pymc_sgd")

__all__ = ["KernelsCacheLocator"]
