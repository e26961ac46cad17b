"""How SGLD's cost scales with n, B and d; peak memory with 4 chains; compile time cold and warm.

1. Per-update cost through pm.sample (throughput.py's method, steps_per_draw = 1000) on the
   logistic workload A at n = 1e4 ... 1e7 (d = 10, B = 100): it should be flat in n (each
   update reads B random rows; the data are never copied). Then n = 1e5 with B = 10 ... 1000
   and with d = 5 ... 100: it should grow about linearly. The hand-written kernel runs the
   same updates for the ratio.
2. Peak resident memory (ru_maxrss of a fresh process and its children) of pm.sample on A
   with 1 chain and with 4 chains (cores = 2, PyMC's worker processes), against the size of
   the data: sampling must not copy the data per chain or per draw, so 4 chains on 2 cores
   cost about one extra process image, not 4 data copies per process.
3. Compile time of a step's first pm.sample on A in a fresh process with empty pytensor and
   numba caches (cold), then again in another fresh process with the caches the first left
   behind (warm): pytensor caches its compiled graph functions on disk; our update loops take
   the model's gradient as an argument and are compiled per process.

Run: ``.venv/bin/python benchmarks/scaling.py [--max-n 10000000] [--draws 100]``
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from throughput import Workload, logistic_workload, measure

HERE = Path(__file__).parent

CHILD = """
import logging, resource, sys, time
sys.path.insert(0, {here!r})
import pymc as pm, pymc_sgd
from throughput import logistic_workload
logging.getLogger("pymc").setLevel(logging.ERROR)
workload = logistic_workload()
start = time.perf_counter()
with workload.model:
    step = pymc_sgd.SGLD(batch_size=workload.batch_size, step_size=workload.step_size, steps_per_draw=1000)
    pm.sample(step=step, draws={draws}, tune=0, chains={chains}, cores={cores}, progressbar=False,
              random_seed=1, compute_convergence_checks=False)
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
data_mb = sum(a.nbytes for a in pymc_sgd.gradients.cached_estimator(workload.model).data) / 2**20
print(seconds, rss / 1024, data_mb)
"""


def child(draws: int, chains: int, cores: int, env: dict | None = None) -> tuple[float, float, float]:
    """(seconds of the pm.sample call incl. compile, peak RSS MB of process + children, data MB)."""
    code = CHILD.format(here=str(HERE), draws=draws, chains=chains, cores=cores)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, check=True)
    seconds, rss, data_mb = map(float, result.stdout.split()[-3:])
    return seconds, rss, data_mb


def per_update_table(workloads: list[Workload], draws: int) -> None:
    print(f"{'workload':<34} {'pymc_sgd us/upd':>16} {'hand us/upd':>12} {'ratio':>7}")
    for workload in workloads:
        pymc_us, hand_us, _ = measure(workload, draws)
        print(f"{workload.name:<34} {pymc_us:>16.3f} {hand_us:>12.3f} {pymc_us / hand_us:>7.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=int, default=10_000_000)
    parser.add_argument("--draws", type=int, default=100)
    args = parser.parse_args()
    logging.getLogger("pymc").setLevel(logging.ERROR)

    print("1. per-update cost of SGLD through pm.sample", flush=True)
    sizes = [n for n in (10_000, 100_000, 1_000_000, 10_000_000) if n <= args.max_n]
    per_update_table([logistic_workload(n=n) for n in sizes], args.draws)
    per_update_table([logistic_workload(batch_size=b) for b in (10, 100, 1000)], args.draws)
    per_update_table([logistic_workload(d=d) for d in (5, 10, 50, 100)], args.draws)

    print("\n2. peak RSS, workload A, 1000 draws x 1000 updates per chain (fresh process each)", flush=True)
    for chains, cores in ((1, 1), (4, 1), (4, 2)):
        seconds, rss, data_mb = child(draws=1000, chains=chains, cores=cores)
        print(f"chains={chains} cores={cores}: peak RSS {rss:7.0f} MB (process + children), data {data_mb:.1f} MB, "
              f"{seconds:.1f} s", flush=True)

    print("\n3. first pm.sample of an SGLD step on A (2 draws) in a fresh process", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        env = {"PYTENSOR_FLAGS": f"base_compiledir={cache}/pytensor", "NUMBA_CACHE_DIR": f"{cache}/numba"}
        for label in ("cold caches", "warm caches"):
            seconds, _, _ = child(draws=2, chains=1, cores=1, env=env)
            print(f"{label}: {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
