"""Cyclical step sizes (cSG-MCMC, Zhang et al. 2020) for SGLD, SGHMC and UnderdampedLangevin."""

import warnings

import numpy as np
import pymc as pm
import pytest
from mc import assert_means_and_sds, posterior_draws

import pymc_sgd
from pymc_sgd import theory
from pymc_sgd.kernels import schedules
from pymc_sgd.steps.schedules import relaxation_fraction

N, D, BATCH = 3000, 3, 30
RNG = np.random.default_rng(5)
X = RNG.normal(size=(N, D)) * np.array([1.0, 0.5, 2.0])
Y = X @ np.array([0.3, 1.0, -0.7]) + RNG.normal(size=N)
POST_MEAN, POST_COV = theory.linear_regression_posterior(X, Y, 1.0, 10.0)


def test_cosine_cycle_and_its_relaxation_fraction():
    """h_t = (peak/2)(cos(pi t/L) + 1): the peak at t = 0, half of it at L/2, periodic in L; the
    fraction of a cycle's step sum spent at h_t <= h, over L h, matches a direct sum over L = 10^5
    updates to 1e-4 (the closed form is its L -> inf limit)."""
    peak, length = 2.0, 100.0
    params = np.array([peak, length, 0.0])
    assert schedules.step_size_at(schedules.CYCLICAL, params, 0) == peak
    assert np.isclose(schedules.step_size_at(schedules.CYCLICAL, params, 50), peak / 2)
    assert np.isclose(schedules.step_size_at(schedules.CYCLICAL, params, 130),
                      schedules.step_size_at(schedules.CYCLICAL, params, 30))
    for ratio in (0.5, 1.0, 4.0, 10.0):
        t = np.arange(100_000)
        steps = 0.5 * ratio * (np.cos(np.pi * t / len(t)) + 1.0)
        assert abs(steps[steps <= 1.0].sum() / len(t) - relaxation_fraction(ratio)) < 1e-4


@pytest.mark.parametrize("sampler", ["SGLD", "SGHMC", "UnderdampedLangevin"])
def test_cyclical_samplers_match_the_posterior(sampler):
    """Each sampler with only batch_size and step_size=Cyclical(): draws at the cycles' ends have the
    posterior's means within Z SE and SDs within Z SE plus the warm-up's 3% target; the peak is above
    the warm-up's step (a real cycle)."""
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, 10.0, shape=D)
        pm.Normal("y", pm.math.dot(X, beta), 1.0, observed=Y)
    step = getattr(pymc_sgd, sampler)(batch_size=BATCH, step_size=pymc_sgd.Cyclical(), model=model)
    with model, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no halted chain, no untrustworthy warm-up
        idata = pm.sample(draws=800, tune=400, chains=2, cores=1, random_seed=4, progressbar=False, step=step,
                          compute_convergence_checks=False)
    assert_means_and_sds(posterior_draws(idata, "beta"), POST_MEAN, np.sqrt(np.diag(POST_COV)), sd_slack=0.03)
    base_step = step.schedule[0] if sampler == "SGLD" else step.h
    assert step.cycle_peak > 1.5 * base_step
    if sampler == "SGHMC":
        # v = sqrt(h) r must carry the momentum r from one draw's small last step to the next draw's peak:
        # the kinetic energy |r|^2 / 2 then averages about d T / 2 (without the rescaling r shrank by ~pi / 2L
        # at every draw, to ~0). A loose band: the cycle's end is not at equilibrium in r.
        kinetic = float(idata.sample_stats["kinetic_energy"].mean())
        assert 0.3 * D / 2 < kinetic < 3.0 * D / 2
