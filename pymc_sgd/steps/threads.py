"""One BLAS thread per chain when pm.sample runs chains in worker processes.

The full-data passes of the warm-up (and of a control variate's centre) call BLAS through the model's
compiled graph (e.g. ``X @ beta`` over 2^18 rows at a time), and OpenBLAS starts one thread per core in
every process. With ``pm.sample(cores=2)`` on 2 cores that is 4 spinning threads on 2 cores: measured on
the 1,000-group logistic GLM with 1e6 rows, each chain's warm-up took 182 s in parallel against 61 s
alone. PyMC's ``blas_cores="auto"`` asks for as many BLAS threads in all as ``cores``, i.e. one per
worker, but applies it only to spawned workers (pymc-devs/pymc#8044: touching an OpenMP runtime in a
forked child crashed them, #7354). Here the limit is set in a worker for BLAS libraries on their own
pthreads pool only, which a forked child re-creates (OpenBLAS's fork handlers), never for OpenMP.
"""

from __future__ import annotations

import multiprocessing

from threadpoolctl import ThreadpoolController


def one_blas_thread_in_a_worker() -> None:
    """In a worker process of pm.sample (a chain among others running at once), limit BLAS to one thread."""
    if multiprocessing.parent_process() is None:
        return
    ThreadpoolController().select(user_api="blas", threading_layer="pthreads").limit(limits=1)
