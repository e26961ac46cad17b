"""Second-order stochastic-gradient dynamics: heavy-ball SGD and SGHMC, one update rule.

    v <- (1 - alpha) v - h P grad U_hat(w) + L xi,    w <- w + v     (L L^T injected noise cov)

- Heavy-ball SGD (momentum beta = 1 - alpha, noise_sd = 0), docs/pages/sources.md's chosen form. With
  gradient-noise variance sigma^2 (on U) its temperature is T_eff = h sigma^2 / (2 alpha), and
  on a 1-D quadratic of curvature k with velocity noise s^2 = h^2 sigma^2 the exact variance is
  (1 + beta) s^2 / ((1 - beta) h k (2 (1 + beta) - h k))  (docs/pages/sources.md).
- SGHMC (Chen, Fox & Guestrin 2014, Eq. 15, in the practical (v = h r) parameterisation of
  their Sec. 3.3; Ma, Chen & Fox 2015): L L^T = 2 (alpha I - B_hat) h T, with
  B_hat = h V_hat / 2 the estimated share of the gradient noise V_hat = Cov(grad U_hat), so
  that injected plus gradient noise is 2 alpha h T I per step: the stationary law is exp(-U/T)
  up to O(h). This equals seed 003's recursion with lambda = h, mu = 1 - alpha and total
  noise C = V + L L^T / h^2, whose exact covariance solves a discrete Lyapunov equation.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .batching import next_batch
from .estimator import estimate_gradient
from .guards import is_diverged
from .info import minibatch_info
from .langevin import copy_into, multiply_into, precondition, standard_normal_into
from .schedules import CONSTANT, step_size_at


class State(NamedTuple):
    """Position w and velocity v = sqrt(h) r, r the momentum and h the step v was last updated with."""

    w: np.ndarray
    v: np.ndarray


class Params(NamedTuple):
    """h_t = ``schedules.step_size_at(schedule_kind, schedule, t)``, the friction alpha, the injected noise's
    factor L (L L^T its covariance at h = schedule[0]; a 1-D L is a diagonal; zeros for heavy-ball SGD); |w_i| >
    bound has diverged."""

    schedule_kind: int
    schedule: np.ndarray
    friction: float
    noise_factor: np.ndarray
    bound: float


@njit(cache=True)
def momentum_updates(model, batch, estimator, preconditioner, state, params, n_updates, rng):
    """Run n_updates heavy-ball/SGHMC updates from ``state`` (``State``, ``Params``, P the
    ``langevin.Preconditioner``'s (diag, matrix); the rest as ``langevin.langevin_updates``); stop early
    (keeping the last finite state). The step at update t = 0, 1, ... of this call is h_t; the injected noise
    covariance, meant for h = schedule[0], is scaled by h_t / schedule[0], and the velocity v = sqrt(h) r by
    sqrt(h_t / h_{t-1}) so that the momentum r carries over. Without that rescaling a cycle's large-step
    velocities kept moving w at its small-step end: SGHMC's SDs came out 4-14% wide on posteriordb models
    (measured).

    Returns (State(w, v), ``info.Info``: h_t and the gradient of the last update; no extras).
    """
    buffers = np.zeros((7, state.w.shape[0]))  # w, v, proposals, grad and scratch (see _momentum_loop)
    copy_into(state.w, buffers[0])
    copy_into(state.v, buffers[1])
    inject = np.any(params.noise_factor != 0.0)
    h, diverged = _momentum_loop(model, buffers, batch, estimator, preconditioner, params, inject, n_updates, rng)
    w = buffers[0].copy()
    return State(w, buffers[1].copy()), minibatch_info(model, w, buffers[4], batch, h, diverged, np.zeros(0))


@njit(cache=True, _nrt=False)
def _momentum_loop(model, buffers, batch, estimator, preconditioner, params, inject, n_updates, rng):
    """The loop of ``momentum_updates`` on ``buffers`` = [w, v, w_new, v_new, grad, 2 scratch rows]; leaves
    the last finite (w, v) in buffers[0:2]; returns (h of the last update, diverged) (no allocation:
    langevin.NO_NRT)."""
    w, v, w_new, v_new, grad = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4]
    work, xi = buffers[5], buffers[6]
    d = w.shape[0]
    schedule_kind, schedule, friction = params.schedule_kind, params.schedule, params.friction
    h = step_size_at(schedule_kind, schedule, 0)
    for t in range(n_updates):
        if schedule_kind != CONSTANT:  # v = sqrt(h) r: keep the momentum r when the step changes
            h_new = step_size_at(schedule_kind, schedule, t)
            ratio = np.sqrt(h_new / h)
            for i in range(d):
                v[i] *= ratio
            h = h_new
        next_batch(batch, rng)
        estimate_gradient(model, w, batch, estimator, grad)
        precondition(preconditioner, grad, work)
        for i in range(d):
            v_new[i] = (1.0 - friction) * v[i] - h * work[i]
        if inject:
            multiply_into(params.noise_factor, standard_normal_into(rng, xi), work)
            noise_scale = np.sqrt(h / schedule[0])
            for i in range(d):
                v_new[i] += noise_scale * work[i]
        for i in range(d):
            w_new[i] = w[i] + v_new[i]
        if is_diverged(grad, w_new, params.bound):
            return h, True
        copy_into(w_new, w)
        copy_into(v_new, v)
    return h, False
