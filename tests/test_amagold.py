"""AMAGOLD: exact with stochastic gradients, so every check is within Monte Carlo error alone (no slack)."""

import warnings

import numpy as np
import pymc as pm
import pytest
from mc import assert_close, assert_means_and_sds, mean_and_se, posterior_draws

import pymc_sgd
from pymc_sgd import theory


def sample(model, step, draws, seed):
    with model, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no halted chain, no untrustworthy warm-up
        return pm.sample(draws=draws, tune=500, chains=2, cores=1, random_seed=seed, progressbar=False, step=step,
                         compute_convergence_checks=False)


def test_amagold_is_exact_on_a_regression():
    """Defaults (the centred estimator) at n / B = 100: means and SDs within Z SE of the exact posterior with no
    slack, at the step the acceptance adaptation reaches (no discretisation bias to allow for)."""
    rng = np.random.default_rng(12)
    X = rng.normal(size=(2000, 3))
    y = X @ np.array([1.0, -0.5, 0.3]) + rng.normal(size=2000)
    mean, cov = theory.linear_regression_posterior(X, y, 1.0, 10.0)
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, 10.0, shape=3)
        pm.Normal("y", pm.math.dot(X, beta), 1.0, observed=y)
    step = pymc_sgd.AMAGOLD(batch_size=20, model=model)
    idata = sample(model, step, draws=2000, seed=1)
    assert_means_and_sds(posterior_draws(idata, "beta"), mean, np.sqrt(np.diag(cov)), sd_slack=0.0)
    assert 0.5 < float(idata.sample_stats["acceptance_rate"].mean()) < 0.9


def test_amagold_is_exact_on_a_skewed_posterior():
    """Poisson counts (n = 400, rate ~0.03) with a Gamma(2, 1) prior: the posterior Gamma(2 + sum y, 1 + n)
    is skewed, sampled as log(rate) from plain minibatch gradients of 20 rows, whose noise the Metropolis
    test must absorb. Mean and variance of the rate within Z SE."""
    y = np.random.default_rng(4).poisson(0.03, size=400)
    shape, rate = 2 + y.sum(), 1 + len(y)
    with pm.Model() as model:
        lam = pm.Gamma("lam", 2.0, 1.0)
        pm.Poisson("y", lam, observed=y)
    idata = sample(model, pymc_sgd.AMAGOLD(batch_size=20, gradient_estimator="minibatch", model=model), draws=3000,
                   seed=2)
    draws = posterior_draws(idata, "lam")
    assert_close(*mean_and_se(draws), shape / rate, "mean of the rate")
    assert_close(*mean_and_se((draws - draws.mean()) ** 2), shape / rate**2, "variance of the rate")


def test_amagold_refuses_path_dependent_estimators_and_full_batch():
    with pm.Model():
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("x", mu, 1.0, observed=np.zeros(10))
        with pytest.raises(ValueError, match="depends only on the state and the batch"):
            pymc_sgd.AMAGOLD(batch_size=5, gradient_estimator="svrg")
        with pytest.raises(ValueError, match="use pymc_sgd.MALA"):
            pymc_sgd.AMAGOLD(batch_size=None)
