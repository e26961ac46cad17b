"""Bias diagnostics for a sampler's draws: is the chain sampling the posterior, within its own
Monte Carlo error? R-hat and ESS cannot tell: a stochastic-gradient chain is biased by design
(finite step, minibatch noise), and a biased chain can mix perfectly.

``check(idata, model)`` maps the draws to PyMC's unconstrained space, takes the posterior's score
s = grad log pi there (all rows, or a control-variate estimate within a row budget,
``diagnostics.scores``), and tests identities that hold under the posterior and no other law:

- ``score_mean``, per coordinate j: E[s_j] = 0 (Stein's identity with f = w_j's constant
  derivative; for a Gaussian posterior -E[s_j] sd_j is the mean's error in posterior SDs);
- ``score_scale``, per coordinate j: E[1 + (w_j - mean_j) s_j] = 0 (f = w_j - mean_j; for a
  Gaussian posterior it is 1 - var_j / posterior var_j, e.g. 0.19 for SDs 10% too small);
- ``ksd``: the kernel Stein discrepancy U-statistic, IMQ kernel (c = 1, beta = -1/2, Gorham & Mackey
  2017) in whitened coordinates (the draws' covariance as the metric, the sampler's own metric
  after warm-up), on at most ``max_ksd_draws`` draws; calibrated by the bootstrap null of the
  U-statistic (Liu, Lee & Jordan 2016): a KSD value means nothing without that reference, so the
  verdict is its p-value;
- ``ksd_linear``: the linear-time statistic (Liu et al. 2016, Sec. 4.1) on all the draws;
- ``sd_error_vs_prediction``, per coordinate, for samplers that record the theory's
  ``predicted_sd_error`` (SGLD, SGHMC, UnderdampedLangevin, ReplicaExchangeSGLD; the warm-up's
  prediction from the measured curvature and gradient noise): the SD error the draws imply,
  sqrt(1 - score_scale) - 1 (exact when the posterior is Gaussian: E[(w_j - m_j) s_j] =
  -var_j / posterior var_j), against the prediction; it fails when the error exceeds the
  prediction by more than the Monte Carlo error allows (one-sided).

All checks use the draws thinned to about one per effective sample (nearly independent, as the
bootstrap assumes; no score is computed for a draw that adds no information).

Each moment row has a standard error from ArviZ's ESS of its per-draw terms and a z statistic;
verdicts are "fail" when the two-sided p-value is below ``alpha`` Bonferroni-divided over the
check's rows (family-wise false-alarm rate alpha per check on exact draws), "pass" otherwise, and
"undetermined" where the statistic or its standard error is not finite (non-finite scores, or draws
with no measurable ESS): no verdict is read off a NaN.
"fail" means the bias is larger than the Monte Carlo error of these draws: more draws will not
make the estimates better; lower the sampler's ``target_error`` or use full batch. A chain that
keeps its promise (SDs within ``target_error``, 3% by default) still fails score_scale once it has
enough draws to see a 3% bias; sd_error_vs_prediction then says whether the bias is the promised one.

- ``mode_coverage``, one row per mode found (``diagnostics.modes``): the scores above are blind to a
  mode the chain never visited far from the visited ones (Wenliang & Kanagawa 2020), so the check
  searches for modes by optimisation from prior draws, weighs them by their Laplace mass and tests
  that the draws visit each at least half as often as that mass says (one-sided binomial test).

Examples
--------
>>> import numpy as np, pymc as pm, pymc_sgd
>>> x = np.random.default_rng(0).normal(1.0, 1.0, size=500)
>>> with pm.Model() as model:
...     mu = pm.Normal("mu", 0, 10)
...     y = pm.Normal("y", mu, 1, observed=x)
...     idata = pm.sample(500, tune=300, chains=2, step=pymc_sgd.SGLD(batch_size=50),
...                       progressbar=False, random_seed=1)
>>> table = pymc_sgd.diagnostics.check(idata, model, store=True)
>>> sorted(set(table["check"]))
['ksd', 'ksd_linear', 'mode_coverage', 'score_mean', 'score_scale', 'sd_error_vs_prediction']
>>> "sgd_diagnostics" in idata.groups()
True
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from scipy import stats

from .modes import mode_rows
from .scores import ROW_BUDGET, scores, unconstrained_draws
from .stein import ksd_bootstrap_pvalue, ksd_linear, ksd_squared, stein_kernel_matrix

__all__ = ["check", "scores", "unconstrained_draws"]

GROUP = "sgd_diagnostics"
MIN_DRAWS = 20  # per check() call, over all chains: fewer give no ESS and no bootstrap


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean of (chain, draw) values and its standard error sd / sqrt(bulk ESS)."""
    return float(values.mean()), float(values.std() / np.sqrt(az.ess(values)))


def _thinned(draws: np.ndarray) -> np.ndarray:
    """Every k-th draw of each chain, k = draws / min bulk ESS over coordinates: about one draw per
    effective sample, nearly independent (as the bootstrap assumes), and no score is computed for
    draws that add no information."""
    chains, length, d = draws.shape
    ess = min(float(az.ess(draws[..., j])) for j in range(d))
    if not np.isfinite(ess):  # e.g. a coordinate that never moved: keep every draw, the rows say undetermined
        return draws
    return draws[:, ::max(1, int(chains * length / max(ess, 1.0)))]


def _labels(model: pm.Model) -> list[str]:
    point = model.initial_point()
    labels = []
    for value in model.value_vars:
        size = int(np.size(point[value.name]))
        labels += [value.name] if size == 1 and np.ndim(point[value.name]) == 0 else \
            [f"{value.name}[{i}]" for i in range(size)]
    return labels


