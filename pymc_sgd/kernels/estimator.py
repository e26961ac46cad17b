"""U_hat, grad U_hat and their derived quantities, from the model's ``evaluate`` (``kernels.model``).

With scale = n / len(idx) (docs/pages/design.md):

    U_hat(w) = -(log p(w) + scale * sum_{i in idx} log p(x_i | w))

Inner loops use the gradient alone (``gradient_into``: no log-density values, which cost as
much as the gradient on a logistic regression) and evaluate U_hat once per recorded draw.
``scale`` is passed as a 1-element array (the compiled gradient reads it in place).
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .model import gradient_into, parts_into


@njit(cache=True)
def potential_and_grad(model, w, idx, scale):
    """Unbiased minibatch estimate (U_hat, grad U_hat) at w."""
    d = w.shape[0]
    parts = parts_into(model, w, idx, np.empty(2 * d + 2))
    return -(parts[0] + scale * parts[1]), -(parts[2:d + 2] + scale * parts[d + 2:])


class Estimator(NamedTuple):
    """A gradient estimator as the kernels take it (built by ``plain``, ``control_variate``, ``svrg``, ``saga``).

    - plain: grad U_hat(w) on the batch (``centre`` and ``table`` empty);
    - control variate (SGLD-CV, Baker, Fearnhead, Fox & Nemeth 2019, Statistics and Computing 29,
      599-615): grad U_hat(w) - grad U_hat(w*) + grad U(w*), w* = ``centre``, grad U(w*) = ``centre_grad``;
    - SVRG (Johnson & Zhang 2013; for SGLD Dubey et al. 2016, NeurIPS, "Variance reduction in stochastic
      gradient Langevin dynamics", Alg. 1): the control variate re-centred at the current w, with a
      full-data gradient, every ``refresh[0]`` updates (``refresh[1]`` counts updates since the last);
    - SAGA (Defazio, Bach & Lacoste-Julien 2014; Dubey et al. 2016, Alg. 2): ``table[i]`` holds the
      likelihood gradient -grad log p(x_i | phi_i) of row i at the last w it was computed at and
      ``table_sum`` their sum; the estimate -grad log p(w) + table_sum + (n/B) sum_{i in batch}
      (-grad log p(x_i | w) - table[i]) is unbiased, then the batch's rows of the table are refreshed.

    All are unbiased for grad U. ``scratch`` holds (1 + B) x d work rows; ``unit`` = [1.0], ``zero`` = [0.0]
    (likelihood scales for a full-data and a prior-only gradient), ``one_row`` a 1-row index.
    """

    centre: np.ndarray
    centre_grad: np.ndarray
    refresh: np.ndarray
    table: np.ndarray
    table_sum: np.ndarray
    scratch: np.ndarray
    unit: np.ndarray
    zero: np.ndarray
    one_row: np.ndarray


def _estimator(d: int, batch: int, centre: np.ndarray, centre_grad: np.ndarray, every: int = 0,
               table: np.ndarray | None = None) -> Estimator:
    return Estimator(centre, centre_grad, np.array([every, 0], dtype=np.int64),
                     np.zeros((0, d)) if table is None else table,
                     np.zeros(d) if table is None else table.sum(axis=0), np.zeros((1 + batch, d)),
                     np.ones(1), np.zeros(1), np.zeros(1, dtype=np.int64))


def plain(d: int) -> Estimator:
    """grad U_hat on the batch."""
    return _estimator(d, 0, np.zeros(0), np.zeros(0))


def control_variate(centre: np.ndarray, centre_grad: np.ndarray) -> Estimator:
    """Centred at w* = centre (the array itself, not a copy) with grad U(w*) = centre_grad (kept fixed)."""
    return _estimator(len(centre), 0, np.ascontiguousarray(centre, dtype=np.float64),
                      np.ascontiguousarray(centre_grad, dtype=np.float64))


def svrg(centre: np.ndarray, centre_grad: np.ndarray, every: int) -> Estimator:
    """Control variate re-centred at the current state every ``every`` updates (the arrays are updated in place)."""
    return _estimator(len(centre), 0, np.array(centre, dtype=np.float64), np.array(centre_grad, dtype=np.float64),
                      every)


def saga(table: np.ndarray, batch: int) -> Estimator:
    """SAGA from a table of per-row likelihood gradients -grad log p(x_i | w) (n x d, updated in place)."""
    return _estimator(table.shape[1], batch, np.zeros(0), np.zeros(0), table=np.ascontiguousarray(table))


@njit(cache=True, inline="always")
def estimate_gradient(model, w, batch, estimator, out):
    """out = the estimator's grad U estimate at w on the batch's rows (``Estimator``, ``batching.Batch``, whose
    ``perm`` lists every row: SVRG's full-data gradient). No allocation (the update loops run without
    reference counting)."""
    idx, scale = batch.idx, batch.scale
    centre, centre_grad, refresh = estimator.centre, estimator.centre_grad, estimator.refresh
    if estimator.table.shape[0] > 0:
        _saga_gradient(model, w, idx, scale, estimator, out)
        return out
    gradient_into(model, w, idx, scale, out)
    if centre.shape[0] == 0:
        return out
    if refresh[0] > 0:
        refresh[1] += 1
        if refresh[1] > refresh[0]:  # SVRG: re-centre here; the estimate at the centre is the full gradient
            _recentre(model, w, batch.perm, estimator, out)
            return out
    at_centre = estimator.scratch[0]
    gradient_into(model, centre, idx, scale, at_centre)
    for i in range(out.shape[0]):
        out[i] += centre_grad[i] - at_centre[i]
    return out


@njit(cache=True, _nrt=False)
def _recentre(model, w, all_rows, estimator, out):
    """SVRG's new epoch: centre = w, centre_grad = grad U(w) over all rows, which is also the estimate.
    Not inlined, like ``_saga_gradient``: a loop inside a rarely taken branch slows the common path.
    Without reference counting (langevin.NO_NRT), so it returns nothing: an array returned to a caller
    that counts references would be released once too often."""
    estimator.refresh[1] = 1
    gradient_into(model, w, all_rows, estimator.unit, estimator.centre_grad)
    for i in range(out.shape[0]):
        estimator.centre[i] = w[i]
        out[i] = estimator.centre_grad[i]


@njit(cache=True, _nrt=False)
def _saga_gradient(model, w, idx, scale, estimator, out):
    """SAGA's estimate (``Estimator``), then the batch's table rows refreshed (a row drawn twice contributes
    twice to the estimate, which uses the old rows, and is refreshed once)."""
    table, table_sum, scratch, one_row = estimator.table, estimator.table_sum, estimator.scratch, estimator.one_row
    d = out.shape[0]
    prior = scratch[0]
    one_row[0] = idx[0]
    gradient_into(model, w, one_row, estimator.zero, prior)  # -grad log p(w): a row at likelihood scale 0
    for k in range(d):
        out[k] = prior[k] + table_sum[k]
    for j in range(idx.shape[0]):
        one_row[0] = idx[j]
        row = scratch[1 + j]
        gradient_into(model, w, one_row, estimator.unit, row)
        for k in range(d):
            row[k] -= prior[k]  # -grad log p(x_i | w)
            out[k] += scale[j if scale.shape[0] > 1 else 0] * (row[k] - table[idx[j], k])
    for j in range(idx.shape[0]):
        row, i = scratch[1 + j], idx[j]
        for k in range(d):
            table_sum[k] += row[k] - table[i, k]
            table[i, k] = row[k]


@njit(cache=True)
def minibatch_potential(model, w, idx, scale):
    """U_hat(w) on rows idx with the batch's ``scale`` (one for all rows, or one per row of a stratified batch:
    then one call per run of equal weights); kernels call it once per recorded draw."""
    parts = np.empty(2 * w.shape[0] + 2)
    if scale.shape[0] == 1:
        parts_into(model, w, idx, parts)
        return -(parts[0] + scale[0] * parts[1])
    potential, start = 0.0, 0
    for end in range(1, idx.shape[0] + 1):
        if end == idx.shape[0] or scale[end] != scale[start]:
            parts_into(model, w, idx[start:end], parts)
            potential -= scale[start] * parts[1]
            start = end
    return potential - parts[0]


@njit(cache=True)
def norm(v):
    """Euclidean norm |v| (for the grad_norm stat)."""
    return np.sqrt(np.sum(v * v))


@njit(cache=True)
def per_example_loglik_grads(model, w, rows):
    """Matrix G[k] = grad_w log p(x_{rows[k]} | w), one row per example (len(rows) x d)."""
    d = w.shape[0]
    one = np.empty(1, dtype=np.int64)
    parts = np.empty(2 * d + 2)
    out = np.empty((rows.shape[0], d))
    for k in range(rows.shape[0]):
        one[0] = rows[k]
        parts_into(model, w, one, parts)
        for j in range(d):
            out[k, j] = parts[d + 2 + j]
    return out


@njit(cache=True)
def per_example_loglik(model, w, rows):
    """log p(x_i | w) for each row i of ``rows``."""
    one = np.empty(1, dtype=np.int64)
    parts = np.empty(2 * w.shape[0] + 2)
    out = np.empty(rows.shape[0])
    for k in range(rows.shape[0]):
        one[0] = rows[k]
        out[k] = parts_into(model, w, one, parts)[1]
    return out


@njit(cache=True)
def gradient_noise_covariance(model, w, rows):
    """Per-example gradient covariance C1(w) = Cov_i[grad log p(x_i | w)] over `rows`.

    The minibatch gradient of U with B rows drawn with replacement has covariance
    (n^2 / B) C1 (seed 000, "The SGD Update Rule and Its Noise", rescaled from L to U = n L).
    """
    grads = per_example_loglik_grads(model, w, rows)
    centred = grads - grads.sum(axis=0) / grads.shape[0]
    return centred.T @ centred / grads.shape[0]


@njit(cache=True)
def potential_hessian(model, w, rows, scale, eps):
    """Hessian of U_hat (over `rows`, likelihood times `scale`) by central differences of its gradient."""
    d = w.shape[0]
    H = np.empty((d, d))
    for j in range(d):
        up, down = w.copy(), w.copy()
        up[j] += eps
        down[j] -= eps
        H[j] = (potential_and_grad(model, up, rows, scale)[1]
                - potential_and_grad(model, down, rows, scale)[1]) / (2.0 * eps)
    return 0.5 * (H + H.T)
