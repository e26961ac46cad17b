"""Combine the parts returned by a compiled model estimator into U_hat and grad U_hat.

``fn(w, idx, *data)`` returns (log prior, its gradient, log-likelihood summed over rows idx,
its gradient). With scale = n / len(idx):

    U_hat(w) = -(log p(w) + scale * sum_{i in idx} log p(x_i | w))     (DESIGN.md)

Inner loops use ``grad_fn(w, idx, scale, *data) -> grad U_hat`` (no log-density values, scale
as a 0-d array, see ``pymc_sgd.gradients``) and evaluate U_hat once per recorded draw.
"""

import numpy as np
from numba import njit


@njit
def potential_and_grad(fn, data, w, idx, scale):
    """Unbiased minibatch estimate (U_hat, grad U_hat) at w."""
    log_prior, grad_prior, log_lik, grad_lik = fn(w, idx, *data)  # scalars come as 0-d arrays
    return -(log_prior.item() + scale * log_lik.item()), -(grad_prior + scale * grad_lik)


@njit
def minibatch_gradient(grad_fn, data, w, idx, scale_arg):
    """grad U_hat(w) on rows idx, the hot-loop estimator (scale_arg = n / B as a 0-d array)."""
    return grad_fn(w, idx, scale_arg, *data)[0]


@njit(inline="always")
def centred_gradient(grad_fn, data, w, idx, scale_arg, centre, centre_grad, out):
    """Control-variate estimate of grad U on rows idx (SGLD-CV of Baker, Fearnhead, Fox & Nemeth 2019,
    Statistics and Computing 29, 599-615):

        grad U_hat(w) - grad U_hat(w*) + grad U(w*),     w* = centre, grad U(w*) = centre_grad (all rows).

    Unbiased like grad U_hat, but its noise vanishes as w -> w*: near a mode with per-example
    Hessians H_i the covariance is (n^2/B) Cov_i[H_i (w - w*)], O(n d / B) at posterior
    distances instead of O(n^2 / B). With an empty centre it is plain grad U_hat.
    """
    grad = minibatch_gradient(grad_fn, data, w, idx, scale_arg)
    if centre.shape[0] == 0:
        return grad
    at_centre = minibatch_gradient(grad_fn, data, centre, idx, scale_arg)
    for i in range(out.shape[0]):
        out[i] = grad[i] - at_centre[i] + centre_grad[i]
    return out


@njit
def minibatch_potential(fn, data, w, idx, scale):
    """U_hat(w) on rows idx without the gradient (kernels call it once per recorded draw)."""
    log_prior, _, log_lik, _ = fn(w, idx, *data)
    return -(log_prior.item() + scale * log_lik.item())


@njit
def norm(v):
    """Euclidean norm |v| (for the grad_norm stat)."""
    return np.sqrt(np.sum(v * v))


@njit
def per_example_loglik_grads(fn, data, w, rows):
    """Matrix G[k] = grad_w log p(x_{rows[k]} | w), one row per example (len(rows) x d)."""
    one = np.empty(1, dtype=np.int64)
    out = np.empty((rows.shape[0], w.shape[0]))
    for k in range(rows.shape[0]):
        one[0] = rows[k]
        out[k] = fn(w, one, *data)[3]
    return out


@njit
def gradient_noise_covariance(fn, data, w, rows):
    """Per-example gradient covariance C1(w) = Cov_i[grad log p(x_i | w)] over `rows`.

    The minibatch gradient of U with B rows drawn with replacement has covariance
    (n^2 / B) C1 (seed 000, "The SGD Update Rule and Its Noise", rescaled from L to U = n L).
    """
    grads = per_example_loglik_grads(fn, data, w, rows)
    centred = grads - grads.sum(axis=0) / grads.shape[0]
    return centred.T @ centred / grads.shape[0]


@njit
def potential_hessian(fn, data, w, rows, scale, eps):
    """Hessian of U_hat (over `rows`, likelihood times `scale`) by central differences of its gradient."""
    d = w.shape[0]
    H = np.empty((d, d))
    for j in range(d):
        up, down = w.copy(), w.copy()
        up[j] += eps
        down[j] -= eps
        H[j] = (potential_and_grad(fn, data, up, rows, scale)[1]
                - potential_and_grad(fn, data, down, rows, scale)[1]) / (2.0 * eps)
    return 0.5 * (H + H.T)
