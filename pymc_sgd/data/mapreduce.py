"""Full-data passes as map-reduce over row ranges: in process, chunk by chunk from disk, or on Dask.

Every full-data quantity the library needs is a sum over rows plus a prior term,

    parts(w) = [log p(w), sum_i log p(x_i | w), grad log p(w), grad sum_i log p(x_i | w)]   (2 + 2d),

so it splits over row ranges [a, b): map each range to the model's compiled ``full_fn`` on those rows,
reduce by adding the likelihood parts (the prior's are taken once). ``full_data_parts`` picks where:

- small in-memory data (at most ``PIECE_ROWS`` rows): one call of the compiled model, rows in place;
- larger data: pieces of ``PIECE_ROWS`` rows in turn (views of in-memory arrays; memory-mapped files
  read with ``os.preadv`` one piece ahead by a reader thread), so the model's temporaries stay
  ``PIECE_ROWS`` long and a file is read once, sequentially, never mapped whole;
- ``client=`` a dask.distributed Client, or every pass inside ``with full_data_on(client):`` (the steps'
  warm-up, control-variate centre and the diagnostics included) when all per-row data is on disk: the
  pieces as tasks on its workers, which read their rows from the same files (only the model's pytensor function, once per worker, the point and file names travel).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
import weakref
from typing import Any

import numpy as np

from ..kernels.model import full_parts_into
from .chunks import MemoryRows, row_readers
from .ondisk import DiskArray

PIECE_ROWS = 1 << 18
_DEFAULT_CLIENT: list = [None]  # set by full_data_on


@contextmanager
def full_data_on(client: Any) -> Iterator[Any]:
    """Within the block, every full-data pass over data on disk runs on ``client``'s workers (a
    dask.distributed Client), e.g. the warm-up's of ``pm.sample(step=..., cores=1)``. Worker processes of
    ``cores > 1`` do not see it; data in memory stays in process.

    Examples
    --------
    >>> with full_data_on(None):   # no client: in process, as outside the block
    ...     pass
    """
    previous, _DEFAULT_CLIENT[0] = _DEFAULT_CLIENT[0], client
    try:
        yield client
    finally:
        _DEFAULT_CLIENT[0] = previous


def _pieces(n: int, rows: int) -> list[tuple[int, int]]:
    return [(start, min(start + rows, n)) for start in range(0, n, rows)]


def _split(est) -> tuple[list[DiskArray | MemoryRows], tuple[np.ndarray, ...]]:
    """Readers of the per-row arrays, and the arrays read whole (held values of other blocks, coordinate masks)."""
    rows = len(est.row_arrays)
    return row_readers(est.data[:rows]), tuple(est.data[rows:])


def _piece(readers: list, start: int, stop: int) -> list[np.ndarray]:
    """Rows start .. stop of every per-row array: a view in memory, a read from a file."""
    return [r.array[start:stop] if isinstance(r, MemoryRows) else r.read(start, stop) for r in readers]


def _parts(full_fn: Any, w: np.ndarray, data: list[np.ndarray], fixed: tuple) -> np.ndarray:
    """``full_fn`` (the compiled function, or the pytensor Function on a worker) as one parts vector; NaN where
    the model raises (as the kernels' C function gives), which the callers treat as a failed evaluation."""
    try:
        prior, grad_prior, loglik, grad_loglik = full_fn(w, *data, *fixed)
    except (ArithmeticError, ValueError, IndexError):
        return np.full(2 + 2 * len(w), np.nan)
    return np.concatenate([[float(prior), float(loglik)], grad_prior, grad_loglik])


def _reduce(pieces: list[np.ndarray], d: int) -> np.ndarray:
    """Prior parts from the first piece, likelihood parts summed."""
    total = pieces[0].copy()
    total[1] = sum(p[1] for p in pieces)
    total[2 + d:] = np.sum([p[2 + d:] for p in pieces], axis=0)
    return total


def _piece_parts(full_fn: Any, w: np.ndarray, readers: list, fixed: tuple, start: int, stop: int) -> np.ndarray:
    """One map task (also on a Dask worker): the parts over rows start .. stop. Arrays are re-aligned
    (Dask may deliver them as unaligned views of its message buffers, which pytensor refuses)."""
    w, fixed = np.require(w, requirements="CA"), tuple(np.require(a, requirements="CA") for a in fixed)
    return _parts(full_fn, w, _piece(readers, start, stop), fixed)


def full_data_parts(est, w: np.ndarray, client: Any = None, piece_rows: int = PIECE_ROWS) -> np.ndarray:
    """``[log p(w), sum_i log p(x_i | w), grad log p(w), grad sum_i log p(x_i | w)]`` over all n rows of a
    compiled estimator (``pymc_sgd.gradients.ModelEstimator``), computed where its data lives (module
    docstring); ``client``: a dask.distributed Client to spread the pieces over its workers.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> from pymc_sgd import build_estimator
    >>> with pm.Model() as model:
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=np.arange(5.0))
    >>> est = build_estimator(model)
    >>> in_pieces = full_data_parts(est, np.zeros(1), piece_rows=2)   # rows 0-1, 2-3, 4
    >>> np.allclose(in_pieces, full_data_parts(est, np.zeros(1)))
    True
    >>> float(in_pieces[3])   # d/dmu sum_i log N(x_i | mu, 1) at mu = 0
    10.0
    """
    w = np.asarray(w, dtype=np.float64)
    readers, fixed = _split(est)
    if client is None and readers and all(isinstance(r, DiskArray) for r in readers):
        client = _DEFAULT_CLIENT[0]
    if client is not None:
        return _dask_parts(client, est, w, readers, fixed, piece_rows)
    on_disk = any(isinstance(r, DiskArray) for r in readers)
    if est.n_rows <= piece_rows and not on_disk or not readers:
        return full_parts_into(est.kernel, w, np.empty(2 * est.dim + 2))
    pieces = _pieces(est.n_rows, piece_rows)
    if not on_disk:
        return _reduce([_piece_parts(est.full_fn, w, readers, fixed, a, b) for a, b in pieces], est.dim)
    results = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pymc_sgd-pass") as pool:
        ahead = pool.submit(_piece, readers, *pieces[0])
        for k in range(len(pieces)):
            data = ahead.result()
            if k + 1 < len(pieces):
                ahead = pool.submit(_piece, readers, *pieces[k + 1])
            results.append(_parts(est.full_fn, w, data, fixed))
    return _reduce(results, est.dim)


def _dask_parts(client: Any, est, w: np.ndarray, readers: list, fixed: tuple, piece_rows: int) -> np.ndarray:
    in_memory = [name for name, r in zip(est.data_names, readers) if isinstance(r, MemoryRows)]
    if in_memory:
        raise ValueError(f"A full-data pass on Dask reads the rows from files the workers open, but {in_memory} "
                         "are in memory. Keep them on disk: pymc_sgd.Data(name, np.load(path, mmap_mode='r')).")
    function = _scattered(client, est.full_function)
    tasks = [client.submit(_piece_parts, function, w, readers, fixed, a, b, pure=False)
             for a, b in _pieces(est.n_rows, piece_rows)]
    return _reduce(client.gather(tasks), est.dim)


_SCATTERED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # client -> {id(function): (function, future)}


def _scattered(client: Any, function: Any) -> Any:
    """The model's function on every worker of ``client``, sent the first time only (a pass of the warm-up
    inside ``full_data_on`` would otherwise ship and recompile it on every worker each time)."""
    sent = _SCATTERED.setdefault(client, {})
    if id(function) not in sent or sent[id(function)][0] is not function:
        sent[id(function)] = (function, client.scatter(function, broadcast=True, hash=False))
    return sent[id(function)][1]


def full_potential_and_grad(est, w: np.ndarray, client: Any = None) -> tuple[float, np.ndarray]:
    """Exact U(w) and grad U(w) over all rows (``full_data_parts``); NaN where the model raises."""
    d = est.dim
    parts = full_data_parts(est, w, client)
    return -(parts[0] + parts[1]), -(parts[2:d + 2] + parts[d + 2:])
