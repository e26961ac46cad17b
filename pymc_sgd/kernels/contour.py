"""Contour stochastic gradient Langevin dynamics (CSGLD; Deng, Lin & Liang 2020, NeurIPS, Alg. 1; as in
BlackJAX's ``contour_sgld``).

The energy axis is cut into m partitions of width du from u_min: J(w) = min(max(floor((U_hat(w) - u_min)
/ du), 0), m - 1). theta_i estimates the posterior mass of partition i; the chain samples the flattened
density exp(-U/T) / theta_J(w)^zeta by the Langevin move with the gradient multiplied by

    1 + zeta T (log theta_J - log theta_{J-1}) / du      (1 for J = 0),

which turns negative on the high-energy side of a well-learnt barrier and pushes the chain over it. The
multiplier is clipped to [-c, c] with c = ``max_multiplier`` (our addition): theta of a partition the chain
has not reached decays geometrically (to e^-300 within 10^5 updates), so the log ratio at the frontier of
the explored energies grows without bound and a step h times it blew the chain up (measured). Clipping
changes the flattened law only in partitions where theta_J is tiny, whose draws carry weight theta_J^zeta
~ 0; log theta is floored at log(1e-300) so two unexplored partitions give a multiplier of 1.
With each move the density of states is updated by stochastic approximation with gain omega_k:

    theta_i <- theta_i + omega_k theta_J^zeta (1{i = J} - theta_i),      J = J(w) on the update's batch.

One model call per update gives U_hat(w) and its gradient together; Deng et al. (and BlackJAX) take J
at the moved state, which costs a second call; the one-update lag changes nothing in the limit of the
stochastic approximation (theta moves by omega_k ~ k^-0.75 per update).

The multiplier is T d/dU of zeta Psi(U), Psi the piecewise-linear interpolation of log theta in energy
(Psi = log theta_{J-1} + (U - u_J) (log theta_J - log theta_{J-1}) / du in partition J, u_J = u_min + J du;
constant log theta_0 in partition 0 and log theta_{m-2} in the top one, which are not flattened), so the
chain samples exp(-U/T - zeta Psi(U)) and a draw's exact importance weight is exp(zeta Psi(U(w))): the
geometric interpolation theta_{J-1}^(1-f) theta_J^f, f = (U - u_J) / du, to the power zeta. Deng et al.
weight by theta_J^zeta, the step function, which put 0.16 on a mode of weight 0.2 of a 3-mode target
(3 SE off, measured); the interpolated weight is what the dynamics sample.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .batching import next_batch
from .guards import is_diverged
from .info import Info, minibatch_info
from .langevin import copy_into, langevin_move
from .model import PARTS, _evaluate


@njit(cache=True, inline="always")
def partition_of(potential, u_min, du, m):
    """J: the energy partition of a potential (clipped to [0, m - 1]; NaN goes to the top)."""
    if not potential < u_min + m * du:
        return m - 1
    return max(int((potential - u_min) / du), 0)


@njit(cache=True)
def importance_weight(potential, theta, u_min, du, zeta):
    """exp(zeta Psi(U)) for a draw at potential U (see the module), 0 for a non-finite U."""
    m = theta.shape[0]
    if not np.isfinite(potential):
        return 0.0
    partition = partition_of(potential, u_min, du, m)
    if partition == 0:
        return theta[0] ** zeta
    if partition == m - 1:
        return theta[m - 2] ** zeta
    f = (potential - u_min) / du - partition
    return np.exp(zeta * ((1.0 - f) * np.log(max(theta[partition - 1], 1e-300))
                          + f * np.log(max(theta[partition], 1e-300))))


class State(NamedTuple):
    """A CSGLD chain: its position, the density of states theta (m partitions' estimated masses, updated in
    place) and the update counter k of the gain omega_k = 10 / (k^0.75 + 100), Deng et al.'s schedule."""

    w: np.ndarray
    theta: np.ndarray
    k: int


class Params(NamedTuple):
    """Step h and temperature of the Langevin move; the m partitions of width du from u_min, the flattening
    power zeta and the multiplier's clip ``max_multiplier`` (see the module); |w_i| > bound has diverged."""

    h: float
    temperature: float
    bound: float
    u_min: float
    du: float
    zeta: float
    max_multiplier: float


