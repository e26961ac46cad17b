"""Defaults that work (issue 9): every sampler given only ``batch_size`` on twelve models.

Each model is an ordinary full-data PyMC model (no pm.Minibatch), its data simulated with a
fixed seed. Every sampler in ``SAMPLERS`` is built with nothing but ``batch_size`` and run as

    pm.sample(draws=1000, tune=500, chains=2, cores=1, random_seed=RUN_SEED, step=Sampler(batch_size=B))

with B = min(100, n // 10), n the number of observed rows.

Models (what each tests; where its reference comes from)
-----------------------------------------------------------
1.  unscaled_regression    covariates on scales 1e-3, 1, 1e3, 1e5 (n = 2000): posterior SDs from
                           2e-7 to 20, a metric must be learnt. NUTS.
2.  far_start              normal mean, known sigma, n = 1e4: the posterior sits ~1000 posterior SDs
                           from PyMC's initial point. Exact conjugate (theory.normal_mean_posterior).
3.  correlated_gaussian    regression on four nearly collinear covariates, known sigma: posterior
                           condition number ~1e4. Exact conjugate (theory.linear_regression_posterior).
4.  flat_priors            x ~ N(mu, sigma), pm.Flat mu, pm.HalfFlat sigma, n = 500 (seed 000's regular
                           model on other data). Exact closed form: mu | x is Student-t with n - 2
                           degrees of freedom, sigma^2 | x ~ InvGamma(n/2 - 1, S/2), S = sum (x - mean x)^2.
5.  student_t_regression   StudentT(nu = 3) likelihood, intercept, 3 slopes, sigma, n = 1000. NUTS.
6.  bounded_near_boundary  Bernoulli rate p ~ 0.01 with a Beta(1, 1) prior, n = 2000: a constrained
                           variable near its bound (sampled as logit p). Exact Beta(1 + k, 1 + n - k).
7.  hierarchical_regression  non-centred group intercepts (12 groups, n = 1000, the group index a
                           numpy constant that must be subsampled with the rows), a common slope. NUTS.
8.  logistic_regression    Bernoulli(logit_p = X beta), n = 1e5, d = 10 (time_to_accuracy.py's model
                           at a smaller size). NUTS.
9.  poisson_glm            Poisson log-link regression, n = 1e4, intercept + 5 slopes. NUTS.
10. mixture_rex            two-component normal mixture, label switching (models.two_component_mixture_model,
                           n = 100): the marginal of each mean is bimodal, so only a sampler that
                           switches labels (ReplicaExchangeSGLD) can pass; other samplers' rows are
                           marked intended = False. Exact grid (401^2).
11. small_n                seed 000's regular model with its first n = 100 points (Flat mean, HalfFlat
                           sigma). Exact grid (models.seed000_regular_grid_posterior, 400^2; it agrees
                           with the closed form of model 4 to 3e-6 relative).
12. large_n_logistic       time_to_accuracy.py's logistic regression, n = 1e6, d = 20; only with
                           --large (or named in --models). Reference: the Laplace approximation at the
                           mode (Newton's method on the full-data log posterior), not a sample: by
                           Bernstein-von Mises its error in every mean and SD, in posterior SDs, is
                           O(1/sqrt(n)) ~ 1e-3 here, far inside the criterion. (NUTS takes ~1.5 h.)

NUTS references are 4 chains x 2000 draws after 2000 tuning steps (target_accept = 0.9,
seed REFERENCE_SEED, chains one after the other on one core); their Monte Carlo error is
about 1/sqrt(ESS) ~ 0.01-0.02 posterior SD. Every reference (exact ones too) is cached in
benchmarks/outputs/defaults_reference_<model>.npz with its wall time and, for NUTS, its
largest R-hat, smallest bulk ESS and divergences; a cache is recomputed with --refresh or when
the model's log density at its initial point no longer matches the one stored with it (the
data or the model changed).

Comparison: the posterior group's free variables (constrained space, Deterministics left out),
flattened into columns as pymc_sgd.compare.flat_draws does. Per (model, sampler) row:
``mean_err`` = max |mean - reference mean| / reference SD, ``sd_min`` / ``sd_max`` = smallest /
largest sampler SD / reference SD, ``ess`` = smallest bulk ESS, ``wall_s`` = time.perf_counter
around pm.sample (the first run of a sampler in a process also pays numba's compile, a few
seconds), ``setup_s`` = building the step, ``warmup`` = the warm-up's share of wall_s
(``warmup_share``: sample_stats ``warmup_time``), ``warmup_grad_evals`` and ``grad_evals`` (the
steps' stats, in full-data gradients: finding the bulk, and the recorded draws; NaN for a step
that does not record them), ``divergences``, ``nonfinite`` (any inf/NaN in the posterior) and
PASS = mean_err < 0.2 and every SD ratio in [0.9, 1.1]. A run that raises is a row with the
exception's type as its status. The table is printed and written to benchmarks/outputs/defaults.csv
(this run's rows, rewritten after every run), errors and warnings listed below it.

Run: ``.venv/bin/python benchmarks/defaults.py [--samplers SGLD,SGHMC] [--models far_start,small_n]
[--large] [--refresh] [--only-references]``
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
from pymc.blocking import DictToArrayBijection
from scipy import stats
from scipy.special import gammaln

import pymc_sgd
from pymc_sgd import models, theory
from pymc_sgd.compare import flat_draws
from time_to_accuracy import OUTPUTS, logistic_model

SAMPLERS: dict[str, Callable[..., object]] = {
    "SGLD": pymc_sgd.SGLD,
    "SGHMC": pymc_sgd.SGHMC,
    "UnderdampedLangevin": pymc_sgd.UnderdampedLangevin,
    "ConstantSGD": pymc_sgd.ConstantSGD,
    "ReplicaExchangeSGLD": pymc_sgd.ReplicaExchangeSGLD,
}
DRAWS, TUNE, CHAINS = 1000, 500, 2
RUN_SEED = 2026
REFERENCE_SEED = 123
REFERENCE_DRAWS = REFERENCE_TUNE = 2000
REFERENCE_CHAINS = 4
MEAN_TOLERANCE = 0.2  # reference SDs
SD_RATIO_RANGE = (0.9, 1.1)
CSV = OUTPUTS / "defaults.csv"

Moments = dict[str, tuple[np.ndarray, np.ndarray]]
"""Exact posterior moments: variable name -> (mean, SD), each of the variable's shape."""


