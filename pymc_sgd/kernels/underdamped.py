"""Underdamped Langevin dynamics, dx = v dt, dv = -grad U dt - gamma v dt + sqrt(2 gamma T) dW
(unit mass), integrated by splitting (Leimkuhler & Matthews 2013; ERRATA.md):

- BAOAB: B half kick, A half drift, O exact OU step on v over h with FRESH noise,
  A half drift, B half kick. For a quadratic U its x-marginal is exact for any stable h;
  the velocity is biased at O(h^2) (kinetic temperature T (1 - h^2 k / 4) in 1-D).
- OBABO: O over h/2, B half kick, A full drift, B half kick, O over h/2.

The O step is v <- c v + sqrt(T (1 - c^2)) xi with c = exp(-gamma dt), exact for the OU part.
Each kick uses the minibatch gradient at the current x; the gradient at the end of a step is
reused for the first kick of the next (one gradient per step).
"""

import numpy as np
from numba import njit

from .batching import next_batch
from .estimator import minibatch_gradient, norm, minibatch_potential
from .guards import is_diverged

BAOAB = 0
OBABO = 1


@njit
def ou_step(v, c, temperature, rng):
    """v <- c v + sqrt(T (1 - c^2)) xi in place, fresh xi."""
    sd = np.sqrt(temperature * (1.0 - c * c))
    for i in range(v.shape[0]):
        v[i] = c * v[i] + sd * rng.standard_normal()


@njit
def axpy(a, x, y):
    """y <- y + a x in place."""
    for i in range(y.shape[0]):
        y[i] += a * x[i]


@njit
def underdamped_updates(fn, grad_fn, data, x, v, rng, batch_mode, perm, cursor, idx, scale, n_updates,
                        h, gamma, temperature, scheme, bound):
    """Run n_updates BAOAB/OBABO steps. Returns (x, v, |grad U_hat|, U_hat, diverged)."""
    scale_arg = np.asarray(scale)
    x, v = x.copy(), v.copy()
    x0, v0 = x.copy(), v.copy()
    next_batch(batch_mode, rng, perm, cursor, idx)
    grad = minibatch_gradient(grad_fn, data, x, idx, scale_arg)
    c_full, c_half = np.exp(-gamma * h), np.exp(-0.5 * gamma * h)
    for _ in range(n_updates):
        x0[:] = x
        v0[:] = v
        if scheme == BAOAB:
            axpy(-0.5 * h, grad, v)
            axpy(0.5 * h, v, x)
            ou_step(v, c_full, temperature, rng)
            axpy(0.5 * h, v, x)
        else:
            ou_step(v, c_half, temperature, rng)
            axpy(-0.5 * h, grad, v)
            axpy(h, v, x)
        next_batch(batch_mode, rng, perm, cursor, idx)
        grad = minibatch_gradient(grad_fn, data, x, idx, scale_arg)
        axpy(-0.5 * h, grad, v)
        if scheme == OBABO:
            ou_step(v, c_half, temperature, rng)
        if is_diverged(grad, x, bound):
            return x0, v0, np.inf, np.nan, True
    potential = minibatch_potential(fn, data, x, idx, scale)
    return x, v, norm(grad), potential, not np.isfinite(potential)
