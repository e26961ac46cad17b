"""Scale-out: data larger than memory, chains on Dask, and the full-data pass on Dask, in one run.

Workload: logistic regression, y_i ~ Bernoulli(logit^-1(x_i . beta)), x_i ~ N(0, I_3), beta ~ N(0, 2^2),
n = ``--rows`` (1e8 by default: X float64 (n, 3) and y int64 (n,), 3.2 GB), written chunk by chunk
as two ``.npy`` files in ``--dir``, rows in random order. Each part runs in its own process:

1. ``memory``: the arrays loaded into memory; ``SGLD(batch_size=B)`` on defaults (batching with
   replacement), one chain through ``pm.sample``.
2. ``disk``: the same files memory-mapped (``pymc_sgd.Data(name, np.load(path, mmap_mode="r"))``), the
   same step on defaults (which streams shuffled chunks), the same seed, in a cgroup whose memory
   limit (``--limit-gb``, below the data's size; page cache included) forbids holding the data.
   Reported: updates per second while sampling (the updates of the ``--draws`` draws over the wall time
   from the end of tuning to the end of ``pm.sample``) against part 1, and memory: the process's peak
   resident set, its anonymous and file-backed resident memory at the end, and the cgroup's peak usage
   (page cache included), beside the shuffled-chunk buffers' size.
3. ``chains``: 2 chains of the disk model, ``pymc_sgd.sample_distributed`` on a LocalCluster of 2
   worker processes against ``pm.sample(chains=2, cores=2)`` (both converted by ``pymc_sgd.to_inference_data``),
   wall time of each (second run of each, so compilation is cached on disk for both).
4. ``pass``: one full-data gradient (``pymc_sgd.data.mapreduce.full_data_parts``) over all n rows read
   from disk, in process and on the 2-worker LocalCluster (best of 3 after a warm-up call): seconds
   and time per row.

Run: ``.venv/bin/python benchmarks/scale_out.py [--rows 100000000] [--dir /tmp/pymc_sgd_scale_out]
[--limit-gb 1.5] [--batch-size 1000] [--parts memory disk chains pass]``. The data files are kept
for the next run (``--fresh`` rewrites them). Without a writable cgroup v1 memory controller the
disk part runs unlimited and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

BETA = np.array([0.5, -1.0, 0.3])
WRITE_ROWS = 1 << 22
CGROUP_NAME = "pymc_sgd_scale_out"


def write_data(directory: Path, n: int, seed: int = 0) -> None:
    """X (n, 3) float64 and y (n,) int64 as .npy files, written 4M rows at a time."""
    directory.mkdir(parents=True, exist_ok=True)
    X = np.lib.format.open_memmap(directory / "X.npy", mode="w+", dtype=np.float64, shape=(n, 3))
    y = np.lib.format.open_memmap(directory / "y.npy", mode="w+", dtype=np.int64, shape=(n,))
    rng = np.random.default_rng(seed)
    for start in range(0, n, WRITE_ROWS):
        stop = min(start + WRITE_ROWS, n)
        x = rng.standard_normal((stop - start, 3))
        X[start:stop] = x
        y[start:stop] = rng.random(stop - start) < 1.0 / (1.0 + np.exp(-x @ BETA))
    X.flush()
    y.flush()
    del X, y
    (directory / "rows.txt").write_text(str(n))


def model_factory(directory: str, in_memory: bool = False):
    """The benchmark's model on the files in ``directory`` (memory-mapped, or loaded)."""
    import pymc as pm

    import pymc_sgd

    mode = None if in_memory else "r"
    X, y = np.load(Path(directory) / "X.npy", mmap_mode=mode), np.load(Path(directory) / "y.npy", mmap_mode=mode)
    with pm.Model() as model:
        Xd, yd = pymc_sgd.Data("X", X), pymc_sgd.Data("y", y)
        beta = pm.Normal("beta", 0.0, 2.0, shape=3)
        pm.Bernoulli("obs", logit_p=Xd @ beta, observed=yd)
    return model


