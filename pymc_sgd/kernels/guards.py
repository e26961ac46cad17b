"""Divergence guard: a state is unusable when anything is non-finite or |w_i| explodes."""

import numpy as np
from numba import njit


@njit(cache=True)
def is_diverged(potential, grad, w, bound):
    if not np.isfinite(potential):
        return True
    for i in range(w.shape[0]):
        if not np.isfinite(grad[i]) or not np.isfinite(w[i]) or abs(w[i]) > bound:
            return True
    return False
