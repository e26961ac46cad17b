"""The second half of the model zoo (tests/test_model_zoo.py explains the models and the tolerances)."""

import pytest

import pymc_sgd
from test_model_zoo import FIRST_HALF, ZOO, assert_matches_nuts

SECOND_HALF = ZOO[len(FIRST_HALF):]


@pytest.mark.usefixtures("minibatches_kept")
@pytest.mark.parametrize("build", SECOND_HALF, ids=[build.__name__ for build in SECOND_HALF])
def test_sgld_on_defaults_matches_nuts(build):
    model, batch_size, *reference_model = build()
    assert_matches_nuts(model, pymc_sgd.SGLD(batch_size=batch_size, model=model), *reference_model)
