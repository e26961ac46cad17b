"""Step-size adaptation to a target acceptance rate, for Metropolis-adjusted samplers (MALA).

Dual averaging (Nesterov 2009; Hoffman & Gelman 2014, JMLR 15, Alg. 5, with their constants
gamma = 0.05, t0 = 10, kappa = 0.75 and mu = log(10 h0)): after the k-th adaptation window with mean
acceptance a_k,

    s_k = (1 - 1/(k + t0)) s_{k-1} + (delta - a_k) / (k + t0),
    log h_k = mu - sqrt(k) s_k / gamma,     log h_bar_k = k^-kappa log h_k + (1 - k^-kappa) log h_bar_{k-1},

and sampling uses h_bar. MALA's optimal acceptance is delta = 0.574 (Roberts & Rosenthal 1998).
"""

from __future__ import annotations

import numpy as np

MALA_ACCEPTANCE = 0.574


class DualAveraging:
    """Adapts log h towards the target acceptance ``delta`` from a start ``h0``."""

    def __init__(self, h0: float, delta: float = MALA_ACCEPTANCE, gamma: float = 0.05, t0: float = 10.0,
                 kappa: float = 0.75) -> None:
        self.mu, self.delta, self.gamma, self.t0, self.kappa = np.log(10.0 * h0), delta, gamma, t0, kappa
        self.k, self.s, self.log_h, self.log_h_bar = 0, 0.0, np.log(h0), 0.0

    def update(self, acceptance: float) -> float:
        """Record one window's mean acceptance; return the step to use next."""
        self.k += 1
        weight = 1.0 / (self.k + self.t0)
        self.s = (1.0 - weight) * self.s + weight * (self.delta - acceptance)
        self.log_h = self.mu - np.sqrt(self.k) * self.s / self.gamma
        eta = self.k ** -self.kappa
        self.log_h_bar = eta * self.log_h + (1.0 - eta) * self.log_h_bar
        return float(np.exp(self.log_h))

    @property
    def final(self) -> float:
        """The averaged step h_bar, for sampling."""
        return float(np.exp(self.log_h_bar)) if self.k else float(np.exp(self.log_h))