@njit(cache=True)
def contour_updates(model, batch, preconditioner, state, params, n_updates, rng):
    """Run n_updates CSGLD updates from ``state`` (``State``, ``Params``; the move is ``langevin.langevin_move``'s
    in the ``langevin.Preconditioner``, the rest as ``langevin.langevin_updates``). No gradient estimator: the
    partition needs U_hat, which one model call gives with its gradient.

    Returns (State(w, theta, k), ``info.Info``) with the norm of the last multiplied gradient and extras
    [partition J of U_hat(w) on the last batch, w's importance weight (``importance_weight``; NaN when the
    loop diverged)]."""
    d, m = state.w.shape[0], state.theta.shape[0]
    buffers = np.zeros((5, d))  # w, proposal, grad, scratch
    copy_into(state.w, buffers[0])
    flags = np.zeros(3)  # [U_hat at the last update's start, diverged, 0: PARTS's unused scale]
    k = _contour_loop(model, buffers, np.zeros(2 * d + 2), flags, batch, preconditioner, state, params, n_updates,
                      rng)
    w = buffers[0].copy()
    diverged = flags[1] > 0.0
    info = minibatch_info(model, w, buffers[2], batch, params.h, diverged, np.zeros(0))
    weight = np.nan if diverged else importance_weight(info.potential, state.theta, params.u_min, params.du,
                                                       params.zeta)
    extras = np.array([float(partition_of(info.potential, params.u_min, params.du, m)), weight])
    return State(w, state.theta, k), Info(info.step_size, info.grad_norm, info.potential, info.diverged, extras)


@njit(cache=True, _nrt=False)
def _contour_loop(model, buffers, parts, flags, batch, preconditioner, state, params, n_updates, rng):
    """The loop of ``contour_updates`` on ``buffers`` = [w, proposal, grad, 2 scratch rows], ``flags`` = [U_hat at
    the last update's start, diverged, 0], from state.k and state.theta; returns the update counter (no
    allocation: langevin.NO_NRT)."""
    w, proposal, grad, work, xi = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4]
    theta, h, temperature = state.theta, params.h, params.temperature
    u_min, du, zeta = params.u_min, params.du, params.zeta
    d, m = w.shape[0], theta.shape[0]
    zero = flags[2:]  # PARTS ignores the scale argument
    scale = batch.scale[0]
    k = state.k
    # theta = shrink * phi (phi stored in theta): the update theta <- (1 - g) theta + g e_J becomes shrink *= 1 - g,
    # phi_J += g / shrink, O(1) instead of O(m) an update; folded back into theta on return
    shrink = 1.0
    for _ in range(n_updates):
        next_batch(batch, rng)
        _evaluate(model, PARTS, w, batch.idx, zero, parts)
        flags[0] = -(parts[0] + scale * parts[1])
        partition = partition_of(flags[0], u_min, du, m)
        multiplier = 1.0
        if 0 < partition < m - 1:  # beyond [u_min, u_min + (m - 1) du) the landscape is not flattened
            log_ratio = (np.log(max(shrink * theta[partition], 1e-300))
                         - np.log(max(shrink * theta[partition - 1], 1e-300)))
            multiplier = min(max(1.0 + zeta * temperature * log_ratio / du, -params.max_multiplier),
                             params.max_multiplier)
        for i in range(d):
            grad[i] = -multiplier * (parts[2 + i] + scale * parts[d + 2 + i])
        langevin_move(w, grad, rng, h, temperature, 1.0, preconditioner, work, xi, proposal)
        if is_diverged(grad, proposal, params.bound):
            flags[1] = 1.0
            break
        copy_into(proposal, w)
        k += 1
        gain = 10.0 / (k**0.75 + 100.0) * (shrink * theta[partition]) ** zeta
        shrink *= 1.0 - gain
        theta[partition] += gain / shrink
        if shrink < 1e-200:
            _fold(theta, shrink)
            shrink = 1.0
    _fold(theta, shrink)
    return k


@njit(cache=True, inline="always")
def _fold(theta, shrink):
    for i in range(theta.shape[0]):
        theta[i] *= shrink
