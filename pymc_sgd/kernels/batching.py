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
- STRATIFIED: b_s rows from each stratum s (a group of rows, e.g. those of one group of a hierarchical
  model), distinct within the stratum and fresh each update, each row weighted n_s / b_s: ``scale`` holds one
  weight per batch slot. ``perm`` lists the rows stratum by stratum; ``cursor`` = [S, the S + 1 starts of the
  strata in ``perm``, b_1..b_S] (``new_stratified_batch``). The estimator is unbiased and its variance is
  sum_s n_s^2 (1 - b_s / n_s) S_s^2 / b_s with S_s^2 the rows' covariance within stratum s (Cochran 1977,
  Sampling Techniques, Thm 5.3; for SGD, Zhao & Zhang 2014, arXiv:1405.3080): no between-stratum part. With a
  control variate and a group effect whose rows all move together (a[g]), that part is what the plain
  minibatch's noise on a small group is made of: about n / (B n_g) times its posterior variance.
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
STRATIFIED = 5

MODES = {"with_replacement": WITH_REPLACEMENT, "without_replacement": WITHOUT_REPLACEMENT,
         "epoch": EPOCH, "full": FULL, "shuffled_chunks": SHUFFLED_CHUNKS, "stratified": STRATIFIED}


class Batch(NamedTuple):
    """The minibatch sampler as every kernel takes it (``new_batch``).

    ``scale`` = [n / B], a 1-element array, or for STRATIFIED one weight per row of the batch: the compiled
    gradient reads it in place (``kernels.model``).
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
    elif mode == STRATIFIED:
        strata, slot = cursor[0], 0
        for s in range(strata):  # a partial Fisher-Yates shuffle of each stratum's segment of perm
            start, rows, size = cursor[1 + s], cursor[2 + s] - cursor[1 + s], cursor[2 + strata + s]
            for j in range(size):
                k = start + j + int(rng.random() * (rows - j))
                perm[start + j], perm[k] = perm[k], perm[start + j]
                idx[slot] = perm[start + j]
                slot += 1
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


def stratum_sizes(labels: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_s, b_s): the rows of each stratum (label) and its rows per batch, b_s >= 1 (batch_size >= the number
    of strata), b_s <= n_s, sum b_s = batch_size: proportional to n_s, then one row at a time to the stratum
    with the largest weight n_s / b_s (which keeps the largest weight, and so the largest row's share of the
    noise, small)."""
    sizes = np.bincount(labels).astype(np.int64)
    if sizes.min(initial=1) == 0 or not len(sizes) <= batch_size <= sizes.sum():
        raise ValueError(f"stratified batches need every one of the {len(sizes)} strata non-empty and "
                         f"{len(sizes)} <= batch_size <= {sizes.sum()}, got batch_size={batch_size}.")
    taken = np.clip(np.floor(batch_size * sizes / sizes.sum()), 1, sizes).astype(np.int64)
    while taken.sum() > batch_size:  # the minimum of one row put it over: take from the smallest weight
        weights = np.where(taken > 1, sizes / taken, np.inf)
        taken[np.argmin(weights)] -= 1
    while taken.sum() < batch_size:
        weights = np.where(taken < sizes, sizes / taken, -np.inf)
        taken[np.argmax(weights)] += 1
    return sizes, taken


def new_stratified_batch(labels: np.ndarray, batch_size: int) -> Batch:
    """A STRATIFIED sampler of ``batch_size`` rows over the strata ``labels`` (one non-negative integer per row,
    each of 0..S-1 used), with ``stratum_sizes``'s rows per stratum and weights n_s / b_s."""
    sizes, taken = stratum_sizes(labels, batch_size)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    perm = np.argsort(labels, kind="stable").astype(np.int64)
    cursor = np.concatenate([[len(sizes)], starts, taken]).astype(np.int64)
    return Batch(STRATIFIED, perm, cursor, np.empty(batch_size, dtype=np.int64), np.repeat(sizes / taken, taken))


def strata_of(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """(the stratum of each row, b_s) of a STRATIFIED ``Batch``."""
    strata = int(batch.cursor[0])
    starts, taken = batch.cursor[1:strata + 2], batch.cursor[strata + 2:]
    labels = np.empty(len(batch.perm), dtype=np.int64)
    labels[batch.perm] = np.repeat(np.arange(strata), np.diff(starts))
    return labels, taken.copy()
