"""Minibatch index samplers, all drawing from the chain's own np.random.Generator.

A sampler is a ``Batch``: its mode, a permutation array ``perm`` of 0..n-1 and a cursor ``cursor[0]`` (its
state, mutated in place and kept by the step across draws), the index buffer ``idx`` (length B) that each
``next_batch`` fills, and the likelihood scale n / B that the batch's gradient carries.

- WITH_REPLACEMENT: B iid uniform indices (the i.i.d. noise model of the Lyapunov theory).
- WITHOUT_REPLACEMENT: B distinct indices, fresh each update (seed 000's np.random.choice
  (replace=False)); noise variance shrinks by the finite-population factor (n - B)/(n - 1).
- EPOCH: shuffle (Fisher-Yates with floor(u m)), then walk the permutation B rows at a time; reshuffle when fewer than B
  rows remain (those are skipped for that epoch).
- FULL: all n rows every update (idx = 0..n-1, never touched).
- SHUFFLED_CHUNKS: rows of a buffer of chunks (``pymc_sgd.data.chunks``), each used once: ``perm`` lists
  the buffer's positions, ``cursor[0]`` the next one and ``cursor[1:]`` the ends of its segments (one per
  epoch the buffer holds). Each index is drawn uniformly from the rest of its segment and swapped into
  place (a Fisher-Yates shuffle done lazily: no pass over the buffer when it is refilled). The buffer
  holds the rows a draw needs; should it run out, the kernel starts it over and the step reports the error.

Speed: numba's scalar ``rng.integers(lo, hi)`` costs ~45 ns a call, the vectorised
``rng.integers(0, n, size=B)`` ~3 ns an index but allocates, and ``int(rng.random() * m)`` ~2 ns.
Every mode uses floor(u m), whose probabilities differ from 1/m by at most m / 2^53 (below 1e-9
relative for m < 10^7), and allocates nothing (the update loops run without reference counting,
``langevin.py``).
"""

from typing import NamedTuple

import numpy as np
from numba import njit

WITH_REPLACEMENT = 0
WITHOUT_REPLACEMENT = 1
EPOCH = 2
FULL = 3
SHUFFLED_CHUNKS = 4

MODES = {"with_replacement": WITH_REPLACEMENT, "without_replacement": WITHOUT_REPLACEMENT,
         "epoch": EPOCH, "full": FULL, "shuffled_chunks": SHUFFLED_CHUNKS}


class Batch(NamedTuple):
    """The minibatch sampler as every kernel takes it (``new_batch``).

    ``scale`` = [n / B], a 1-element array: the compiled gradient reads it in place (``kernels.model``).
    The chain's generator is not part of it: the kernels draw their noise and Metropolis tests from it too.
    """

    mode: int
    perm: np.ndarray
    cursor: np.ndarray
    idx: np.ndarray
    scale: np.ndarray


@njit(cache=True, inline="always")
def next_batch(batch, rng):
    """Fill batch.idx (length B) with the next batch of row indices."""
    mode, perm, cursor, idx = batch.mode, batch.perm, batch.cursor, batch.idx
    n = perm.shape[0]
    batch = idx.shape[0]
    if mode == WITH_REPLACEMENT:
        for j in range(batch):  # floor(u n): no allocation, so the loops can run without reference counting
            idx[j] = int(rng.random() * n)
    elif mode == WITHOUT_REPLACEMENT:
        for j in range(batch):  # partial Fisher-Yates shuffle: perm[:B] is a uniform B-subset
            k = j + int(rng.random() * (n - j))
            perm[j], perm[k] = perm[k], perm[j]
            idx[j] = perm[j]
    elif mode == EPOCH:
        if cursor[0] + batch > n:
            for j in range(n - 1, 0, -1):  # Fisher-Yates (numba's rng.shuffle takes seconds to compile)
                k = int(rng.random() * (j + 1))
                perm[j], perm[k] = perm[k], perm[j]
            cursor[0] = 0
        for j in range(batch):
            idx[j] = perm[cursor[0] + j]
        cursor[0] += batch
    elif mode == SHUFFLED_CHUNKS:
        if cursor[0] + batch > n:
            cursor[0] = 0
        for j in range(batch):
            c = cursor[0]
            end = n
            for s in range(1, cursor.shape[0]):
                if cursor[s] > c:
                    end = cursor[s]
                    break
            k = c + int(rng.random() * (end - c))
            perm[c], perm[k] = perm[k], perm[c]
            idx[j] = perm[c]
            cursor[0] = c + 1


def new_batch(mode: int, n: int, batch_size: int) -> Batch:
    """A fresh chain's sampler of ``batch_size`` rows from n, with scale n / batch_size; an epoch sampler starts
    by shuffling. Shuffled chunks get their positions from their buffer (``pymc_sgd.data.chunks``), not one
    per row of the data."""
    perm = np.arange(0 if mode == SHUFFLED_CHUNKS else n, dtype=np.int64)
    cursor = np.array([n if mode == EPOCH else 0], dtype=np.int64)
    idx = perm.copy() if mode == FULL else np.empty(batch_size, dtype=np.int64)
    return Batch(int(mode), perm, cursor, idx, np.array([n / batch_size]))