# --- Data and models ---------------------------------------------------------------------

def _design(rng: np.random.Generator, n: int, scales: np.ndarray | list[float]) -> np.ndarray:
    """(n, len(scales)) covariates, column j ~ N(0, scales[j]^2)."""
    return rng.normal(size=(n, len(scales))) * np.asarray(scales, dtype=float)


def _regression_model(X: np.ndarray, y: np.ndarray, likelihood: Callable, coef_sd: float,
                      intercept_sd: float, sigma_sd: float) -> pm.Model:
    """alpha ~ N(0, intercept_sd^2), beta ~ N(0, coef_sd^2 I), sigma ~ HalfNormal(sigma_sd),
    then ``likelihood(mu, sigma, y)`` with mu = alpha + X beta adds the observed variable."""
    with pm.Model() as model:
        alpha = pm.Normal("alpha", 0.0, intercept_sd)
        beta = pm.Normal("beta", 0.0, coef_sd, shape=X.shape[1])
        sigma = pm.HalfNormal("sigma", sigma_sd)
        likelihood(alpha + pm.math.dot(X, beta), sigma, y)
    return model


UNSCALED_SCALES = [1e-3, 1.0, 1e3, 1e5]


def unscaled_regression() -> pm.Model:
    """y = 2 + X beta + N(0, 1), X's columns on scales 1e-3 .. 1e5, each contributing O(1)."""
    rng = np.random.default_rng(1)
    X = _design(rng, 2000, UNSCALED_SCALES)
    y = 2.0 + X @ np.array([300.0, 1.0, -2e-3, 1e-5]) + rng.normal(size=2000)
    return _regression_model(X, y, lambda mu, sigma, y: pm.Normal("y", mu, sigma, observed=y),
                             coef_sd=1000.0, intercept_sd=100.0, sigma_sd=10.0)


