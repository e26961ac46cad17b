"""Iterate averaging of constant SGD (Polyak & Juditsky 1992; Mandt, Hoffman & Blei 2017, JMLR 18,
Sec. 6 "iterate averaging", seed 004): the mean of K consecutive iterates of

    w <- w - h M grad U_hat(w)

(``langevin`` with no injected noise). On a quadratic U with Hessian H and gradient noise V = Cov(grad U_hat)
the iterates are a linear recursion w_{t+1} - w* = A (w_t - w*) - h M xi_t, A = I - h M H, and the mean of K
of them has covariance -> (1/K) (h M H)^{-1} h^2 M V M (h H M)^{-1} = (1/K) H^{-1} V H^{-1} as K grows past
the relaxation time: independent of h and M, the asymptotically optimal (sandwich) covariance.
``theory.averaged_iterate_covariance`` gives the exact finite-K value.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .info import minibatch_info
from .langevin import Params as LangevinParams
from .langevin import _langevin_loop, copy_into
from .schedules import CONSTANT


class State(NamedTuple):
    """The iterate w the chain continues from, and ``mean``, the mean of the iterates of the last call (only
    returned: its value on input is not read)."""

    w: np.ndarray
    mean: np.ndarray


class Params(NamedTuple):
    """The constant step h; a state with |w_i| > bound has diverged."""

    h: float
    bound: float


@njit(cache=True)
def averaged_updates(model, batch, estimator, preconditioner, state, params, n_updates, rng):
    """Run n_updates constant-SGD updates from state.w (step h, P the ``langevin.Preconditioner``'s (diag,
    matrix); arguments as ``langevin.langevin_updates``'). Returns (State(last w, mean of the n_updates
    iterates after each update), ``info.Info`` with U_hat at the mean; no extras)."""
    d = state.w.shape[0]
    buffers = np.zeros((6, d))  # _langevin_loop's 5 rows, then the sum of the iterates
    copy_into(state.w, buffers[0])
    langevin = LangevinParams(CONSTANT, np.array([params.h, 0.0, 0.0]), 1.0, 0.0, params.bound)
    diverged = _averaging_loop(model, buffers, batch, estimator, preconditioner, langevin, n_updates, rng)
    mean = buffers[5] / n_updates
    return State(buffers[0].copy(), mean), minibatch_info(model, mean, buffers[2], batch, params.h, diverged,
                                                          np.zeros(0))


@njit(cache=True, _nrt=False)
def _averaging_loop(model, buffers, batch, estimator, preconditioner, params, n_updates, rng):
    """One ``_langevin_loop`` update at a time (no noise), adding each iterate to buffers[5]; returns whether
    it diverged (no allocation: langevin.NO_NRT)."""
    w, total = buffers[0], buffers[5]
    for _ in range(n_updates):
        diverged = _langevin_loop(model, buffers, batch, estimator, preconditioner, params, 0, 1, rng)[2]
        if diverged:
            return True
        for i in range(w.shape[0]):
            total[i] += w[i]
    return False
