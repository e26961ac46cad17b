"""SGNHT (Ding et al. 2014): its thermostat absorbs gradient noise it never measures."""

import warnings

import numpy as np
import pymc as pm
import pytest
import scipy.linalg
from mc import assert_close, assert_means_and_sds, mean_and_se, posterior_draws

import pymc_sgd
from pymc_sgd import theory

N, D, BATCH, NOISE_SD, PRIOR_SD = 2000, 3, 20, 1.0, 10.0
RNG = np.random.default_rng(11)
X = RNG.normal(size=(N, D)) * np.array([1.0, 2.0, 0.5])
Y = X @ np.array([0.5, -1.0, 2.0]) + NOISE_SD * RNG.normal(size=N)
POST_MEAN, POST_COV = theory.linear_regression_posterior(X, Y, NOISE_SD, PRIOR_SD)


def test_discrete_thermostat_target_makes_positions_exact():
    """The virial identity behind the kernel's (1 - xi/2) factor, from the exact discrete Lyapunov
    covariance of u <- (1 - xi) u - h k w + n, w <- w + u (whitened, one mode of curvature k, noise
    variance q): (1 - xi/2) Var(u) = h k Var(w) for every (h, k, xi, q); so the thermostat's target
    (1 - xi/2) Var(u) = h T gives k Var(w) = T exactly, where Ding et al.'s Var(u) = h T gives
    T (1 - xi/2)."""
    for h, k, xi, q in [(0.03, 1.0, 0.6, 0.05), (0.1, 3.0, 0.2, 0.3), (0.01, 0.5, 1.2, 0.001)]:
        A = np.array([[1 - xi, -h * k], [1 - xi, 1 - h * k]])
        S = scipy.linalg.solve_discrete_lyapunov(A, q * np.ones((2, 2)))
        np.testing.assert_allclose((1 - xi / 2) * S[0, 0], h * k * S[1, 1], rtol=1e-10)


@pytest.fixture(scope="module")
def sgnht_run():
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, PRIOR_SD, shape=D)
        pm.Normal("y", pm.math.dot(X, beta), NOISE_SD, observed=Y)
    step = pymc_sgd.SGNHT(batch_size=BATCH, gradient_estimator="minibatch", model=model)
    with model, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no halted chain, no untrustworthy warm-up
        idata = pm.sample(draws=1500, tune=500, chains=2, cores=1, random_seed=5, progressbar=False, step=step,
                          compute_convergence_checks=False)
    return step, idata


def test_thermostat_absorbs_unknown_gradient_noise(sgnht_run):
    """Plain minibatch gradients (n/B = 100) that SGNHT is never told about. At stationarity xi's
    increments average zero, so the mean kinetic temperature (1 - xi/2)|u|^2/(d h) is T = 1 exactly:
    within Z SE (ESS-based) of 1. The noise must matter for this to test anything: a thermostat frozen at
    the diffusion a would give variances T xi / a (heat 2 a h T + h^2 V_z = 2 xi h T at the fixed point),
    so xi / a > 1.3 means ignoring the noise would be >= 30% hot, many SE."""
    step, idata = sgnht_run
    stats = idata.sample_stats
    assert_close(*mean_and_se(stats["kinetic_temperature"].values), 1.0, "mean kinetic temperature")
    assert float(stats["thermostat"].values.mean()) / step.friction > 1.3
    assert not stats["diverging"].values.any()


def test_sgnht_matches_the_posterior_on_defaults(sgnht_run):
    """Means within Z SE of the exact posterior; SDs within Z SE plus the warm-up's 3% target (the
    whitened noise of this well-specified regression is isotropic, which one scalar xi can absorb)."""
    _, idata = sgnht_run
    assert_means_and_sds(posterior_draws(idata, "beta"), POST_MEAN, np.sqrt(np.diag(POST_COV)), sd_slack=0.03)


def test_sgnht_refuses_a_bad_diffusion_and_a_cycle():
    with pm.Model():
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("x", mu, 1.0, observed=np.zeros(10))
        with pytest.raises(ValueError, match="diffusion must be in"):
            pymc_sgd.SGNHT(batch_size=5, diffusion=1.5)
        with pytest.raises(ValueError, match="cannot follow a cyclical step"):
            pymc_sgd.SGNHT(batch_size=5, step_size=pymc_sgd.Cyclical())