def student_t_regression() -> pm.Model:
    """y = 1 + X beta + 0.5 t_3 noise, n = 1000, d = 3."""
    rng = np.random.default_rng(5)
    X = _design(rng, 1000, [1.0, 1.0, 1.0])
    y = 1.0 + X @ np.array([1.0, -0.5, 0.25]) + 0.5 * rng.standard_t(3, size=1000)
    return _regression_model(X, y, lambda mu, sigma, y: pm.StudentT("y", nu=3, mu=mu, sigma=sigma, observed=y),
                             coef_sd=10.0, intercept_sd=10.0, sigma_sd=5.0)


FAR_START_SIGMA, FAR_START_PRIOR_SD = 5.0, 100.0


def _far_start_data() -> np.ndarray:
    return np.random.default_rng(2).normal(50.0, FAR_START_SIGMA, 10_000)


def far_start() -> pm.Model:
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, FAR_START_PRIOR_SD)
        pm.Normal("x", mu, FAR_START_SIGMA, observed=_far_start_data())
    return model


def far_start_posterior() -> Moments:
    mean, var = theory.normal_mean_posterior(_far_start_data(), FAR_START_SIGMA, 0.0, FAR_START_PRIOR_SD)
    return {"mu": (np.array(mean), np.sqrt(var))}


CORRELATED_PRIOR_SD, CORRELATED_SPREAD = 10.0, 0.02


def _correlated_data() -> tuple[np.ndarray, np.ndarray]:
    """X[:, j] = z + 0.02 e_j (z, e_j ~ N(0, 1)): X^T X has eigenvalues ~ 4n and ~ 4e-4 n, so the
    posterior covariance has condition number ~ 4 / 0.02^2 = 1e4."""
    rng = np.random.default_rng(3)
    n, d = 1000, 4
    X = rng.normal(size=(n, 1)) + CORRELATED_SPREAD * rng.normal(size=(n, d))
    y = X @ np.array([1.0, -1.0, 0.5, 0.5]) + rng.normal(size=n)
    return X, y


def correlated_gaussian() -> pm.Model:
    X, y = _correlated_data()
    with pm.Model() as model:
        beta = pm.Normal("beta", 0.0, CORRELATED_PRIOR_SD, shape=X.shape[1])
        pm.Normal("y", pm.math.dot(X, beta), 1.0, observed=y)
    return model


def correlated_gaussian_posterior() -> Moments:
    mean, cov = theory.linear_regression_posterior(*_correlated_data(), 1.0, CORRELATED_PRIOR_SD)
    return {"beta": (mean, np.sqrt(np.diag(cov)))}


def _flat_priors_data() -> np.ndarray:
    return np.random.default_rng(4).normal(3.0, 2.0, 500)


def flat_priors() -> pm.Model:
    """pm.Flat mean and pm.HalfFlat sigma: seed 000's regular model on other data."""
    return models.seed000_regular_model(_flat_priors_data())


def flat_normal_posterior(x: np.ndarray) -> Moments:
    """Exact moments of (a, sigma) for x_i ~ N(a, sigma^2) with flat priors on a and sigma.

    p(a, sigma | x) ~ sigma^-n exp(-(S + n (a - mean x)^2) / (2 sigma^2)), S = sum (x_i - mean x)^2.
    Integrating a out, v = sigma^2 ~ InvGamma(alpha = n/2 - 1, beta = S/2), so
    E sigma = sqrt(beta) Gamma(alpha - 1/2) / Gamma(alpha) and E sigma^2 = beta / (alpha - 1);
    a | x is Student-t (n - 2 degrees of freedom) about mean x with variance S / (n (n - 4)).
    """
    n, mean = len(x), float(np.mean(x))
    S = float(np.sum((x - mean) ** 2))
    alpha, beta = n / 2 - 1, S / 2
    e_sigma = np.sqrt(beta) * np.exp(gammaln(alpha - 0.5) - gammaln(alpha))
    return {"a": (np.array(mean), np.sqrt(S / (n * (n - 4)))),
            "sigma": (np.array(e_sigma), np.sqrt(beta / (alpha - 1) - e_sigma**2))}


def _boundary_data() -> np.ndarray:
    return np.random.default_rng(6).binomial(1, 0.01, 2000)


def bounded_near_boundary() -> pm.Model:
    with pm.Model() as model:
        p = pm.Beta("p", 1.0, 1.0)
        pm.Bernoulli("y", p, observed=_boundary_data())
    return model


