"""Throughput of pymc_sgd's SGLD against BlackJAX's SGLD on the same workloads, in one run.

Workloads are throughput.py's (A: logistic regression, n = 100_000, d = 10, B = 100, h = 1e-5;
B: x_i ~ N(a, sigma), a ~ Flat, sigma ~ HalfFlat, n = 200, B = 10, h = 1e-4), with the same
data arrays: they are read from the PyMC model through pymc_sgd's cached estimator.

pymc_sgd and the hand-written numba kernel are timed by throughput's ``measure`` (us per
update of the whole ``pm.sample`` call, steps_per_draw = 1000). BlackJAX runs in float64 on
the same U = -log p(w) - sum_i log p(x_i | w), written by hand in jax.numpy in PyMC's
unconstrained space (workload B samples (a, s = log sigma) with log-Jacobian s), through
``blackjax.sgmcmc.gradients.grad_estimator`` and ``blackjax.sgld``. One jitted call runs
1000 updates in a ``jax.lax.scan`` that draws each minibatch's indices with
``jax.random.randint`` (with replacement) and gathers the rows from the device arrays, as
pymc_sgd does; ``draws`` chained calls make one repetition. The first call (tracing and XLA
compilation, plus 1000 updates) is reported as "bj compile s"; the time is the best of 3
repetitions, each ending with ``block_until_ready``. Ratios < 1 mean faster than BlackJAX.

Run: ``.venv/bin/python benchmarks/vs_blackjax.py [--draws 300] [--workload {A,B,all}]``
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pymc_sgd.gradients import cached_estimator
from throughput import STEPS_PER_DRAW, WORKLOADS, Workload, best_of, measure, selected_workloads, workload_parser

try:
    import blackjax
    import jax
    import jax.numpy as jnp
    from jax.scipy.stats import norm
except ImportError:
    print('vs_blackjax.py needs jax and blackjax: pip install -e ".[bench]"')
    sys.exit(0)

jax.config.update("jax_enable_x64", True)

Rows = tuple[jax.Array, ...]  # one row of each per-row data array, observed values first


def logistic_logprior(beta: jax.Array) -> jax.Array:
    """log N(beta | 0, I)."""
    return jnp.sum(norm.logpdf(beta))


def logistic_loglik(beta: jax.Array, row: Rows) -> jax.Array:
    """log Bernoulli(y | logit_p = x . beta) = y z - log(1 + e^z)."""
    y, x = row
    z = jnp.dot(x, beta)
    return y * z - jnp.logaddexp(0.0, z)


def normal_logprior(w: jax.Array) -> jax.Array:
    """Flat a, HalfFlat sigma = e^s: only the log-Jacobian s remains."""
    return w[1]


def normal_loglik(w: jax.Array, row: Rows) -> jax.Array:
    """log N(x | a, e^s)."""
    (x,) = row
    return norm.logpdf(x, w[0], jnp.exp(w[1]))


@dataclass(frozen=True)
class Target:
    """Hand-written log prior and per-row log-likelihood of a workload's PyMC model."""

    logprior: Callable[[jax.Array], jax.Array]
    loglik: Callable[[jax.Array, Rows], jax.Array]


TARGETS = {"A": Target(logistic_logprior, logistic_loglik), "B": Target(normal_logprior, normal_loglik)}

State = tuple[jax.Array, jax.Array]  # (PRNG key, position)


def blackjax_runner(workload: Workload, target: Target, data: Rows) -> Callable[[State], State]:
    """Jitted function advancing (key, position) by STEPS_PER_DRAW BlackJAX SGLD updates.

    BlackJAX's overdamped_langevin does w <- w + step_size * grad log p + sqrt(2 step_size) xi.
    With U = -log p that is our w <- w - h grad U + sqrt(2h) xi, so step_size = h.
    """
    n = data[0].shape[0]
    grad_fn = blackjax.sgmcmc.gradients.grad_estimator(target.logprior, target.loglik, n)
    sgld = blackjax.sgld(grad_fn)

    def update(position: jax.Array, key: jax.Array) -> tuple[jax.Array, None]:
        idx_key, noise_key = jax.random.split(key)
        idx = jax.random.randint(idx_key, (workload.batch_size,), 0, n)
        minibatch = tuple(array[idx] for array in data)
        return sgld.step(noise_key, position, minibatch, workload.step_size), None

    @jax.jit
    def run(state: State, data: Rows) -> State:
        key, position = state
        keys = jax.random.split(key, STEPS_PER_DRAW + 1)
        position, _ = jax.lax.scan(update, position, keys[1:])
        return keys[0], position

    return lambda state: run(state, data)


def run_chain(workload: Workload, runner: Callable[[State], State], state: State, calls: int) -> State:
    """`calls` chained runner calls; raises if the final position is not finite."""
    for _ in range(calls):
        state = runner(state)
    position = state[1].block_until_ready()
    if not np.all(np.isfinite(np.asarray(position))):
        raise RuntimeError(f"{workload.name}: BlackJAX SGLD diverged; reduce the step size.")
    return state


def measure_blackjax(workload: Workload, target: Target, draws: int) -> tuple[float, float]:
    """(BlackJAX us/update, compile seconds), starting at the model's initial point."""
    data = tuple(jnp.asarray(array, dtype=jnp.float64) for array in cached_estimator(workload.model).data)
    start_point = np.concatenate([np.ravel(v) for v in workload.model.initial_point().values()])
    state = (jax.random.key(1), jnp.asarray(start_point, dtype=jnp.float64))
    runner = blackjax_runner(workload, target, data)
    start = time.perf_counter()
    state = run_chain(workload, runner, state, calls=1)
    compile_s = time.perf_counter() - start
    seconds = best_of(lambda: run_chain(workload, runner, state, draws))
    return 1e6 * seconds / (draws * STEPS_PER_DRAW), compile_s


def main() -> None:
    args = workload_parser(__doc__.splitlines()[0]).parse_args()  # --draws: also BlackJAX calls
    names = selected_workloads(args)
    print(f"{'workload':<30} {'pymc_sgd us/upd':>16} {'hand us/upd':>12} {'blackjax us/upd':>16} "
          f"{'pymc/bj':>8} {'hand/bj':>8} {'compile s':>10} {'bj compile s':>13}")
    for name in names:
        workload = WORKLOADS[name]()
        pymc_us, hand_us, compile_s = measure(workload, args.draws)
        bj_us, bj_compile_s = measure_blackjax(workload, TARGETS[name], args.draws)
        print(f"{workload.name:<30} {pymc_us:>16.3f} {hand_us:>12.3f} {bj_us:>16.3f} "
              f"{pymc_us / bj_us:>8.2f} {hand_us / bj_us:>8.2f} {compile_s:>10.1f} {bj_compile_s:>13.1f}",
              flush=True)


if __name__ == "__main__":
    main()
