"""Second-order stochastic-gradient dynamics: heavy-ball SGD and SGHMC, one update rule.

    v <- (1 - alpha) v - h P grad U_hat(w) + L xi,    w <- w + v     (L L^T injected noise cov)

- Heavy-ball SGD (momentum beta = 1 - alpha, noise_sd = 0), ERRATA.md's chosen form. With
  gradient-noise variance sigma^2 (on U) its temperature is T_eff = h sigma^2 / (2 alpha), and
  on a 1-D quadratic of curvature k with velocity noise s^2 = h^2 sigma^2 the exact variance is
  (1 + beta) s^2 / ((1 - beta) h k (2 (1 + beta) - h k))  (ERRATA.md).
- SGHMC (Chen, Fox & Guestrin 2014, Eq. 15, in the practical (v = h r) parameterisation of
  their Sec. 3.3; Ma, Chen & Fox 2015): L L^T = 2 (alpha I - B_hat) h T, with
  B_hat = h V_hat / 2 the estimated share of the gradient noise V_hat = Cov(grad U_hat), so
  that injected plus gradient noise is 2 alpha h T I per step: the stationary law is exp(-U/T)
  up to O(h). This equals seed 003's recursion with lambda = h, mu = 1 - alpha and total
  noise C = V + L L^T / h^2, whose exact covariance solves a discrete Lyapunov equation.
"""

import numpy as np
from numba import njit

from .batching import next_batch
from .estimator import centred_gradient, minibatch_potential, norm
from .guards import is_diverged
from .langevin import matvec_into, precondition, standard_normal_into


@njit(cache=True)
def momentum_updates(model, w, v, rng, batch_mode, perm, cursor, idx, scale, n_updates,
                     h, friction, noise_factor, p_diag, p_full, bound, centre, centre_grad):
    """Run n_updates heavy-ball/SGHMC updates; stop early (keeping the last finite state).
    A non-empty ``centre`` switches to the control-variate gradient (``estimator.centred_gradient``).

    Returns (w, v, |grad U_hat|, U_hat, diverged) (see ``langevin_updates`` for the stats).
    """
    d = w.shape[0]
    scale_arg = np.full(1, scale)
    inject = np.any(noise_factor != 0.0)
    w, v = w.copy(), v.copy()
    w_new, v_new, work, xi, at_centre = np.empty(d), np.empty(d), np.empty(d), np.empty(d), np.empty(d)
    grad = np.zeros(d)
    for _ in range(n_updates):
        next_batch(batch_mode, rng, perm, cursor, idx)
        centred_gradient(model, w, idx, scale_arg, centre, centre_grad, grad, at_centre)
        precondition(p_diag, p_full, grad, work)
        for i in range(d):
            v_new[i] = (1.0 - friction) * v[i] - h * work[i]
        if inject:
            matvec_into(noise_factor, standard_normal_into(rng, xi), work)
            for i in range(d):
                v_new[i] += work[i]
        for i in range(d):
            w_new[i] = w[i] + v_new[i]
        if is_diverged(grad, w_new, bound):
            return w, v, np.inf, np.nan, True
        w, w_new = w_new, w
        v, v_new = v_new, v
    potential = minibatch_potential(model, w, idx, scale)
    return w, v, norm(grad), potential, not np.isfinite(potential)
