"""The gradient estimators (``kernels.estimator``, ``steps.gradient_estimator``): unbiased, with the noise
the theory predicts, and usable by every sampler that takes ``gradient_estimator=``."""

import warnings

import numpy as np
import pymc as pm
import pytest
from mc import Z, assert_close, assert_means_and_sds, posterior_draws

import pymc_sgd
from pymc_sgd import theory
from pymc_sgd.kernels import batching
from pymc_sgd.kernels import estimator as estimators
from pymc_sgd.kernels.estimator import estimate_gradient, per_example_loglik_grads
from pymc_sgd.warmup.geometry import full_potential_and_grad

N, D, BATCH, NOISE_SD, PRIOR_SD = 400, 3, 10, 1.0, 10.0
RNG = np.random.default_rng(7)
X = RNG.normal(size=(N, D))
Y = X @ np.array([1.0, -0.5, 0.3]) + NOISE_SD * RNG.normal(size=N)
POST_MEAN, POST_COV = theory.linear_regression_posterior(X, Y, NOISE_SD, PRIOR_SD)
POST_SD = np.sqrt(np.diag(POST_COV))


@pytest.fixture(scope="module")
def regression():
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, PRIOR_SD, shape=D)
        pm.Normal("y", pm.math.dot(X, beta), NOISE_SD, observed=Y)
    return model


def estimates(est, w, make_estimator, repeats, seed):
    """``repeats`` estimates at w on with-replacement batches of BATCH rows, each from a fresh estimator."""
    rng = np.random.default_rng(seed)
    batch, out = batching.new_batch(batching.WITH_REPLACEMENT, N, BATCH), np.empty(D)
    draws = []
    for _ in range(repeats):
        batch.idx[:] = rng.integers(0, N, size=BATCH)
        draws.append(estimate_gradient(est.kernel, w, batch, make_estimator(), out).copy())
    return np.array(draws)


def assert_unbiased_with_covariance(draws, mean, per_row_differences, what):
    """An estimate whose random part is (n/B) sum over B iid rows of d_i has mean ``mean`` and covariance
    (n^2 / B) Cov_i[d_i] (population covariance over the n rows) exactly. Means within Z SE with SE from
    that covariance; each variance within Z SE of the sample variance (SE: sd of the squared deviations
    over sqrt(R), the draws being independent)."""
    predicted = N**2 / BATCH * np.cov(per_row_differences.T, bias=True)
    repeats = len(draws)
    for k in range(D):
        se = np.sqrt(predicted[k, k] / repeats)
        assert abs(draws[:, k].mean() - mean[k]) <= Z * se, f"{what}: mean of coordinate {k}"
        squares = (draws[:, k] - mean[k]) ** 2
        assert_close(squares.mean(), squares.std() / np.sqrt(repeats), predicted[k, k], f"{what}: variance {k}")
    return predicted


def test_saga_is_unbiased_with_the_predicted_variance(regression):
    """SAGA with each row's table entry at its own random point phi_i: the estimate is
    -grad log p(w) + sum_j a_j + (n/B) sum_{i in batch} (g_i(w) - a_i) (g_i = -grad log p(x_i | .),
    a_i = g_i(phi_i)), so its mean is grad U(w) and its covariance (n^2/B) Cov_i[g_i(w) - a_i], whatever
    the phi_i. 3000 estimates; a table that forgot to subtract the old entry, or a sum that was not
    kept, would move the mean by O(n) SDs of the estimate."""
    est = pymc_sgd.build_estimator(regression)
    w = POST_MEAN + 2.0 * POST_SD
    rows = np.arange(N, dtype=np.int64)
    anchors = POST_MEAN + POST_SD * np.random.default_rng(1).normal(size=(N, D))
    table = -np.array([per_example_loglik_grads(est.kernel, anchors[i], rows[i:i + 1])[0] for i in range(N)])
    at_w = -per_example_loglik_grads(est.kernel, w, rows)
    draws = estimates(est, w, lambda: estimators.saga(table.copy(), BATCH), 3000, seed=2)
    assert_unbiased_with_covariance(draws, full_potential_and_grad(est, w)[1], at_w - table, "SAGA")


