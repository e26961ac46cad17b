"""Throughput of pymc_sgd's samplers against a hand-written numba SGLD kernel, in one run.

Workloads
---------
A  logistic regression, n = 100_000 rows, d = 10, beta ~ N(0, 1), batch size B = 100, h = 1e-5.
B  seed 000's regular model, x_i ~ N(a, sigma) with a ~ Flat, sigma ~ HalfFlat, n = 200,
   B = 10, h = 1e-4 (parameters (a, log sigma), the log-Jacobian included in U).

For each workload, the time per SGLD update through ``pm.sample`` (steps_per_draw = 1000,
one chain, tune = 0) is the wall time of the whole ``pm.sample`` call divided by
draws * 1000, so it includes PyMC's per-draw and per-call overhead. The baseline is an
``@numba.njit`` loop with the gradient of U_hat = -log p(w) - (n/B) sum_batch log p(x_i | w)
written by hand, batches drawn with replacement from a ``np.random.Generator``, running
the same number of updates. Both are warmed up first (the first ``pm.sample`` call, which
builds and compiles the estimator and the update loop, is reported as "compile s") and
timed as the best of 3 repetitions with ``time.perf_counter``.

Every other sampler is timed the same way against the same SGLD kernel: every update of each
costs one minibatch gradient plus O(d) (O(d^2) for a full preconditioner) arithmetic, so the
hand-written gradient is the common yardstick. The exceptions read more rows: SGLD+control
variate 2B, SGLD+SVRG ~3B (2B plus a full pass per epoch), SGLD+SAGA B single-row calls, and MALA,
full batch, n rows per update: MALA runs B/n as many updates per draw and its time is per B rows
read, so its ratio compares the cost per row. AMAGOLD (step and friction chosen, centred gradient)
runs rounds of n/B minibatch steps, each ended by a full-data potential: its time per minibatch step
includes that test (2x the rows of plain SGLD, 3x with the centred gradient's second evaluation).
"gradient us" is the compiled pytensor gradient alone with its index draw, called from an
njit loop: the floor for any sampler built on it, and the part of the ratio that the
generated graph, not the update loop, is responsible for.

Run: ``.venv/bin/python benchmarks/throughput.py [--draws 300] [--workload {A,B,all}]
[--samplers SGLD ...]`` (names: ``SAMPLERS``)
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import pymc as pm

import pymc_sgd
from pymc_sgd.gradients import cached_estimator
from pymc_sgd.kernels.model import gradient_into

STEPS_PER_DRAW = 1000
REPEATS = 3


@numba.njit
def sgld_logistic(X: np.ndarray, y: np.ndarray, beta: np.ndarray, rng: np.random.Generator,
                  n_updates: int, batch_size: int, h: float) -> np.ndarray:
    """SGLD on U_hat = |beta|^2 / 2 - (n/B) sum_batch [y z - log(1 + e^z)], z = x . beta.

    Indices come from one vectorised rng.integers call per batch (numba's scalar
    rng.integers(0, n) is ~15x slower per index; pymc_sgd draws floor(u n) per index, as fast without
    allocating).
    The batch is gathered before use (X[idx]): the random row reads then overlap in memory,
    which is ~2x faster on this 8 MB X than reading rows one by one inside the gradient loop.
    """
    n, d = X.shape
    scale = n / batch_size
    noise = np.sqrt(2.0 * h)
    for _ in range(n_updates):
        idx = rng.integers(0, n, size=batch_size)
        X_b = X[idx]
        residual = y[idx] - 1.0 / (1.0 + np.exp(-(X_b @ beta)))
        grad = beta - scale * (X_b.T @ residual)
        beta = beta - h * grad + noise * rng.standard_normal(d)
    return beta


@numba.njit
def sgld_normal(x: np.ndarray, w: np.ndarray, rng: np.random.Generator,
                n_updates: int, batch_size: int, h: float) -> np.ndarray:
    """SGLD on w = (a, s = log sigma): U_hat = -s - (n/B) sum_batch log N(x_i | a, e^s)."""
    n = x.shape[0]
    scale = n / batch_size
    noise = np.sqrt(2.0 * h)
    a, s = w[0], w[1]
    for _ in range(n_updates):
        precision = np.exp(-2.0 * s)
        grad_a = 0.0
        grad_s = -1.0  # HalfFlat sigma = e^s: -log p(w) = -s
        for i in rng.integers(0, n, size=batch_size):
            r = x[i] - a
            grad_a -= scale * r * precision
            grad_s -= scale * (r * r * precision - 1.0)
        a += -h * grad_a + noise * rng.standard_normal()
        s += -h * grad_s + noise * rng.standard_normal()
    return np.array([a, s])


@dataclass
class Workload:
    """A PyMC model, its SGLD settings and the hand-written kernel for the same U_hat."""

    name: str
    model: pm.Model
    batch_size: int
    step_size: float
    baseline: Callable[[np.random.Generator, int], np.ndarray]  # (rng, n_updates) -> final w


def logistic_workload(n: int = 100_000, d: int = 10, batch_size: int = 100) -> Workload:
    """Workload A (defaults) and its variants for benchmarks/scaling.py; h = 1 / n (1e-5 at n = 1e5)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    beta_true = rng.normal(size=d)
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-X @ beta_true)))
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, 1, shape=d)
        pm.Bernoulli("y", logit_p=pm.math.dot(X, beta), observed=y)
    y_float = y.astype(np.float64)
    h = 1.0 / n
    return Workload(f"A logistic n={n:.0e} d={d} B={batch_size}".replace("e+0", "e"), model, batch_size, h,
                    lambda g, k: sgld_logistic(X, y_float, np.zeros(d), g, k, batch_size, h))


