"""The shuffled-chunk minibatch sampler: rows of data on disk, read in large sequential pieces.

The n rows are cut into chunks of ``chunk_rows`` consecutive rows. Each epoch visits the chunks in a
fresh random order; the next ``prefetch`` chunks are announced to the kernel (``POSIX_FADV_WILLNEED``,
so their disk reads overlap) and read by a background thread while the compiled loop runs. Before each draw the step asks for the rows the draw will use (updates x B); when the
buffer holds fewer, it is refilled: its unused rows first, then whole chunks up to ``buffer_chunks``
chunks' worth (at least the draw's need plus one chunk). Batches are drawn without replacement from
the buffer (``kernels.batching.SHUFFLED_CHUNKS``: a lazy Fisher-Yates shuffle), one epoch after the
other: every row is used once per epoch, and all rows of an epoch come before any of the next.

Unbiasedness: the chunk order is a uniform permutation and positions within the buffer are drawn
uniformly, so when chunk_rows divides n every row is equally likely to sit at any place in the stream,
P(row i in the batch of update t) = B / n, and (n / B) sum_batch grad log p(x_i | w) is unbiased for
the full-data sum at every update. (A short last chunk, n mod chunk_rows rows, shifts its rows'
probabilities by O(chunk_rows / n).)

Memory: two buffers (one read by the loop, one being filled) of max(buffer_chunks chunks, the draw's rows +
one chunk) rows each, plus ``prefetch`` chunks in flight. A draw runs in one compiled call, so its rows
(steps_per_draw x B) must all be in memory: with long thinning they, not buffer_chunks, set the size.

Extra variance: a batch comes from the K chunks in the buffer (K = buffer_chunks, or more when a draw's
rows need more), not from all n rows.
Within an epoch the batches are without replacement, as EPOCH batching in memory; what chunks add is
that consecutive batches share a buffer. For rows stored in random order nothing changes: the buffer
is a uniform sample of rows. For rows stored sorted (by time, by group, by label) the buffer's mean
gradient differs from the data's: its variance is (1 - K c / n) S_b^2 / K, S_b^2 the variance of the
chunk means of the per-row gradients, and this error persists for the K c / B updates the buffer
lasts. Shuffle the rows when writing the file, or raise buffer_chunks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..kernels.estimator import per_example_loglik_grads
from ..model_cfunc import layout
from .ondisk import DiskArray, disk_array

CHUNK_BYTES = 256 << 10  # default chunk: 256 KiB of rows (8 of them, the buffer, stay in cache: 1.9x the updates/s of 4 MiB)
BUFFER_CHUNKS = 8
PREFETCH = 16  # chunks read ahead (their reads hinted to the kernel at once: POSIX_FADV_WILLNEED)


class MemoryRows:
    """An in-memory array with ``DiskArray``'s reading interface."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.row_bytes = array[:1].nbytes

    def read_into(self, start: int, out: np.ndarray) -> np.ndarray:
        np.copyto(out, self.array[start:start + len(out)])
        return out


def row_readers(arrays: Sequence[np.ndarray]) -> list[DiskArray | MemoryRows]:
    """A reader per array: its file when it is memory-mapped, else the array itself."""
    return [disk_array(a) or MemoryRows(a) for a in arrays]


