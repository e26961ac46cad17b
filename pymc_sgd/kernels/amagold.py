"""AMAGOLD: amortized Metropolis adjustment of second-order stochastic-gradient dynamics (Zhang, Cooper & De Sa
2020, AISTATS, Alg. 1), on exp(-U/T) in the whitened coordinates of a metric M = L L^T (unit mass).

One round from (w, r): a half drift w += (h/2) L r, then ``inner`` steps of the friction leapfrog with the
minibatch gradient g_t at the current w (after the first, a full drift w += h L r before each):

    r' = ((1 - h beta) r - h L^T g_t / T + eta) / (1 + h beta),   eta ~ N(0, 4 h beta I),
    rho += (h / 2) (L^T g_t / T) . (r + r'),   r = r',

a final half drift, and one Metropolis test with the full-data potential:

    accept with probability min(1, exp((U(w_0) - U(w)) / T + rho)),   else (w, r) = (w_0, -r_0).

rho is the work of the stochastic forces along the path, so the test compares it with the exact change in
U: the chain is exact for exp(-U/T) whatever the minibatch noise (the batches being iid, the reversed path
is as likely), with one full-data potential per round of ``inner`` minibatch steps.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .batching import next_batch
from .estimator import estimate_gradient, norm
from .info import Info
from .langevin import copy_into
from .model import full_potential_into
from .underdamped import factor_axpy


class State(NamedTuple):
    """Position w and the momentum r of z = L^{-1} w (unit mass)."""

    w: np.ndarray
    r: np.ndarray


class Params(NamedTuple):
    """``inner`` minibatch steps of size h per round, friction beta, temperature T; a round whose path leaves
    |w_i| <= bound is rejected."""

    inner: int
    h: float
    friction: float
    temperature: float
    bound: float


@njit(cache=True)
def amagold_updates(model, batch, estimator, preconditioner, state, params, n_updates, rng):
    """Run n_updates AMAGOLD rounds from ``state`` (``State``, ``Params``) in the metric with factor L =
    ``preconditioner.root`` (``langevin.Preconditioner``; the rest as ``langevin.langevin_updates``).

    Returns (State(w, r), ``info.Info``: the gradient norm of the last step, U(w) over all rows (diverged when
    not finite) and extras [the fraction of rounds accepted])."""
    d = state.w.shape[0]
    buffers = np.zeros((6, d))  # w, r, w_0, r_0, grad, kick (see _amagold_loop)
    copy_into(state.w, buffers[0])
    copy_into(state.r, buffers[1])
    tally = np.zeros(2)  # U(w), accepted rounds
    _amagold_loop(model, buffers, np.zeros(2 * d + 2), tally, np.zeros(0, dtype=np.int64), np.zeros(1), batch,
                  estimator, preconditioner.root, params, n_updates, rng)
    acceptance = np.array([tally[1] / max(n_updates, 1)])
    return (State(buffers[0].copy(), buffers[1].copy()),
            Info(params.h, norm(buffers[4]), tally[0], not np.isfinite(tally[0]), acceptance))


@njit(cache=True, _nrt=False)
def _amagold_loop(model, buffers, parts, tally, no_rows, zero, batch, estimator, factor, params, rounds, rng):
    """The rounds of ``amagold_updates`` on ``buffers`` = [w, r, w_0, r_0, grad, kick] and ``tally`` = [U(w),
    accepted]; a round whose path leaves |w_i| <= bound or turns non-finite is rejected (langevin.NO_NRT)."""
    w, r, w0, r0, grad, kick = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4], buffers[5]
    d = w.shape[0]
    h, friction, temperature = params.h, params.friction, params.temperature
    potential = full_potential_into(model, w, parts, no_rows, zero, kick) / temperature
    noise_sd = np.sqrt(4.0 * h * friction)
    for _ in range(rounds):
        copy_into(w, w0)
        copy_into(r, r0)
        rho = 0.0
        factor_axpy(0.5 * h, factor, False, r, w)
        for t in range(params.inner):
            if t > 0:
                factor_axpy(h, factor, False, r, w)
            next_batch(batch, rng)
            estimate_gradient(model, w, batch, estimator, grad)
            for i in range(d):
                kick[i] = 0.0
            factor_axpy(1.0 / temperature, factor, True, grad, kick)  # L^T g / T
            damping, undamping = 1.0 - h * friction, 1.0 / (1.0 + h * friction)
            for i in range(d):
                new = (damping * r[i] - h * kick[i] + noise_sd * rng.standard_normal()) * undamping
                rho += 0.5 * h * kick[i] * (r[i] + new)
                r[i] = new
        factor_axpy(0.5 * h, factor, False, r, w)
        in_bounds = True
        for i in range(d):
            if not abs(w[i]) <= params.bound:
                in_bounds = False
        proposal = full_potential_into(model, w, parts, no_rows, zero, kick) / temperature if in_bounds else np.inf
        if np.log(rng.random()) < potential - proposal + rho:  # False for NaN: rejected
            potential = proposal
            tally[1] += 1.0
        else:
            copy_into(w0, w)
            for i in range(d):
                r[i] = -r0[i]
    tally[0] = potential * temperature
