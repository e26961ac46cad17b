import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore", category=FutureWarning)

import pytest  # noqa: E402

from pymc_sgd.steps import batches  # noqa: E402


@pytest.fixture
def minibatches_kept(monkeypatch):
    """The warm-up's fall-back to the full batch switched off (``steps.batches.FULL_BATCH_TRIAL`` = 0), for tests of
    a minibatched sampler on data small enough that on defaults it would take the full batch and its Metropolis
    test (that choice has its own test in test_mala.py)."""
    monkeypatch.setattr(batches, "FULL_BATCH_TRIAL", 0.0)