def default_chunk_rows(readers: Sequence[DiskArray | MemoryRows], batch_size: int) -> int:
    """About CHUNK_BYTES of rows, and at least one batch."""
    row_bytes = sum(r.row_bytes for r in readers) or 1
    return max(batch_size, CHUNK_BYTES // row_bytes)


class ShuffledChunks:
    """One chain's shuffled-chunk batches over the rows of ``arrays`` (see the module docstring).

    ``evaluate_address`` is the model's C function (``kernels.model``); ``rng`` orders the chunks (the
    kernel's generator draws the rows within the buffer).

    ``prepare(need)`` returns the kernel's ``(model, perm, cursor)`` for a draw that uses ``need`` rows;
    ``finish(cursor)`` checks afterwards that the draw stayed within them.
    """

    def __init__(self, arrays: Sequence[np.ndarray], fixed: Sequence[np.ndarray], evaluate_address: int,
                 rng: np.random.Generator, chunk_rows: int, buffer_chunks: int = BUFFER_CHUNKS,
                 prefetch: int = PREFETCH) -> None:
        self.readers = row_readers(arrays)
        self.fixed = tuple(fixed)  # arrays the model reads whole (a compound step's other blocks), after the rows
        self.n = int(arrays[0].shape[0])
        self.chunk_rows = int(min(chunk_rows, self.n))
        self.buffer_chunks = int(buffer_chunks)
        self.evaluate_address = evaluate_address
        self.rng = rng
        self.chunk_starts = np.arange(0, self.n, self.chunk_rows)
        self.prefetch = max(1, int(prefetch))
        self.epoch = -1  # of the last chunk scheduled
        self.last_epoch = -1  # of the buffer's last segment
        self.order: deque[int] = deque()  # chunks of the current epoch not yet asked for
        self.pending: deque[tuple[int, Future]] = deque()  # (epoch, read in progress), in stream order
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pymc_sgd-rows")
        self.capacity = 0
        self.buffers: list[list[np.ndarray]] = []
        self.rows = np.zeros(0, dtype=np.int64)  # the data row at each position of the active buffer (to inspect)
        self.perm = np.zeros(0, dtype=np.int64)
        self.cursor = np.zeros(1, dtype=np.int64)
        self.model: tuple | None = None
        self.chunk_spans: list[tuple[int, int]] = []
        self._expected = 0

    # -- reading ------------------------------------------------------------------------------
    def _read_chunk(self, chunk: int) -> tuple[np.ndarray, list[np.ndarray]]:
        start = int(self.chunk_starts[chunk])
        stop = min(start + self.chunk_rows, self.n)
        data = [r.read_into(start, np.empty((stop - start, *r.shape[1:]), dtype=r.dtype)) for r in self.readers]
        return np.arange(start, stop, dtype=np.int64), data

    def _schedule_reads(self) -> None:
        while len(self.pending) < self.prefetch:
            if not self.order:
                self.epoch += 1
                self.order.extend(self.rng.permutation(len(self.chunk_starts)).tolist())
            chunk = self.order.popleft()
            start = int(self.chunk_starts[chunk])
            for reader in self.readers:
                if isinstance(reader, DiskArray):
                    reader.will_need(start, min(start + self.chunk_rows, self.n))
            self.pending.append((self.epoch, self.pool.submit(self._read_chunk, chunk)))

    # -- the buffer ---------------------------------------------------------------------------
    def _grow(self, rows: int) -> None:
        """Two buffers (active, being filled) of ``rows`` rows each."""
        self.capacity = rows
        self.buffers = [[np.empty((rows, *r.shape[1:]), dtype=r.dtype) for r in self.readers] for _ in range(2)]

    def prepare(self, need: int) -> tuple[tuple, np.ndarray, np.ndarray]:
        """The kernel's (model, perm, cursor) for a draw that takes ``need`` rows (updates x batch size)."""
        position = int(self.cursor[0])
        left = len(self.perm) - position
        if left < need:
            self._refill(need, position)
        self._expected = int(self.cursor[0]) + need
        return self.model, self.perm, self.cursor

    def finish(self, cursor: np.ndarray) -> None:
        """After the draw: the kernel must have used exactly the rows prepare() counted on."""
        if int(cursor[0]) != self._expected:
            raise RuntimeError(f"pymc_sgd: a draw used rows up to position {int(cursor[0])} of its buffer, not "
                               f"{self._expected}; the shuffled-chunk buffer was sized wrongly. Please report this.")

    def _refill(self, need: int, position: int) -> None:
        """Unused rows first (with their segment ends), then whole chunks, a new segment where the epoch changes."""
        wanted = max(need + self.chunk_rows, self.buffer_chunks * self.chunk_rows)
        active = self.buffers[0] if self.buffers else None
        if wanted > self.capacity:
            self._grow(wanted)
        filling = self.buffers[1]
        left = self.perm[position:]
        if len(left):
            for target, source in zip(filling, active):
                np.take(source, left, axis=0, out=target[:len(left)])
        ends = [int(e) - position for e in self.cursor[1:-1] if e > position]
        rows, filled, spans = [self.rows[left]], len(left), []
        while filled + self.chunk_rows <= wanted:
            self._schedule_reads()
            epoch, future = self.pending.popleft()
            if epoch != self.last_epoch and filled:
                ends.append(filled)
            self.last_epoch = epoch
            chunk_rows, data = future.result()
            for target, block in zip(filling, data):
                target[filled:filled + len(chunk_rows)] = block
            rows.append(chunk_rows)
            spans.append((filled, filled + len(chunk_rows)))
            filled += len(chunk_rows)
        self._schedule_reads()
        self.buffers = [filling, self.buffers[0]]
        self.rows = np.concatenate(rows)
        self.chunk_spans = spans  # buffer positions of each whole chunk this refill read
        self.perm = np.arange(filled, dtype=np.int64)
        self.cursor = np.array([0, *ends, filled], dtype=np.int64)
        self.model = (self.evaluate_address, *layout([*filling, *self.fixed]))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def __del__(self) -> None:
        self.close()


def chunk_heterogeneity(chunks: ShuffledChunks, w: np.ndarray, rng: np.random.Generator,
                        rows_per_chunk: int = 256, max_chunks: int = 32) -> tuple[float, int]:
    """(T, degrees of freedom): how much more, in variance, the chunks' mean gradients differ than rows in
    random order would make them differ; T has mean 1 for rows in random order and is large for rows stored
    sorted. NaN when there are too few chunks or rows per chunk to tell.

    From m rows of each of K chunks the buffer read last (at most ``max_chunks``): chunk means g_k of
    grad log p(x_i | w), their mean g, and the pooled within-chunk covariance W (nu = K (m - 1) degrees of
    freedom, rank r). In random order Cov(g_k) = W / m, so S = sum_k m (g_k - g)^T W^+ (g_k - g) is about
    chi-square with (K - 1) r degrees of freedom; estimating W inflates its mean by nu / (nu - r - 1)
    (Hotelling), which T = S (nu - r - 1) / (nu (K - 1) r) undoes. Needs r <= nu / 4.
    """
    spans = [span for span in chunks.chunk_spans if span[1] - span[0] >= 2]
    if len(spans) > max_chunks:
        spans = [spans[k] for k in np.sort(rng.choice(len(spans), size=max_chunks, replace=False))]
    if len(spans) < 2:
        return float("nan"), 0
    m = min(rows_per_chunk, min(stop - start for start, stop in spans))
    grads = [per_example_loglik_grads(chunks.model, np.asarray(w, dtype=np.float64),
                                      np.sort(rng.choice(np.arange(start, stop), size=m, replace=False)))
             for start, stop in spans]
    means = np.array([g.mean(axis=0) for g in grads])
    nu = len(grads) * (m - 1)
    within = sum((g - g.mean(axis=0)).T @ (g - g.mean(axis=0)) for g in grads) / nu
    rank = int(np.linalg.matrix_rank(within))
    if rank == 0 or rank > nu / 4:
        return float("nan"), 0
    spread = means - means.mean(axis=0)
    statistic = m * np.einsum("ki,ij,kj->", spread, np.linalg.pinv(within), spread)
    dof = (len(grads) - 1) * rank
    return float(statistic * (nu - rank - 1) / (nu * dof)), dof
