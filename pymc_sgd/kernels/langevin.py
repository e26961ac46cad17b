"""Overdamped Langevin family: SGLD and constant (preconditioned) SGD, one update rule.

    w <- w - h_t P grad U_hat(w) + noise * sqrt(2 h_t T) P^(1/2) xi,     xi ~ N(0, I)

- SGLD (Welling & Teh 2011, in the h-on-U convention of docs/pages/design.md, their epsilon = 2h):
  P = I, noise = 1. Stationary law exp(-U/T) as h -> 0; at finite h on a quadratic with
  curvature lambda the variance is T / (lambda (1 - lambda h / 2)) (docs/pages/sources.md, ULA).
- Constant SGD (Mandt, Hoffman & Blei 2017): noise = 0, the minibatch gradient noise is the
  only noise. With P = 2 T Cov(grad U_hat)^(-1) the continuous-time stationary covariance
  solves P H S + S H P = P Cov P, i.e. S = T H^(-1) (seed 004; docs/pages/sources.md on seed 000).
A constant P needs no Gamma correction term (Ma, Chen & Fox 2015); a position-dependent one would.

Preconditioner kinds: IDENTITY (P = I), DIAGONAL (a vector), FULL (``matrix`` with a square root ``root``). The
kernels receive them as a ``Preconditioner`` of arrays or None (``preconditioner``) and branch on the types,
which numba resolves when it compiles (``multiply_into``): a branch on a runtime kind, even when not taken,
cost seed 000's 2-parameter model 55 ns of its 0.39 us per update (the branches' loops defeat LLVM's
optimisation).
NO_NRT: the update loops run in functions compiled without numba's reference counting (``_nrt=False``)
on buffers their caller allocates. With it, numba increfs and decrefs the arrays and the generator
around the inlined helpers, an atomic operation each (perf: 94% of a small update's time in
NRT_incref/NRT_decref): seed 000's model took 0.31 us an update, 0.075 us without. Those functions
cannot allocate; the model's gradient writes into its output buffer.
"""

from typing import NamedTuple

import numpy as np
from numba import njit, types
from numba.extending import overload

from .batching import next_batch
from .estimator import estimate_gradient
from .guards import is_diverged
from .info import minibatch_info
from .schedules import step_size_at

IDENTITY = 0
DIAGONAL = 1
FULL = 2


class Preconditioner(NamedTuple):
    """P as the kernels take it: ``matrix`` (P) with ``root`` (a square root: root root^T = P, or the noise
    factor a step chooses). Each is None (the identity: no multiplication), a 1-D array (a diagonal, applied
    elementwise in O(d)) or a 2-D array (dense, O(d^2)); numba picks the branch from the types when it compiles
    (``multiply_into``). The whitened-coordinate kernels (underdamped, thermostat, AMAGOLD, MALA) read only
    ``root``, the factor L of the metric M = L L^T, which they always get."""

    matrix: np.ndarray | None
    root: np.ndarray | None


def preconditioner(kind: int, diag: np.ndarray | None = None, matrix: np.ndarray | None = None,
                   root: np.ndarray | None = None) -> Preconditioner:
    """The kernels' form of an IDENTITY, DIAGONAL (``diag``, root sqrt(diag)) or FULL (``matrix``, ``root``)
    preconditioner."""
    if kind == FULL:
        return Preconditioner(matrix, root)
    if kind == DIAGONAL:
        return Preconditioner(diag, np.sqrt(diag))
    return Preconditioner(None, None)


class State(NamedTuple):
    """A Langevin chain: its position and the update count t from which its step-size schedule reads h_t."""

    w: np.ndarray
    t: int


class Params(NamedTuple):
    """h_t = ``schedules.step_size_at(schedule_kind, schedule, t)``; noise 1 for SGLD, 0 for constant SGD;
    a state with |w_i| > bound has diverged."""

    schedule_kind: int
    schedule: np.ndarray
    temperature: float
    noise: float
    bound: float


@njit(cache=True, inline="always")
def copy_into(source, out):
    """out[:] = source element by element (a slice assignment compiles seconds of shape-error code)."""
    for i in range(out.shape[0]):
        out[i] = source[i]
    return out


