"""The Averaged Stochastic Gradient Sampler (Mandt, Hoffman & Blei 2017, seed 004) against its exact theory."""

import warnings

import numpy as np
import pymc as pm
from mc import assert_matches_prediction_and_posterior, posterior_draws

import pymc_sgd
from pymc_sgd import theory

N, D, BATCH, NOISE_SD, PRIOR_SD = 2000, 2, 20, 1.0, 10.0
RNG = np.random.default_rng(3)
X = RNG.normal(size=(N, D)) * np.array([1.0, 3.0])
Y = X @ np.array([0.7, -0.2]) + NOISE_SD * RNG.normal(size=N)
POST_MEAN, POST_COV = theory.linear_regression_posterior(X, Y, NOISE_SD, PRIOR_SD)


def test_averaged_iterate_covariance_tends_to_the_sandwich():
    """theory.averaged_iterate_covariance: K Cov(mean of K) -> H^-1 V H^-1 for any step matrix, and at K = 1
    it is the stationary covariance itself."""
    H, V = np.array([[2.0, 0.3], [0.3, 1.0]]), np.array([[5.0, 1.0], [1.0, 3.0]])
    sandwich = np.linalg.inv(H) @ V @ np.linalg.inv(H)
    for step in (0.3, np.array([[0.2, 0.05], [0.05, 0.6]])):
        np.testing.assert_allclose(20000 * theory.averaged_iterate_covariance(H, V, step, 20000), sandwich, rtol=1e-3)
        S = step * np.eye(2) if np.ndim(step) == 0 else step
        np.testing.assert_allclose(theory.averaged_iterate_covariance(H, V, step, 1),
                                   theory.sgd_stationary_covariance(H, V, 1.0, preconditioner=S),
                                   rtol=1e-10)


def test_averaged_sampler_covariance_matches_seed_004():
    """Defaults on a well-specified linear regression, 2 chains x 4000 draws. The draws are s (mean of K
    iterates - m), s^2 = B K / n, so their covariance is s^2 theory.averaged_iterate_covariance(H, V, h M, K)
    with H the exact Hessian of U and V = (n^2 / B) C, C the per-example gradient covariance at the mode
    (exact for this quadratic U up to the multiplicative noise x_i x_i^T (w - w*), whose share at the
    iterates' spread, ~5 d / n = 0.5%, is far below the tolerance). Every mean and covariance entry within
    Z = 4.5 SE (SE of a variance ~1.6% here: a wrong factor in s, or a draw taken without averaging, is many
    SE off). The chains' warm-ups choose slightly different (h, K) with the same K h k_min = 20; s^2 times the
    covariance depends on them only through that product (the finite-K part, ~2 / (K h k) of it), so the last
    chain's prediction serves both. That prediction is the posterior covariance here to 5% (n C ~ H), so it is
    also checked against the exact posterior with that slack."""
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, PRIOR_SD, shape=D)
        pm.Normal("y", pm.math.dot(X, beta), NOISE_SD, observed=Y)
    step = pymc_sgd.AveragedSGD(batch_size=BATCH, model=model)
    with model, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        idata = pm.sample(draws=4000, tune=300, chains=2, cores=1, random_seed=2, progressbar=False, step=step,
                          compute_convergence_checks=False)
    hessian = np.linalg.inv(POST_COV)
    per_example = X * (Y - X @ POST_MEAN)[:, None] / NOISE_SD**2
    V = theory.minibatch_gradient_covariance(np.cov(per_example.T, bias=True), N, BATCH)
    K, s = step.steps_per_draw, step.rescale
    predicted = s**2 * theory.averaged_iterate_covariance(hessian, V, step.h * step.metric.matrix, K)
    np.testing.assert_allclose(np.diag(predicted), np.diag(POST_COV), rtol=0.05)
    assert_matches_prediction_and_posterior(posterior_draws(idata, "beta"), POST_MEAN, predicted, POST_COV, 0.05)
    per_chain = idata.sample_stats["averaged_iterates"].values
    assert (per_chain == per_chain[:, :1]).all()  # each chain's K is fixed once tuning ends
