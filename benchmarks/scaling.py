"""How SGLD's cost scales with n, B and d; peak memory with 4 chains; compile time cold and warm.

1. Per-update cost through pm.sample (throughput.py's method, steps_per_draw = 1000) on the
   logistic workload A at n = 1e4 ... 1e7 (d = 10, B = 100): it should be flat in n (each
   update reads B random rows; the data are never copied). Then n = 1e5 with B = 10 ... 1000
   and with d = 5 ... 100: it should grow about linearly. The hand-written kernel runs the
   same updates for the ratio.
2. Peak resident memory of the process tree (the main process and PyMC's workers, summed
   from /proc every 50 ms) while pm.sample runs on A with 1 and 4 chains, after a warm-up
   call that compiles everything (compilers are child processes; ru_maxrss would count them).
   Sampling must not copy the data per chain or per draw: 4 chains in one process cost what
   1 does, and with cores = 2 each worker is about one process image.
3. Compile time of a step's first pm.sample on A in a fresh process with empty pytensor and
   numba caches (cold), then again in another fresh process with the caches the first left
   behind (warm): pytensor caches its compiled graph functions on disk; our update loops take
   the model's gradient as an argument and are compiled per process.

Run: ``.venv/bin/python benchmarks/scaling.py [--max-n 10000000] [--draws 100] [--parts 1 2 3]``
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
import logging, os, sys, threading, time
sys.path.insert(0, {here!r})
import pymc as pm, pymc_sgd
from throughput import logistic_workload
logging.getLogger("pymc").setLevel(logging.ERROR)


def tree_rss_mb(root):
    # resident memory of root and all its descendants, from /proc (Linux)
    parents = {{}}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{{entry}}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    tree, frontier = {{root}}, [root]
    while frontier:
        kids = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in tree]
        tree.update(kids)
        frontier = kids
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{{pid}}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total / 2**20


def run(draws, chains, cores):
    with workload.model:
        step = pymc_sgd.SGLD(batch_size=workload.batch_size, step_size=workload.step_size, steps_per_draw=1000)
        pm.sample(step=step, draws=draws, tune=0, chains=chains, cores=cores, progressbar=False,
                  random_seed=1, compute_convergence_checks=False)


workload = logistic_workload()
start = time.perf_counter()
run(2, 1, 1)  # builds and compiles everything (compilers are child processes too)
compile_s = time.perf_counter() - start
before = tree_rss_mb(os.getpid())
peak = [before]
done = threading.Event()


def monitor():
    while not done.is_set():
        peak[0] = max(peak[0], tree_rss_mb(os.getpid()))
        time.sleep(0.05)


thread = threading.Thread(target=monitor)
thread.start()
run({draws}, {chains}, {cores})
done.set()
thread.join()
data_mb = sum(a.nbytes for a in pymc_sgd.gradients.cached_estimator(workload.model).data) / 2**20
print(compile_s, before, peak[0], data_mb)
"""


def child(draws: int, chains: int, cores: int, env: dict | None = None) -> tuple[float, float, float, float]:
    """Fresh process: (first pm.sample incl. compile s, tree RSS MB before sampling, peak tree RSS MB
    while sampling ``draws`` x ``chains``, data MB)."""
    code = CHILD.format(here=str(HERE), draws=draws, chains=chains, cores=cores)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, check=True)
    compile_s, before, peak, data_mb = map(float, result.stdout.split()[-4:])
    return compile_s, before, peak, data_mb


def per_update_table(workloads: list[Workload], draws: int) -> None:
    print(f"{'workload':<34} {'pymc_sgd us/upd':>16} {'hand us/upd':>12} {'ratio':>7}")
    for workload in workloads:
        pymc_us, hand_us, _ = measure(workload, draws)
        print(f"{workload.name:<34} {pymc_us:>16.3f} {hand_us:>12.3f} {pymc_us / hand_us:>7.2f}", flush=True)


def memory_table() -> None:
    print("\n2. resident memory of the process tree (main + PyMC workers), workload A, 200 draws x 1000 "
          "updates per chain, after a warm-up pm.sample (fresh process each)", flush=True)
    for chains, cores in ((1, 1), (4, 1), (4, 2)):
        _, before, peak, data_mb = child(draws=200, chains=chains, cores=cores)
        print(f"chains={chains} cores={cores}: {before:6.0f} MB before sampling, peak {peak:6.0f} MB; "
              f"data {data_mb:.1f} MB", flush=True)


def compile_table() -> None:
    print("\n3. first pm.sample of an SGLD step on A (2 draws) in a fresh process", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        env = {"PYTENSOR_FLAGS": f"base_compiledir={cache}/pytensor", "NUMBA_CACHE_DIR": f"{cache}/numba"}
        for label in ("cold caches", "warm caches"):
            compile_s, *_ = child(draws=2, chains=1, cores=1, env=env)
            print(f"{label}: {compile_s:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=int, default=10_000_000)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--parts", type=int, nargs="+", choices=[1, 2, 3], default=[1, 2, 3])
    args = parser.parse_args()
    logging.getLogger("pymc").setLevel(logging.ERROR)

    if 1 in args.parts:
        print("1. per-update cost of SGLD through pm.sample", flush=True)
        sizes = [n for n in (10_000, 100_000, 1_000_000, 10_000_000) if n <= args.max_n]
        per_update_table([logistic_workload(n=n) for n in sizes], args.draws)
        per_update_table([logistic_workload(batch_size=b) for b in (10, 100, 1000)], args.draws)
        per_update_table([logistic_workload(d=d) for d in (5, 10, 50, 100)], args.draws)
    if 2 in args.parts:
        memory_table()
    if 3 in args.parts:
        compile_table()


if __name__ == "__main__":
    main()
