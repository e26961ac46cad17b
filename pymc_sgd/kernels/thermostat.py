"""Stochastic gradient Nose-Hoover thermostat (SGNHT; Ding, Fang, Babbush, Chen, Skeel & Neven 2014,
"Bayesian sampling using stochastic gradient thermostats", NeurIPS, Alg. 1).

Their update with time step delta, p the momentum, xi the thermostat and A the injected diffusion:

    p <- p - xi p delta - grad U_hat delta + sqrt(2 A delta) N(0, I),  theta <- theta + p delta,
    xi <- xi + (p^T p / d - T) delta.

In SGHMC's practical parameterisation (``kernels.momentum``: u = p delta, h = delta^2 the step on U,
friction xi delta, diffusion a = A delta) and in the whitened coordinates of a metric M = L L^T
(``kernels.underdamped``: u is z = L^{-1} w's velocity):

    u <- (1 - xi) u - h L^T grad U_hat(w) + sqrt(2 a h T) zeta,   w <- w + L u,
    xi <- xi + ((1 - xi / 2) |u|^2 / d - h T) / mu.

The factor (1 - xi / 2) corrects Ding et al.'s target |u|^2 / d = h T for the discrete scheme
(derived here, checked against the exact discrete Lyapunov covariance): with velocity noise q per step
(injected plus gradient noise) a quadratic mode of curvature k has Var(u) = q / (xi (2 - xi)) (1 + O(h k))
and the virial identity (1 - xi / 2) E[u^2] = h k E[w^2] holds exactly, so Ding's target leaves the
position variance at T (1 - xi / 2) / k (30% too small at xi = 0.6, measured), while this one makes
k E[w^2] = T at any step: a Gaussian target's variances are exact when the noise is isotropic in the
metric. At the fixed point the total noise is q = 2 xi h T, so xi settles at a + h V_z / (2 T) (V_z the
gradient noise's average variance per coordinate) and always exists.

mu is the thermostat's mass (Leimkuhler & Shang 2016, "Adaptive thermostats for noisy gradient
systems", SIAM J. Sci. Comput. 38, A712; Ding et al. have mu = 1). Linearising about the stationary
friction xi* ~ a: E|u|^2 / d ~ h T a / xi, so xi relaxes at rate h T / (mu a) per update while the error
|u|^2 / d - h T (sd h T sqrt(2 / d), correlated over ~1 / a updates) drives it: xi's stationary SD is
about sqrt(h T / (d mu)). At mu = 1 and d = 1 that is 0.4 at h = 0.15, enough to push 1 - xi below -1
and blow the chain up; ``thermostat_mass`` keeps it at a / 4.

The thermostat raises xi while the kinetic temperature (1 - xi / 2) |u|^2 / (d h) exceeds T and lowers it
while it is below, so unknown gradient noise (heat h^2 V per step) is absorbed by a larger friction, with
no estimate of V: at stationarity xi's increments average zero, so the mean kinetic temperature is
exactly T at any step size (one scalar xi absorbs the noise's average over coordinates, not its shape).
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .batching import next_batch
from .estimator import estimate_gradient
from .guards import is_diverged
from .info import minibatch_info
from .langevin import copy_into
from .underdamped import factor_axpy


def thermostat_mass(h: float, diffusion: float, temperature: float, d: int) -> float:
    """mu = max(1, 16 h T / (d a^2)): Ding et al.'s mu = 1 unless that leaves xi's stationary SD,
    sqrt(h T / (d mu)), above a / 4 (see the module)."""
    return max(1.0, 16.0 * h * temperature / (d * diffusion**2))


class State(NamedTuple):
    """Position w, velocity u of z = L^{-1} w (u = p delta, see the module) and the thermostat xi."""

    w: np.ndarray
    u: np.ndarray
    xi: float


class Params(NamedTuple):
    """Step h on U, diffusion a, thermostat mass mu (``thermostat_mass``), temperature T; |w_i| > bound has
    diverged."""

    h: float
    diffusion: float
    mass: float
    temperature: float
    bound: float


@njit(cache=True)
def thermostat_updates(model, batch, estimator, preconditioner, state, params, n_updates, rng):
    """Run n_updates SGNHT updates from ``state`` (``State``, ``Params``) in the metric with factor L =
    ``preconditioner.root`` (``langevin.Preconditioner``; the rest as ``langevin.langevin_updates``); stop early
    (keeping the last finite state) on divergence.

    Returns (State(w, u, xi), ``info.Info`` with extras [kinetic temperature (1 - xi / 2) |u|^2 / (d h) of the
    last update as the thermostat saw it (with xi before its update; the xi after it is correlated with
    |u|^2)])."""
    buffers = np.zeros((5, state.w.shape[0]))  # w, u, their proposals, grad (see _thermostat_loop)
    copy_into(state.w, buffers[0])
    copy_into(state.u, buffers[1])
    thermostat = np.array([state.xi, np.nan])  # xi, the last update's kinetic temperature
    diverged = _thermostat_loop(model, buffers, thermostat, batch, estimator, preconditioner.root, params, n_updates,
                                rng)
    w = buffers[0].copy()
    return (State(w, buffers[1].copy(), thermostat[0]),
            minibatch_info(model, w, buffers[4], batch, params.h, diverged, thermostat[1:].copy()))


@njit(cache=True, _nrt=False)
def _thermostat_loop(model, buffers, thermostat, batch, estimator, factor, params, n_updates, rng):
    """The loop of ``thermostat_updates`` on ``buffers`` = [w, u, w_new, u_new, grad] and ``thermostat`` = [xi,
    kinetic temperature]; returns whether it diverged (no allocation: langevin.NO_NRT)."""
    w, u, w_new, u_new, grad = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4]
    d = w.shape[0]
    h, mass, temperature = params.h, params.mass, params.temperature
    noise_sd = np.sqrt(2.0 * params.diffusion * h * temperature)
    for _ in range(n_updates):
        next_batch(batch, rng)
        estimate_gradient(model, w, batch, estimator, grad)
        keep = 1.0 - thermostat[0]
        for i in range(d):
            u_new[i] = keep * u[i] + noise_sd * rng.standard_normal()
        factor_axpy(-h, factor, True, grad, u_new)
        copy_into(w, w_new)
        factor_axpy(1.0, factor, False, u_new, w_new)
        if is_diverged(grad, w_new, params.bound):
            return True
        copy_into(w_new, w)
        copy_into(u_new, u)
        kinetic = 0.0
        for i in range(d):
            kinetic += u[i] * u[i]
        thermostat[1] = (1.0 - 0.5 * thermostat[0]) * kinetic / (d * h)
        thermostat[0] += (thermostat[1] - temperature) * h / mass
    return False
