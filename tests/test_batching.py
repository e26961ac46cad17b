"""Minibatch index samplers draw uniformly (they use fast vectorised / floor(u m) draws).

Tolerance: over R batches of B rows from n, the inclusion counts c_i give Pearson's
X^2 = sum (c_i - E)^2 / E with E = R B / n. For i.i.d. uniform draws X^2 ~ chi^2_{n-1}
(mean n - 1, SD sqrt(2 (n - 1))); without replacement the counts are less variable, so X^2
is smaller. We require X^2 < (n - 1) + 5 sqrt(2 (n - 1)): a 5-SD bound that a sampler favouring
one row by 10% (an excess of 0.1 E per batch-draw) exceeds by far at R B = 2e6, n = 50.
"""

import numpy as np
import pytest

from pymc_sgd.kernels import batching

N_ROWS, BATCH, ROUNDS = 50, 10, 200_000


def inclusion_counts(mode: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(3)
    batch = batching.new_batch(mode, N_ROWS, BATCH)
    counts = np.zeros(N_ROWS)
    first = []
    for r in range(ROUNDS):
        batching.next_batch(batch, rng)
        np.add.at(counts, batch.idx, 1)
        if r < 20:
            first.append(batch.idx.copy())
    return counts, first


def pearson_bound_holds(counts: np.ndarray) -> bool:
    expected = ROUNDS * BATCH / N_ROWS
    statistic = np.sum((counts - expected) ** 2 / expected)
    return statistic < (N_ROWS - 1) + 5 * np.sqrt(2 * (N_ROWS - 1))


@pytest.mark.parametrize("mode", [batching.WITH_REPLACEMENT, batching.WITHOUT_REPLACEMENT, batching.EPOCH])
def test_batches_are_uniform(mode):
    counts, _ = inclusion_counts(mode)
    assert pearson_bound_holds(counts)


def test_biased_counts_fail_the_bound():
    """The bound has power: a 10% excess on one row (what a biased sampler gives) is rejected."""
    counts = np.full(N_ROWS, ROUNDS * BATCH / N_ROWS)
    counts[0] *= 1.1
    assert not pearson_bound_holds(counts)


@pytest.mark.parametrize("mode", [batching.WITHOUT_REPLACEMENT, batching.EPOCH])
def test_batches_without_replacement_have_distinct_rows(mode):
    _, first = inclusion_counts(mode)
    assert all(len(set(batch)) == BATCH for batch in first)


def test_epoch_covers_every_row_once_per_epoch():
    _, first = inclusion_counts(batching.EPOCH)
    epoch = np.concatenate(first[: N_ROWS // BATCH])
    assert sorted(epoch) == list(range(N_ROWS))
