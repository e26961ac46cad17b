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

import numpy as np
from numba import njit

from .batching import next_batch
from .estimator import minibatch_potential, norm
from .model import gradient_into, parts_into
from .guards import is_diverged
from .langevin import copy_into, langevin_move

FULL = 0
CORRECTED = 1
NAIVE = 2


@njit(cache=True)
def swap_log_ratio(model, w_cold, w_hot, c, energy_mode, n_rows, swap_rows, rng):
    """log of the swap acceptance ratio for (cold, hot) states, per ``energy_mode``."""
    if energy_mode == FULL:
        all_rows = np.arange(n_rows)
        return c * (minibatch_potential(model, w_cold, all_rows, 1.0)
                    - minibatch_potential(model, w_hot, all_rows, 1.0))
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


@njit(cache=True)
def swap_round(model, states, temperatures, labels, parity, energy_mode, n_rows, swap_rows,
               rng, accepted, attempted):
    """Attempt swaps on pairs (k, k+1) with k % 2 == parity; update counters in place."""
    for k in range(parity, states.shape[0] - 1, 2):
        c = 1.0 / temperatures[k] - 1.0 / temperatures[k + 1]
        log_ratio = swap_log_ratio(model, states[k], states[k + 1], c, energy_mode, n_rows,
                                   swap_rows, rng)
        attempted[k] += 1
        if np.log(rng.random()) < log_ratio:
            accepted[k] += 1
            tmp = states[k].copy()
            copy_into(states[k + 1], states[k])
            copy_into(tmp, states[k + 1])
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
def exchange_updates(model, states, rng, batch, n_updates, h, temperatures, swap_every, t0, energy_mode, n_rows, swap_rows, labels,
                     direction, round_trips, accepted, attempted, p_full, p_chol, bound):
    """n_updates SGLD updates of every replica (in the metric p_full = p_chol p_chol^T, or the
    identity when both are None), a swap round every swap_every updates.

    states (K x d) are updated in place. Returns (t, |grad U_hat| of slot 0, U_hat of slot 0,
    diverged); each replica draws its own minibatch.
    """
    buffers = np.zeros((5, states.shape[1]))  # grad, slot 0's last grad, scratch (see _replica_updates)
    t, remaining = t0, n_updates
    while remaining > 0:
        steps = min(remaining, swap_every - t % swap_every)  # up to the next swap round
        done = _replica_updates(model, states, buffers, rng, batch, steps, h, temperatures, p_full, p_chol, bound)
        if done < steps:
            return t + done, np.inf, np.nan, True
        t += steps
        remaining -= steps
        if t % swap_every == 0:
            swap_round(model, states, temperatures, labels, (t // swap_every) % 2, energy_mode,
                       n_rows, swap_rows, rng, accepted, attempted)
            track_round_trips(labels, direction, round_trips)
    potential = minibatch_potential(model, states[0], batch.idx, batch.scale[0])
    return t, norm(buffers[1]), potential, not np.isfinite(potential)


@njit(cache=True, _nrt=False)
def _replica_updates(model, states, buffers, rng, batch, n_updates, h, temperatures, p_full, p_chol, bound):
    """n_updates SGLD updates of every replica, no swaps, on ``buffers`` = [grad, slot 0's last grad,
    proposal, 2 scratch rows]; returns the updates completed (fewer on divergence; langevin.NO_NRT)."""
    grad, grad0, proposal, work, xi = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4]
    for done in range(n_updates):
        for k in range(states.shape[0]):
            next_batch(batch, rng)
            gradient_into(model, states[k], batch.idx, batch.scale, grad)
            langevin_move(states[k], grad, rng, h, temperatures[k], 1.0, None, p_full, p_chol, None, work, xi,
                          proposal)
            if is_diverged(grad, proposal, bound):
                return done
            copy_into(proposal, states[k])
            if k == 0:
                copy_into(grad, grad0)
    return n_updates
