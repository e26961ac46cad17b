"""Full-data and subsample potentials, gradients, Hessians and gradient noise of a compiled estimator.

The warm-up works on the estimator's compiled model only (``kernel``, ``n_rows``, ``dim`` of
``pymc_sgd.gradients.ModelEstimator``); nothing here imports PyMC.
A *subsample potential* on rows S (|S| = m) is U_S(w) = -log p(w) - (n/m) sum_{i in S} log p(x_i | w),
unbiased for U; with S = all rows it is U itself.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import numpy as np

from ..data.mapreduce import full_potential_and_grad
from ..kernels.estimator import per_example_loglik_grads, potential_and_grad
from .arrowhead import Cells

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
                              cells: Cells = ()) -> np.ndarray:
    """Symmetrised central-difference Hessian, column j from grad U(w +- steps_j e_j).

    Per-coordinate steps let coordinates on very different scales (unscaled covariates) each
    be differenced at a fraction of their own posterior scale.

    ``cells``: families of cells (``arrowhead.Cells``, (groups, m) arrays): coordinates such that H is zero
    between any two cells, e.g. the effects of conditionally independent groups, m of them per group
    (``pymc_sgd.hierarchy``). A column of a family (one coordinate of every cell) is differenced in one pair of
    gradients (Curtis, Powell & Reid 1974): the response of cell c's coordinates is H's column of c's stepped
    coordinate times its step. The entries between a cell and the coordinates outside every cell come from
    the latter's own columns by symmetry; all others are zero. 2 (k + columns) gradients instead of 2 d, for
    k coordinates outside the cells.
    """
    d = len(w)
    in_cells = np.zeros(d, dtype=bool)
    H = np.zeros((d, d))
    for family in cells:
        for j in range(family.shape[1]):
            stepped = family[:, j]
            step = np.zeros(d)
            step[stepped] = steps[stepped]
            response = _difference(potential, w, step)
            for l in range(family.shape[1]):
                H[family[:, l], stepped] = response[family[:, l]] / steps[stepped]
        in_cells[family.ravel()] = True
    for j in np.flatnonzero(~in_cells):
        step = np.zeros(d)
        step[j] = steps[j]
        H[j] = _difference(potential, w, step) / steps[j]
        if in_cells.any():
            H[in_cells, j] = H[j, in_cells]
    return 0.5 * (H + H.T)


def cells_are_uncoupled(potential: PotentialAndGrad, w: np.ndarray, steps: np.ndarray, cells: Cells,
                        tolerance: float = 1e-6) -> bool:
    """Whether H is zero between any two cells at w (``finite_difference_hessian``'s assumption: it never
    differences two cells' coordinates against each other). Each column of a family is stepped on one part of
    its cells and then on the rest, for two splits (halves, then even and odd cells), two pairs of gradients a
    column and split; a coordinate of another cell must not respond by more than ``tolerance`` of its own
    response to its own step (each coordinate's own scale, so a large group does not hide a coupling between
    small ones). A coupling is missed only where both cells fall in the same part of both splits. Crossed
    effects fail it (a[g] + b[h] in one row couples a_g with b_h: on 2,000 rows in 30 x 20 cells those entries
    sum, row by row, to as much as the likelihood's part of the diagonal)."""
    d = len(w)
    in_cells = np.zeros(d, dtype=bool)
    for family in cells:
        in_cells[family.ravel()] = True
    own = np.zeros(d)  # |H_ii steps_i|
    strays = []  # (responses, where they must be zero)
    for family in cells:
        splits = (np.arange(len(family)) < len(family) // 2, np.arange(len(family)) % 2 == 0)
        for j in range(family.shape[1]):
            for part in (rows for split in splits for rows in (family[split], family[~split]) if len(rows)):
                step = np.zeros(d)
                step[part[:, j]] = steps[part[:, j]]
                response = np.abs(_difference(potential, w, step))
                own[part[:, j]] = response[part[:, j]]
                others = in_cells.copy()
                others[part.ravel()] = False  # the stepped cells respond: that is their block
                strays.append((response, others))
    floor = 1e-12 * own.max(initial=0.0)
    return all(np.all(response[others] <= tolerance * np.maximum(own[others], floor)) for response, others in strays)


def per_example_gradient_covariance(est, w: np.ndarray, rows: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """C(w) = Cov_i[grad log p(x_i | w)] over rows (population divisor), or with a centre w*
    the covariance of the control-variate differences grad log p(x_i | w) - grad log p(x_i | w*)."""
    grads = per_example_loglik_grads(est.kernel, np.asarray(w, dtype=np.float64), rows)
    if centre is not None:
        grads = grads - per_example_loglik_grads(est.kernel, centre, rows)
    centred = grads - grads.mean(axis=0)
    return centred.T @ centred / len(rows)
