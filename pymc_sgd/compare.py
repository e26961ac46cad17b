"""Run samplers side by side on one model and tabulate how close each is to a reference.

``compare(model, {"SGLD": pymc_sgd.SGLD(...), ...})`` samples the model with NUTS (the
reference, unless an exact Gaussian reference is given), with the other references asked for
(``references``: "nutpie", PyMC's NUTS compiled by nutpie, an optional extra skipped with a
warning when not installed; "ADVI" and "ADVI-fullrank", ``pm.fit`` mean-field and full-rank,
by default on ``advi_model``: the same model written the PyMC big-data way, pm.Minibatch +
total_size) and with every step, and returns a tidy pandas DataFrame, one row per sampler:

- ``wall_s`` sampling or fitting time (PyMC's ``sampling_time``, compile excluded, where
  PyMC reports it; otherwise, as for nutpie, the whole call), ``total_s`` the whole call
  (compile and warm-up included), ``gradient_evals`` (recorded draws only: NUTS's leapfrog
  steps, our updates x replicas; ADVI's iterations, each one gradient of its batch);
- ``ess_bulk`` / ``ess_tail`` (ArviZ, minimum over coordinates) and ``ess_bulk_per_s``;
- ``max_mean_error_sd``: ``max_i |mean_i - ref_mean_i| / ref_sd_i``;
- ``sd_ratio[<coordinate>]``: sampler SD over reference SD, per coordinate;
- ``rel_cov_error``: ``||S - S_ref||_F / ||S_ref||_F``;
- ``w2_gaussian``: 2-Wasserstein distance between the Gaussians with the two means and
  covariances, ``|m1 - m2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2)`` (Givens & Shortt 1984),
  exact when both are Gaussian;
- ``ksd`` and ``ksd_p_value``: the kernel Stein discrepancy of the draws and its bootstrap
  p-value (``pymc_sgd.diagnostics``), which needs no reference;
- with ``mode_of`` (a function from a (draws, d) array to integer mode labels): the
  occupancy of each mode and the number of mode switches.

Coordinates are the flattened free variables in PyMC's constrained space, in model order.
"""

from __future__ import annotations

import importlib
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm
from scipy import linalg

import arviz as az

from .diagnostics import check

REFERENCES = ("NUTS", "nutpie", "ADVI", "ADVI-fullrank")
ADVI_METHODS = {"ADVI": "advi", "ADVI-fullrank": "fullrank_advi"}


def flat_draws(idata, var_names: list[str]) -> tuple[np.ndarray, list[str]]:
    """(chain, draw, d) array of the named posterior variables and coordinate labels."""
    blocks, labels = [], []
    for name in var_names:
        values = idata.posterior[name].values
        values = values.reshape(values.shape[0], values.shape[1], -1)
        blocks.append(values)
        labels += [name] if values.shape[2] == 1 else [f"{name}[{i}]" for i in range(values.shape[2])]
    return np.concatenate(blocks, axis=2), labels


def gaussian_w2(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray) -> float:
    """2-Wasserstein distance between N(mean1, cov1) and N(mean2, cov2)."""
    root2 = linalg.sqrtm(cov2)
    cross = linalg.sqrtm(root2 @ cov1 @ root2)
    squared = np.sum((mean1 - mean2) ** 2) + np.trace(cov1 + cov2 - 2 * np.real(cross))
    return float(np.sqrt(max(squared, 0.0)))


def _updates_per_draw(step) -> int:
    replicas = len(getattr(step, "temperatures", [None]))
    return getattr(step, "steps_per_draw", 1) * replicas


def _min_ess(draws: np.ndarray, method: str) -> float:
    return float(min(az.ess(draws[..., i], method=method) for i in range(draws.shape[2])))


@dataclass
class Run:
    """One sampler's result: draws, gradient evaluations, sampling time and whole-call time."""

    idata: object
    gradient_evals: float
    wall: float
    total: float


