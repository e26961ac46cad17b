"""One BLAS thread per chain when pm.sample forks its chains into worker processes.

The full-data passes of the warm-up (and of a control variate's centre) call BLAS through the model's
compiled graph (e.g. ``X @ beta`` over 2^18 rows at a time), and OpenBLAS starts one thread per core in
every process. With ``pm.sample(cores=2)`` on 2 cores that is 4 spinning threads on 2 cores: measured on
the 1,000-group logistic GLM with 1e6 rows, each chain's warm-up took 182 s in parallel against 66 s with
one thread a worker. PyMC's ``blas_cores="auto"`` asks for as many BLAS threads in all as ``cores``, i.e.
one per worker, but applies it to spawned workers only (pymc-devs/pymc#8044: touching an OpenMP runtime in
a forked child crashed them, #7354). So in a forked chain worker of pm.sample (PyMC names them
``worker_chain_<c>``) the step limits the BLAS libraries that run their own pthreads pool, which a forked
child re-creates (OpenBLAS's fork handlers); never one on OpenMP or MKL, never the main process, never a
spawned worker (PyMC has applied ``blas_cores`` there, the user's choice included; a worker spawned from an
interactive session, whose main module is not re-run, looks forked and gets one thread too).
"""

from __future__ import annotations

import multiprocessing
import sys

from threadpoolctl import ThreadpoolController


def one_blas_thread_in_a_worker() -> None:
    """In a forked chain worker of pm.sample, limit pthreads BLAS pools to one thread (module docstring)."""
    spawned = getattr(sys.modules.get("__main__"), "__name__", "") == "__mp_main__"  # its main module re-run
    if spawned or not multiprocessing.current_process().name.startswith("worker_chain_"):
        return  # the main process, another library's worker, or a spawned worker
    ThreadpoolController().select(user_api="blas").select(threading_layer="pthreads").limit(limits=1)