def _sample(directory: str, in_memory: bool, batch_size: int, tune: int, draws: int) -> dict:
    import pymc as pm

    import pymc_sgd

    model = model_factory(directory, in_memory)
    with model:
        step = pymc_sgd.SGLD(batch_size=batch_size)
        marks = {}
        stop_tuning = step.stop_tuning

        def mark_sampling_start() -> None:
            stop_tuning()
            marks["sampling"] = time.perf_counter()

        step.stop_tuning = mark_sampling_start
        started = time.perf_counter()
        trace = pm.sample(tune=tune, draws=draws, step=step, chains=1, cores=1, random_seed=1, progressbar=False,
                          compute_convergence_checks=False, return_inferencedata=False)
        ended = time.perf_counter()
        idata = pymc_sgd.to_inference_data(trace, model)  # the data stays on disk (PyMC's would copy it)
    stats = idata.sample_stats
    updates = int(stats.steps_per_draw.sum())
    sampling_seconds = ended - marks["sampling"]
    buffer_bytes = 0
    if step.rows is not None:
        buffer_bytes = 2 * step.rows.capacity * sum(r.row_bytes for r in step.rows.readers) + \
            step.rows.prefetch * step.rows.chunk_rows * sum(r.row_bytes for r in step.rows.readers)
    return {"batching": int(step.batch_mode), "steps_per_draw": int(step.steps_per_draw),
            "sampling_updates": updates, "sampling_seconds": sampling_seconds,
            "updates_per_second": updates / sampling_seconds,
            "rows_per_second": updates * batch_size / sampling_seconds,
            "warmup_seconds": float(stats.warmup_time.values.ravel()[0]),
            "tuning_seconds": marks["sampling"] - started, "wall_seconds": ended - started,
            "beta_mean": idata.posterior.beta.mean(("chain", "draw")).values.tolist(),
            "beta_sd": idata.posterior.beta.std(("chain", "draw")).values.tolist(),
            "buffer_mb": buffer_bytes / 2**20, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **_resident_now()}


