"""Mode coverage: does the chain visit every mode that holds a sizeable share of the posterior?

Score-based checks cannot see a well-separated mode the chain never visited (Wenliang & Kanagawa
2020, "Blindness of score-based methods to isolated components and mixing proportions"): near the
visited mode the draws and the scores agree. This check looks for the other modes directly.

1. Search: L-BFGS on the potential from ``starts`` points, PyMC's prior draws mapped to the
   unconstrained space (dispersed points around the draws when the prior cannot be sampled, e.g.
   Flat), plus the draws' mean. Above ``rows`` rows the potential is the subsample one,
   U_S(w) = -log p(w) - (n/m) sum_{i in S} log p(x_i | w) on one fixed uniform subset S of m rows
   (``warmup.geometry.potential_on``): its optima are within about sqrt(n/m) posterior SDs of U's,
   enough to tell modes apart, at a cost independent of n.
2. Optima closer than 3 in each other's Hessian metric are one mode. Each mode k gets its Laplace
   mass, log M_k = -U(w_k) - log det(H_k) / 2, normalised over the modes: p_k.
3. Each thinned draw goes to the nearest mode in that mode's Hessian metric; v_k draws of m_eff
   visit mode k.
4. Verdict, per mode: H0 "the chain visits mode k with probability at least p_k / 2" (a factor 2
   for the Laplace approximation); p-value P(Binomial(m_eff, p_k / 2) <= v_k); "fail" below
   alpha / (number of modes). A label-switching mixture (two modes, p_k = 1/2) whose chain
   stays in one mode of m_eff = 100 draws has p = 0.75^100 ~ 3e-13.

Not a proof of coverage: a mode no start reaches is not found (more ``starts`` search more).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
from scipy import optimize, stats

from ..warmup.geometry import finite_difference_hessian, potential_on, subsample_rows
from .scores import forward_function, model_estimator

SEPARATION = 3.0  # optima closer than this in each other's Hessian metric are one mode


def _starts(model: pm.Model, draws: np.ndarray, starts: int, rng: np.random.Generator) -> np.ndarray:
    """The draws' mean, then prior draws in the unconstrained space (or 10-SD dispersed points)."""
    mean, sd = draws.mean(axis=0), draws.std(axis=0) + 1e-12
    try:
        prior = pm.sample_prior_predictive(draws=starts, model=model, var_names=[rv.name for rv in model.free_RVs],
                                           random_seed=rng, compile_kwargs={"mode": "FAST_COMPILE"}).prior
        forward = forward_function(model)
        points = [forward(*(prior[rv.name].values[0, k] for rv in model.free_RVs)) for k in range(starts)]
    except (NotImplementedError, TypeError, ValueError):  # e.g. Flat priors cannot be sampled
        points = list(mean + 10.0 * sd * rng.normal(size=(starts, draws.shape[1])))
    return np.array([mean] + [p for p in points if np.all(np.isfinite(p))])


def _hessian(potential, w: np.ndarray) -> np.ndarray:
    return finite_difference_hessian(potential, w, 1e-4 * (1.0 + np.abs(w)))


def find_modes(model: pm.Model, draws: np.ndarray, starts: int = 8, rows: int = 10_000,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(modes (K, d), Hessians (K, d, d), Laplace probabilities (K,)) of the potential (module docstring)."""
    rng = np.random.default_rng(0) if rng is None else rng
    est = model_estimator(model)
    potential = potential_on(est, subsample_rows(est.n_rows, rows, rng))
    modes, hessians, log_masses = [], [], []
    for start in _starts(model, draws, starts, rng):
        result = optimize.minimize(potential, start, jac=True, method="L-BFGS-B", options={"maxiter": 500})
        u = float(result.fun)
        if not np.isfinite(u) or any((result.x - m) @ Hm @ (result.x - m) < SEPARATION**2
                                     for m, Hm in zip(modes, hessians)):
            continue  # a mode already found: no Hessian (2d gradients) for it
        H = _hessian(potential, result.x)
        sign, log_det = np.linalg.slogdet(H)
        if sign <= 0:  # a saddle or a flat direction: not a mode with a Laplace mass
            continue
        modes.append(result.x)
        hessians.append(H)
        log_masses.append(-u - 0.5 * log_det)
    log_masses = np.array(log_masses)
    masses = np.exp(log_masses - log_masses.max())
    return np.array(modes), np.array(hessians), masses / masses.sum()


def mode_rows(model: pm.Model, draws: np.ndarray, effective_draws: float, alpha: float, starts: int = 8,
              rows: int = 10_000, rng: np.random.Generator | None = None) -> list[dict]:
    """One ``mode_coverage`` row per mode found: value = share of draws visiting it, predicted = p_k."""
    modes, hessians, probabilities = find_modes(model, draws, starts, rows, rng)
    distances = np.array([np.einsum("ij,jk,ik->i", draws - m, H, draws - m) for m, H in zip(modes, hessians)])
    visits = np.bincount(np.argmin(distances, axis=0), minlength=len(modes))
    share = visits / draws.shape[0]
    m_eff = max(1, int(round(effective_draws)))
    result = []
    for k, p in enumerate(probabilities):
        p_value = float(stats.binom.cdf(int(round(share[k] * m_eff)), m_eff, p / 2.0))
        result.append(dict(check="mode_coverage", coordinate=f"mode {k}: " + np.array2string(modes[k], precision=3),
                           value=float(share[k]), se=float(np.sqrt(max(p * (1 - p), 1e-12) / m_eff)),
                           p_value=p_value, predicted=float(p),
                           verdict="fail" if p_value < alpha / len(modes) else "pass"))
    return result
