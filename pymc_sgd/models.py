"""Reference models with exact answers.

Seed 000 ("SGD distribution versus posterior"): the regular normal model p(x | a, sigma) =
N(x | a, sigma^2) with flat priors, data from the legacy generator np.random.seed(42),
n = 200, and its exact posterior on the seed's 200 x 200 grid.
"""

from __future__ import annotations

import numpy as np
import pymc as pm


def seed000_regular_data(n: int = 200) -> np.ndarray:
    """x_1..x_n ~ N(0, 1) from legacy np.random.seed(42), exactly as seed 000 generates them."""
    legacy = np.random.RandomState(42)
    return legacy.normal(0, 1, n)


def seed000_regular_model(x: np.ndarray | None = None) -> pm.Model:
    """a ~ Flat, sigma ~ HalfFlat, x_i ~ N(a, sigma^2); PyMC samples (a, log sigma)."""
    x = seed000_regular_data() if x is None else x
    with pm.Model() as model:
        a = pm.Flat("a")
        sigma = pm.HalfFlat("sigma")
        pm.Normal("x", a, sigma, observed=x)
    return model


def seed000_regular_grid(x: np.ndarray | None = None, size: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a grid, sigma grid, normalised posterior weights[sigma, a]) on seed 000's grid
    [-0.6, 0.6] x [0.5, 1.5], flat prior in (a, sigma)."""
    x = seed000_regular_data() if x is None else x
    a = np.linspace(-0.6, 0.6, size)
    sigma = np.linspace(0.5, 1.5, size)
    A, S = np.meshgrid(a, sigma)
    n, sum_x, sum_x2 = len(x), x.sum(), (x**2).sum()
    log_lik = -n * np.log(S) - (sum_x2 - 2 * A * sum_x + n * A**2) / (2 * S**2)
    weights = np.exp(log_lik - log_lik.max())
    return a, sigma, weights / weights.sum()


def seed000_regular_grid_posterior(x: np.ndarray | None = None, size: int = 200) -> dict[str, dict[str, float]]:
    """Posterior means and SDs of a and sigma from `seed000_regular_grid`."""
    a, sigma, weights = seed000_regular_grid(x, size)
    A, S = np.meshgrid(a, sigma)
    summary = {}
    for name, grid in (("a", A), ("sigma", S)):
        mean = float(np.sum(weights * grid))
        summary[name] = {"mean": mean, "sd": float(np.sqrt(np.sum(weights * (grid - mean) ** 2)))}
    return summary
