"""Pure numba update rules and index samplers (no PyMC import).

Every function here is ``@njit`` and takes the compiled model estimator ``fn`` (see
``pymc_sgd.gradients``) as a first-class argument, so a step method runs all updates of one
recorded draw in a single compiled call. Functions that take ``fn`` are not disk-cached:
numba cannot pickle a reference to a dispatcher created at run time.
"""
