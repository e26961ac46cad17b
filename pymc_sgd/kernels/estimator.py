"""U_hat, grad U_hat and their derived quantities, from the model's ``evaluate`` (``kernels.model``).

With scale = n / len(idx) (DESIGN.md):

    U_hat(w) = -(log p(w) + scale * sum_{i in idx} log p(x_i | w))

Inner loops use the gradient alone (``gradient_into``: no log-density values, which cost as
much as the gradient on a logistic regression) and evaluate U_hat once per recorded draw.
``scale`` is passed as a 1-element array (the compiled gradient reads it in place).
"""

import numpy as np
from numba import njit

from .model import gradient_into, parts_into


@njit(cache=True)
def potential_and_grad(model, w, idx, scale):
    """Unbiased minibatch estimate (U_hat, grad U_hat) at w."""
    d = w.shape[0]
    parts = parts_into(model, w, idx, np.empty(2 * d + 2))
    return -(parts[0] + scale * parts[1]), -(parts[2:d + 2] + scale * parts[d + 2:])


@njit(cache=True, inline="always")
def centred_gradient(model, w, idx, scale, centre, centre_grad, out, at_centre):
    """Control-variate estimate of grad U on rows idx (SGLD-CV of Baker, Fearnhead, Fox & Nemeth 2019,
    Statistics and Computing 29, 599-615), into ``out`` (``at_centre`` is scratch):

        grad U_hat(w) - grad U_hat(w*) + grad U(w*),     w* = centre, grad U(w*) = centre_grad (all rows).

    Unbiased like grad U_hat, but its noise vanishes as w -> w*: near a mode with per-example
    Hessians H_i the covariance is (n^2/B) Cov_i[H_i (w - w*)], O(n d / B) at posterior
    distances instead of O(n^2 / B). With an empty centre it is plain grad U_hat.
    """
    gradient_into(model, w, idx, scale, out)
    if centre.shape[0] == 0:
        return out
    gradient_into(model, centre, idx, scale, at_centre)
    for i in range(out.shape[0]):
        out[i] += centre_grad[i] - at_centre[i]
    return out


@njit(cache=True)
def minibatch_potential(model, w, idx, scale):
    """U_hat(w) on rows idx (kernels call it once per recorded draw)."""
    parts = parts_into(model, w, idx, np.empty(2 * w.shape[0] + 2))
    return -(parts[0] + scale * parts[1])


@njit(cache=True)
def norm(v):
    """Euclidean norm |v| (for the grad_norm stat)."""
    return np.sqrt(np.sum(v * v))


@njit(cache=True)
def per_example_loglik_grads(model, w, rows):
    """Matrix G[k] = grad_w log p(x_{rows[k]} | w), one row per example (len(rows) x d)."""
    d = w.shape[0]
    one = np.empty(1, dtype=np.int64)
    parts = np.empty(2 * d + 2)
    out = np.empty((rows.shape[0], d))
    for k in range(rows.shape[0]):
        one[0] = rows[k]
        parts_into(model, w, one, parts)
        for j in range(d):
            out[k, j] = parts[d + 2 + j]
    return out


@njit(cache=True)
def gradient_noise_covariance(model, w, rows):
    """Per-example gradient covariance C1(w) = Cov_i[grad log p(x_i | w)] over `rows`.

    The minibatch gradient of U with B rows drawn with replacement has covariance
    (n^2 / B) C1 (seed 000, "The SGD Update Rule and Its Noise", rescaled from L to U = n L).
    """
    grads = per_example_loglik_grads(model, w, rows)
    centred = grads - grads.sum(axis=0) / grads.shape[0]
    return centred.T @ centred / grads.shape[0]


@njit(cache=True)
def potential_hessian(model, w, rows, scale, eps):
    """Hessian of U_hat (over `rows`, likelihood times `scale`) by central differences of its gradient."""
    d = w.shape[0]
    H = np.empty((d, d))
    for j in range(d):
        up, down = w.copy(), w.copy()
        up[j] += eps
        down[j] -= eps
        H[j] = (potential_and_grad(model, up, rows, scale)[1]
                - potential_and_grad(model, down, rows, scale)[1]) / (2.0 * eps)
    return 0.5 * (H + H.T)
