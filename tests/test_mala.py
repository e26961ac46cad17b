"""MALA: exact for any step, so every check is within Monte Carlo error alone (no slack)."""

import warnings

import numpy as np
import pymc as pm
import pytest
from mc import assert_close, cov_and_se, mean_and_se, posterior_draws

import pymc_sgd
from pymc_sgd import models

COV = np.array([[1.0, 0.9], [0.9, 2.0]])
MEAN = np.array([1.0, -2.0])


def sample(model, step, draws=3000, seed=1):
    with model, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no halted chain, no untrustworthy warm-up
        return pm.sample(draws=draws, tune=500, chains=2, cores=1, random_seed=seed, progressbar=False, step=step,
                         compute_convergence_checks=False)


def test_mala_on_a_correlated_gaussian_is_exact():
    """Means and every covariance entry within Z SE (ESS-based) of the exact values, on defaults; the
    adapted acceptance near the 0.574 target."""
    with pm.Model() as model:
        pm.MvNormal("x", mu=MEAN, cov=COV)
    idata = sample(model, pymc_sgd.MALA(model=model))
    x = posterior_draws(idata, "x")
    for i in range(2):
        assert_close(*mean_and_se(x[..., i]), MEAN[i], f"mean of x[{i}]")
        for j in range(i, 2):
            assert_close(*cov_and_se(x[..., i], x[..., j]), COV[i, j], f"cov[{i},{j}]")
    assert 0.45 < float(idata.sample_stats["acceptance_rate"].mean()) < 0.7


def test_mala_on_a_skewed_posterior_with_data_is_exact():
    """Poisson counts with a Gamma(2, 1) prior on the rate: the posterior is Gamma(2 + sum y, 1 + n),
    sampled as log(rate) (Jacobian included). n = 5 small counts keep it skewed (skewness 2/sqrt(shape)
    = 0.6), where a wrong Metropolis ratio (the inverted one of seed 002) or an unadjusted Langevin step
    biases the mean and variance. Mean and variance of the rate within Z SE; a deliberately large fixed
    step (acceptance well below 1) must be exact too."""
    y = np.array([0, 2, 1, 0, 3])
    shape, rate = 2 + y.sum(), 1 + len(y)
    with pm.Model() as model:
        lam = pm.Gamma("lam", 2.0, 1.0)
        pm.Poisson("y", lam, observed=y)
    for step in (pymc_sgd.MALA(model=model), pymc_sgd.MALA(step_size=0.15, steps_per_draw=5, model=model)):
        idata = sample(model, step, draws=4000, seed=2)
        lam_draws = posterior_draws(idata, "lam")
        assert_close(*mean_and_se(lam_draws), shape / rate, "mean of the rate")
        deviation = lam_draws - lam_draws.mean()
        assert_close(*mean_and_se(deviation**2), shape / rate**2, "variance of the rate")
        assert float(idata.sample_stats["acceptance_rate"].mean()) < 0.95


def test_mala_refuses_a_batch_size():
    with pm.Model():
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("x", mu, 1.0, observed=np.zeros(10))
        with pytest.raises(ValueError, match="full-data potential"):
            pymc_sgd.MALA(batch_size=5)


def test_a_small_data_set_takes_the_full_batch_and_says_so(caplog):
    """SGLD(batch_size=100) on a linear regression with n = 1000 and d = 3: its warm-up predicts (rows per
    effective draw, ``steps.batches.Batches._tune_cheapest``) that the full batch with the Metropolis test costs
    about 3 times less than the centred minibatches, so each chain samples by MALA, says so at INFO and records
    ``full_batch``. The draws are then exact (no SD slack): every mean and variance within Z SE of the
    conjugate posterior. Asked for minibatches (batching="with_replacement"), the step keeps them."""
    model, exact = models.conjugate_linear_regression_model(1000)
    with caplog.at_level("INFO", logger="pymc"):
        idata = sample(model, pymc_sgd.SGLD(batch_size=100, model=model), draws=2000)
    said = [record for record in caplog.records if "full batch reads" in record.getMessage()]
    assert len(said) == 2, [record.getMessage() for record in caplog.records]  # one per chain
    stats = idata.sample_stats
    assert stats["full_batch"].values.all() and 0.3 < float(stats["acceptance_rate"].mean()) < 0.9
    beta = posterior_draws(idata, "beta")
    for j in range(3):
        assert_close(*mean_and_se(beta[..., j]), exact.mean[j], f"mean of beta[{j}]")
        assert_close(*cov_and_se(beta[..., j], beta[..., j]), exact.cov[j, j], f"variance of beta[{j}]")
    kept = sample(model, pymc_sgd.SGLD(batch_size=100, batching="with_replacement", model=model), draws=20)
    assert not kept.sample_stats["full_batch"].values.any()


def test_a_full_batch_that_mixes_slower_than_predicted_goes_back_to_the_minibatches(caplog, monkeypatch):
    """The same model and step as above, with the measured mixing (``warmup.mixing.shortfall``) made to say 20
    times slower than predicted: at the first metric refit the full batch's thinning then costs more rows per
    effective draw than the minibatches were predicted to, so each chain goes back to them, says so, and samples
    right with them (SGLD's promised SD error: variances within Z SE plus (1 + target_error)^2 - 1)."""
    monkeypatch.setattr(pymc_sgd.warmup.mixing, "shortfall", lambda window, promised: 20.0)
    model, exact = models.conjugate_linear_regression_model(1000)
    with caplog.at_level("INFO", logger="pymc"):
        idata = sample(model, pymc_sgd.SGLD(batch_size=100, model=model), draws=2000)
    said = [record.getMessage() for record in caplog.records if "goes back to them" in record.getMessage()]
    assert len(said) == 2, [record.getMessage() for record in caplog.records]
    stats = idata.sample_stats
    assert not stats["full_batch"].values.any()
    beta = posterior_draws(idata, "beta")
    slack = (1.0 + pymc_sgd.warmup.TARGET_ERROR) ** 2 - 1.0
    for j in range(3):
        assert_close(*mean_and_se(beta[..., j]), exact.mean[j], f"mean of beta[{j}]")
        variance, se = cov_and_se(beta[..., j], beta[..., j])
        assert abs(variance - exact.cov[j, j]) <= 4.5 * se + slack * exact.cov[j, j], (j, variance, exact.cov[j, j])
