"""Overdamped Langevin family: SGLD and constant (preconditioned) SGD, one update rule.

    w <- w - h_t P grad U_hat(w) + noise * sqrt(2 h_t T) P^(1/2) xi,     xi ~ N(0, I)

- SGLD (Welling & Teh 2011, in the h-on-U convention of DESIGN.md, their epsilon = 2h):
  P = I, noise = 1. Stationary law exp(-U/T) as h -> 0; at finite h on a quadratic with
  curvature lambda the variance is T / (lambda (1 - lambda h / 2)) (ERRATA.md, ULA).
- Constant SGD (Mandt, Hoffman & Blei 2017): noise = 0, the minibatch gradient noise is the
  only noise. With P = 2 T Cov(grad U_hat)^(-1) the continuous-time stationary covariance
  solves P H S + S H P = P Cov P, i.e. S = T H^(-1) (seed 004; ERRATA.md on seed 000).
A constant P needs no Gamma correction term (Ma, Chen & Fox 2015); a position-dependent one would.

Preconditioner kinds: IDENTITY (P = I), DIAGONAL (p_diag), FULL (p_full with Cholesky p_chol).
"""

import numpy as np
from numba import njit

from .batching import next_batch
from .estimator import potential_and_grad
from .guards import is_diverged
from .schedules import step_size_at

IDENTITY = 0
DIAGONAL = 1
FULL = 2


@njit
def apply_preconditioner(kind, p_diag, p_matrix, v):
    """P v for IDENTITY / DIAGONAL / FULL (p_matrix is P or its Cholesky factor)."""
    if kind == DIAGONAL:
        return p_diag * v
    if kind == FULL:
        return p_matrix @ v
    return v


@njit
def langevin_step(fn, data, w, rng, batch_mode, perm, cursor, idx, scale, h, temperature, noise,
                  precond_kind, p_diag, p_full, p_chol, noise_diag):
    """One update from w; returns (proposal, U_hat(w), grad U_hat(w)). noise_diag = sqrt(p_diag)."""
    next_batch(batch_mode, rng, perm, cursor, idx)
    potential, grad = potential_and_grad(fn, data, w, idx, scale)
    proposal = w - h * apply_preconditioner(precond_kind, p_diag, p_full, grad)
    if noise > 0.0:
        xi = rng.standard_normal(w.shape[0])
        proposal += noise * np.sqrt(2.0 * h * temperature) * apply_preconditioner(
            precond_kind, noise_diag, p_chol, xi)
    return proposal, potential, grad


@njit
def langevin_updates(fn, data, w, rng, batch_mode, perm, cursor, idx, scale,
                     t0, n_updates, schedule_kind, schedule, temperature, noise,
                     precond_kind, p_diag, p_full, p_chol, bound):
    """Run n_updates updates from w; stop early (keeping the last finite w) on divergence.

    Returns (w, t, h, |grad U_hat|, U_hat, diverged) at the last accepted update.
    """
    noise_diag = np.sqrt(p_diag)
    h = step_size_at(schedule_kind, schedule, t0)
    potential = 0.0
    grad_norm = 0.0
    t = t0
    for _ in range(n_updates):
        h = step_size_at(schedule_kind, schedule, t)
        proposal, potential, grad = langevin_step(
            fn, data, w, rng, batch_mode, perm, cursor, idx, scale, h, temperature, noise,
            precond_kind, p_diag, p_full, p_chol, noise_diag)
        if is_diverged(potential, grad, proposal, bound):
            return w, t, h, np.inf, potential, True
        grad_norm = np.sqrt(np.sum(grad * grad))
        w = proposal
        t += 1
    return w, t, h, grad_norm, potential, False
