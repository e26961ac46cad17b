"""Posterior draws in PyMC's unconstrained space and the target's score grad log pi at them.

The score is -grad U = grad log p(w) + sum_i grad log p(x_i | w) (T = 1, docs/pages/design.md), taken from
the compiled estimator of ``pymc_sgd.gradients``. Over all rows it costs n row-gradients a draw;
with a row budget smaller than m n it is estimated with a control variate centred at the draws'
mean w* (Baker et al. 2019):

    s_hat(w) = grad log p(w) + grad log lik(w*) + (n / B) sum_{i in S} [g_i(w) - g_i(w*)],

with S a fresh uniform batch of B rows per draw. It is unbiased, and its noise is independent
between draws, so the Stein U-statistic (off-diagonal terms only, bilinear in the two draws'
scores) and the score means stay unbiased; the noise only widens their standard errors.
"""

from __future__ import annotations

import weakref

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pytensor.graph.replace import clone_replace

from ..data.mapreduce import full_data_parts, full_potential_and_grad
from ..gradients import ModelEstimator, cached_estimator
from ..rows import ModelSpecificationError

ROW_BUDGET = 2_000_000  # rows for the scores of all draws: 2 passes at n = 1e6, each row's gradient at w and w*


_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def forward_function(model: pm.Model):
    """Compiled map from the free variables' constrained values to the flat unconstrained w (cached per model)."""
    if model not in _FORWARD:
        constrained = {rv: rv.type(name=rv.name) for rv in model.free_RVs}
        pieces = []
        for rv in model.free_RVs:
            transform = model.rvs_to_transforms.get(rv)
            value = constrained[rv] if transform is None else transform.forward(constrained[rv], *rv.owner.inputs)
            pieces.append(pt.flatten(value))
        (flat,) = clone_replace([pt.concatenate(pieces)], constrained, rebuild_strict=False)
        _FORWARD[model] = pytensor.function(list(constrained.values()), flat, on_unused_input="ignore")
    return _FORWARD[model]


def unconstrained_draws(idata, model: pm.Model) -> np.ndarray:
    """(chain, draw, d) posterior draws mapped to the flat unconstrained vector w the samplers move
    (value variables in model order, each forward-transformed: log for positive variables, etc.)."""
    forward = forward_function(model)
    arrays = [idata.posterior[rv.name].values for rv in model.free_RVs]
    chains, draws = arrays[0].shape[:2]
    return np.array([[forward(*(a[c, t] for a in arrays)) for t in range(draws)] for c in range(chains)])


def model_estimator(model: pm.Model) -> ModelEstimator:
    """The model's estimator over its rows, or with its rows coupled the whole likelihood as one row."""
    try:
        return cached_estimator(model)
    except ModelSpecificationError:  # rows coupled: the whole likelihood as one row
        return cached_estimator(model, full_batch=True)


def scores(model: pm.Model, draws: np.ndarray, rng: np.random.Generator,
           row_budget: int = ROW_BUDGET) -> tuple[np.ndarray, int]:
    """(scores (m, d) at the draws (m, d), rows per score: n when exact, else the control variate's B)."""
    est = model_estimator(model)
    n, m = est.n_rows, draws.shape[0]
    out = np.empty_like(draws)
    if n * m <= row_budget or n == 1:
        for k, w in enumerate(draws):
            out[k] = -full_potential_and_grad(est, w)[1]
        return out, n
    batch = max(1, row_budget // m)
    centre = draws.mean(axis=0)
    centre_grad = full_data_parts(est, centre)[2 + est.dim:]
    for k, w in enumerate(draws):
        rows = rng.integers(0, n, batch)
        _, grad_prior, _, grad_lik = est.fn(w, rows, *est.data)
        at_centre = est.fn(centre, rows, *est.data)[3]
        out[k] = grad_prior + centre_grad + (n / batch) * (grad_lik - at_centre)
    return out, batch
