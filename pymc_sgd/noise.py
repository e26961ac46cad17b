"""Measured geometry of a model at a point: full-batch U and gradient, Hessian, gradient noise.

Everything is computed through the model's compiled estimator (``pymc_sgd.gradients``) in
PyMC's unconstrained space, in the conventions of docs/pages/design.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import theory
from .gradients import ModelEstimator
from .kernels.estimator import gradient_noise_covariance, potential_hessian
from .warmup import find_bulk
from .warmup.geometry import full_potential_and_grad

__all__ = ["full_potential_and_grad", "hessian", "per_example_gradient_covariance", "mode", "Geometry", "geometry",
           "predicted_sgd_covariance", "scalar_learning_rate_sd_ratio", "implicit_prior_score"]


def hessian(est: ModelEstimator, w: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Hessian of U at w by central differences of the exact gradient, symmetrised."""
    rows = np.arange(est.n_rows, dtype=np.int64)
    return potential_hessian(est.kernel, np.asarray(w, dtype=np.float64), rows, 1.0, eps)


def per_example_gradient_covariance(est: ModelEstimator, w: np.ndarray) -> np.ndarray:
    """C(w) = covariance over all rows i of grad log p(x_i | w) (population, divisor n)."""
    rows = np.arange(est.n_rows, dtype=np.int64)
    return gradient_noise_covariance(est.kernel, np.asarray(w, dtype=np.float64), rows)


def mode(est: ModelEstimator, start: np.ndarray | None = None) -> np.ndarray:
    """Minimiser of U (the MAP in the unconstrained space; the MLE under flat priors).

    The warm-up's damped Newton (``warmup.find_bulk``) on all rows, run until the Newton
    decrement g^T H^-1 g stops falling (1e-20 d or 100 steps): the mode to rounding error.
    """
    start = np.zeros(est.dim) if start is None else np.asarray(start, dtype=np.float64)
    return find_bulk(est, start, np.random.default_rng(0), subsample_size=est.n_rows, tolerance=1e-20).mode


@dataclass(frozen=True)
class Geometry:
    """Hessian H of U and per-example gradient covariance C at w, with eigen-decompositions."""

    w: np.ndarray
    hessian: np.ndarray
    per_example_cov: np.ndarray
    hessian_eig: tuple[np.ndarray, np.ndarray]
    per_example_cov_eig: tuple[np.ndarray, np.ndarray]


def geometry(est: ModelEstimator, w: np.ndarray | None = None) -> Geometry:
    """Measured geometry at w (default: the mode of U)."""
    w = mode(est) if w is None else np.asarray(w, dtype=np.float64)
    H, C = hessian(est, w), per_example_gradient_covariance(est, w)
    return Geometry(w, H, C, np.linalg.eigh(H), np.linalg.eigh(C))


def predicted_sgd_covariance(geo: Geometry, n: int, step_size: float, batch_size: int, momentum: float = 0.0,
                             preconditioner: np.ndarray | None = None, replacement: bool = True) -> np.ndarray:
    """Exact stationary covariance of constant SGD (step h on U) on the quadratic model at geo.w.

    w <- w - h P grad U_hat with momentum mu is seed 003's recursion with lambda = h, K = H
    (Hessian of U) and gradient noise V = (n^2 / B) C (times (n - B)/(n - 1) without
    replacement): ``theory.sgd_stationary_covariance``.
    """
    V = theory.minibatch_gradient_covariance(geo.per_example_cov, n, batch_size, replacement)
    return theory.sgd_stationary_covariance(geo.hessian, V, step_size, momentum, preconditioner)


def scalar_learning_rate_sd_ratio(geo: Geometry, n: int, batch_size: int) -> np.ndarray:
    """SD of constant SGD at seed 000's eta = 2B/n (h = 2B/n^2), over the Laplace posterior SD.

    docs/pages/sources.md on seed 000: about 1.08 (a) and 1.46 (log sigma) on the seed's regular model;
    1 in every direction only where C = I (h = 2B/n^2 gives S = H^-1 C).
    """
    sgd = predicted_sgd_covariance(geo, n, 2.0 * batch_size / n**2, batch_size)
    return np.sqrt(np.diag(sgd) / np.diag(np.linalg.inv(geo.hessian)))


def implicit_prior_score(est: ModelEstimator, step_size: float, batch_size: int):
    """Seed 001's implicit-prior score of SGD, s(w) = (I - 2 eta D(w)^{-1}) grad L_full(w).

    Units as in seed 001: L_full = -sum_i log p(x_i | w) (no prior), eta = h the step on it,
    D = eta^2 Cov(grad L_hat) = h^2 (n^2 / B) C(w). The derivation assumes the stationary
    score is 2 D^{-1} mu, which drops the divergence term of a position-dependent D and
    holds only for gradient-like drift; treat s as a diagnostic, not an exact prior.
    Returns a function of w.
    """
    rows = np.arange(est.n_rows, dtype=np.int64)

    def score(w: np.ndarray) -> np.ndarray:
        w = np.asarray(w, dtype=np.float64)
        grad_loss = -est.fn(w, rows, *est.data)[3]
        D = step_size**2 * theory.minibatch_gradient_covariance(
            per_example_gradient_covariance(est, w), est.n_rows, batch_size)
        return grad_loss - 2.0 * step_size * np.linalg.solve(D, grad_loss)

    return score
