"""Hierarchical models at scale on defaults (issue 25): varying intercepts with many unequal groups.

Workload V (the issue's first target): y_i ~ N(a_{g_i}, 1) with the residual SD known,
a_g ~ N(mu, tau^2), mu ~ N(0, 5^2), tau ~ HalfNormal(1); G = 500 groups whose sizes are lognormal
(2 to several thousand rows, n ~ 2e5, seed 0), written centred (free a) and non-centred (free z,
a = mu + tau z). Reference: exact, by quadrature over log tau (``pymc_sgd.models.hierarchical_normal_model``:
given tau the model is linear-Gaussian).

Each sampler is given only ``batch_size`` (1000) and run as

    pm.sample(draws=1000, tune=1000, chains=2, cores=1, random_seed=1, step=Sampler(batch_size=1000))

in this process (the first run pays numba's compile; ``--samplers`` picks samplers, ``--groups`` and
``--rows`` the size). Per (parameterisation, sampler): wall time of pm.sample (warm-up and compile
included), max |mean - exact| / exact SD over every coordinate (mu, log tau, each group effect), the
smallest and largest SD ratio, the chosen step sizes and updates per draw, divergences. PASS = every mean
within 0.25 SD, every SD within 15% and wall time under 240 s (the issue's target).
Results: printed, and written to benchmarks/outputs/hierarchical.csv.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm

import pymc_sgd
from pymc_sgd import models

OUTPUTS = Path(__file__).with_name("outputs")


def varying_intercepts(groups: int, rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(y, g): group sizes lognormal with a spread of e^1.5, at least 2, scaled to about ``rows`` rows."""
    rng = np.random.default_rng(seed)
    sizes = rng.lognormal(0.0, 1.5, groups)
    sizes = np.maximum(2, np.round(sizes * rows / sizes.sum())).astype(int)
    g = rng.permutation(np.repeat(np.arange(groups), sizes))
    return rng.normal(1.0, 0.5, groups)[g] + rng.normal(size=len(g)), g


def run(parameterisation: str, sampler: str, y: np.ndarray, g: np.ndarray, groups: int, batch_size: int) -> dict:
    model, exact = models.hierarchical_normal_model(y, g, groups, parameterisation)
    started = time.perf_counter()
    with model, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        idata = pm.sample(draws=1000, tune=1000, chains=2, cores=1, random_seed=1, progressbar=False,
                          compute_convergence_checks=False,
                          step=getattr(pymc_sgd, sampler)(batch_size=batch_size))
    wall = time.perf_counter() - started
    for warning in caught:
        print(f"  warned: {warning.message}")
    post = idata.posterior
    effects = post["a" if parameterisation == "centred" else "z"].values
    draws = np.concatenate([post["mu"].values[..., None], np.log(post["tau"].values)[..., None], effects], axis=-1)
    flat = draws.reshape(-1, draws.shape[-1])
    errors = np.abs(flat.mean(axis=0) - exact.mean) / exact.sd
    ratios = flat.std(axis=0) / exact.sd
    stats = idata.sample_stats
    row = dict(parameterisation=parameterisation, sampler=sampler, n=len(y), groups=groups, wall_s=wall,
               mean_err=errors.max(), worst=exact.labels[int(errors.argmax())], sd_min=ratios.min(),
               sd_max=ratios.max(), step_size=" ".join(f"{h:.3g}" for h in stats["step_size"].values[:, -1]),
               steps_per_draw=" ".join(str(k) for k in stats["steps_per_draw"].values[:, -1]),
               divergences=int(stats["diverging"].values.sum()), warnings=len(caught))
    row["PASS"] = bool(row["mean_err"] < 0.25 and 0.85 <= row["sd_min"] and row["sd_max"] <= 1.15 and wall < 240)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samplers", nargs="+", default=["SGLD"])
    parser.add_argument("--parameterisations", nargs="+", default=["centred", "noncentred"])
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    y, g = varying_intercepts(args.groups, args.rows)
    counts = np.bincount(g)
    print(f"n = {len(y)}, {args.groups} groups of {counts.min()} to {counts.max()} rows")
    rows = []
    for parameterisation in args.parameterisations:
        for sampler in args.samplers:
            rows.append(run(parameterisation, sampler, y, g, args.groups, args.batch_size))
            print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    OUTPUTS.mkdir(exist_ok=True)
    table.to_csv(OUTPUTS / "hierarchical.csv", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
