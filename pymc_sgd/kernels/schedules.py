"""Step-size schedules h_t, evaluated inside the compiled loop; params = [a, b, c].

- CONSTANT: h_t = a.
- POLYNOMIAL: h_t = a (b + t)^(-gamma), gamma = c, Welling & Teh (2011), Sec. 3: with 0.5 < gamma <= 1
  the Robbins-Monro conditions sum h_t = inf, sum h_t^2 < inf hold and SGLD converges to
  the posterior as t -> inf. t counts updates from the start of the chain (tuning included).
- CYCLICAL: h_t = (a / 2) (cos(pi (t mod L) / L) + 1), L = b: cyclical SG-MCMC (Zhang, Li, Zhang, Chen &
  Wilson 2020, ICLR, Eq. 1), a cosine from the peak a down to ~0 every L updates.
"""

import numpy as np
from numba import njit

CONSTANT = 0
POLYNOMIAL = 1
CYCLICAL = 2


@njit(cache=True)
def step_size_at(kind, params, t):
    if kind == POLYNOMIAL:
        return params[0] * (params[1] + t) ** (-params[2])
    if kind == CYCLICAL:
        return 0.5 * params[0] * (np.cos(np.pi * (t % params[1]) / params[1]) + 1.0)
    return params[0]
