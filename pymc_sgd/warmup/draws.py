"""Reach the bulk without a mode: a short adaptive MALA run whose draws stand for the posterior.

Some posteriors have no mode to find. A centred hierarchy a_g ~ N(mu, tau) is the common case:
with every a_g = mu the density grows like tau^-(G-1) as tau -> 0 (the funnel's neck), so damped
Newton walks down the neck and never converges (``bulk.find_bulk`` reports it), or stops where the
Hessian is not positive definite. Where that happens the warm-up starts from draws instead, as
Stan and PyMC start NUTS: a Metropolis-adjusted Langevin chain (MALA; Roberts & Tweedie 1996, with
the standard proposal ratio, docs/pages/sources.md) on the subsample potential U_S of
``geometry.potential_on``, in a diagonal metric re-estimated from its own draws in doubling windows
(Stan's windowed adaptation) and a step adapted by dual averaging to acceptance 0.574
(``acceptance.DualAveraging``). The draws of the last window give the bulk: its centre (their mean),
its curvature (the inverse of their covariance, the Gaussian that fits them) and the points where
the gradient noise is measured. The sampler's own tuning then refits its metric from its tuning
draws as usual.

The chain runs in Python, one compiled gradient a step: it is part of the warm-up (a few hundred
to a few thousand gradients on at most ``rows`` rows), not of the sampling loop.
"""

from __future__ import annotations

import numpy as np

from . import arrowhead
from .acceptance import DualAveraging
from .geometry import PotentialAndGrad, finite_difference_hessian, potential_on, subsample_rows
from .metric import jacobi_inverse, sample_covariance

WINDOWS = (75, 25, 50, 100, 200, 400)  # a fast start, then Stan-like doubling windows for the metric
FINAL_WINDOW = 300  # draws at the adapted step and metric that stand for the posterior
STAN_REGULARISATION = 5.0  # variance estimate shrunk as (k / (k + 5)) var + 1e-3 (5 / (k + 5)), as Stan's


def _mala_step(potential: PotentialAndGrad, w: np.ndarray, U: float, g: np.ndarray, h: float,
               scale: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray, float]:
    """One MALA step w' = w - h M grad U + sqrt(2 h) M^(1/2) xi with M = diag(scale^2), accepted with
    probability min(1, exp(U - U' + log q(w | w') - log q(w' | w))). Returns (w, U, g, acceptance)."""
    M = scale * scale
    proposal = w - h * M * g + np.sqrt(2.0 * h) * scale * rng.standard_normal(len(w))
    U_new, g_new = potential(proposal)
    if not (np.isfinite(U_new) and np.all(np.isfinite(g_new))):
        return w, U, g, 0.0

    def log_q(to: np.ndarray, frm: np.ndarray, g_from: np.ndarray) -> float:
        r = (to - frm + h * M * g_from) / scale
        return -float(r @ r) / (4.0 * h)

    log_ratio = U - U_new + log_q(w, proposal, g_new) - log_q(proposal, w, g)
    acceptance = float(np.exp(min(0.0, log_ratio))) if np.isfinite(log_ratio) else 0.0
    if rng.random() < acceptance:
        return proposal, U_new, g_new, acceptance
    return w, U, g, acceptance


def _initial_scale(potential: PotentialAndGrad, w: np.ndarray, cells: arrowhead.Cells) -> np.ndarray:
    """Per-coordinate scales 1/sqrt|d^2U/dw_j^2| from finite differences of the gradient at w (1 where
    that is not usable); ``cells`` as ``geometry.finite_difference_hessian``'s."""
    curvature = np.abs(np.diag(finite_difference_hessian(potential, w, 1e-4 * (1.0 + np.abs(w)), cells)))
    usable = np.isfinite(curvature) & (curvature > 0)
    return np.clip(np.where(usable, 1.0 / np.sqrt(np.where(usable, curvature, 1.0)), 1.0), 1e-6, 1e3)


def sample_bulk(est, start: np.ndarray, rng: np.random.Generator, rows: int = 10_000,
                cells: arrowhead.Cells = ()) -> tuple[np.ndarray, float, float]:
    """Adaptive MALA on U_S from ``start``: (FINAL_WINDOW x d draws, gradient calls in full-data passes,
    mean acceptance of the last window). Raises FloatingPointError when U is not finite at the start.
    ``cells``: see ``geometry.finite_difference_hessian`` (for the initial per-coordinate scales)."""
    sample = subsample_rows(est.n_rows, rows, rng)
    potential = potential_on(est, sample)
    w = np.asarray(start, dtype=np.float64).copy()
    U, g = potential(w)
    if not (np.isfinite(U) and np.all(np.isfinite(g))):
        raise FloatingPointError("the potential or its gradient is not finite at the start point")
    scale = _initial_scale(potential, w, cells)
    in_cells, pairs = arrowhead.cell_count(cells)
    calls = 1 + 2 * (len(w) - in_cells + pairs)
    h = 0.1 / len(w) ** (1.0 / 3.0)
    for length in (*WINDOWS, FINAL_WINDOW):
        adapt = DualAveraging(h)
        draws, accepted = np.empty((length, len(w))), []
        for k in range(length):
            w, U, g, acceptance = _mala_step(potential, w, U, g, h, scale, rng)
            accepted.append(acceptance)
            draws[k] = w
            if length != FINAL_WINDOW and k % 5 == 4:
                h = adapt.update(float(np.mean(accepted[-5:])))
        calls += length
        if length == FINAL_WINDOW:
            break
        h = adapt.final
        count = len(draws)
        variance = draws.var(axis=0)
        regularised = (count / (count + STAN_REGULARISATION)) * variance + 1e-3 * STAN_REGULARISATION / (
            count + STAN_REGULARISATION) * scale ** 2
        if np.all(np.isfinite(regularised)) and np.all(regularised > 0):
            scale = np.sqrt(regularised)
    return draws, calls * len(sample) / est.n_rows, float(np.mean(accepted))


def curvature_of_draws(draws: np.ndarray) -> np.ndarray:
    """The Hessian of the Gaussian that fits the draws: the inverse of their ``sample_covariance`` (diagonal
    where they are too few for a dense estimate), with a ridge of 1e-6 of each variance."""
    covariance = sample_covariance(draws)
    variances = np.maximum(np.diag(covariance), 1e-300)
    return jacobi_inverse(covariance + 1e-6 * np.diag(variances))
