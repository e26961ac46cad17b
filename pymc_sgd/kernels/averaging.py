"""Iterate averaging of constant SGD (Polyak & Juditsky 1992; Mandt, Hoffman & Blei 2017, JMLR 18,
Sec. 6 "iterate averaging", seed 004): the mean of K consecutive iterates of

    w <- w - h M grad U_hat(w)

(``langevin`` with no injected noise). On a quadratic U with Hessian H and gradient noise V = Cov(grad U_hat)
the iterates are a linear recursion w_{t+1} - w* = A (w_t - w*) - h M xi_t, A = I - h M H, and the mean of K
of them has covariance -> (1/K) (h M H)^{-1} h^2 M V M (h H M)^{-1} = (1/K) H^{-1} V H^{-1} as K grows past
the relaxation time: independent of h and M, the asymptotically optimal (sandwich) covariance.
``theory.averaged_iterate_covariance`` gives the exact finite-K value.
"""

import numpy as np
from numba import njit

from .estimator import minibatch_potential, norm
from .langevin import _langevin_loop, copy_into
from .schedules import CONSTANT


@njit(cache=True)
def averaged_updates(model, w, rng, batch, n_updates, h, p_diag, p_full, bound, estimator):
    """Run n_updates constant-SGD updates from w (step h, preconditioner (p_diag, p_full) as in
    ``langevin.preconditioner``). Returns (last w, mean of the n_updates iterates after each update,
    |grad U_hat|, U_hat at the mean, diverged)."""
    d = w.shape[0]
    buffers = np.zeros((6, d))  # _langevin_loop's 5 rows, then the sum of the iterates
    copy_into(w, buffers[0])
    diverged = _averaging_loop(model, buffers, rng, batch, n_updates, np.array([h, 0.0, 0.0]), p_diag, p_full, bound,
                               estimator)
    last, mean = buffers[0].copy(), buffers[5] / n_updates
    if diverged:
        return last, mean, np.inf, np.nan, True
    potential = minibatch_potential(model, mean, batch.idx, batch.scale[0])
    return last, mean, norm(buffers[2]), potential, not np.isfinite(potential)


@njit(cache=True, _nrt=False)
def _averaging_loop(model, buffers, rng, batch, n_updates, schedule, p_diag, p_full, bound, estimator):
    """One ``_langevin_loop`` update at a time (no noise), adding each iterate to buffers[5]; returns whether
    it diverged (no allocation: langevin.NO_NRT)."""
    w, total = buffers[0], buffers[5]
    for _ in range(n_updates):
        diverged = _langevin_loop(model, buffers, rng, batch, 0, 1, CONSTANT, schedule, 1.0, 0.0, p_diag, p_full, None,
                                  None, bound, estimator)[2]
        if diverged:
            return True
        for i in range(w.shape[0]):
            total[i] += w[i]
    return False
