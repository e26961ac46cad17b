"""Underdamped Langevin dynamics, dx = v dt, dv = -grad U dt - gamma v dt + sqrt(2 gamma T) dW
(unit mass), integrated by splitting (Leimkuhler & Matthews 2013; docs/pages/sources.md):

- BAOAB: B half kick, A half drift, O exact OU step on v over h with FRESH noise,
  A half drift, B half kick. For a quadratic U its x-marginal is exact for any stable h;
  the velocity is biased at O(h^2) (kinetic temperature T (1 - h^2 k / 4) in 1-D).
- OBABO: O over h/2, B half kick, A full drift, B half kick, O over h/2.

The O step is v <- c v + sqrt(T (1 - c^2)) xi with c = exp(-gamma dt), exact for the OU part.
Each kick uses the minibatch gradient at the current x; the gradient at the end of a step is
reused for the first kick of the next (one gradient per step).

In a metric M = L L^T (``pymc_sgd.warmup.metric``) the dynamics run on z = L^{-1} x with unit
mass: kicks v <- v - (h/2) L^T grad U(x), drifts x <- x + (h/2) L v (v is z's velocity).
"""

from typing import NamedTuple

import numpy as np
from numba import njit, types
from numba.extending import overload

from .batching import next_batch
from .estimator import estimate_gradient
from .guards import is_diverged
from .info import minibatch_info
from .langevin import copy_into
from .schedules import CONSTANT, step_size_at

BAOAB = 0
OBABO = 1


@njit(cache=True, inline="always")
def ou_step(v, c, temperature, rng):
    """v <- c v + sqrt(T (1 - c^2)) xi in place, fresh xi."""
    sd = np.sqrt(temperature * (1.0 - c * c))
    for i in range(v.shape[0]):
        v[i] = c * v[i] + sd * rng.standard_normal()


def factor_axpy(a, factor, transpose, x, y):
    """y <- y + a F x (or a F^T x) in place: F a lower-triangular factor (2-D, O(d^2)) or a diagonal (1-D, O(d)),
    chosen from the argument type when numba compiles (``langevin.multiply_into``)."""


@overload(factor_axpy)  # not inline="always": numba's inliner then loses loop variables (NumbaIRAssumptionWarning)
def _factor_axpy(a, factor, transpose, x, y):
    if isinstance(factor, types.Array) and factor.ndim == 1:
        def diagonal(a, factor, transpose, x, y):
            for i in range(y.shape[0]):
                y[i] += a * factor[i] * x[i]
        return diagonal

    def triangular(a, factor, transpose, x, y):
        d = y.shape[0]
        for i in range(d):
            acc = 0.0
            for j in range(d):
                acc += (factor[j, i] if transpose else factor[i, j]) * x[j]
            y[i] += a * acc
    return triangular


class State(NamedTuple):
    """Position x and the velocity v of z = L^{-1} x (unit mass)."""

    x: np.ndarray
    v: np.ndarray


class Params(NamedTuple):
    """Time step h_t = ``schedules.step_size_at(schedule_kind, schedule, t)``, friction gamma, temperature T,
    the splitting (BAOAB or OBABO); |x_i| > bound has diverged."""

    schedule_kind: int
    schedule: np.ndarray
    gamma: float
    temperature: float
    scheme: int
    bound: float


@njit(cache=True)
def underdamped_updates(model, batch, estimator, preconditioner, state, params, n_updates, rng):
    """Run n_updates BAOAB/OBABO steps from ``state`` (``State``, ``Params``) in the metric L L^T, L =
    ``preconditioner.root`` (``langevin.Preconditioner``; the rest as ``langevin.langevin_updates``); the time
    step of update t = 0, 1, ... of this call is h_t.

    Returns (State(x, v), ``info.Info``: h_t and the gradient of the last update; no extras).
    """
    buffers = np.zeros((5, state.x.shape[0]))  # x, v, their copies, grad (see _underdamped_loop)
    copy_into(state.x, buffers[0])
    copy_into(state.v, buffers[1])
    h, diverged = _underdamped_loop(model, buffers, batch, estimator, preconditioner.root, params, n_updates, rng)
    x = buffers[0].copy()
    return State(x, buffers[1].copy()), minibatch_info(model, x, buffers[4], batch, h, diverged, np.zeros(0))


@njit(cache=True, _nrt=False)
def _underdamped_loop(model, buffers, batch, estimator, factor, params, n_updates, rng):
    """The loop of ``underdamped_updates`` on ``buffers`` = [x, v, x0, v0, grad]; leaves the last finite (x, v)
    in buffers[0:2]; returns (h of the last update, diverged) (no allocation: langevin.NO_NRT)."""
    x, v, x0, v0, grad = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4]
    schedule_kind, schedule = params.schedule_kind, params.schedule
    gamma, temperature = params.gamma, params.temperature
    next_batch(batch, rng)
    estimate_gradient(model, x, batch, estimator, grad)
    h = step_size_at(schedule_kind, schedule, 0)
    c_full, c_half = np.exp(-gamma * h), np.exp(-0.5 * gamma * h)
    for t in range(n_updates):
        if schedule_kind != CONSTANT:
            h = step_size_at(schedule_kind, schedule, t)
            c_full, c_half = np.exp(-gamma * h), np.exp(-0.5 * gamma * h)
        copy_into(x, x0)
        copy_into(v, v0)
        if params.scheme == BAOAB:
            factor_axpy(-0.5 * h, factor, True, grad, v)
            factor_axpy(0.5 * h, factor, False, v, x)
            ou_step(v, c_full, temperature, rng)
            factor_axpy(0.5 * h, factor, False, v, x)
        else:
            ou_step(v, c_half, temperature, rng)
            factor_axpy(-0.5 * h, factor, True, grad, v)
            factor_axpy(h, factor, False, v, x)
        next_batch(batch, rng)
        estimate_gradient(model, x, batch, estimator, grad)
        factor_axpy(-0.5 * h, factor, True, grad, v)
        if params.scheme == OBABO:
            ou_step(v, c_half, temperature, rng)
        if is_diverged(grad, x, params.bound):
            copy_into(x0, x)
            copy_into(v0, v)
            return h, True
    return h, False