def normal_workload() -> Workload:
    np.random.seed(42)
    x = np.random.normal(0, 1, 200)
    with pm.Model() as model:
        a = pm.Flat("a")
        sigma = pm.HalfFlat("sigma")
        pm.Normal("x", a, sigma, observed=x)
    batch_size, h = 10, 1e-4
    return Workload("B seed-000 normal n=200 B=10", model, batch_size, h,
                    lambda g, k: sgld_normal(x, np.zeros(2), g, k, batch_size, h))


WORKLOADS = {"A": logistic_workload, "B": normal_workload}


def best_of(fn: Callable[[], object]) -> float:
    """Smallest wall time of REPEATS calls, in seconds."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_step(workload: Workload, sampler: str) -> pm.step_methods.compound.BlockedStep:
    """Each sampler at settings of the same scale as the SGLD step h (inside the model context).

    SGHMC takes h on U with friction 0.1; the underdamped time step is sqrt(h) (docs/pages/sources.md's
    mapping h = sqrt(eta)) with friction 1 / sqrt(h); ConstantSGD uses its default
    (preconditioned, measured at the start point since tune = 0).
    """
    common = dict(batch_size=workload.batch_size, steps_per_draw=STEPS_PER_DRAW)
    h = workload.step_size
    epoch = max(1, cached_estimator(workload.model).n_rows // workload.batch_size)  # updates per n rows
    makers = {
        "SGLD": lambda: pymc_sgd.SGLD(step_size=h, **common),
        "SGLD+control_variate": lambda: pymc_sgd.SGLD(step_size=h, gradient_estimator="control_variate", **common),
        "SGLD+svrg": lambda: pymc_sgd.SGLD(step_size=h, gradient_estimator="svrg", **common),
        "SGLD+saga": lambda: pymc_sgd.SGLD(step_size=h, gradient_estimator="saga", **common),
        "SGLD+Cyclical": lambda: pymc_sgd.SGLD(step_size=pymc_sgd.Cyclical(peak=h), **common),
        "ConstantSGD": lambda: pymc_sgd.ConstantSGD(**common),
        "SGFS": lambda: pymc_sgd.SGFS(**common),
        "AveragedSGD": lambda: pymc_sgd.AveragedSGD(step_size=h, **common),
        "SGHMC": lambda: pymc_sgd.SGHMC(step_size=h, friction=0.1, **common),
        "SGNHT": lambda: pymc_sgd.SGNHT(**common),  # h chosen: at SGHMC's h its gradient noise needs xi > 2
        "UnderdampedLangevin": lambda: pymc_sgd.UnderdampedLangevin(step_size=np.sqrt(h), friction=1.0 / np.sqrt(h),
                                                                    **common),
        "MALA": lambda: pymc_sgd.MALA(step_size=h, steps_per_draw=max(1, STEPS_PER_DRAW // epoch)),
        "ContourSGLD": lambda: pymc_sgd.ContourSGLD(step_size=h, **common),
        "AMAGOLD": lambda: pymc_sgd.AMAGOLD(batch_size=workload.batch_size, inner_steps=epoch,
                                            steps_per_draw=max(1, STEPS_PER_DRAW // epoch)),
    }
    return makers[sampler]()


SAMPLERS = ("SGLD", "SGLD+control_variate", "SGLD+svrg", "SGLD+saga", "SGLD+Cyclical", "ConstantSGD", "SGFS",
            "AveragedSGD", "SGHMC", "SGNHT", "UnderdampedLangevin", "ContourSGLD", "MALA", "AMAGOLD")


def sample(workload: Workload, step: pm.step_methods.compound.BlockedStep, draws: int) -> None:
    """One pm.sample call; raises if the chain diverged."""
    with workload.model, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # e.g. SGHMC's noise warning: speed only here
        idata = pm.sample(step=step, draws=draws, tune=0, chains=1, cores=1, progressbar=False,
                          random_seed=1, compute_convergence_checks=False)
    if idata.sample_stats["diverging"].any():
        raise RuntimeError(f"{workload.name}: pymc_sgd {type(step).__name__} diverged; reduce the step size.")


def run_baseline(workload: Workload, n_updates: int) -> None:
    """One hand-written run; raises if it diverged."""
    w = workload.baseline(np.random.default_rng(1), n_updates)
    if not np.all(np.isfinite(w)):
        raise RuntimeError(f"{workload.name}: hand-written SGLD diverged; reduce the step size.")


@numba.njit
def gradient_only(model, w, rng, n_updates, n_rows, batch_size):
    """The compiled model gradient alone, at fresh batches (what the samplers' loops call)."""
    scale, grad = np.full(1, n_rows / batch_size), np.empty(w.shape[0])
    total = 0.0
    for _ in range(n_updates):
        total += gradient_into(model, w, rng.integers(0, n_rows, size=batch_size), scale, grad)[0]
    return total


def measure_gradient(workload: Workload, n_updates: int) -> float:
    """us per call of the pytensor gradient with its index draw, at the model's initial point."""
    est = cached_estimator(workload.model)
    w = np.zeros(est.dim)
    gradient_only(est.kernel, w, np.random.default_rng(1), 10, est.n_rows, workload.batch_size)
    seconds = best_of(lambda: gradient_only(est.kernel, w, np.random.default_rng(1), n_updates,
                                            est.n_rows, workload.batch_size))
    return 1e6 * seconds / n_updates


def measure(workload: Workload, draws: int, sampler: str = "SGLD") -> tuple[float, float, float]:
    """(pymc_sgd us/update, hand-written SGLD us/update, compile seconds)."""
    n_updates = draws * STEPS_PER_DRAW
    start = time.perf_counter()
    with workload.model:
        step = make_step(workload, sampler)
    sample(workload, step, draws=2)
    compile_s = time.perf_counter() - start
    run_baseline(workload, STEPS_PER_DRAW)
    pymc_s = best_of(lambda: sample(workload, step, draws))
    hand_s = best_of(lambda: run_baseline(workload, n_updates))
    return 1e6 * pymc_s / n_updates, 1e6 * hand_s / n_updates, compile_s


def workload_parser(description: str) -> argparse.ArgumentParser:
    """Command line shared by the benchmarks on workloads A and B (--draws, --workload)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--draws", type=int, default=300,
                        help=f"recorded draws per pm.sample call ({STEPS_PER_DRAW} updates each)")
    parser.add_argument("--workload", choices=["A", "B", "all"], default="all")
    return parser


def selected_workloads(args: argparse.Namespace) -> list[str]:
    logging.getLogger("pymc").setLevel(logging.ERROR)
    return list(WORKLOADS) if args.workload == "all" else [args.workload]


def main() -> None:
    parser = workload_parser(__doc__.splitlines()[0])
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    args = parser.parse_args()
    names = selected_workloads(args)
    print(f"{'workload':<30} {'sampler':<20} {'pymc_sgd us/upd':>16} {'hand us/upd':>12} {'ratio':>7} "
          f"{'gradient us':>12} {'compile s':>10}")
    for name in names:
        workload = WORKLOADS[name]()
        for sampler in args.samplers:
            pymc_us, hand_us, compile_s = measure(workload, args.draws, sampler)
            gradient_us = measure_gradient(workload, args.draws * STEPS_PER_DRAW)
            print(f"{workload.name:<30} {sampler:<20} {pymc_us:>16.3f} {hand_us:>12.3f} "
                  f"{pymc_us / hand_us:>7.2f} {gradient_us:>12.3f} {compile_s:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
