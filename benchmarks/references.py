"""Reference posteriors for benchmarks where a long NUTS run would take hours: the Laplace approximation at
the mode, corrected by importance sampling.

q = N(mode, H^-1) in the model's unconstrained coordinates w (mode by L-BFGS on the full data, H by
central differences of the gradient). For proposals w_i ~ q with Pareto-smoothed self-normalised weights
v_i (mean 1; Vehtari et al. 2024, ``arviz.psislw``), every posterior moment is estimated as

    E_p[f] = E_q[f] + E_q[(v - 1) f]  ~=  mu_q(f) + (1 / N) sum_i (v_i - 1) (f(w_i) - mu_q(f)),

with mu_q(f) the mean of f over a further ``10 N`` draws of q (no density needed: cheap). The Laplace part
carries no importance noise; only the correction does, and its Monte Carlo variance is
E[(v - 1)^2 (f - mu)^2] / N, small where the weights are near one (a posterior close to Gaussian: many rows
per parameter). A plain self-normalised estimate would have SD / sqrt(ESS) in every mean: 0.02 SD at ESS 2500,
and ~0.07 SD for the largest of 1,000 coordinates, too much for a 0.1 SD accuracy threshold. The standard
errors of the estimates are returned with them (``se_mean``/``se_sd`` in reference SDs), and k-hat, whose
value above 0.7 says the reference cannot be trusted.

Moments of other coordinates (e.g. a centred model's a = mu + tau z from a non-centred reference: the same
posterior) come from ``coordinates``, a function of the (m, d) proposals.
"""

from __future__ import annotations

from collections.abc import Callable

import arviz as az
import numpy as np
import pymc as pm
from pymc.blocking import DictToArrayBijection, RaveledVars
from scipy import optimize

Coordinates = Callable[[np.ndarray], np.ndarray]


def _flat_functions(model: pm.Model):
    start = DictToArrayBijection.map(model.initial_point())
    value_and_grad = model.logp_dlogp_function(ravel_inputs=True)
    value_and_grad.set_extra_values({})
    logp = model.compile_logp()

    def point(w: np.ndarray) -> dict:
        return DictToArrayBijection.rmap(RaveledVars(w, start.point_map_info))

    return start.data, value_and_grad, (lambda w: float(logp(point(w))))


def _mode_and_hessian(model: pm.Model,
                      frozen: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], float]]:
    """(mode, Hessian of -log p there, log p); the coordinates ``frozen`` are held at the initial point in a
    first search (a centred hierarchy's log tau: free from the start, L-BFGS's first steps reach the
    unbounded spike at tau -> 0 instead of the local mode where the mass is)."""
    w0, value_and_grad, logp = _flat_functions(model)

    def negative(w: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = value_and_grad(w)
        return -float(value), -np.asarray(grad, dtype=float)

    options = dict(maxiter=20_000, maxcor=50, ftol=1e-15, gtol=1e-9)
    bounds = [(w0[j], w0[j]) if j in frozen else (None, None) for j in range(len(w0))]
    start = optimize.minimize(negative, w0, jac=True, method="L-BFGS-B", bounds=bounds, options=options).x
    result = optimize.minimize(negative, start, jac=True, method="L-BFGS-B", options=options)
    mode, d = result.x, len(result.x)
    H = np.empty((d, d))
    eps = 1e-5 * np.maximum(1.0, np.abs(mode))
    for j in range(d):  # central differences of the gradient: O(eps^2) truncation
        e = np.zeros(d)
        e[j] = eps[j]
        H[:, j] = (negative(mode + e)[1] - negative(mode - e)[1]) / (2.0 * eps[j])
    return mode, 0.5 * (H + H.T), logp


def laplace_importance(model: pm.Model, proposals: int = 20_000, seed: int = 0,
                       coordinates: dict[str, Coordinates] | None = None, frozen: tuple[int, ...] = ()) -> dict[str, dict[str, np.ndarray | float]]:
    """{name: {"mean", "sd", "se_mean", "se_sd", "khat", "ess"}} for the unconstrained coordinates ("w") and
    each of ``coordinates``; se_* are the estimates' Monte Carlo standard errors in reference SDs."""
    rng = np.random.default_rng(seed)
    mode, H, logp = _mode_and_hessian(model, frozen)
    L = np.linalg.cholesky(np.linalg.inv(H))
    d = len(mode)
    eps = rng.standard_normal((proposals, d))
    draws = mode + eps @ L.T
    log_q = -0.5 * np.sum(eps * eps, axis=1)
    log_weights = np.array([logp(w) for w in draws]) - log_q
    smoothed, khat = az.psislw(log_weights - log_weights.max())
    v = proposals * np.exp(smoothed - np.logaddexp.reduce(smoothed))
    ess = float(proposals**2 / np.sum(v * v))
    functions = {"w": (lambda w: w), **(coordinates or {})}
    result = {}
    for name, f in functions.items():
        mu_q, var_q, cheap = _moments_under_q(f, mode, L, 10 * proposals, rng)
        shifted = f(draws) - mu_q
        mean_terms = (v - 1.0)[:, None] * shifted
        square_terms = (v - 1.0)[:, None] * (shifted * shifted - var_q)
        delta = mean_terms.mean(axis=0)
        variance = var_q + square_terms.mean(axis=0) - delta * delta
        sd = np.sqrt(variance)
        # importance noise of the correction plus the q-moments' own (var/M in a mean, 2 var^2/M in a variance)
        se_mean = np.sqrt(mean_terms.var(axis=0) / proposals + var_q / cheap) / sd
        se_sd = np.sqrt(square_terms.var(axis=0) / proposals + 2.0 * var_q**2 / cheap) / (2.0 * variance)
        result[name] = dict(mean=mu_q + delta, sd=sd, se_mean=se_mean, se_sd=se_sd, khat=float(khat), ess=ess)
    return result


def _moments_under_q(f: Coordinates, mode: np.ndarray, L: np.ndarray, m: int,
                     rng: np.random.Generator, chunk: int = 5_000) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean, variance, m) of f(w) for m draws w ~ N(mode, L L^T), accumulated in chunks about f(mode)."""
    offset = f(mode[None, :])[0]
    total = squares = 0.0
    for start in range(0, m, chunk):
        values = f(mode + rng.standard_normal((min(chunk, m - start), len(mode))) @ L.T) - offset
        total = total + values.sum(axis=0)
        squares = squares + (values * values).sum(axis=0)
    mean = total / m
    return offset + mean, squares / m - mean * mean, m
