"""Measured geometry of a model at a point: full-batch U and gradient, Hessian, gradient noise.

Everything is computed through the model's compiled estimator (``pymc_sgd.gradients``) in
PyMC's unconstrained space, in the conventions of DESIGN.md.
"""

from __future__ import annotations

import numpy as np

from .gradients import ModelEstimator
from .kernels.estimator import gradient_noise_covariance, potential_and_grad


def full_potential_and_grad(est: ModelEstimator, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Exact U(w) and grad U(w) (all n rows)."""
    rows = np.arange(est.n_rows, dtype=np.int64)
    potential, grad = potential_and_grad(est.fn, est.data, np.asarray(w, dtype=np.float64), rows, 1.0)
    return potential, grad


def hessian(est: ModelEstimator, w: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Hessian of U at w by central differences of the exact gradient, symmetrised."""
    w = np.asarray(w, dtype=np.float64)
    columns = []
    for j in range(len(w)):
        step = np.zeros_like(w)
        step[j] = eps
        columns.append((full_potential_and_grad(est, w + step)[1]
                        - full_potential_and_grad(est, w - step)[1]) / (2 * eps))
    H = np.array(columns)
    return 0.5 * (H + H.T)


def per_example_gradient_covariance(est: ModelEstimator, w: np.ndarray) -> np.ndarray:
    """C(w) = covariance over all rows i of grad log p(x_i | w) (population, divisor n)."""
    rows = np.arange(est.n_rows, dtype=np.int64)
    return gradient_noise_covariance(est.fn, est.data, np.asarray(w, dtype=np.float64), rows)