def test_saga_refreshes_the_rows_it_drew(regression):
    """After one update the drawn rows' entries are their gradients at w and the kept sum is the table's sum."""
    est = pymc_sgd.build_estimator(regression)
    rows = np.arange(N, dtype=np.int64)
    table = -per_example_loglik_grads(est.kernel, POST_MEAN, rows)
    saga = estimators.saga(table.copy(), 3)
    w, batch = POST_MEAN + POST_SD, batching.new_batch(batching.WITH_REPLACEMENT, N, 3)
    batch.idx[:] = [5, 9, 5]
    estimate_gradient(est.kernel, w, batch, saga, np.empty(D))
    expected = table.copy()
    expected[[5, 9]] = -per_example_loglik_grads(est.kernel, w, np.array([5, 9], dtype=np.int64))
    np.testing.assert_allclose(saga.table, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(saga.table_sum, expected.sum(axis=0), rtol=1e-10, atol=1e-9)


def test_control_variate_noise_falls_with_the_distance_to_the_centre(regression):
    """The centred estimate's covariance is (n^2/B) Cov_i[g_i(w) - g_i(w*)]; on a linear regression
    g_i(w) - g_i(w*) = x_i x_i^T (w - w*) / sigma^2, so halving the distance quarters every variance.
    Checked at 1 and 2 posterior SDs from the centre (2000 estimates each), against the exact mean."""
    est = pymc_sgd.build_estimator(regression)
    rows = np.arange(N, dtype=np.int64)
    centre = POST_MEAN
    at_centre = -per_example_loglik_grads(est.kernel, centre, rows)
    variances = []
    for distance in (1.0, 2.0):
        w = centre + distance * POST_SD
        draws = estimates(est, w, lambda: estimators.control_variate(centre, full_potential_and_grad(est, centre)[1]),
                          2000, seed=int(distance))
        predicted = assert_unbiased_with_covariance(
            draws, full_potential_and_grad(est, w)[1], -per_example_loglik_grads(est.kernel, w, rows) - at_centre,
            f"control variate at {distance} SD")
        variances.append(np.diag(predicted))
    np.testing.assert_allclose(variances[1] / variances[0], 4.0, rtol=1e-9)


def test_svrg_recentres_every_epoch_with_the_full_gradient(regression):
    """SVRG with epoch_length 3: three updates use the centre it started with; the fourth re-centres at
    its w, where its estimate is the full-data gradient exactly."""
    est = pymc_sgd.build_estimator(regression)
    start = POST_MEAN.copy()
    svrg = estimators.svrg(start, full_potential_and_grad(est, start)[1], 3)
    out, batch = np.empty(D), batching.new_batch(batching.WITH_REPLACEMENT, N, BATCH)
    batch.idx[:] = np.arange(BATCH)
    for k in range(3):
        estimate_gradient(est.kernel, POST_MEAN + (k + 1) * POST_SD, batch, svrg, out)
        np.testing.assert_array_equal(svrg.centre, start)
    w = POST_MEAN - POST_SD
    estimate_gradient(est.kernel, w, batch, svrg, out)
    np.testing.assert_array_equal(svrg.centre, w)
    np.testing.assert_allclose(out, full_potential_and_grad(est, w)[1], rtol=1e-10)
    np.testing.assert_allclose(svrg.centre_grad, out, rtol=0, atol=0)


@pytest.mark.parametrize("sampler", ["SGLD", "SGHMC", "UnderdampedLangevin"])
@pytest.mark.parametrize("gradient_estimator", ["svrg", "saga"])
def test_samplers_with_variance_reduction_match_the_posterior_on_defaults(regression, sampler, gradient_estimator):
    """Each sampler with only batch_size and the estimator given, 2 chains x 800 draws: means within
    Z SE of the exact posterior mean, SDs within Z SE plus the warm-up's promised error (target_error =
    3% of the SD: the step is chosen for it with the noise of a centre one Laplace draw away)."""
    step = getattr(pymc_sgd, sampler)(batch_size=BATCH, gradient_estimator=gradient_estimator, model=regression)
    with regression, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no halted chain, no untrustworthy warm-up
        idata = pm.sample(draws=800, tune=400, chains=2, cores=1, random_seed=3, progressbar=False, step=step,
                          compute_convergence_checks=False)
    assert_means_and_sds(posterior_draws(idata, "beta"), POST_MEAN, POST_SD, sd_slack=0.03)
    assert not idata.sample_stats["diverging"].values.any()
