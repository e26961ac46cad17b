"""Full-data and subsample potentials, gradients, Hessians and gradient noise of a compiled estimator.

The warm-up works on the estimator's compiled model only (``kernel``, ``n_rows``, ``dim`` of
``pymc_sgd.gradients.ModelEstimator``); nothing here imports PyMC.
A *subsample potential* on rows S (|S| = m) is U_S(w) = -log p(w) - (n/m) sum_{i in S} log p(x_i | w),
unbiased for U; with S = all rows it is U itself.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import numpy as np

from ..data.mapreduce import full_potential_and_grad
from ..kernels.estimator import per_example_loglik_grads, potential_and_grad

PotentialAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


@contextlib.contextmanager
def model_errors_silenced() -> Iterator[list]:
    """Errors the model raises inside its compiled function (e.g. PyMC's ``ParameterValueError: sigma > 0``
    at a trial point whose scale underflowed) are part of a search, not news for the user: the function
    returns NaN there, which the search rejects like any other bad point. Compiled callbacks cannot raise,
    so Python reports them through ``sys.unraisablehook`` (the "Exception ignored" tracebacks); inside this
    context they are collected into the yielded list instead of printed."""
    collected: list = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: collected.append(unraisable.exc_value)
    try:
        yield collected
    finally:
        sys.unraisablehook = previous


def subsample_rows(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted distinct rows, all of them when size >= n."""
    if size >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def potential_on(est, rows: np.ndarray | None) -> PotentialAndGrad:
    """w -> (U_S(w), grad U_S(w)) on the given rows; the exact U for None (all rows, no index array)."""
    if rows is None or len(rows) == est.n_rows:
        return lambda w: full_potential_and_grad(est, w)
    scale = est.n_rows / len(rows)
    return lambda w: potential_and_grad(est.kernel, np.asarray(w, dtype=np.float64), rows, scale)


def finite_difference_hessian(potential: PotentialAndGrad, w: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Symmetrised central-difference Hessian, column j from grad U(w +- steps_j e_j).

    Per-coordinate steps let coordinates on very different scales (unscaled covariates) each
    be differenced at a fraction of their own posterior scale.
    """
    d = len(w)
    H = np.empty((d, d))
    for j in range(d):
        up, down = w.copy(), w.copy()
        up[j] += steps[j]
        down[j] -= steps[j]
        H[j] = (potential(up)[1] - potential(down)[1]) / (2.0 * steps[j])
    return 0.5 * (H + H.T)


def per_example_gradient_covariance(est, w: np.ndarray, rows: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """C(w) = Cov_i[grad log p(x_i | w)] over rows (population divisor), or with a centre w*
    the covariance of the control-variate differences grad log p(x_i | w) - grad log p(x_i | w*)."""
    grads = per_example_loglik_grads(est.kernel, np.asarray(w, dtype=np.float64), rows)
    if centre is not None:
        grads = grads - per_example_loglik_grads(est.kernel, centre, rows)
    centred = grads - grads.mean(axis=0)
    return centred.T @ centred / len(rows)
