"""Step-size schedules h_t, evaluated inside the compiled loop.

- CONSTANT: h_t = a.
- POLYNOMIAL: h_t = a (b + t)^(-gamma), Welling & Teh (2011), Sec. 3: with 0.5 < gamma <= 1
  the Robbins-Monro conditions sum h_t = inf, sum h_t^2 < inf hold and SGLD converges to
  the posterior as t -> inf. t counts updates from the start of the chain (tuning included).
"""

from numba import njit

CONSTANT = 0
POLYNOMIAL = 1


@njit(cache=True)
def step_size_at(kind, params, t):
    if kind == POLYNOMIAL:
        return params[0] * (params[1] + t) ** (-params[2])
    return params[0]

