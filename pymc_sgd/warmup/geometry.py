"""Full-data and subsample potentials, gradients, Hessians and gradient noise of a compiled estimator.

The warm-up works on the estimator's compiled model only (``kernel``, ``n_rows``, ``dim`` of
``pymc_sgd.gradients.ModelEstimator``); nothing here imports PyMC.
A *subsample potential* on rows S (|S| = m) is U_S(w) = -log p(w) - (n/m) sum_{i in S} log p(x_i | w),
unbiased for U; with S = all rows it is U itself.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..data.mapreduce import full_potential_and_grad
from ..kernels.estimator import per_example_loglik_grads, potential_and_grad

PotentialAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


@contextlib.contextmanager
def model_errors_silenced() -> Iterator[list]:
    """Errors the model raises inside its compiled function (e.g. PyMC's ``ParameterValueError: sigma > 0``
    at a trial point whose scale underflowed) are part of a search, not news for the user: the function
    returns NaN there, which the search rejects like any other bad point. Compiled callbacks cannot raise,
    so Python reports them through ``sys.unraisablehook`` (the "Exception ignored" tracebacks); inside this
    context they are collected into the yielded list instead of printed."""
    collected: list = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: collected.append(unraisable.exc_value)
    try:
        yield collected
    finally:
        sys.unraisablehook = previous


def subsample_rows(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted distinct rows, all of them when size >= n."""
    if size >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def potential_on(est, rows: np.ndarray | None) -> PotentialAndGrad:
    """w -> (U_S(w), grad U_S(w)) on the given rows; the exact U for None (all rows, no index array)."""
    if rows is None or len(rows) == est.n_rows:
        return lambda w: full_potential_and_grad(est, w)
    scale = est.n_rows / len(rows)
    return lambda w: potential_and_grad(est.kernel, np.asarray(w, dtype=np.float64), rows, scale)


def _difference(potential: PotentialAndGrad, w: np.ndarray, step: np.ndarray) -> np.ndarray:
    """(grad U(w + step) - grad U(w - step)) / 2: H step to second order."""
    return 0.5 * (potential(w + step)[1] - potential(w - step)[1])


def finite_difference_hessian(potential: PotentialAndGrad, w: np.ndarray, steps: np.ndarray,
                              blocks: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Symmetrised central-difference Hessian, column j from grad U(w +- steps_j e_j).

    Per-coordinate steps let coordinates on very different scales (unscaled covariates) each
    be differenced at a fraction of their own posterior scale.

    ``blocks``: index arrays of coordinates whose block of H is diagonal, e.g. the effects of conditionally
    independent groups (``pymc_sgd.hierarchy``). A block is differenced in one pair of gradients, all its
    coordinates at once (Curtis, Powell & Reid 1974): row j of the result is H_jj steps_j for j in the block;
    its other entries are zero except in the rows of the coordinates outside every block, whose own columns
    give them by symmetry. 2 (k + number of blocks) gradients instead of 2 d, for k such coordinates.
    """
    d = len(w)
    in_block = np.zeros(d, dtype=bool)
    H = np.zeros((d, d))
    for block in blocks:
        step = np.zeros(d)
        step[block] = steps[block]
        H[block, block] = _difference(potential, w, step)[block] / steps[block]
        in_block[block] = True
    for j in np.flatnonzero(~in_block):
        step = np.zeros(d)
        step[j] = steps[j]
        H[j] = _difference(potential, w, step) / steps[j]
        if in_block.any():
            H[in_block, j] = H[j, in_block]
    return 0.5 * (H + H.T)


def blocks_are_diagonal(potential: PotentialAndGrad, w: np.ndarray, steps: np.ndarray,
                        blocks: Sequence[np.ndarray], tolerance: float = 1e-6) -> bool:
    """Whether each block's part of H is diagonal at w (``finite_difference_hessian``'s assumption): the
    response of the block's second half to a step along its first half, against the diagonal's, one pair of
    gradients a block (a group effect used through a design matrix, not an index, fails it)."""
    for block in blocks:
        first, second = block[: len(block) // 2], block[len(block) // 2:]
        step = np.zeros(len(w))
        step[first] = steps[first]
        response = _difference(potential, w, step)
        diagonal = np.abs(response[first] / steps[first]).max(initial=0.0)
        if not np.abs(response[second] / steps[second]).max(initial=0.0) <= tolerance * diagonal:
            return False
    return True


def per_example_gradient_covariance(est, w: np.ndarray, rows: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """C(w) = Cov_i[grad log p(x_i | w)] over rows (population divisor), or with a centre w*
    the covariance of the control-variate differences grad log p(x_i | w) - grad log p(x_i | w*)."""
    grads = per_example_loglik_grads(est.kernel, np.asarray(w, dtype=np.float64), rows)
    if centre is not None:
        grads = grads - per_example_loglik_grads(est.kernel, centre, rows)
    centred = grads - grads.mean(axis=0)
    return centred.T @ centred / len(rows)
