"""Stochastic Gradient Fisher Scoring (Ahn, Korattikara & Welling 2012) against its exact discrete theory."""

import warnings

import numpy as np
import pymc as pm
import pytest
from mc import assert_matches_prediction_and_posterior, posterior_draws

import pymc_sgd
from pymc_sgd import theory

N, D, BATCH, NOISE_SD, PRIOR_SD = 2000, 2, 20, 1.0, 10.0
RNG = np.random.default_rng(9)
X = RNG.normal(size=(N, D)) * np.array([1.0, 3.0]) + np.array([0.0, 1.0])
Y = X @ np.array([0.7, -0.2]) + NOISE_SD * RNG.normal(size=N)
POST_MEAN, POST_COV = theory.linear_regression_posterior(X, Y, NOISE_SD, PRIOR_SD)


@pytest.mark.parametrize("epsilon", [None, 0.05])
def test_sgfs_matches_its_exact_covariance_and_the_posterior(epsilon):
    """A well-specified linear regression, 2 chains x 3000 draws. Given the preconditioner P the step froze
    after tuning, the iterates are the linear recursion w <- w - P (H w + xi) + P eta with Cov(xi) = V =
    (n^2 / B) C (C the per-example score covariance at the mode; the multiplicative part x x^T (w - w*) is
    ~d/n of it) and Cov(eta) = 4 B / epsilon, whose stationary covariance theory.averaged_iterate_covariance
    (K = 1) gives exactly. Means and every covariance entry within Z SE of it, and of the exact posterior with a 5%
    slack (N Î ~ H for this model, so P ~ 2n / (N + n) H^-1, Ahn et al.'s exact-in-the-limit choice)."""
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, PRIOR_SD, shape=D)
        pm.Normal("y", pm.math.dot(X, beta), NOISE_SD, observed=Y)
    step = pymc_sgd.SGFS(batch_size=BATCH, step_size=epsilon, model=model)
    with model, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        idata = pm.sample(draws=3000, tune=300, chains=2, cores=1, random_seed=6, progressbar=False, step=step,
                          compute_convergence_checks=False)
    hessian = np.linalg.inv(POST_COV)
    per_example = X * (Y - X @ POST_MEAN)[:, None] / NOISE_SD**2
    V = theory.minibatch_gradient_covariance(np.cov(per_example.T, bias=True), N, BATCH)
    if epsilon is not None:
        V = V + 4.0 * np.linalg.inv(step.metric.matrix) / epsilon
    predicted = theory.averaged_iterate_covariance(hessian, V, step.p_full, 1)  # K = 1: the stationary covariance
    assert_matches_prediction_and_posterior(posterior_draws(idata, "beta"), POST_MEAN, predicted, POST_COV, 0.05)


def test_sgfs_refuses_bad_arguments():
    with pm.Model():
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("x", mu, 1.0, observed=np.zeros(10))
        with pytest.raises(ValueError, match="gamma must be >= 1"):
            pymc_sgd.SGFS(batch_size=5, gamma=0.5)
        with pytest.raises(ValueError, match="needs minibatch noise"):
            pymc_sgd.SGFS(batch_size=None)
