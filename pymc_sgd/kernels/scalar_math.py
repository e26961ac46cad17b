"""Scalar functions the unrolled gradients of ``pymc_sgd.unrolled`` call, with pytensor's numerics.

softplus(x) = log(1 + e^x) and log1mexp(x) = log(1 - e^x) (x < 0) follow pytensor's own branches
(pytensor.scalar.math.Softplus, Log1mexp; Maechler 2012, "Accurately computing log(1 - exp(-|a|))"),
so an unrolled gradient equals the array code's to rounding.
"""

import numpy as np
from numba import njit


@njit(cache=True, inline="always", error_model="numpy")
def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@njit(cache=True, inline="always", error_model="numpy")
def softplus(x):
    if x < -37.0:
        return np.exp(x)
    if x < 18.0:
        return np.log1p(np.exp(x))
    if x < 33.3:
        return x + np.exp(-x)
    return x


@njit(cache=True, inline="always", error_model="numpy")
def log1mexp(x):
    if x < np.log(0.5):
        return np.log1p(-np.exp(x))
    return np.log(-np.expm1(x))
