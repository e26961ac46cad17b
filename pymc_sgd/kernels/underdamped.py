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
from .estimator import potential_and_grad
from .guards import is_diverged

BAOAB = 0
OBABO = 1


@njit
def ou_step(v, c, temperature, rng):
    return c * v + np.sqrt(temperature * (1.0 - c * c)) * rng.standard_normal(v.shape[0])


@njit
def underdamped_updates(fn, data, x, v, rng, batch_mode, perm, cursor, idx, scale, n_updates,
                        h, gamma, temperature, scheme, bound):
    """Run n_updates BAOAB/OBABO steps. Returns (x, v, |grad U_hat|, U_hat, diverged)."""
    next_batch(batch_mode, rng, perm, cursor, idx)
    potential, grad = potential_and_grad(fn, data, x, idx, scale)
    c_full, c_half = np.exp(-gamma * h), np.exp(-0.5 * gamma * h)
    for _ in range(n_updates):
        x0, v0 = x, v
        if scheme == BAOAB:
            v = v - 0.5 * h * grad
            x = x + 0.5 * h * v
            v = ou_step(v, c_full, temperature, rng)
            x = x + 0.5 * h * v
        else:
            v = ou_step(v, c_half, temperature, rng)
            v = v - 0.5 * h * grad
            x = x + h * v
        next_batch(batch_mode, rng, perm, cursor, idx)
        potential, grad = potential_and_grad(fn, data, x, idx, scale)
        v = v - 0.5 * h * grad
        if scheme == OBABO:
            v = ou_step(v, c_half, temperature, rng)
        if is_diverged(potential, grad, x, bound):
            return x0, v0, np.inf, potential, True
    return x, v, np.sqrt(np.sum(grad * grad)), potential, False
