"""Divergence guard: a state is unusable when anything is non-finite or |w_i| explodes.

The hot loop checks the gradient and the new state each update; the potential is evaluated
once per recorded draw (``estimator.minibatch_potential``) and checked there.
"""

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def is_diverged(grad, w, bound):
    for i in range(w.shape[0]):
        if not np.isfinite(grad[i]) or not np.isfinite(w[i]) or abs(w[i]) > bound:
            return True
    return False
