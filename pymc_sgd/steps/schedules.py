"""Step-size schedules a step accepts as ``step_size=`` (the kernels' side: ``kernels.schedules``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import schedules
from .validation import require_positive


@dataclass(frozen=True)
class PolynomialDecay:
    """Step size h_t = a (b + t)^(-gamma), t = updates since the chain started (SGLD only).

    Welling & Teh (2011), Sec. 3: 0.5 < gamma <= 1 satisfies sum h_t = inf, sum h_t^2 < inf,
    so the O(h) discretisation bias vanishes as t grows.
    """

    a: float
    b: float = 1.0
    gamma: float = 0.55

    def __post_init__(self) -> None:
        require_positive("PolynomialDecay.a", self.a, "It is the step size at t = 0 (times b^gamma).")
        if self.b < 0 or not 0 < self.gamma <= 1:
            raise ValueError(f"PolynomialDecay needs b >= 0 and 0 < gamma <= 1, got b={self.b}, gamma={self.gamma}.")


@dataclass(frozen=True)
class Cyclical:
    """Cyclical step sizes (cSG-MCMC; Zhang, Li, Zhang, Chen & Wilson 2020, ICLR, Eq. 1), one cycle per draw:

        h_t = (peak / 2) (cos(pi t / L) + 1),   t = 0, ..., L - 1,   L = steps_per_draw,

    so each draw starts at the peak, which can leave a mode, and is recorded at the cycle's end, where
    the step is small. The warm-up still chooses the sampler's step h for ``target_error``; ``peak``
    (default ``peak_ratio`` h, at most 0.8 of the sampler's stability limit) sets the exploration, and
    L is chosen so that the part of the cycle with h_t <= h relaxes the slowest mode as much as a draw at
    the constant step would (``relaxation_fraction``). SGLD, SGHMC and UnderdampedLangevin take it (SGNHT
    refuses it: its thermostat cannot follow the cycle); SGHMC then injects the uncorrected noise
    2 alpha h_t T (as Zhang et al.'s cSGHMC) and rescales its velocity v = sqrt(h) r as the step changes,
    within and across draws, so the momentum r carries over (UnderdampedLangevin's velocity is already r).

    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=1000)
    >>> with pm.Model():
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=x)
    ...     step = pymc_sgd.SGLD(batch_size=50, step_size=pymc_sgd.Cyclical())
    ...     idata = pm.sample(draws=300, tune=100, chains=1, random_seed=1, progressbar=False, step=step)
    >>> bool(abs(idata.posterior["mu"].mean() - x.mean()) < 0.01), bool(step.cycle_peak > step.schedule[0])
    (True, True)
    """

    peak: float | None = None
    peak_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.peak is not None:
            require_positive("Cyclical.peak", self.peak, "It is the largest step of each cycle; None: peak_ratio h.")
        require_positive("Cyclical.peak_ratio", self.peak_ratio, "It is the peak over the warm-up's step, e.g. 4.")

    def peak_for(self, h: float, stable_limit: float) -> float:
        """The cycle's peak for the warm-up's step h: ``peak``, else peak_ratio h capped at 0.8 stable_limit
        (and never below h)."""
        if self.peak is not None:
            return self.peak
        return max(h, min(self.peak_ratio * h, 0.8 * stable_limit))


def relaxation_fraction(ratio: float) -> float:
    """(1 / (L h)) sum over the cycle's updates with h_t <= h of h_t, for peak = ratio h (L -> inf):
    int_{r*}^1 (ratio / 2)(cos(pi r) + 1) dr, cos(pi r*) = 2 / ratio - 1 (r* = 0 when ratio <= 1)."""
    start = 0.0 if ratio <= 1.0 else np.arccos(2.0 / ratio - 1.0) / np.pi
    return 0.5 * ratio * (1.0 - start - np.sin(np.pi * start) / np.pi)


def schedule_arrays(step_size: float | PolynomialDecay) -> tuple[int, np.ndarray]:
    """(kind, params) for ``kernels.schedules.step_size_at``."""
    if isinstance(step_size, PolynomialDecay):
        return schedules.POLYNOMIAL, np.array([step_size.a, step_size.b, step_size.gamma])
    h = require_positive("step_size", step_size, "It is h in w <- w - h grad U + sqrt(2 h T) xi; "
                         "stability needs h < 2 / (largest curvature of U), e.g. h ~ 0.1 / n for n rows.")
    return schedules.CONSTANT, np.array([h, 0.0, 0.0])