def _sample(model: pm.Model, step, draws: int, tune: int, chains: int, random_seed: int, **kwargs) -> Run:
    start = time.perf_counter()
    with model:
        idata = pm.sample(draws=draws, tune=tune, chains=chains, step=step, random_seed=random_seed,
                          progressbar=False, compute_convergence_checks=False, **kwargs)
    total = time.perf_counter() - start
    stats = idata.sample_stats
    evals = (float(stats["n_steps"].values.sum()) if "n_steps" in stats else np.nan) if step is None \
        else draws * chains * _updates_per_draw(step)
    return Run(idata, evals, float(idata.posterior.attrs.get("sampling_time", total)), total)


def _fit(model: pm.Model, method: str, draws: int, iterations: int, random_seed: int) -> Run:
    """pm.fit for ``iterations`` with PyMC's default optimiser, then ``draws`` draws of the approximation.
    (No early stop: PyMC's CheckParametersConvergence stopped a 1-D fit at 19000 iterations with the
    SD 54% too large; at 50000 it was 11% too large, measured.)"""
    start = time.perf_counter()
    with model:
        approx = pm.fit(n=iterations, method=method, random_seed=random_seed, progressbar=False)
        idata = approx.sample(draws, random_seed=random_seed)
    total = time.perf_counter() - start
    return Run(idata, float(len(approx.hist)), total, total)


def _references(model: pm.Model, references: Sequence[str], advi_model: pm.Model | None, draws: int, tune: int,
                chains: int, random_seed: int, advi_iterations: int) -> dict[str, Run]:
    unknown = set(references) - set(REFERENCES)
    if unknown or "NUTS" not in references:
        raise ValueError(f"references must include 'NUTS' and be among {REFERENCES}, got {list(references)}.")
    runs = {}
    for name in references:
        if name == "NUTS":
            runs[name] = _sample(model, None, draws, tune, chains, random_seed)
        elif name == "nutpie":
            try:
                importlib.import_module("nutpie")  # an optional extra
            except ImportError:
                warnings.warn("nutpie is not installed, so its row is skipped: pip install 'pymc_sgd[compare]'.",
                              UserWarning, stacklevel=3)
                continue
            runs[name] = _sample(model, None, draws, tune, chains, random_seed, nuts_sampler="nutpie")
        else:
            runs[name] = _fit(advi_model or model, ADVI_METHODS[name], draws * chains, advi_iterations, random_seed)
    return runs


def _row(name: str, run: Run, model: pm.Model, var_names: list[str], reference: Mapping[str, np.ndarray],
         mode_of: Callable | None) -> dict:
    draws, labels = flat_draws(run.idata, var_names)
    flat = draws.reshape(-1, draws.shape[2])
    mean, cov = flat.mean(axis=0), np.atleast_2d(np.cov(flat.T))
    ref_mean, ref_cov = np.asarray(reference["mean"]), np.atleast_2d(reference["cov"])
    ref_sd = np.sqrt(np.diag(ref_cov))
    ess_bulk = _min_ess(draws, "bulk")
    ksd = check(run.idata, model).set_index("check").loc["ksd"]
    row = {
        "sampler": name, "wall_s": run.wall, "total_s": run.total, "gradient_evals": run.gradient_evals,
        "ess_bulk": ess_bulk, "ess_tail": _min_ess(draws, "tail"),
        "ess_bulk_per_s": ess_bulk / run.wall if run.wall > 0 else np.nan,
        "max_mean_error_sd": float(np.max(np.abs(mean - ref_mean) / ref_sd)),
        "rel_cov_error": float(np.linalg.norm(cov - ref_cov) / np.linalg.norm(ref_cov)),
        "w2_gaussian": gaussian_w2(mean, cov, ref_mean, ref_cov),
        "ksd": float(ksd["value"]), "ksd_p_value": float(ksd["p_value"]),
    }
    row.update({f"sd_ratio[{label}]": float(s) for label, s in zip(labels, np.sqrt(np.diag(cov)) / ref_sd)})
    if mode_of is not None:
        modes = np.array([mode_of(chain) for chain in draws])
        for label in np.unique(modes):
            row[f"occupancy[{label}]"] = float(np.mean(modes == label))
        row["mode_switches"] = int(np.sum(modes[:, 1:] != modes[:, :-1]))
    return row


