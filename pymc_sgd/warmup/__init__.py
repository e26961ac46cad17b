"""The warm-up layer: reach the bulk, choose the metric, the step size and the thinning.

Pure numpy/scipy/numba on the compiled estimator (no PyMC). A step (``pymc_sgd.steps``) runs
it at the first draw of each chain, inside pm.sample's tuning:

1. ``bulk.find_bulk``: damped Newton from PyMC's initial point to the mode of U, or, where there is no
   mode (a centred hierarchy) or the search fails, the bulk of an adaptive MALA run (``draws``); a model
   with group effects (``pymc_sgd.hierarchy``) then gets the sampler's own coordinates per group, chosen at
   MALA draws from its non-centred mode, and the bulk is those draws' (``steps.base``);
2. ``metric.metric_from_hessian``: M = H^{-1} (the Laplace covariance) at the bulk;
3. ``gradient_noise``: Cov(grad U_hat) measured at draws from that Laplace approximation (for stratified
   batches, ``stratified_gradient_noise``);
4. ``tuning``: the largest step whose predicted error of every posterior SD is below
   ``target_error`` (exact discrete-time oracles of ``theory``), and the updates per draw
   for an ESS of at least half a draw on a Gaussian target.
The chain then starts at a draw from the Laplace approximation (overdispersed across chains).
During tuning the step re-estimates the metric from the covariance of its tuning draws in
doubling windows (``metric.covariance_from_draws``), chooses the group coordinates again at those draws,
and re-runs 4; ``settle`` checks
that the chain stopped drifting before tuning ends.
"""

from __future__ import annotations

import numpy as np

from .. import theory
from ..kernels.estimator import per_example_loglik_grads
from .bulk import Bulk, find_bulk
from .geometry import per_example_gradient_covariance, subsample_rows
from .metric import Metric, identity_metric, metric_from_hessian, whiten
from .tuning import TARGET_ERROR

__all__ = ["Bulk", "Metric", "find_bulk", "metric_from_hessian", "identity_metric", "whiten",
           "laplace_draws", "gradient_noise", "stratified_gradient_noise", "TARGET_ERROR"]


def laplace_draws(bulk: Bulk, rng: np.random.Generator, size: int) -> np.ndarray:
    """size x d draws from N(mode, H^{-1}) (H made positive definite as for the metric)."""
    factor = metric_from_hessian(bulk.hessian, dense=True).factor
    return bulk.mode + rng.standard_normal((size, len(bulk.mode))) @ factor.T


def gradient_noise(est, points: np.ndarray, rng: np.random.Generator, batch_size: int, replacement: bool,
                   rows: int = 2000, centre: np.ndarray | None = None) -> np.ndarray:
    """V_p = Cov(grad U_hat) on batches of ``batch_size`` rows at each of ``points`` (k x d x d).

    Per-example covariances C(w) on the same min(n, rows) random rows, scaled by (n^2 / B) (times
    the finite-population factor without replacement, ``theory.minibatch_gradient_covariance``).
    With a ``centre`` w* the control-variate estimator's noise: Cov_i[grad log p(x_i|w) - grad log p(x_i|w*)].
    One matrix per point, not their average: C varies over the posterior (e.g. as sigma^-4 for a
    normal mean), and ``tuning`` keeps the error small at the worst point.
    """
    sample = subsample_rows(est.n_rows, rows, rng)
    return np.array([theory.minibatch_gradient_covariance(per_example_gradient_covariance(est, w, sample, centre),
                                                          est.n_rows, batch_size, replacement) for w in points])


def stratified_gradient_noise(est, points: np.ndarray, rng: np.random.Generator, strata: np.ndarray,
                              taken: np.ndarray, rows: int = 2000, centre: np.ndarray | None = None) -> np.ndarray:
    """V_p = Cov(grad U_hat) at each of ``points`` (k x d x d) for stratified batches (``kernels.batching``):
    b_s = ``taken[s]`` distinct rows of each stratum s (``strata``: one label per row), weighted n_s / b_s,

        V = sum_s n_s^2 (1 - b_s / n_s) S_s^2 / b_s          (Cochran 1977, Sampling Techniques, Thm 5.3),

    S_s^2 the covariance (divisor n_s - 1) of the rows' gradients within stratum s (with a ``centre`` w*, of
    the control-variate differences, as ``gradient_noise``), estimated unbiasedly from min(n_s, max(2,
    rows n_s / n)) of its rows. Strata read whole (b_s = n_s) add nothing.
    """
    sizes = np.bincount(strata, minlength=len(taken))
    order = np.argsort(strata, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    factors = sizes.astype(float) ** 2 * (1.0 - taken / sizes) / taken
    read = np.minimum(sizes, np.maximum(2, np.ceil(rows * sizes / sizes.sum()))).astype(int)
    read[factors == 0.0] = 0
    sample = np.concatenate([rng.choice(order[starts[s]:starts[s + 1]], read[s], replace=False)
                             for s in range(len(sizes))]).astype(np.int64)
    label = np.repeat(np.arange(len(sizes)), read)
    weights = np.sqrt(np.divide(factors, read - 1.0, out=np.zeros(len(sizes)), where=read > 1))[label]
    result = []
    for w in points:
        grads = per_example_loglik_grads(est.kernel, np.asarray(w, dtype=np.float64), sample)
        if centre is not None:
            grads = grads - per_example_loglik_grads(est.kernel, centre, sample)
        means = np.zeros((len(sizes), grads.shape[1]))
        np.add.at(means, label, grads)
        deviations = (grads - (means / np.maximum(read, 1)[:, None])[label]) * weights[:, None]
        result.append(deviations.T @ deviations)
    return np.array(result)
