"""``tuning_report(idata)``: what the warm-up chose, per chain, read from sample_stats."""

from __future__ import annotations

import numpy as np
import pandas as pd

# sample_stats the steps record that describe a choice (constant over a chain's draws)
CHOICES = ("full_batch", "step_size", "friction", "steps_per_draw", "mixing_shortfall", "control_variate", "predicted_sd_error",
           "warmup_time", "warmup_grad_evals")


def tuning_report(idata) -> pd.DataFrame:
    """One row per chain: the warm-up's choices and the chain's health.

    Columns: every recorded choice among full_batch (all rows every update: batch_size=None, or the
    warm-up found it cheaper than the minibatches), step_size, friction, steps_per_draw, mixing_shortfall (the factor by
    which the measured mixing of the tuning draws raised steps_per_draw, ``warmup.mixing``), control_variate,
    predicted_sd_error (the theory's predicted largest relative error of a posterior SD),
    warmup_time (s), warmup_grad_evals (full-data gradients spent finding the bulk), then
    grad_evals (full-data gradients spent sampling, draws only) and divergences.

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=2000)
    >>> with pm.Model():
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 2.0, observed=x)
    ...     idata = pm.sample(draws=100, tune=50, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.SGLD(batch_size=100))
    >>> report = pymc_sgd.tuning_report(idata)
    >>> bool(report.loc[0, "predicted_sd_error"] <= 0.03), int(report.loc[0, "divergences"])
    (True, 0)
    """
    stats = idata.sample_stats
    rows = []
    for chain in stats.chain.values:
        per_chain = stats.sel(chain=chain)
        row = {"chain": int(chain)}
        for name in CHOICES:
            if name in per_chain:
                values = per_chain[name].values
                finite = values[~per_chain["diverging"].values] if values.dtype.kind == "f" else values
                row[name] = (finite if len(finite) else values)[-1].item()
        row["grad_evals"] = float(np.nansum(per_chain["grad_evals"].values)) if "grad_evals" in per_chain else np.nan
        row["divergences"] = int(per_chain["diverging"].values.sum())
        rows.append(row)
    return pd.DataFrame(rows).set_index("chain")
