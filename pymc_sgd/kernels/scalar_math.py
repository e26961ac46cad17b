"""Scalar functions the unrolled gradients of ``pymc_sgd.unrolled`` call, with pytensor's numerics.

softplus(x) = log(1 + e^x) and log1mexp(x) = log(1 - e^x) (x < 0) follow pytensor's own branches
(pytensor.scalar.math.Softplus, Log1mexp; Maechler 2012, "Accurately computing log(1 - exp(-|a|))"),
so an unrolled gradient equals the array code's to rounding. digamma is accurate to ~1e-15 (the
gradients of Gamma, Beta, Student-t and negative-binomial log-densities in their shape parameters).
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


@njit(cache=True, inline="always", error_model="numpy")
def digamma(x):
    """psi(x) = d log Gamma(x) / dx: psi(x) = psi(x + 1) - 1/x up to x >= 10, then the asymptotic series
    log x - 1/(2x) - sum_k B_2k / (2k x^2k) to k = 6 (Abramowitz & Stegun 6.3.5, 6.3.18; truncation
    error below 1e-15 at x = 10); x <= 0 by reflection psi(1 - x) - pi / tan(pi x) (A&S 6.3.7), NaN at poles."""
    if x <= 0.0:
        if x == np.floor(x):
            return np.nan
        return digamma_positive(1.0 - x) - np.pi / np.tan(np.pi * x)
    return digamma_positive(x)


@njit(cache=True, inline="always", error_model="numpy")
def digamma_positive(x):
    shift = 0.0
    while x < 10.0:
        shift -= 1.0 / x
        x += 1.0
    r = 1.0 / (x * x)
    series = r * (1.0 / 12 - r * (1.0 / 120 - r * (1.0 / 252 - r * (1.0 / 240 - r * (1.0 / 132 - r * 691.0 / 32760)))))
    return shift + np.log(x) - 0.5 / x - series
