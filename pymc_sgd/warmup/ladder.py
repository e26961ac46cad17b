"""Replica-exchange temperature ladders that equalise the swap rejection rates.

Syed, Bouchard-Cote, Deligiannidis & Doucet (2022, JRSS-B 84(2), "Non-reversible parallel
tempering", Sec. 5.1 and Algorithm 4): with inverse temperatures beta_0 = 1 > ... > beta_{K-1},
the rejection rate r_k of the swap between beta_k and beta_{k+1} is, to first order, the
increment of a *communication barrier* Lambda(beta) over [beta_{k+1}, beta_k]. Interpolating
Lambda through (beta_k, sum_{j<k} r_j) with a monotone cubic (Fritsch-Carlson/PCHIP, as their
Sec. 5.1 suggests: the piecewise-linear one, a constant barrier density per gap, misplaced the
hottest rung on a mixture and left that pair at 0.21 acceptance) and placing the new ladder where
Lambda takes the equally spaced values k Lambda_total / (K - 1) makes every rejection rate
Lambda_total / (K - 1): no pair is the bottleneck, which maximises the round-trip rate of the
non-reversible (even-odd) swap scheme the kernel runs. The end points (T = 1 and the hottest
temperature) stay where they are.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

MIN_REJECTION = 1e-3  # keeps the barrier strictly increasing where every swap was accepted


def equalised_ladder(temperatures: np.ndarray, rejection: np.ndarray) -> np.ndarray:
    """New temperatures (same end points) at which the barrier through the measured rejection rates
    r_k (pair k, k+1) rises equally between neighbours."""
    beta = 1.0 / np.asarray(temperatures, dtype=np.float64)
    barrier = np.concatenate([[0.0], np.cumsum(np.clip(rejection, MIN_REJECTION, 1.0))])
    spline = PchipInterpolator(beta[::-1], barrier[::-1])  # monotone in beta (x must increase)
    fine = np.linspace(beta[-1], beta[0], 10_001)
    new_beta = np.interp(np.linspace(0.0, barrier[-1], len(beta)), spline(fine)[::-1], fine[::-1])
    new_beta[0], new_beta[-1] = beta[0], beta[-1]
    return 1.0 / new_beta