def bounded_near_boundary_posterior() -> Moments:
    y = _boundary_data()
    posterior = stats.beta(1 + y.sum(), 1 + len(y) - y.sum())
    return {"p": (np.array(posterior.mean()), np.array(posterior.std()))}


def hierarchical_regression() -> pm.Model:
    """y = alpha[g] + 0.7 x + N(0, 1), alpha_g ~ N(1, 0.5^2), 12 groups, n = 1000; non-centred."""
    rng = np.random.default_rng(7)
    groups, n = 12, 1000
    g = rng.integers(groups, size=n)
    x = rng.normal(size=n)
    y = rng.normal(1.0, 0.5, groups)[g] + 0.7 * x + rng.normal(size=n)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfNormal("tau", 1.0)
        z = pm.Normal("z", 0.0, 1.0, shape=groups)
        alpha = pm.Deterministic("alpha", mu + tau * z)
        beta = pm.Normal("beta", 0.0, 5.0)
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Normal("y", alpha[g] + beta * x, sigma, observed=y)
    return model


def logistic_regression() -> pm.Model:
    return logistic_model(100_000, 10)


def large_n_logistic() -> pm.Model:
    return logistic_model(1_000_000, 20)


def poisson_glm() -> pm.Model:
    """y ~ Poisson(exp(1 + X beta)), X ~ N(0, 0.5^2), beta ~ N(0, 0.3^2), n = 1e4, d = 5."""
    rng = np.random.default_rng(9)
    X = _design(rng, 10_000, [0.5] * 5)
    y = rng.poisson(np.exp(1.0 + X @ rng.normal(0.0, 0.3, 5)))
    with pm.Model() as model:
        alpha = pm.Normal("alpha", 0.0, 5.0)
        beta = pm.Normal("beta", 0.0, 1.0, shape=5)
        pm.Poisson("y", mu=pm.math.exp(alpha + pm.math.dot(X, beta)), observed=y)
    return model


def mixture_rex() -> pm.Model:
    return models.two_component_mixture_model()[0]


def mixture_posterior() -> Moments:
    """Moments of the marginals of mu[0] and mu[1] on the exact grid (the same by symmetry)."""
    exact = models.two_component_mixture_model()[1]
    moments = [_grid_moments(exact.axis, exact.weights.sum(axis=axis)) for axis in (1, 0)]
    return {exact.name: (np.array([m for m, _ in moments]), np.array([s for _, s in moments]))}


