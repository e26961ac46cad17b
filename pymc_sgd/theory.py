"""Closed-form oracles: conjugate posteriors and exact stationary covariances of the samplers.

Conventions as in DESIGN.md: U = -log prior - sum_i log p(x_i | w), step h on U, target
exp(-U/T). Every formula names its source; ERRATA.md wins over seed 002.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg


def normal_mean_posterior(x: np.ndarray, sigma: float, prior_mean: float, prior_sd: float) -> tuple[float, float]:
    """Posterior (mean, variance) of mu for x_i ~ N(mu, sigma^2), mu ~ N(prior_mean, prior_sd^2).

    Precision adds: 1/v = 1/prior_sd^2 + n/sigma^2; mean = v (prior_mean/prior_sd^2 + sum x / sigma^2).
    """
    precision = 1.0 / prior_sd**2 + len(x) / sigma**2
    mean = (prior_mean / prior_sd**2 + np.sum(x) / sigma**2) / precision
    return float(mean), float(1.0 / precision)


def linear_regression_posterior(X: np.ndarray, y: np.ndarray, noise_sd: float,
                                prior_sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Posterior (mean, covariance) of beta for y ~ N(X beta, noise_sd^2 I), beta ~ N(0, prior_sd^2 I).

    Sigma = (X^T X / noise_sd^2 + I / prior_sd^2)^{-1}, mean = Sigma X^T y / noise_sd^2.
    """
    precision = X.T @ X / noise_sd**2 + np.eye(X.shape[1]) / prior_sd**2
    cov = np.linalg.inv(precision)
    return cov @ X.T @ y / noise_sd**2, cov


def minibatch_gradient_covariance(per_example_cov: np.ndarray, n: int, batch_size: int,
                                  replacement: bool = True) -> np.ndarray:
    """Covariance of grad U_hat for B rows: (n^2 / B) C, times (n - B)/(n - 1) without replacement.

    C is the per-example covariance of grad log p(x_i | w) (seed 000, rescaled from the
    average loss to U = n L); the finite-population factor is ERRATA.md's (1 - B/n) exactly.
    """
    factor = 1.0 if replacement else (n - batch_size) / (n - 1)
    return factor * n**2 / batch_size * np.asarray(per_example_cov)


def langevin_stationary_covariance(hessian: np.ndarray, step_size: float, temperature: float = 1.0,
                                   grad_noise_cov: np.ndarray | None = None,
                                   preconditioner: np.ndarray | None = None,
                                   injected_noise: bool = True) -> np.ndarray:
    """Exact stationary covariance of w <- w - h P (H w + g) + sqrt(2 h T) P^{1/2} xi on a quadratic U.

    The recursion is linear: w' = A w + e with A = I - h P H and Cov(e) = h^2 P Cov(g) P
    + 2 h T P (the last term only for SGLD, ``injected_noise=True``), so Sigma solves the
    discrete Lyapunov equation Sigma = A Sigma A^T + Cov(e) (seed 003, Liu, Ziyin & Ueda,
    Thm. 1 with mu = 0, solved exactly as ERRATA.md recommends). Special cases, 1-D with
    curvature k and P = 1: ULA T / (k (1 - h k / 2)) (ERRATA.md); constant SGD
    h c / (k (2 - h k)) for gradient-noise variance c.
    """
    H = np.atleast_2d(hessian)
    d = H.shape[0]
    P = np.eye(d) if preconditioner is None else np.atleast_2d(preconditioner)
    A = np.eye(d) - step_size * P @ H
    if np.max(np.abs(np.linalg.eigvals(A))) >= 1.0:
        raise ValueError("The recursion is unstable at this step size: the spectral radius of "
                         "I - h P H is >= 1 (need h < 2 / largest eigenvalue of P H).")
    Q = np.zeros((d, d))
    if grad_noise_cov is not None:
        Q += step_size**2 * P @ np.atleast_2d(grad_noise_cov) @ P.T
    if injected_noise:
        Q += 2.0 * step_size * temperature * P
    return linalg.solve_discrete_lyapunov(A, Q)