def compare(model: pm.Model, samplers: Mapping[str, object], reference: Mapping[str, np.ndarray] | None = None,
            draws: int = 1000, tune: int = 500, chains: int = 2, random_seed: int = 0,
            mode_of: Callable[[np.ndarray], np.ndarray] | None = None, references: Sequence[str] = ("NUTS",),
            advi_model: pm.Model | None = None, advi_iterations: int = 50_000) -> pd.DataFrame:
    """Sample ``model`` with the ``references`` (NUTS always) and each step in ``samplers``; one row
    of metrics per sampler (module docstring).

    ``reference`` is {"mean": (d,), "cov": (d, d)} over the flattened free variables; by
    default the NUTS run (its own row then shows errors of zero). ``advi_model``: the model
    written with pm.Minibatch + total_size for the ADVI rows (default ``model``, full-data ADVI).

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=1000)
    >>> with pm.Model() as model:
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=x)
    >>> exact = {"mean": [x.sum() / (1000 + 0.01)], "cov": [[1 / (1000 + 0.01)]]}
    >>> table = compare(model, {"SGLD": pymc_sgd.SGLD(batch_size=50, step_size=1e-4, model=model)},
    ...                 reference=exact, draws=300, tune=50, chains=1, references=["NUTS", "ADVI"])
    >>> list(table["sampler"])
    ['NUTS', 'ADVI', 'SGLD']
    """
    var_names = [rv.name for rv in model.free_RVs]
    runs = _references(model, references, advi_model, draws, tune, chains, random_seed, advi_iterations)
    for name, step in samplers.items():
        runs[name] = _sample(model, step, draws, tune, chains, random_seed)
    if reference is None:
        nuts, _ = flat_draws(runs["NUTS"].idata, var_names)
        flat = nuts.reshape(-1, nuts.shape[2])
        reference = {"mean": flat.mean(axis=0), "cov": np.atleast_2d(np.cov(flat.T))}
    return pd.DataFrame([_row(name, run, model, var_names, reference, mode_of) for name, run in runs.items()])


def plot_density_over_contours(ax, x: np.ndarray, y: np.ndarray, grid_x: np.ndarray, grid_y: np.ndarray,
                               weights: np.ndarray, bins: int = 50, title: str = "") -> None:
    """Seed 000's Figure 1 style: orange 2-D histogram of draws (x, y) under blue contours of
    the reference density ``weights[len(grid_y), len(grid_x)]`` at 10/30/50/70/90% of its peak.
    Needs matplotlib (the ``examples`` extra)."""
    ax.hist2d(x, y, bins=bins, range=[[grid_x[0], grid_x[-1]], [grid_y[0], grid_y[-1]]], cmap="Oranges")
    ax.contour(grid_x, grid_y, weights / weights.max(), levels=[0.1, 0.3, 0.5, 0.7, 0.9], colors="royalblue")
    ax.set_title(title, fontsize=10)


def plot_marginals(ax, samples: Mapping[str, np.ndarray], grid: np.ndarray | None = None,
                   density: np.ndarray | None = None, bins: int = 60) -> None:
    """Overlay marginal histograms of several samplers, and the exact marginal density if given."""
    for name, values in samples.items():
        ax.hist(np.ravel(values), bins=bins, density=True, histtype="step", label=name)
    if grid is not None and density is not None:
        ax.plot(grid, density, color="black", lw=1.5, label="exact")
    ax.legend(fontsize=8)
