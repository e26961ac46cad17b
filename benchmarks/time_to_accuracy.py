"""Time to accuracy: NUTS (pm.sample defaults), nutpie, ADVI (mean-field and full-rank, PyMC's
pm.Minibatch + total_size path) and pymc_sgd's samplers on defaults, as error-against-wall-time curves.

Workloads (all seeded, data as numpy constants of the model, as users write them):
- ``logistic``: n rows (default 1e6), d = 20, X ~ N(0, 1), beta_true ~ N(0, 0.5^2),
  y ~ Bernoulli(sigmoid(X beta_true)), prior beta ~ N(0, 1);
- ``hierarchical``: a hierarchical logistic GLM, n rows (default 1e5) in ``--groups`` groups (default 50),
  5 covariates, group intercepts non-centred alpha_g = mu + tau z_g or centred (``--parameterisation``).

Errors are measured in PyMC's unconstrained space (every free coordinate, log tau):
``mean_err`` the largest |mean - reference mean| in reference SDs and ``sd_err`` the largest
|SD / reference SD - 1|. "Accurate" is mean_err <= 0.1 and sd_err <= 0.1; "5% SD" adds
sd_err <= 0.05. Reference: a NUTS run of 2 chains x ``--reference-draws`` seeded apart from the
timed runs, cached under benchmarks/outputs/ (not in git); its own Monte Carlo error is about
1/sqrt(ESS) in a mean (0.02 SD at ESS 2500) and 1/sqrt(2 ESS) relative in an SD (1.4%). With
``--reference importance`` (the hierarchical workload at scale, where NUTS would take hours): the Laplace
approximation of the centred model corrected by importance sampling (``references.py``), whose k-hat and
standard errors are printed.

Curves (wall time t, error at t):
- NUTS and nutpie: one run with defaults (1000 tune + 1000 draws, 2 chains); the error of the
  draws up to draw k against the time at draw k, the time taken proportional to the leapfrog
  steps so far (``n_steps``; tuning included), scaled to the run's wall time;
- ADVI: pm.fit with PyMC's default optimiser, the approximation's mean and SD read every
  ``--advi-every`` iterations (exact for the approximation, no sampling noise); its error
  plateau is the SD error ADVI converges to;
- ours: one run with defaults (1000 tune + 1000 draws, 2 chains) in parallel on 2 cores, as nutpie runs
  (``--cores 1``: one after the other, pm.sample's default on a 2-CPU machine); the
  error of the first k draws of each chain against the time until both reached them, warm-up included
  (``ours_curve``), compile included (numba's on-disk cache makes it small after the first run; a 2-draw
  run to exclude it would repeat the whole warm-up, minutes at n = 1e6).
nutpie's and NUTS's compile time is excluded (timed separately). Figure:
benchmarks/outputs/time_to_accuracy_<workload>.png; table and curves as CSV next to it.

Run: ``.venv/bin/python benchmarks/time_to_accuracy.py --workload logistic [--n 1000000] [--methods SGLD]``
(NUTS at n = 1e6 takes about 1.5 hours per run; the reference is cached afterwards).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm

import pymc_sgd
import references
from pymc_sgd.diagnostics import unconstrained_draws

OUTPUTS = Path(__file__).parent / "outputs"
MEAN_TOLERANCE, SD_TOLERANCE, FINE_SD_TOLERANCE = 0.1, 0.1, 0.05


def logistic_model(n: int, d: int, minibatch: int | None = None) -> pm.Model:
    """The logistic workload; with ``minibatch`` the same model written with pm.Minibatch + total_size."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    beta_true = rng.normal(0.0, 0.5, size=d)
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-X @ beta_true)))
    if minibatch:
        X, y = pm.Minibatch(X, y.astype("int32"), batch_size=minibatch)  # int32: no cast node on the data
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, 1, shape=d)
        pm.Bernoulli("y", logit_p=pm.math.dot(X, beta), observed=y, total_size=n if minibatch else None)
    return model