def _verdict(p_value: float, threshold: float, *determined: float) -> str:
    """"fail" below the threshold, "pass" above, "undetermined" when the p-value or any of the numbers it
    rests on (a value, a standard error) is not finite."""
    if not (np.isfinite(p_value) and all(np.isfinite(x) for x in determined)):
        return "undetermined"
    return "fail" if p_value < threshold else "pass"


def _moment_rows(name: str, terms: np.ndarray, labels: list[str], alpha: float) -> list[dict]:
    """One row per coordinate of the per-draw terms (chain, draw, d), expected 0 under the posterior."""
    rows = []
    for j, label in enumerate(labels):
        value, se = _mean_se(terms[..., j])
        p_value = float(2.0 * stats.norm.sf(abs(value) / se)) if se > 0 else float(value == 0.0)
        rows.append(dict(check=name, coordinate=label, value=value, se=se, p_value=p_value,
                         verdict=_verdict(p_value, alpha / len(labels), value, se)))
    return rows


def _prediction_rows(idata, scale_rows: list[dict], alpha: float) -> list[dict]:
    """Implied SD error sqrt(1 - score_scale) - 1 per coordinate against the recorded prediction
    (delta-method SE: se_scale / (2 sqrt(1 - score_scale)))."""
    sample_stats = idata.get("sample_stats")
    names = [] if sample_stats is None else [name for name in sample_stats.data_vars
                                             if str(name).endswith("predicted_sd_error")]
    if not names:
        return []
    predicted = float(np.nanmax(sample_stats[names[0]].values))
    rows = []
    for scale in scale_rows:
        ratio_squared = max(1.0 - scale["value"], 1e-12)
        value, se = np.sqrt(ratio_squared) - 1.0, scale["se"] / (2.0 * np.sqrt(ratio_squared))
        p_value = float(stats.norm.sf((abs(value) - predicted) / se)) if se > 0 else float(abs(value) <= predicted)
        rows.append(dict(check="sd_error_vs_prediction", coordinate=scale["coordinate"], value=value, se=se,
                         p_value=p_value, predicted=predicted,
                         verdict=_verdict(p_value, alpha / len(scale_rows), value, se, predicted)))
    return rows


def check(idata, model: pm.Model | None = None, *, alpha: float = 0.01, max_ksd_draws: int = 1000,
          row_budget: int = ROW_BUDGET, mode_starts: int = 8, mode_search_rows: int = 10_000, store: bool = False,
          random_seed: int = 0) -> pd.DataFrame:
    """Score-moment and kernel Stein checks of ``idata``'s posterior against ``model`` (module docstring).

    Returns a tidy DataFrame, one row per check and coordinate: check, coordinate, value, se,
    p_value, verdict ("pass"/"fail" at family-wise false-alarm rate ``alpha`` per check), and
    ``predicted`` for the prediction and mode rows. ``mode_starts`` optimisations from prior draws search
    for modes on at most ``mode_search_rows`` rows (0 starts: no mode_coverage rows). With
    ``store=True`` it is also added to ``idata`` as the group "sgd_diagnostics" (kept by
    to_netcdf/from_netcdf).
    """
    model = pm.modelcontext(model)
    rng = np.random.default_rng(random_seed)
    draws = unconstrained_draws(idata, model)
    if draws.shape[0] * draws.shape[1] < MIN_DRAWS:
        raise ValueError(f"check needs at least {MIN_DRAWS} draws over all chains to estimate effective sample "
                         f"sizes and run its bootstrap; got {draws.shape[0] * draws.shape[1]}. Sample more draws.")
    draws = _thinned(draws)
    d = draws.shape[2]
    flat = draws.reshape(-1, d)
    score = scores(model, flat, rng, row_budget)[0].reshape(draws.shape)
    labels = _labels(model)
    centred = draws - flat.mean(axis=0)
    rows = _moment_rows("score_mean", score, labels, alpha)
    rows += _moment_rows("score_scale", 1.0 + centred * score, labels, alpha)

    # KSD in whitened coordinates: z = L^-1 (w - mean), s_z = L^T s for the draws' covariance L L^T
    chol = np.linalg.cholesky(np.atleast_2d(np.cov(flat.T)) + 1e-12 * np.eye(d))
    order = rng.permutation(flat.shape[0])
    z = np.linalg.solve(chol, (flat - flat.mean(axis=0)).T).T[order]
    sz = (score.reshape(-1, d) @ chol)[order]
    quadratic = slice(0, min(max_ksd_draws, z.shape[0]))
    u = stein_kernel_matrix(z[quadratic], sz[quadratic])
    finite = bool(np.all(np.isfinite(u)))  # the bootstrap of a NaN statistic says nothing
    p_value = ksd_bootstrap_pvalue(u, rng) if finite else np.nan
    rows.append(dict(check="ksd", coordinate="all", value=ksd_squared(u), se=np.nan, p_value=p_value,
                     verdict=_verdict(p_value, alpha)))
    linear, linear_se = ksd_linear(z, sz)
    p_linear = float(stats.norm.sf(linear / linear_se))  # one-sided: KSD^2 > 0 under any other law
    rows.append(dict(check="ksd_linear", coordinate="all", value=linear, se=linear_se, p_value=p_linear,
                     verdict=_verdict(p_linear, alpha, linear, linear_se)))
    rows += _prediction_rows(idata, [row for row in rows if row["check"] == "score_scale"], alpha)
    if mode_starts > 0:
        rows += mode_rows(model, flat, flat.shape[0], alpha, mode_starts, mode_search_rows, rng)
    table = pd.DataFrame(rows)
    if store:
        if GROUP in idata.groups():
            del idata[GROUP]
        idata.add_groups({GROUP: xr.Dataset.from_dataframe(table.rename_axis("row"))})
    return table
