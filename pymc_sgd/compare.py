"""Run samplers side by side on one model and tabulate how close each is to a reference.

``compare(model, {"SGLD": pymc_sgd.SGLD(...), ...})`` samples the model with NUTS (the
reference, unless an exact Gaussian reference is given) and with every step, and returns a
tidy pandas DataFrame, one row per sampler:

- ``wall_s`` sampling time (PyMC's ``sampling_time``, compile excluded), ``gradient_evals``
  (recorded draws only: NUTS's leapfrog steps, our updates x replicas);
- ``ess_bulk`` / ``ess_tail`` (ArviZ, minimum over coordinates) and ``ess_bulk_per_s``;
- ``max_mean_error_sd``: max_i |mean_i - ref_mean_i| / ref_sd_i;
- ``sd_ratio[<coordinate>]``: sampler SD over reference SD, per coordinate;
- ``rel_cov_error``: ||S - S_ref||_F / ||S_ref||_F;
- ``w2_gaussian``: 2-Wasserstein distance between the Gaussians with the two means and
  covariances, |m1 - m2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2) (Givens & Shortt 1984),
  exact when both are Gaussian;
- with ``mode_of`` (a function from a (draws, d) array to integer mode labels): the
  occupancy of each mode and the number of mode switches.

Coordinates are the flattened free variables in PyMC's constrained space, in model order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import pymc as pm
from scipy import linalg

import arviz as az


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


def _row(name: str, draws: np.ndarray, labels: list[str], reference: Mapping[str, np.ndarray],
         wall: float, gradient_evals: int, mode_of: Callable | None) -> dict:
    flat = draws.reshape(-1, draws.shape[2])
    mean, cov = flat.mean(axis=0), np.atleast_2d(np.cov(flat.T))
    ref_mean, ref_cov = np.asarray(reference["mean"]), np.atleast_2d(reference["cov"])
    ref_sd = np.sqrt(np.diag(ref_cov))
    ess_bulk = _min_ess(draws, "bulk")
    row = {
        "sampler": name, "wall_s": wall, "gradient_evals": gradient_evals,
        "ess_bulk": ess_bulk, "ess_tail": _min_ess(draws, "tail"),
        "ess_bulk_per_s": ess_bulk / wall if wall > 0 else np.nan,
        "max_mean_error_sd": float(np.max(np.abs(mean - ref_mean) / ref_sd)),
        "rel_cov_error": float(np.linalg.norm(cov - ref_cov) / np.linalg.norm(ref_cov)),
        "w2_gaussian": gaussian_w2(mean, cov, ref_mean, ref_cov),
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
            mode_of: Callable[[np.ndarray], np.ndarray] | None = None) -> pd.DataFrame:
    """Sample ``model`` with NUTS and each step in ``samplers``; one row of metrics per sampler.

    ``reference`` is {"mean": (d,), "cov": (d, d)} over the flattened free variables; by
    default the NUTS run (its own row then shows errors of zero).

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=1000)
    >>> with pm.Model() as model:
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=x)
    >>> exact = {"mean": [x.sum() / (1000 + 0.01)], "cov": [[1 / (1000 + 0.01)]]}
    >>> table = compare(model, {"SGLD": pymc_sgd.SGLD(batch_size=50, step_size=1e-4, model=model)},
    ...                 reference=exact, draws=300, tune=50, chains=1)
    >>> list(table["sampler"])
    ['NUTS', 'SGLD']
    """
    var_names = [rv.name for rv in model.free_RVs]
    runs = {}
    with model:
        for name, step in {"NUTS": None, **samplers}.items():
            idata = pm.sample(draws=draws, tune=tune, chains=chains, step=step, random_seed=random_seed,
                              progressbar=False, compute_convergence_checks=False)
            evals = (int(idata.sample_stats["n_steps"].values.sum()) if step is None
                     else draws * chains * _updates_per_draw(step))
            runs[name] = (idata, evals)
    if reference is None:
        nuts, _ = flat_draws(runs["NUTS"][0], var_names)
        flat = nuts.reshape(-1, nuts.shape[2])
        reference = {"mean": flat.mean(axis=0), "cov": np.atleast_2d(np.cov(flat.T))}
    rows = []
    for name, (idata, evals) in runs.items():
        draws_array, labels = flat_draws(idata, var_names)
        rows.append(_row(name, draws_array, labels, reference, float(idata.posterior.attrs.get(
            "sampling_time", np.nan)), evals, mode_of))
    return pd.DataFrame(rows)


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