@njit(cache=True, inline="always")
def matvec_into(a, v, out):
    """out = a v without allocating."""
    for i in range(a.shape[0]):
        acc = 0.0
        for j in range(v.shape[0]):
            acc += a[i, j] * v[j]
        out[i] = acc
    return out


def multiply_into(matrix, v, out):
    """out = matrix v (2-D), matrix * v elementwise (1-D: a diagonal), else v (None: the identity); returns out.

    An overload, so that numba chooses the branch from the argument types when it compiles: its pruning of
    ``x is None`` branches sees only a function's own arguments, not a ``Preconditioner``'s fields."""


@overload(multiply_into, inline="always")
def _multiply_into(matrix, v, out):
    # each returns its argument ``out`` by name: a function compiled without reference counting may return
    # an array only as one of its arguments, which numba does not see through a call
    if isinstance(matrix, types.Array) and matrix.ndim == 2:
        def by_matrix(matrix, v, out):
            matvec_into(matrix, v, out)
            return out
        return by_matrix
    if isinstance(matrix, types.Array):
        def by_diagonal(matrix, v, out):
            for i in range(v.shape[0]):
                out[i] = matrix[i] * v[i]
            return out
        return by_diagonal

    def by_identity(matrix, v, out):
        copy_into(v, out)
        return out
    return by_identity


@njit(cache=True, inline="always")
def precondition(preconditioner, v, out):
    """out = P v (``Preconditioner``)."""
    return multiply_into(preconditioner.matrix, v, out)


@njit(cache=True, inline="always")
def standard_normal_into(rng, out):
    for i in range(out.shape[0]):
        out[i] = rng.standard_normal()
    return out


@njit(cache=True, inline="always")
def langevin_move(w, grad, rng, h, temperature, noise, preconditioner, work, xi, out):
    """out = w - h P grad + noise sqrt(2 h T) P^(1/2) xi; work and xi are scratch buffers.

    P is the ``Preconditioner``'s matrix, P^(1/2) its root.
    """
    precondition(preconditioner, grad, work)
    for i in range(w.shape[0]):
        out[i] = w[i] - h * work[i]
    if noise > 0.0:
        multiply_into(preconditioner.root, standard_normal_into(rng, xi), work)
        sd = noise * np.sqrt(2.0 * h * temperature)
        for i in range(w.shape[0]):
            out[i] += sd * work[i]
    return out


@njit(cache=True)
def langevin_updates(model, batch, estimator, preconditioner, state, params, n_updates, rng):
    """Run n_updates updates from ``state`` (``State``, ``Params``); stop early (keeping the last finite w) on
    divergence. ``batch`` is the minibatch sampler (``batching.Batch``), ``estimator`` the gradient estimator
    (``estimator.Estimator``), ``preconditioner`` a ``Preconditioner``, ``rng`` the chain's generator.

    Returns (State(w, t), ``info.Info``): the last update's h and gradient norm, U_hat at the returned w on
    the last minibatch; no extras.
    """
    buffers = np.zeros((5, state.w.shape[0]))  # w, proposal, grad and scratch (see _langevin_loop)
    copy_into(state.w, buffers[0])
    t, h, diverged = _langevin_loop(model, buffers, batch, estimator, preconditioner, params, state.t, n_updates, rng)
    w = buffers[0].copy()
    return State(w, t), minibatch_info(model, w, buffers[2], batch, h, diverged, np.zeros(0))


@njit(cache=True, _nrt=False)
def _langevin_loop(model, buffers, batch, estimator, preconditioner, params, t0, n_updates, rng):
    """The update loop of ``langevin_updates`` from update count t0 on ``buffers`` = [w, proposal, grad, 2 scratch
    rows]; leaves the last finite state in buffers[0] and returns (t, h, diverged). No allocation: see NO_NRT."""
    w, proposal, grad, work, xi = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4]
    h = step_size_at(params.schedule_kind, params.schedule, t0)
    t = t0
    for _ in range(n_updates):
        h = step_size_at(params.schedule_kind, params.schedule, t)
        next_batch(batch, rng)
        estimate_gradient(model, w, batch, estimator, grad)
        langevin_move(w, grad, rng, h, params.temperature, params.noise, preconditioner, work, xi, proposal)
        if is_diverged(grad, proposal, params.bound):
            return t, h, True
        copy_into(proposal, w)
        t += 1
    return t, h, False
