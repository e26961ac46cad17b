"""Metropolis-adjusted Langevin algorithm (MALA) on full-data U: the exact reference sampler.

Proposal (Roberts & Tweedie 1996, Bernoulli 2, 341-363; in the h-on-U convention of docs/pages/design.md, with
a metric M = L L^T and the target exp(-U/T)):

    w' = w - h M grad U(w) + sqrt(2 h T) L xi,      xi ~ N(0, I),

accepted with probability min(1, exp(-(U(w') - U(w)) / T + log q(w | w') - log q(w' | w))), where
log q(b | a) = -|L^{-1}(b - a + h M grad U(a))|^2 / (4 h T). Forward, L^{-1}(...) = sqrt(2 h T) xi;
backward, -sqrt(2 h T) xi + h L^T (grad U(w) + grad U(w')) (L^{-1} M = L^T). This is the standard ratio:
seed 002's chapter has it inverted (docs/pages/sources.md). The chain's law is exactly exp(-U/T) for any h; h only
sets the acceptance rate and the mixing.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .estimator import norm
from .info import Info
from .langevin import copy_into
from .model import full_potential_into
from .scale_moves import acceptances, scale_moves_into
from .underdamped import factor_axpy


class State(NamedTuple):
    """The chain's position."""

    w: np.ndarray


class Params(NamedTuple):
    """Step h, temperature T; a proposal outside |w_i| <= bound is rejected."""

    h: float
    temperature: float
    bound: float


@njit(cache=True)
def mala_updates(model, preconditioner, moves, state, params, n_updates, rng):
    """Run n_updates MALA steps from ``state`` (``State``, ``Params``) in the metric with factor L =
    ``preconditioner.root`` (``langevin.Preconditioner``), with full-data gradients (no batch, no estimator),
    and a round of ``moves`` (``scale_moves.ScaleMoves``) before updates 0, every, 2 every, ...

    Returns (State(w), ``info.Info``: |grad U(w)|, U(w) (diverged when not finite) and extras [the acceptance
    rate, then each scale family's])."""
    d = state.w.shape[0]
    buffers = np.zeros((6, d))  # w, proposal, grad at w, grad at proposal, xi, scratch (see _mala_loop)
    copy_into(state.w, buffers[0])
    tally = np.zeros(2 + moves.scale.shape[0])  # U(w), accepted count, each scale family's accepted count
    _mala_loop(model, buffers, np.zeros(2 * d + 2), tally, np.zeros(0, dtype=np.int64), np.zeros(1),
               preconditioner.root, moves, params, n_updates, rng)
    return (State(buffers[0].copy()),
            Info(params.h, norm(buffers[2]), tally[0], not np.isfinite(tally[0]), acceptances(tally, moves, n_updates)))


@njit(cache=True, _nrt=False)
def _mala_loop(model, buffers, parts, tally, no_rows, zero, factor, moves, params, n_updates, rng):
    """The loop of ``mala_updates`` on ``buffers`` = [w, proposal, grad U(w), grad U(proposal), xi, scratch]
    and ``tally`` = [U(w), accepted, each scale family's accepted]; no allocation (langevin.NO_NRT)."""
    w, proposal, grad, proposal_grad, xi, kick = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4], buffers[5]
    d = w.shape[0]
    h, temperature = params.h, params.temperature
    potential = full_potential_into(model, w, parts, no_rows, zero, grad)
    sd = np.sqrt(2.0 * h * temperature)
    for update in range(n_updates):
        if moves.every > 0 and update % moves.every == 0:
            potential = scale_moves_into(model, moves, w, proposal, grad, proposal_grad, potential, parts, no_rows,
                                         zero, temperature, tally[2:], rng)
        for i in range(d):
            xi[i] = rng.standard_normal()
            kick[i] = sd * xi[i]
        factor_axpy(-h, factor, True, grad, kick)  # kick = -h L^T grad U(w) + sqrt(2hT) xi (whitened move)
        copy_into(w, proposal)
        factor_axpy(1.0, factor, False, kick, proposal)
        in_bounds = True
        for i in range(d):
            if not abs(proposal[i]) <= params.bound:
                in_bounds = False
        if not in_bounds:
            continue
        proposal_potential = full_potential_into(model, proposal, parts, no_rows, zero, proposal_grad)
        for i in range(d):
            kick[i] = -sd * xi[i]  # the backward residual: -sqrt(2hT) xi + h L^T (grad U(w) + grad U(w'))
            proposal_grad[i] += grad[i]
        factor_axpy(h, factor, True, proposal_grad, kick)
        for i in range(d):
            proposal_grad[i] -= grad[i]
        log_ratio = -(proposal_potential - potential) / temperature
        for i in range(d):
            log_ratio += 0.5 * xi[i] * xi[i] - kick[i] * kick[i] / (4.0 * h * temperature)
        if np.log(rng.random()) < log_ratio:  # False for NaN: a non-finite proposal is rejected
            copy_into(proposal, w)
            copy_into(proposal_grad, grad)
            potential = proposal_potential
            tally[1] += 1.0
    tally[0] = potential