def _grid_moments(axis: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    mean = float(weights @ axis)
    return mean, float(np.sqrt(weights @ (axis - mean) ** 2))


def _small_n_data() -> np.ndarray:
    return models.seed000_regular_data(100)


def small_n() -> pm.Model:
    return models.seed000_regular_model(_small_n_data())


def small_n_posterior() -> Moments:
    grid = models.seed000_regular_grid_posterior(_small_n_data(), size=400)
    return {name: (np.array(m["mean"]), np.array(m["sd"])) for name, m in grid.items()}


# --- References --------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """Mean and SD of every flattened free variable (``labels``), and how they were obtained."""

    labels: list[str]
    mean: np.ndarray
    sd: np.ndarray
    source: str
    seconds: float
    diagnostics: dict[str, float]


ReferenceResult = tuple[np.ndarray, np.ndarray, list[str], dict[str, float]]
"""(mean, sd, labels, diagnostics) of the flattened free variables."""
ReferenceFn = Callable[[pm.Model], ReferenceResult]


def _labels(name: str, size: int) -> list[str]:
    """Column labels of a flattened variable, as pymc_sgd.compare.flat_draws names them."""
    return [name] if size == 1 else [f"{name}[{i}]" for i in range(size)]


def exact(moments_fn: Callable[[], Moments]) -> ReferenceFn:
    """A reference from exact moments, flattened in the model's free-variable order."""
    def reference(model: pm.Model) -> ReferenceResult:
        moments = moments_fn()
        names = [rv.name for rv in model.free_RVs]
        if set(names) != set(moments):
            raise ValueError(f"exact moments of {sorted(moments)} for a model with free variables {names}")
        mean = np.concatenate([np.ravel(moments[name][0]) for name in names])
        sd = np.concatenate([np.ravel(moments[name][1]) for name in names])
        labels = [label for name in names for label in _labels(name, np.size(moments[name][0]))]
        return mean, sd, labels, {}
    return reference


def _draw_moments(idata, model: pm.Model) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(chain, draw, d) draws of the free variables, their mean and SD over all draws, labels."""
    draws, labels = flat_draws(idata, [rv.name for rv in model.free_RVs])
    flat = draws.reshape(-1, draws.shape[2])
    return draws, flat.mean(axis=0), flat.std(axis=0), labels


def _min_ess(draws: np.ndarray) -> float:
    return float(az.ess(az.convert_to_dataset({"x": draws}))["x"].min())


def nuts(model: pm.Model) -> ReferenceResult:
    """The NUTS reference: REFERENCE_CHAINS x REFERENCE_DRAWS on one core."""
    with model:
        idata = pm.sample(draws=REFERENCE_DRAWS, tune=REFERENCE_TUNE, chains=REFERENCE_CHAINS, cores=1,
                          target_accept=0.9, random_seed=REFERENCE_SEED, progressbar=False,
                          compute_convergence_checks=False)
    draws, mean, sd, labels = _draw_moments(idata, model)
    rhat = float(az.rhat(az.convert_to_dataset({"x": draws}))["x"].max())
    return mean, sd, labels, {"max_rhat": rhat, "min_ess": _min_ess(draws),
                              "divergences": float(idata.sample_stats["diverging"].sum())}


def laplace(model: pm.Model, max_iterations: int = 50) -> ReferenceResult:
    """N(mode, H^-1): Newton's method on log p from the initial point, H = -Hessian of log p at the
    mode. Only for models whose free variables are untransformed (value space = constrained space)."""
    transformed = [rv.name for rv in model.free_RVs if model.rvs_to_transforms[rv] is not None]
    if transformed:
        raise ValueError(f"laplace() needs untransformed variables; {transformed} are transformed.")
    dlogp, neg_hessian = model.compile_dlogp(), model.compile_d2logp()  # d2logp is negated by default
    point = model.initial_point()
    x = DictToArrayBijection.map(point)
    for iteration in range(1, max_iterations + 1):
        precision = neg_hessian(point)
        delta = np.linalg.solve(precision, dlogp(point))
        x = x._replace(data=x.data + delta)
        point = DictToArrayBijection.rmap(x)
        if np.max(np.abs(delta) * np.sqrt(np.diag(precision))) < 1e-8:  # in posterior SDs
            break
    else:
        raise RuntimeError(f"Newton's method did not converge in {max_iterations} iterations")
    sd = np.sqrt(np.diag(np.linalg.inv(neg_hessian(point))))
    labels = [label for name, _, size, _ in x.point_map_info for label in _labels(name, size)]
    return x.data, sd, labels, {"newton_iterations": float(iteration)}


def _logp_signature(model: pm.Model) -> float:
    """log p at the initial point: changes whenever the data or the model do."""
    return float(model.compile_logp()(model.initial_point()))


def reference_path(name: str) -> Path:
    return OUTPUTS / f"defaults_reference_{name}.npz"


def reference(name: str, model: pm.Model, refresh: bool = False) -> Reference:
    """The case's reference, from the cache unless refresh or the model changed since."""
    path, signature = reference_path(name), _logp_signature(model)
    if path.exists() and not refresh:
        cached = np.load(path)
        if np.isclose(cached["signature"], signature, rtol=1e-10, atol=0.0):
            diagnostics = {key[5:]: float(cached[key]) for key in cached.files if key.startswith("diag_")}
            return Reference(list(cached["labels"]), cached["mean"], cached["sd"], str(cached["source"]),
                             float(cached["seconds"]), diagnostics)
        print(f"{name}: model changed since {path.name} was cached; recomputing its reference", flush=True)
    case = CASES[name]
    print(f"{name}: computing its reference ({case.source}) ...", flush=True)
    start = time.perf_counter()
    mean, sd, labels, diagnostics = case.reference(model)
    seconds = time.perf_counter() - start
    OUTPUTS.mkdir(exist_ok=True)
    np.savez(path, labels=np.array(labels), mean=mean, sd=sd, source=case.source, seconds=seconds,
             signature=signature, **{f"diag_{k}": v for k, v in diagnostics.items()})
    return Reference(labels, mean, sd, case.source, seconds, diagnostics)


# --- The suite ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    build: Callable[[], pm.Model]
    reference: ReferenceFn
    source: str
    large: bool = False
    intended_for: tuple[str, ...] | None = None  # None: every sampler

    def intended(self, sampler: str) -> bool:
        return self.intended_for is None or sampler in self.intended_for


NUTS_SOURCE = (f"NUTS {REFERENCE_CHAINS}x{REFERENCE_DRAWS} (tune {REFERENCE_TUNE}, target_accept 0.9, "
               f"seed {REFERENCE_SEED})")
CASES: dict[str, Case] = {
    "unscaled_regression": Case(unscaled_regression, nuts, NUTS_SOURCE),
    "far_start": Case(far_start, exact(far_start_posterior), "exact: conjugate normal mean"),
    "correlated_gaussian": Case(correlated_gaussian, exact(correlated_gaussian_posterior),
                                "exact: conjugate linear regression"),
    "flat_priors": Case(flat_priors, exact(lambda: flat_normal_posterior(_flat_priors_data())),
                        "exact: Student-t / inverse-gamma closed form"),
    "student_t_regression": Case(student_t_regression, nuts, NUTS_SOURCE),
    "bounded_near_boundary": Case(bounded_near_boundary, exact(bounded_near_boundary_posterior),
                                  "exact: Beta(1 + k, 1 + n - k)"),
    "hierarchical_regression": Case(hierarchical_regression, nuts, NUTS_SOURCE),
    "logistic_regression": Case(logistic_regression, nuts, NUTS_SOURCE),
    "poisson_glm": Case(poisson_glm, nuts, NUTS_SOURCE),
    "mixture_rex": Case(mixture_rex, exact(mixture_posterior), "exact: 401^2 grid",
                        intended_for=("ReplicaExchangeSGLD",)),
    "small_n": Case(small_n, exact(small_n_posterior), "exact: 400^2 grid"),
    "large_n_logistic": Case(large_n_logistic, laplace, "Laplace at the mode (BvM error O(1/sqrt(n)))",
                             large=True),
}


# --- Runs --------------------------------------------------------------------------------

def observed_rows(model: pm.Model) -> int:
    """The largest leading length of the observed variables' data."""
    return max(int(model.rvs_to_values[rv].shape[0].eval()) for rv in model.observed_RVs)


def batch_size(model: pm.Model) -> int:
    return min(100, observed_rows(model) // 10)


def _stat_total(idata, name: str) -> float:
    """A per-draw sample_stats variable summed over chains and draws; NaN if it is not recorded."""
    stats_group = idata.sample_stats
    return float(stats_group[name].sum()) if name in stats_group else np.nan


def _chain_stat_total(idata, name: str) -> float:
    """A per-chain total that the steps repeat on every draw (warmup_time, warmup_grad_evals),
    summed over chains; NaN if it is not recorded."""
    stats_group = idata.sample_stats
    if name not in stats_group:
        return np.nan
    per_chain = stats_group[name]
    return float((per_chain.max("draw") if "draw" in per_chain.dims else per_chain).sum())


def warmup_share(idata, wall_seconds: float) -> float:
    """The warm-up's share of ``wall_seconds``: sample_stats["warmup_time"] (seconds, each chain's
    total, repeated on its draws) summed over chains; NaN if the steps do not record it."""
    return _chain_stat_total(idata, "warmup_time") / wall_seconds


def accuracy(idata, model: pm.Model, ref: Reference) -> dict[str, float]:
    draws, mean, sd, labels = _draw_moments(idata, model)
    if labels != ref.labels:
        raise ValueError(f"posterior columns {labels} differ from the reference's {ref.labels}")
    ratio = sd / ref.sd
    return {"mean_err": float(np.max(np.abs(mean - ref.mean) / ref.sd)), "sd_min": float(ratio.min()),
            "sd_max": float(ratio.max()), "ess": _min_ess(draws)}


def passes(row: dict) -> bool:
    low, high = SD_RATIO_RANGE
    return bool(row.get("mean_err", np.inf) < MEAN_TOLERANCE and low <= row.get("sd_min", np.nan)
                and row.get("sd_max", np.nan) <= high)


def _warning_text(caught: list[warnings.WarningMessage]) -> str:
    return " | ".join(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))


def health(idata, wall_seconds: float) -> dict[str, float | bool]:
    """Cost and failure signals of one run, from its sample_stats and posterior."""
    return {"warmup": warmup_share(idata, wall_seconds),
            "warmup_grad_evals": _chain_stat_total(idata, "warmup_grad_evals"),
            "grad_evals": _stat_total(idata, "grad_evals"), "divergences": _stat_total(idata, "diverging"),
            "nonfinite": not all(np.all(np.isfinite(v.values)) for v in idata.posterior.data_vars.values())}


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else ""


def run(model: pm.Model, ref: Reference, sampler: str, batch: int) -> dict:
    """One pm.sample with SAMPLERS[sampler](batch_size=batch); exceptions become the row's status."""
    row: dict = {"status": "ok", "error": ""}
    with warnings.catch_warnings(record=True) as caught, model:
        warnings.simplefilter("always")
        try:
            start = time.perf_counter()
            step = SAMPLERS[sampler](batch_size=batch)
            row["setup_s"] = time.perf_counter() - start
            start = time.perf_counter()
            idata = pm.sample(draws=DRAWS, tune=TUNE, chains=CHAINS, cores=1, random_seed=RUN_SEED, step=step,
                              progressbar=False, compute_convergence_checks=False)
            row["wall_s"] = time.perf_counter() - start
            row.update(health(idata, row["wall_s"]))
            row.update(accuracy(idata, model, ref))
        except Exception as error:  # a crash is a row, not the end of the suite
            row.update(status=type(error).__name__, error=_first_line(error))
    row["warnings"] = _warning_text(caught)
    row["PASS"] = row["status"] == "ok" and passes(row)
    return row


COLUMNS = ["model", "sampler", "intended", "B", "status", "mean_err", "sd_min", "sd_max", "ess", "wall_s",
           "setup_s", "warmup", "warmup_grad_evals", "grad_evals", "divergences", "nonfinite", "PASS"]


def table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).reindex(columns=COLUMNS + ["reference", "error", "warnings"])


