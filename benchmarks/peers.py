"""Side by side with peers at scale (issue 27), first slice: logistic regression against NumPyro's HMCECS.

Workload: logistic regression, d = 20, X ~ N(0, 1), beta ~ N(0, 0.5^2) (seed 0), prior N(0, 1) per
coefficient, n rows (``--rows``, default 1e5 and 1e6). One chain of 500 tuning + 1000 draws per method:

- ``sgld``: ``pymc_sgd.SGLD(batch_size=1000)`` on defaults, via ``pm.sample(step=...)``;
- ``hmcecs``: NumPyro's HMCECS (Dang et al. 2019) with a NUTS inner kernel, 100 blocks, subsample 1000 and
  the Taylor proxy at a MAP found by SVI with an AutoDelta guide (5000 Adam steps of 1e-3), as NumPyro's own
  example (examples/hmcecs.py) does, the SVI run inside the timed run;
- ``numpyro_nuts``: NumPyro's full-data NUTS (only at n <= 1e5 unless ``--nuts-everywhere``).

Every run is a fresh process (``--one``), wall time from process start to draws in hand: imports, model build,
compilation, warm-up and sampling (data generation excluded). Each method runs twice: "cold" with an empty
numba cache directory (``NUMBA_CACHE_DIR``; NumPyro/JAX keep no compiled code between processes), then "warm"
reusing that directory. Reference: the Laplace approximation at the MAP (Newton on the full data), whose
error against the posterior is O(d / sqrt(n)) relative (Bernstein-von Mises), below 0.07 at n >= 1e5 here.
Reported: max |mean - reference| / reference SD over the coefficients (the z of a mean), and the range of
SD ratios. "Accurate" is every z under 0.1 and every SD ratio within 10%.
Needs the optional extra ``peers`` (``pip install -e ".[peers]"``); a missing peer is skipped with a message.
Results: printed, and written to benchmarks/outputs/peers.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUTPUTS = Path(__file__).with_name("outputs")
D, DRAWS, TUNE, BATCH = 20, 1000, 500, 1000


def logistic_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, D))
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-X @ rng.normal(0.0, 0.5, size=D))))
    return X, y


def laplace_reference(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MAP, posterior SDs of the Laplace approximation): Newton on U = beta^2 / 2 - sum log p(y | X beta)."""
    beta = np.zeros(D)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-X @ beta))
        gradient = beta - X.T @ (y - p)
        hessian = np.eye(D) + (X * (p * (1.0 - p))[:, None]).T @ X
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.max(np.abs(step)) < 1e-12:
            break
    return beta, np.sqrt(np.diag(np.linalg.inv(hessian)))


def run_sgld(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    import pymc as pm

    import pymc_sgd
    with pm.Model():
        beta = pm.Normal("beta", 0.0, 1.0, shape=D)
        pm.Bernoulli("y", logit_p=pm.math.dot(X, beta), observed=y)
        idata = pm.sample(draws=DRAWS, tune=TUNE, chains=1, cores=1, random_seed=1, progressbar=False,
                          compute_convergence_checks=False, step=pymc_sgd.SGLD(batch_size=BATCH))
    return idata.posterior["beta"].values[0]


def _numpyro_model(data, obs, subsample_size):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    beta = numpyro.sample("beta", dist.Normal(jnp.zeros(D), jnp.ones(D)).to_event(1))
    with numpyro.plate("rows", data.shape[0], subsample_size=subsample_size):
        rows = numpyro.subsample(data, event_dim=1)
        labels = numpyro.subsample(obs, event_dim=0)
        numpyro.sample("y", dist.Bernoulli(logits=rows @ beta), obs=labels)


def run_hmcecs(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    import numpyro
    numpyro.enable_x64()
    from jax import random
    from numpyro.infer import HMCECS, MCMC, NUTS, SVI, Trace_ELBO, autoguide
    svi_key, mcmc_key = random.split(random.PRNGKey(1))
    guide = autoguide.AutoDelta(_numpyro_model)
    svi = SVI(_numpyro_model, guide, numpyro.optim.Adam(step_size=1e-3), loss=Trace_ELBO())
    params = svi.run(svi_key, 5000, X, y, BATCH, progress_bar=False).params
    kernel = HMCECS(NUTS(_numpyro_model), num_blocks=100, proxy=HMCECS.taylor_proxy({"beta": params["beta_auto_loc"]}))
    mcmc = MCMC(kernel, num_warmup=TUNE, num_samples=DRAWS, progress_bar=False)
    mcmc.run(mcmc_key, X, y, BATCH)
    return np.asarray(mcmc.get_samples()["beta"])


def run_numpyro_nuts(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    import numpyro
    numpyro.enable_x64()
    from jax import random
    from numpyro.infer import MCMC, NUTS
    mcmc = MCMC(NUTS(_numpyro_model), num_warmup=TUNE, num_samples=DRAWS, progress_bar=False)
    mcmc.run(random.PRNGKey(1), X, y, None)
    return np.asarray(mcmc.get_samples()["beta"])


METHODS = {"sgld": run_sgld, "hmcecs": run_hmcecs, "numpyro_nuts": run_numpyro_nuts}
NEEDS = {"sgld": "pymc_sgd", "hmcecs": "numpyro", "numpyro_nuts": "numpyro"}


def one(method: str, n: int) -> None:
    """Run one method in this (fresh) process; print a JSON line with its time and draws' summary."""
    X, y = logistic_data(n)
    started = time.perf_counter()
    draws = METHODS[method](X, y)
    wall = time.perf_counter() - started
    mode, sd = laplace_reference(X, y)
    z = np.abs(draws.mean(axis=0) - mode) / sd
    ratio = draws.std(axis=0) / sd
    print(json.dumps({"wall": wall, "max_z": float(z.max()), "sd_lo": float(ratio.min()),
                      "sd_hi": float(ratio.max())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--nuts-everywhere", action="store_true")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one[0], int(args.one[1]))
        return
    import importlib.util

    import pandas as pd
    rows = []
    for method in args.methods:
        if importlib.util.find_spec(NEEDS[method]) is None:
            print(f"skipping {method}: {NEEDS[method]} is not installed (pip install -e '.[peers]')")
            continue
        cache = tempfile.mkdtemp(prefix="peers-numba-")
        for n in args.rows:
            if method == "numpyro_nuts" and n > 100_000 and not args.nuts_everywhere:
                continue
            for start in ("cold", "warm"):
                env = {**os.environ, "NUMBA_CACHE_DIR": cache, "OPENBLAS_NUM_THREADS": "1"}
                if start == "cold" and method == "sgld":  # empty numba cache for this n's first run
                    env["NUMBA_CACHE_DIR"] = cache = tempfile.mkdtemp(prefix="peers-numba-")
                done = subprocess.run([sys.executable, __file__, "--one", method, str(n)], env=env,
                                      capture_output=True, text=True)
                lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
                if done.returncode or not lines:
                    print(f"{method} n={n} {start}: failed\n{done.stderr[-2000:]}")
                    continue
                result = json.loads(lines[-1])
                rows.append({"method": method, "n": n, "start": start, **result,
                             "accurate": result["max_z"] < 0.1 and 0.9 < result["sd_lo"] and result["sd_hi"] < 1.1})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))
    OUTPUTS.mkdir(exist_ok=True)
    table.to_csv(OUTPUTS / "peers.csv", index=False)


if __name__ == "__main__":
    main()
