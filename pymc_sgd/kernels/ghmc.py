"""Metropolis-adjusted underdamped Langevin on full-data U: generalised HMC with one leapfrog step.

Each update (Horowitz 1991, Phys. Lett. B 268, 247-252; the OBABO splitting of Leimkuhler & Matthews 2013
with a Metropolis test on its BAB part, as in Bou-Rabee & Vanden-Eijnden 2010):

- O: v <- c v + sqrt(T (1 - c^2)) xi over h/2, c = exp(-gamma h / 2) (exact for the OU part);
- BAB, the proposal: v <- v - (h/2) L^T grad U(x); x <- x + h L v; v <- v - (h/2) L^T grad U(x);
  accepted with probability min(1, exp(-(E' - E) / T)), E = U(x) + |v|^2 / 2; on rejection x stays and
  v <- -v (BAB followed by a velocity flip is a volume-preserving involution, so the test is exact);
- O again over h/2.

Both O steps leave N(0, T I) for v invariant and the flip does too, so exp(-U/T) N(0, T I) is exactly
stationary for any h: the step size sets only the acceptance and the mixing. Coordinates as
``kernels.underdamped``: the dynamics run on z = L^{-1} x with unit mass, v is z's velocity.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .estimator import norm
from .info import Info
from .langevin import copy_into
from .model import full_potential_into
from .scale_moves import acceptances, scale_moves_into
from .underdamped import factor_axpy, ou_step


class State(NamedTuple):
    """Position x and the velocity v of z = L^{-1} x (unit mass)."""

    x: np.ndarray
    v: np.ndarray


class Params(NamedTuple):
    """Time step h, friction gamma, temperature T; a proposal outside |x_i| <= bound is rejected."""

    h: float
    gamma: float
    temperature: float
    bound: float


@njit(cache=True)
def ghmc_updates(model, preconditioner, moves, state, params, n_updates, rng):
    """Run n_updates Metropolis-adjusted OBABO steps from ``state`` (``State``, ``Params``) in the metric with
    factor L = ``preconditioner.root`` (``langevin.Preconditioner``), with full-data gradients, and a round of
    ``moves`` (``scale_moves.ScaleMoves``: they move x and keep v) before updates 0, every, 2 every, ...

    Returns (State(x, v), ``info.Info``: |grad U(x)|, U(x) (diverged when not finite) and extras [the
    acceptance rate, then each scale family's])."""
    d = state.x.shape[0]
    buffers = np.zeros((6, d))  # x, v, proposal x, proposal v, grad at x, grad at proposal (see _ghmc_loop)
    copy_into(state.x, buffers[0])
    copy_into(state.v, buffers[1])
    tally = np.zeros(2 + moves.scale.shape[0])  # U(x), accepted count, each scale family's accepted count
    _ghmc_loop(model, buffers, np.zeros(2 * d + 2), tally, np.zeros(0, dtype=np.int64), np.zeros(1),
               preconditioner.root, moves, params, n_updates, rng)
    return (State(buffers[0].copy(), buffers[1].copy()),
            Info(params.h, norm(buffers[4]), tally[0], not np.isfinite(tally[0]), acceptances(tally, moves, n_updates)))


@njit(cache=True, inline="always")
def kinetic(v):
    """|v|^2 / 2."""
    total = 0.0
    for i in range(v.shape[0]):
        total += v[i] * v[i]
    return 0.5 * total


@njit(cache=True, _nrt=False)
def _ghmc_loop(model, buffers, parts, tally, no_rows, zero, factor, moves, params, n_updates, rng):
    """The loop of ``ghmc_updates`` on ``buffers`` = [x, v, proposal x, proposal v, grad U(x),
    grad U(proposal)] and ``tally`` = [U(x), accepted, each scale family's accepted]; no allocation
    (langevin.NO_NRT)."""
    x, v, x_new, v_new, grad, grad_new = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4], buffers[5]
    d = x.shape[0]
    h, temperature = params.h, params.temperature
    c_half = np.exp(-0.5 * params.gamma * h)
    potential = full_potential_into(model, x, parts, no_rows, zero, grad)
    for update in range(n_updates):
        if moves.every > 0 and update % moves.every == 0:
            potential = scale_moves_into(model, moves, x, x_new, grad, grad_new, potential, parts, no_rows, zero,
                                         temperature, tally[2:], rng)
        ou_step(v, c_half, temperature, rng)
        copy_into(x, x_new)
        copy_into(v, v_new)
        factor_axpy(-0.5 * h, factor, True, grad, v_new)
        factor_axpy(h, factor, False, v_new, x_new)
        in_bounds = True
        for i in range(d):
            if not abs(x_new[i]) <= params.bound:
                in_bounds = False
        accepted, new_potential = False, potential
        if in_bounds:
            new_potential = full_potential_into(model, x_new, parts, no_rows, zero, grad_new)
            factor_axpy(-0.5 * h, factor, True, grad_new, v_new)
            log_ratio = -(new_potential + kinetic(v_new) - potential - kinetic(v)) / temperature
            accepted = np.log(rng.random()) < log_ratio  # False for NaN: a non-finite proposal is rejected
        if accepted:
            copy_into(x_new, x)
            copy_into(v_new, v)
            copy_into(grad_new, grad)
            potential = new_potential
            tally[1] += 1.0
        else:
            for i in range(d):
                v[i] = -v[i]
        ou_step(v, c_half, temperature, rng)
    tally[0] = potential