def save(rows: list[dict]) -> None:
    """Write the rows so far to CSV (after every run: a killed suite keeps what it measured)."""
    OUTPUTS.mkdir(exist_ok=True)
    table(rows).to_csv(CSV, index=False)


def report(rows: list[dict]) -> None:
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_rows", None):
        print(table(rows)[COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for row in rows:
        for key in ("error", "warnings"):
            if row.get(key):
                print(f"  {row['model']} / {row['sampler']} {key}: {row[key]}")
    print(f"written to {CSV}")


def _selection(text: str | None, known: dict, what: str) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {list(known)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", help=f"comma-separated subset of {','.join(SAMPLERS)}")
    parser.add_argument("--models", help="comma-separated subset of the models (naming a large one selects it)")
    parser.add_argument("--large", action="store_true", help="include large_n_logistic (n = 1e6)")
    parser.add_argument("--refresh", action="store_true", help="recompute the cached references")
    parser.add_argument("--only-references", action="store_true", help="compute/cache the references and stop")
    args = parser.parse_args()
    logging.getLogger("pymc").setLevel(logging.ERROR)

    samplers = _selection(args.samplers, SAMPLERS, "samplers") or list(SAMPLERS)
    cases = _selection(args.models, CASES, "models") or [name for name, case in CASES.items()
                                                          if args.large or not case.large]
    rows, start = [], time.perf_counter()
    for name in cases:
        model = CASES[name].build()
        ref = reference(name, model, refresh=args.refresh)
        print(f"{name}: reference {ref.source}, computed in {ref.seconds:.1f} s {ref.diagnostics}", flush=True)
        if args.only_references:
            continue
        batch = batch_size(model)
        for sampler in samplers:
            print(f"{name} / {sampler} (B = {batch}) ...", end=" ", flush=True)
            row = run(model, ref, sampler, batch)
            print(f"{row['status']}, {row.get('wall_s', np.nan):.1f} s, PASS = {row['PASS']}", flush=True)
            rows.append({"model": name, "sampler": sampler, "intended": CASES[name].intended(sampler), "B": batch,
                         "reference": ref.source, **row})
            save(rows)
    if rows:
        report(rows)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
