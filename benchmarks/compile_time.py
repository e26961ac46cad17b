"""Time to the first draws in a fresh process, with cold and warm compilation caches, and the memory
of ``cores=2``: PyMC's NUTS, nutpie (where installed) and each pymc_sgd sampler on defaults.

Workloads: A (logistic regression, n = 1e5, d = 10, B = 100) and B (seed 000's normal model,
n = 200, B = 10) of benchmarks/throughput.py, and H, a hierarchical logistic GLM (n = 1e4 rows in
50 groups, non-centred, B = 100; benchmarks/time_to_accuracy.py's model).

Each measurement is a new Python process that imports, builds the model and the step, and runs
``pm.sample(draws=1, tune=1, chains=1)``; "first draw s" is the wall time from after the imports
to the end of that call (model, step, compilation, warm-up, one tuning draw and one draw), "import s"
the imports.
- cold: numba's cache (NUMBA_CACHE_DIR) and pytensor's (base_compiledir) in a new empty directory;
- warm: the same command again on the directory a previous process filled (another process has
  seen the model: the second chain of a session, a worker, a rerun of a script).
The ``cores=2`` rows run ``chains=2, cores=2`` with warm caches: the wall time against one chain on one
core, and the peak resident memory of the parent and of each worker (read from /proc while it runs).

Run: ``.venv/bin/python benchmarks/compile_time.py [--workloads A B H] [--repeats 3]`` (about 15 minutes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SAMPLERS = ("SGLD", "ConstantSGD", "SGHMC", "UnderdampedLangevin", "ReplicaExchangeSGLD")
BATCH = {"A": 100, "B": 10, "H": 100}


def build_model(workload: str):
    sys.path.insert(0, str(Path(__file__).parent))
    import throughput
    import time_to_accuracy

    if workload == "A":
        return throughput.logistic_workload().model
    if workload == "B":
        return throughput.normal_workload().model
    return time_to_accuracy.hierarchical_model(10_000)


def make_step(package, sampler: str, batch_size: int):
    """``package.<sampler>(batch_size=...)`` on defaults; None (PyMC's NUTS or nutpie) for the references."""
    if sampler in ("NUTS", "nutpie"):
        return None
    return getattr(package, sampler)(batch_size=batch_size)


class PeakMemory:
    """Peak resident set (MB) of this process and of each descendant, polled from /proc every 50 ms."""

    def __init__(self) -> None:
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    @staticmethod
    def _rss_mb(pid: int) -> float:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def _descendants(self) -> list[int]:
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        found, frontier = [], [os.getpid()]
        while frontier:
            pid = frontier.pop()
            found.append(pid)
            frontier += [child for child, parent in parents.items() if parent == pid]
        return found

    def _poll(self) -> None:
        while not self._stop.is_set():
            for pid in self._descendants():
                try:
                    self.peaks[pid] = max(self.peaks.get(pid, 0.0), self._rss_mb(pid))
                except OSError:
                    continue
            time.sleep(0.05)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        own = self.peaks.pop(os.getpid(), 0.0)
        workers = sorted(self.peaks.values(), reverse=True)
        return {"parent_mb": own, "worker_mb": workers[:2]}


def child(workload: str, sampler: str, cores: int) -> None:
    """One fresh-process measurement; prints a JSON line."""
    start = time.perf_counter()
    import logging

    import pymc as pm

    import pymc_sgd  # imported before the clock starts, as a user's script does

    logging.getLogger("pymc").setLevel(logging.ERROR)
    imported = time.perf_counter()
    memory = PeakMemory() if cores > 1 else None
    model = build_model(workload)
    with model:
        step = make_step(pymc_sgd, sampler, BATCH[workload])
        kwargs = {"nuts_sampler": "nutpie"} if sampler == "nutpie" else {"step": step}
        pm.sample(draws=1, tune=1, chains=cores, cores=cores, progressbar=False, random_seed=1,
                  compute_convergence_checks=False, **kwargs)
    result = {"import_s": imported - start, "first_s": time.perf_counter() - imported}
    if memory is not None:
        result |= memory.stop()
    print(json.dumps(result))


def run_child(cache: Path, workload: str, sampler: str, cores: int = 1) -> dict:
    env = os.environ | {"NUMBA_CACHE_DIR": str(cache / "numba"),
                        "PYTENSOR_FLAGS": f"base_compiledir={cache / 'pytensor'}"}
    out = subprocess.run([sys.executable, __file__, "--child", workload, sampler, str(cores)], env=env,
                         capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"{workload} {sampler} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", choices=list(BATCH), default=list(BATCH))
    parser.add_argument("--samplers", nargs="+", default=["NUTS", "nutpie", *SAMPLERS])
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per cell (median reported)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    samplers = [s for s in args.samplers if s != "nutpie" or importlib.util.find_spec("nutpie") is not None]
    if "nutpie" in args.samplers and "nutpie" not in samplers:
        print("nutpie is not installed (pip install -e '.[compare]'): its rows are skipped")
    print(f"{'workload':<9}{'sampler':<22}{'import s':>9}{'cold s':>8}{'warm s':>8}{'warm/NUTS':>10}")
    for workload in args.workloads:
        nuts_warm = None
        for sampler in samplers:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    cold = run_child(Path(tmp), workload, sampler)
                except RuntimeError as error:  # e.g. ConstantSGD refuses a non-centred hierarchical model
                    print(f"{workload:<9}{sampler:<22} refused: {str(error).strip().splitlines()[-1][:150]}")
                    continue
                warm = sorted(run_child(Path(tmp), workload, sampler)["first_s"] for _ in range(args.repeats))
                warm_s = warm[len(warm) // 2]
                nuts_warm = warm_s if sampler == "NUTS" else nuts_warm
                ratio = f"{warm_s / nuts_warm:>10.2f}" if nuts_warm else f"{'':>10}"
                print(f"{workload:<9}{sampler:<22}{cold['import_s']:>9.1f}{cold['first_s']:>8.1f}{warm_s:>8.1f}{ratio}",
                      flush=True)
                if sampler == "SGLD":
                    two = run_child(Path(tmp), workload, sampler, cores=2)
                    workers = ", ".join(f"{mb:.0f}" for mb in two["worker_mb"])
                    print(f"{'':<9}{'SGLD chains=2 cores=2':<22}{'':>9}{'':>8}{two['first_s']:>8.1f}"
                          f"  ({two['first_s'] / warm_s:.2f}x one chain; peak MB parent {two['parent_mb']:.0f}, "
                          f"workers {workers})", flush=True)


if __name__ == "__main__":
    main()
