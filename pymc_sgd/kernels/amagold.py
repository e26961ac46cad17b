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

import numpy as np
from numba import njit

from .batching import next_batch
from .estimator import estimate_gradient
from .langevin import copy_into
from .mala import full_potential_into
from .underdamped import factor_axpy


@njit(cache=True)
def amagold_updates(model, w, r, rng, batch, rounds, inner, h, friction, temperature, factor, bound, estimator):
    """Run ``rounds`` AMAGOLD rounds from (w, r). Returns (w, r, U(w) over all rows, accepted rounds,
    |grad U_hat| of the last step)."""
    d = w.shape[0]
    buffers = np.zeros((6, d))  # w, r, w_0, r_0, grad, kick (see _amagold_loop)
    copy_into(w, buffers[0])
    copy_into(r, buffers[1])
    state = np.zeros(2)  # U(w), accepted rounds
    _amagold_loop(model, buffers, np.zeros(2 * d + 2), state, np.zeros(0, dtype=np.int64), np.zeros(1), rng, batch,
                  rounds, inner, h, friction, temperature, factor, bound, estimator)
    grad = buffers[4]
    return buffers[0].copy(), buffers[1].copy(), state[0], state[1], np.sqrt(np.sum(grad * grad))


@njit(cache=True, _nrt=False)
def _amagold_loop(model, buffers, parts, state, no_rows, zero, rng, batch, rounds, inner, h, friction, temperature,
                  factor, bound, estimator):
    """The rounds of ``amagold_updates`` on ``buffers`` = [w, r, w_0, r_0, grad, kick] and ``state`` = [U(w),
    accepted]; a round whose path leaves |w_i| <= bound or turns non-finite is rejected (langevin.NO_NRT)."""
    w, r, w0, r0, grad, kick = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4], buffers[5]
    d = w.shape[0]
    potential = full_potential_into(model, w, parts, no_rows, zero, kick) / temperature
    noise_sd = np.sqrt(4.0 * h * friction)
    for _ in range(rounds):
        copy_into(w, w0)
        copy_into(r, r0)
        rho = 0.0
        factor_axpy(0.5 * h, factor, False, r, w)
        for t in range(inner):
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
            if not abs(w[i]) <= bound:
                in_bounds = False
        proposal = full_potential_into(model, w, parts, no_rows, zero, kick) / temperature if in_bounds else np.inf
        if np.log(rng.random()) < potential - proposal + rho:  # False for NaN: rejected
            potential = proposal
            state[1] += 1.0
        else:
            copy_into(w0, w)
            for i in range(d):
                r[i] = -r0[i]
    state[0] = potential * temperature