def _resident_now() -> dict:
    """This process's resident memory now, split into anonymous (its own) and file-backed (mapped pages of
    the data files, which the kernel reclaims under a memory limit) in MB, from /proc/self/status."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {f"{key.lower()}_mb": int(fields[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile") if key in fields}


def _chains(directory: str, batch_size: int, tune: int, draws: int) -> dict:
    import functools

    import pymc as pm
    from dask.distributed import Client, LocalCluster

    import pymc_sgd

    factory = functools.partial(model_factory, directory)
    step_factory = functools.partial(pymc_sgd.SGLD, batch_size=batch_size)
    kwargs = dict(tune=tune, draws=draws, random_seed=2, progressbar=False, compute_convergence_checks=False)
    times = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        for label in ("first", "timed"):
            started = time.perf_counter()
            pymc_sgd.sample_distributed(factory, step_factory, chains=2, client=client, **kwargs)
            times[f"dask_{label}"] = time.perf_counter() - started
    with factory() as model:
        for label in ("first", "timed"):  # converted as sample_distributed converts: the rows stay on disk
            started = time.perf_counter()
            trace = pm.sample(step=step_factory(), chains=2, cores=2, return_inferencedata=False, **kwargs)
            pymc_sgd.to_inference_data(trace, model)
            times[f"cores2_{label}"] = time.perf_counter() - started
    times["ratio_dask_to_cores2"] = times["dask_timed"] / times["cores2_timed"]
    return times


def _full_pass(directory: str) -> dict:
    from dask.distributed import Client, LocalCluster

    from pymc_sgd.data.mapreduce import full_data_parts
    from pymc_sgd.gradients import cached_estimator

    est = cached_estimator(model_factory(directory))
    w = np.zeros(est.dim)

    def best(call) -> tuple[float, np.ndarray]:
        call()  # compile / warm the workers
        times, result = [], None
        for _ in range(3):
            started = time.perf_counter()
            result = call()
            times.append(time.perf_counter() - started)
        return min(times), result

    local_seconds, local = best(lambda: full_data_parts(est, w))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        dask_seconds, distributed = best(lambda: full_data_parts(est, w, client=client))
    return {"rows": est.n_rows, "in_process_seconds": local_seconds, "dask_seconds": dask_seconds,
            "in_process_ns_per_row": 1e9 * local_seconds / est.n_rows, "dask_ns_per_row": 1e9 * dask_seconds / est.n_rows,
            "ratio_dask_to_in_process": dask_seconds / local_seconds,
            "max_abs_difference": float(np.max(np.abs(local - distributed)))}


def _memory_cgroup(limit_bytes: int) -> Path | None:
    """A child of this process's cgroup v1 memory cgroup with the limit, or None when not writable."""
    try:
        line = next(entry for entry in Path("/proc/self/cgroup").read_text().splitlines()
                    if entry.split(":")[1] == "memory")
        group = Path("/sys/fs/cgroup/memory") / line.split(":", 2)[2].lstrip("/") / CGROUP_NAME
        group.mkdir(exist_ok=True)
        (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
        (group / "memory.max_usage_in_bytes").write_text("0")
        return group
    except (OSError, StopIteration):
        return None


def evict_from_page_cache(directory: Path) -> None:
    """Drop the data files' pages from the page cache, so that a part reads them from disk (pages cached by the
    process that wrote them would be charged to its cgroup, not to the limited one)."""
    for name in ("X.npy", "y.npy"):
        descriptor = os.open(directory / name, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def run_part(part: str, args: argparse.Namespace, group: Path | None = None) -> dict:
    """Run one part in a fresh process (inside ``group`` when given), the data not cached; its JSON result."""
    evict_from_page_cache(args.dir)
    command = [sys.executable, __file__, "--run", part, "--dir", str(args.dir), "--batch-size", str(args.batch_size),
               "--tune", str(args.tune), "--draws", str(args.draws)]

    def enter_group() -> None:
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=enter_group)
    if done.returncode != 0:
        raise RuntimeError(f"part {part} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if group is not None:
        result["cgroup_limit_mb"] = int((group / "memory.limit_in_bytes").read_text()) / 2**20
        result["cgroup_peak_mb"] = int((group / "memory.max_usage_in_bytes").read_text()) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=float, default=1e8)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pymc_sgd_scale_out"))
    parser.add_argument("--limit-gb", type=float, default=1.5)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--draws", type=int, default=5000)
    parser.add_argument("--parts", nargs="+", default=["memory", "disk", "chains", "pass"])
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        warnings.simplefilter("ignore")
        runner = {"memory": lambda: _sample(str(args.dir), True, args.batch_size, args.tune, args.draws),
                  "disk": lambda: _sample(str(args.dir), False, args.batch_size, args.tune, args.draws),
                  "chains": lambda: _chains(str(args.dir), args.batch_size, args.tune, args.draws),
                  "pass": lambda: _full_pass(str(args.dir))}[args.run]
        print(json.dumps(runner()))
        return
    n = int(args.rows)
    marker = args.dir / "rows.txt"
    if args.fresh or not marker.exists() or int(marker.read_text()) != n:
        started = time.perf_counter()
        write_data(args.dir, n)
        print(f"wrote {n:.3g} rows to {args.dir} in {time.perf_counter() - started:.1f} s")
    data_mb = (n * 3 * 8 + n * 8) / 2**20
    print(f"data: {data_mb:.0f} MB on disk; batch size {args.batch_size}; tune {args.tune}, draws {args.draws}")
    results = {}
    for part in args.parts:
        group = _memory_cgroup(int(args.limit_gb * 2**30)) if part == "disk" else None
        if part == "disk" and group is None:
            print("no writable cgroup v1 memory controller: the disk part runs without a memory limit")
        results[part] = run_part(part, args, group)
        print(part, json.dumps(results[part], indent=1))
    if "memory" in results and "disk" in results:
        ratio = results["disk"]["updates_per_second"] / results["memory"]["updates_per_second"]
        print(f"out-of-core / in-memory updates per second: {ratio:.2f} (target >= 0.7)")


if __name__ == "__main__":
    main()