def hierarchical_model(n: int, d: int = 5, groups: int = 50, minibatch: int | None = None,
                       parameterisation: str = "noncentred") -> pm.Model:
    """The hierarchical logistic GLM workload: group intercepts alpha_g = mu + tau z_g (non-centred, free z)
    or alpha_g ~ N(mu, tau^2) (centred, free alpha); the data do not depend on the parameterisation."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, d))
    g = rng.integers(groups, size=n)
    alpha_true = rng.normal(-0.5, 0.7, groups)
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-(alpha_true[g] + X @ rng.normal(0.0, 0.5, d)))))
    if minibatch:
        X, g, y = pm.Minibatch(X, g, y.astype("int32"), batch_size=minibatch)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 2.0)
        tau = pm.HalfNormal("tau", 1.0)
        if parameterisation == "centred":
            alpha = pm.Normal("alpha", mu, tau, shape=groups)
        else:
            alpha = mu + tau * pm.Normal("z", 0.0, 1.0, shape=groups)
        beta = pm.Normal("beta", 0.0, 1.0, shape=d)
        pm.Bernoulli("y", logit_p=alpha[g] + pm.math.dot(X, beta), observed=y, total_size=n if minibatch else None)
    return model


def noncentred_coordinates(w: np.ndarray) -> np.ndarray:
    """(mu, log tau, z, beta) from the centred model's unconstrained draws (mu, log tau, alpha, beta):
    z = (alpha - mu) / tau."""
    mu, log_tau = w[:, :1], w[:, 1:2]
    out = w.copy()
    out[:, 2:-5] = (w[:, 2:-5] - mu) * np.exp(-log_tau)
    return out


def importance_reference(n: int, groups: int, parameterisation: str, path: Path, proposals: int) -> dict:
    """Laplace + importance-sampling correction (``references.laplace_importance``) on the centred model,
    which with many rows per group is close to Gaussian (the non-centred joint mode is not where the mass
    is: at n = 1e5 and 1,000 groups it has tau = 4.9 against 0.7); the non-centred moments come from the
    same draws. Cached."""
    if not path.exists():
        print(f"Laplace + importance reference, {proposals} proposals (cached afterwards in {path}) ...", flush=True)
        started = time.perf_counter()
        ref = references.laplace_importance(hierarchical_model(n, groups=groups, parameterisation="centred"),
                                            proposals, coordinates={"noncentred": noncentred_coordinates},
                                            frozen=(1,))
        OUTPUTS.mkdir(exist_ok=True)
        np.savez(path, **{f"{name}_{key}": value for name, moments in ref.items() for key, value in moments.items()})
        print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    stored = dict(np.load(path))
    name = "w" if parameterisation == "centred" else "noncentred"
    ref = {key: stored[f"{name}_{key}"] for key in ("mean", "sd", "se_mean", "se_sd", "khat", "ess")}
    print(f"reference: k-hat {float(ref['khat']):.2f}, importance ESS {float(ref['ess']):.0f}, largest standard "
          f"error {ref['se_mean'].max():.3f} SD in a mean and {ref['se_sd'].max():.3f} relative in an SD")
    return ref


def errors(mean: np.ndarray, sd: np.ndarray, ref: dict) -> tuple[float, float]:
    return (float(np.max(np.abs(mean - ref["mean"]) / ref["sd"])), float(np.max(np.abs(sd / ref["sd"] - 1.0))))


def cached_reference(model: pm.Model, path: Path, draws: int) -> dict:
    if path.exists():
        return dict(np.load(path))
    print(f"NUTS reference, 2 x {draws} draws (cached afterwards in {path}) ...", flush=True)
    with model:
        idata = pm.sample(draws=draws, tune=1000, chains=2, random_seed=123, progressbar=False,
                          compute_convergence_checks=False)
    draws = unconstrained_draws(idata, model)
    flat = draws.reshape(-1, draws.shape[-1])
    result = {"mean": flat.mean(axis=0), "sd": flat.std(axis=0)}
    OUTPUTS.mkdir(exist_ok=True)
    np.savez(path, **result)
    return result


def nuts_curve(model: pm.Model, ref: dict, name: str, points: int = 20, **kwargs) -> list[dict]:
    """Error of the first k draws of each chain against what a run with k draws would have cost:
    the wall time times (tuning steps + steps to draw k) / all steps, leapfrog steps as the clock."""
    start = time.perf_counter()
    with model:
        idata = pm.sample(random_seed=1, progressbar=False, compute_convergence_checks=False,
                          discard_tuned_samples=False, **kwargs)
    total = time.perf_counter() - start
    wall = float(idata.posterior.attrs.get("sampling_time", total))
    draws = unconstrained_draws(idata, model)
    steps = np.cumsum(idata.sample_stats["n_steps"].values, axis=1)  # (chain, draw)
    warmup = idata.get("warmup_sample_stats")
    tune_steps = float(warmup["n_steps"].values.sum()) if warmup is not None else float(steps[:, -1].sum())
    rows = []
    for k in np.unique(np.geomspace(20, draws.shape[1], points).astype(int)):
        flat = draws[:, :k].reshape(-1, draws.shape[2])
        mean_err, sd_err = errors(flat.mean(axis=0), flat.std(axis=0), ref)
        share = (tune_steps + steps[:, k - 1].sum()) / (tune_steps + steps[:, -1].sum())
        rows.append(dict(method=name, time_s=wall * share, mean_err=mean_err, sd_err=sd_err, setup_s=total - wall))
    return rows


def advi_curve(model: pm.Model, ref: dict, name: str, method: str, iterations: int, every: int) -> list[dict]:
    rows, start = [], time.perf_counter()
    clock = {"pause": 0.0}

    def record(approx, losses, i):
        if i % every == 0:
            paused = time.perf_counter()
            mean, sd = approx.mean.eval(), approx.std.eval()
            mean_err, sd_err = errors(mean, sd, ref)
            clock["pause"] += time.perf_counter() - paused
            rows.append(dict(method=name, time_s=time.perf_counter() - start - clock["pause"], mean_err=mean_err,
                             sd_err=sd_err, setup_s=0.0))

    with model:
        pm.fit(n=iterations, method=method, random_seed=1, progressbar=False, callbacks=[record])
    return rows


def ours_curve(model: pm.Model, ref: dict, name: str, make_step: Callable, points: int = 20,
               cores: int = 2) -> list[dict]:
    """One run on defaults (1000 tune + 1000 draws, 2 chains) with the chains in parallel on 2 cores
    (``cores``): nutpie on its defaults runs its chains on every core, while pm.sample's default ``cores`` is
    half the CPU count (1 on a 2-CPU machine: the chains one after the other). The error of the first k
    draws of each chain against the time until every chain had drawn them, from the call (compile and
    warm-up included). Timestamps come from pm.sample's per-draw callback, which the parent process calls
    as the workers' draws arrive."""
    stamps: dict[tuple[int, int], float] = {}
    with model:
        start = time.perf_counter()
        idata = pm.sample(step=make_step(), chains=2, cores=cores, progressbar=False, random_seed=1,
                          compute_convergence_checks=False,
                          callback=lambda trace, draw: stamps.__setitem__((draw.chain, draw.draw_idx),
                                                                          time.perf_counter()))
    draws = unconstrained_draws(idata, model)
    tune = max(i for _, i in stamps) + 1 - draws.shape[1]
    rows = []
    for k in np.unique(np.geomspace(20, draws.shape[1], points).astype(int)):
        flat = draws[:, :k].reshape(-1, draws.shape[2])
        mean_err, sd_err = errors(flat.mean(axis=0), flat.std(axis=0), ref)
        elapsed = max(stamps[(c, tune + k - 1)] for c in range(draws.shape[0])) - start
        rows.append(dict(method=name, time_s=elapsed, mean_err=mean_err, sd_err=sd_err, setup_s=0.0))
    return rows


