"""Replica-exchange SGLD: K SGLD replicas at temperatures T_0 = 1 < ... < T_{K-1}, with
Metropolis swaps of adjacent replicas (docs/pages/sources.md; Deng et al. 2020).

Slot k always runs at T_k; a swap exchanges the states in slots k and k+1 with probability
min(1, exp(c (U_k - U_{k+1}))), c = 1/T_k - 1/T_{k+1} > 0. Swap rounds alternate even and
odd pairs (deterministic even-odd scheme, which maximises round trips).

Energies for the test (``energy_mode``):
- FULL: exact U over all n rows: the swap is an exact Metropolis step.
- CORRECTED: minibatch U_hat of both states on the SAME rows; D_hat = U_hat_k - U_hat_{k+1}
  is ~ N(D, V), so E[exp(c D_hat)] = exp(c D + c^2 V / 2). Deng et al. (2020, Eq. 7) subtract
  the variance term: exponent c D_hat - c^2 V_hat / 2, with V_hat = (n^2 / B) times the sample
  variance of the per-row differences of log p(x_i | w) (with-replacement rows).
- NAIVE: c D_hat uncorrected (biased towards swapping; for study only).
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .batching import next_batch
from .estimator import minibatch_potential
from .guards import is_diverged
from .info import minibatch_info
from .langevin import copy_into, langevin_move
from .model import gradient_into, parts_into

FULL = 0
CORRECTED = 1
NAIVE = 2


@njit(cache=True)
def swap_log_ratio(model, w_cold, w_hot, c, energy_mode, n_rows, swap_rows, rng):
    """log of the swap acceptance ratio for (cold, hot) states, per ``energy_mode``."""
    if energy_mode == FULL:
        all_rows, unit = np.arange(n_rows), np.ones(1)
        return c * (minibatch_potential(model, w_cold, all_rows, unit)
                    - minibatch_potential(model, w_hot, all_rows, unit))
    one = np.empty(1, dtype=np.int64)
    diffs = np.empty(swap_rows)
    cold, hot = np.empty(2 * w_cold.shape[0] + 2), np.empty(2 * w_cold.shape[0] + 2)
    log_prior_diff = 0.0
    for j in range(swap_rows):
        one[0] = rng.integers(0, n_rows)
        parts_into(model, w_cold, one, cold)
        parts_into(model, w_hot, one, hot)
        diffs[j] = cold[1] - hot[1]
        log_prior_diff = cold[0] - hot[0]
    scale = n_rows / swap_rows
    delta_u = -(log_prior_diff + scale * np.sum(diffs))
    if energy_mode == NAIVE:
        return c * delta_u
    variance = scale * n_rows * np.var(diffs) * swap_rows / max(swap_rows - 1, 1)
    return c * delta_u - 0.5 * c * c * variance


class State(NamedTuple):
    """The replicas (K x d, slot k at T_k; updated in place), the update count t (swap rounds at its multiples
    of swap_every), ``labels`` (the replica in each slot), ``direction`` and ``round_trips`` (see
    ``track_round_trips``), and the swaps ``accepted`` of those ``attempted`` for each adjacent pair (counted
    on by every call)."""

    replicas: np.ndarray
    t: int
    labels: np.ndarray
    direction: np.ndarray
    round_trips: np.ndarray
    accepted: np.ndarray
    attempted: np.ndarray


class Params(NamedTuple):
    """Every replica's step h and the ladder T_0 = 1 < ... < T_{K-1}; a swap round every ``swap_every``
    updates, its energies per ``energy_mode`` (from ``swap_rows`` of the ``n_rows`` rows unless FULL);
    |w_i| > bound has diverged."""

    h: float
    temperatures: np.ndarray
    swap_every: int
    energy_mode: int
    n_rows: int
    swap_rows: int
    bound: float


@njit(cache=True)
def swap_round(model, state, params, parity, rng):
    """Attempt swaps on pairs (k, k+1) with k % 2 == parity; update the state's labels and counters in place."""
    replicas, temperatures, labels = state.replicas, params.temperatures, state.labels
    for k in range(parity, replicas.shape[0] - 1, 2):
        c = 1.0 / temperatures[k] - 1.0 / temperatures[k + 1]
        log_ratio = swap_log_ratio(model, replicas[k], replicas[k + 1], c, params.energy_mode, params.n_rows,
                                   params.swap_rows, rng)
        state.attempted[k] += 1
        if np.log(rng.random()) < log_ratio:
            state.accepted[k] += 1
            tmp = replicas[k].copy()
            copy_into(replicas[k + 1], replicas[k])
            copy_into(tmp, replicas[k + 1])
            labels[k], labels[k + 1] = labels[k + 1], labels[k]


@njit(cache=True)
def track_round_trips(labels, direction, round_trips):
    """A replica's trip cold -> hot -> cold counts once (direction: 0 unset, 1 up, -1 down)."""
    last = labels.shape[0] - 1
    if direction[labels[last]] == 1:
        direction[labels[last]] = -1
    cold = labels[0]
    if direction[cold] == -1:
        round_trips[0] += 1
    direction[cold] = 1


@njit(cache=True)
def exchange_updates(model, batch, preconditioner, state, params, n_updates, rng):
    """n_updates SGLD updates of every replica (``State``, ``Params``; in the metric P = the
    ``langevin.Preconditioner``'s matrix = root root^T, or the identity when both are None), a swap round every
    swap_every updates; each replica draws its own minibatch, with the plain gradient.

    Returns (State with the new t, the same arrays updated in place; ``info.Info`` of slot 0: the norm of its
    last gradient, U_hat at its state on the last batch; no extras).
    """
    replicas = state.replicas
    buffers = np.zeros((5, replicas.shape[1]))  # grad, slot 0's last grad, scratch (see _replica_updates)
    t, remaining, swap_every, diverged = state.t, n_updates, params.swap_every, False
    while remaining > 0:
        steps = min(remaining, swap_every - t % swap_every)  # up to the next swap round
        done = _replica_updates(model, buffers, batch, preconditioner, replicas, params, steps, rng)
        t += done
        if done < steps:
            diverged = True
            break
        remaining -= steps
        if t % swap_every == 0:
            swap_round(model, state, params, (t // swap_every) % 2, rng)
            track_round_trips(state.labels, state.direction, state.round_trips)
    return (State(replicas, t, state.labels, state.direction, state.round_trips, state.accepted, state.attempted),
            minibatch_info(model, replicas[0], buffers[1], batch, params.h, diverged, np.zeros(0)))


@njit(cache=True, _nrt=False)
def _replica_updates(model, buffers, batch, preconditioner, replicas, params, n_updates, rng):
    """n_updates SGLD updates of every replica, no swaps, on ``buffers`` = [grad, slot 0's last grad,
    proposal, 2 scratch rows]; returns the updates completed (fewer on divergence; langevin.NO_NRT)."""
    grad, grad0, proposal, work, xi = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4]
    for done in range(n_updates):
        for k in range(replicas.shape[0]):
            next_batch(batch, rng)
            gradient_into(model, replicas[k], batch.idx, batch.scale, grad)
            langevin_move(replicas[k], grad, rng, params.h, params.temperatures[k], 1.0, preconditioner, work, xi,
                          proposal)
            if is_diverged(grad, proposal, params.bound):
                return done
            copy_into(proposal, replicas[k])
            if k == 0:
                copy_into(grad, grad0)
    return n_updates