def first_time(curve: pd.DataFrame, sd_tolerance: float) -> float:
    ok = curve[(curve.mean_err <= MEAN_TOLERANCE) & (curve.sd_err <= sd_tolerance)]
    return float(ok.time_s.min()) if len(ok) else np.nan


def plot(curves: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for name, curve in curves.groupby("method", sort=False):
        for ax, column in zip(axes, ("mean_err", "sd_err")):
            ax.loglog(curve.time_s, curve[column], marker="o", ms=3, label=name)
    for ax, column, tolerance in zip(axes, ("largest mean error (reference SDs)", "largest relative SD error"),
                                     (MEAN_TOLERANCE, SD_TOLERANCE)):
        ax.axhline(tolerance, color="grey", ls="--", lw=1)
        ax.set_xlabel("wall time (s; NUTS's and nutpie's compile excluded)")
        ax.set_ylabel(column)
    axes[1].axhline(FINE_SD_TOLERANCE, color="grey", ls=":", lw=1)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["logistic", "hierarchical"], default="logistic")
    parser.add_argument("--n", type=int, default=None, help="rows (default 1e6 logistic, 1e5 hierarchical)")
    parser.add_argument("--reference-draws", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=1000, help="ours and ADVI's minibatch")
    parser.add_argument("--groups", type=int, default=50, help="hierarchical workload's groups")
    parser.add_argument("--parameterisation", choices=["noncentred", "centred"], default="noncentred")
    parser.add_argument("--reference", choices=["nuts", "importance"], default="nuts")
    parser.add_argument("--proposals", type=int, default=8000, help="importance reference's proposals")
    parser.add_argument("--advi-iterations", type=int, default=50_000)
    parser.add_argument("--advi-every", type=int, default=2500)
    parser.add_argument("--cores", type=int, default=2, help="ours: pm.sample's cores (1: chains in turn)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="run only the methods whose names start with these (e.g. SGLD SGHMC); the other "
                             "methods' curves are kept from the last run's CSV")
    args = parser.parse_args()
    logging.getLogger("pymc").setLevel(logging.ERROR)
    n = args.n or (1_000_000 if args.workload == "logistic" else 100_000)
    if args.workload == "logistic":
        build, tag = (lambda **kw: logistic_model(n, 20, **kw)), f"logistic_n{n}"
    else:
        build = lambda **kw: hierarchical_model(n, groups=args.groups, parameterisation=args.parameterisation, **kw)
        tag = f"hierarchical_n{n}" + (f"_g{args.groups}_{args.parameterisation}" if args.groups != 50 or
                                      args.parameterisation != "noncentred" else "")
    model = build()
    if args.reference == "importance":
        ref = importance_reference(n, args.groups, args.parameterisation,
                                   OUTPUTS / f"tta_reference_hier_n{n}_g{args.groups}_is{args.proposals}.npz",
                                   args.proposals)
    else:
        ref = cached_reference(model, OUTPUTS / f"tta_reference_{tag}_draws{args.reference_draws}.npz",
                               args.reference_draws)
    B = args.batch_size
    curves_path = OUTPUTS / f"time_to_accuracy_{tag}_curves.csv"
    minibatched = build(minibatch=B)
    methods = {"NUTS (PyMC defaults)": lambda name: nuts_curve(model, ref, name)}
    if importlib.util.find_spec("nutpie") is not None:
        methods["nutpie"] = lambda name: nuts_curve(model, ref, name, nuts_sampler="nutpie")
    else:
        print("nutpie is not installed (pip install -e '.[compare]'): its curve is skipped")
    for label, method in (("ADVI mean-field", "advi"), ("ADVI full-rank", "fullrank_advi")):
        methods[f"{label} B={B}"] = lambda name, method=method: advi_curve(
            minibatched, ref, name, method, args.advi_iterations, args.advi_every)
    for label, sampler in (("SGLD", pymc_sgd.SGLD), ("SGHMC", pymc_sgd.SGHMC)):
        methods[f"{label} B={B}"] = lambda name, sampler=sampler: ours_curve(
            model, ref, name, lambda: sampler(batch_size=B), cores=args.cores)
    rows = []
    if args.methods is not None:
        methods = {name: run for name, run in methods.items() if name.startswith(tuple(args.methods))}
        if curves_path.exists():
            kept = pd.read_csv(curves_path)
            rows = kept[~kept.method.isin(list(methods))].to_dict("records")
    for name, run in methods.items():  # the curves so far are saved after each method (long runs)
        rows += run(name)
        pd.DataFrame(rows).to_csv(curves_path, index=False)
    curves = pd.DataFrame(rows)
    table = pd.DataFrame([{
        "method": name, "to_accurate_s": first_time(curve, SD_TOLERANCE),
        "to_5pct_sd_s": first_time(curve, FINE_SD_TOLERANCE), "final_mean_err": curve.mean_err.iloc[-1],
        "final_sd_err": curve.sd_err.iloc[-1], "setup_s": curve.setup_s.iloc[0]}
        for name, curve in curves.groupby("method", sort=False)])
    table.to_csv(OUTPUTS / f"time_to_accuracy_{tag}.csv", index=False)
    plot(curves, OUTPUTS / f"time_to_accuracy_{tag}.png",
         f"{tag}: error against wall time (reference: "
         f"{'Laplace + importance' if args.reference == 'importance' else f'NUTS 2 x {args.reference_draws}'})")
    print(f"{tag}: accurate = means within {MEAN_TOLERANCE} SD and SDs within {SD_TOLERANCE:.0%}; "
          f"5% SD adds SDs within {FINE_SD_TOLERANCE:.0%}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
