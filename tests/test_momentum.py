"""Second-order samplers against exact oracles: heavy-ball SGD (docs/pages/sources.md's closed form),
SGHMC (seed 003's (w, m) Lyapunov system) and BAOAB (its own linear recursion)."""

import numpy as np
import pymc as pm
import pytest
from scipy import linalg

import pymc_sgd
from mc import assert_close, cov_and_se, mean_and_se, posterior_draws
from pymc_sgd import theory
from pymc_sgd.gradients import cached_estimator
from pymc_sgd.noise import per_example_gradient_covariance

SIGMA, PRIOR_SD, N_MEAN = 2.0, 10.0, 10_000
X_MEAN = np.random.default_rng(12).normal(1.0, SIGMA, size=N_MEAN)
N_REG, D_REG, REG_PRIOR_SD = 5000, 3, 10.0
_rng = np.random.default_rng(6)
X_REG = _rng.normal(size=(N_REG, D_REG)) @ np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.5, 1.2]])
Y_REG = X_REG @ np.array([0.5, -1.0, 2.0]) + _rng.normal(size=N_REG)
H_REG = X_REG.T @ X_REG + np.eye(D_REG) / REG_PRIOR_SD**2


def sample(model, step, draws=2000, tune=100, seed=8):
    with model:
        return pm.sample(draws=draws, tune=tune, chains=2, cores=1, step=step, random_seed=seed,
                         progressbar=False, compute_convergence_checks=False)


@pytest.fixture(scope="module")
def normal_mean():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, PRIOR_SD)
        pm.Normal("x", mu, SIGMA, observed=X_MEAN)
    return model


@pytest.fixture(scope="module")
def regression():
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, REG_PRIOR_SD, shape=D_REG)
        pm.Normal("y", pm.math.dot(X_REG, beta), 1.0, observed=Y_REG)
    return model


def test_heavy_ball_variance_near_the_stability_limit(normal_mean):
    """ConstantSGD(momentum=0.5) with eta k = 2.75 (limit 2 (1 + beta) = 3): docs/pages/sources.md's
    Var = (1 + b) s^2 / ((1 - b) eta k (2 (1 + b) - eta k)) with s^2 = eta^2 sigma^2 is 12x
    the continuous-time s^2 / (2 eta k (1 - b)). The recursion's eigenvalues have modulus
    sqrt(beta) = 0.71, so draws 20 updates apart are independent; 4000 draws give 2.2% SE on
    the variance: the continuous formula would fail by hundreds of SE."""
    k = 1 / PRIOR_SD**2 + N_MEAN / SIGMA**2
    eta = 2.75 / k
    step = pymc_sgd.ConstantSGD(batch_size=100, step_size=eta, momentum=0.5, preconditioner=None,
                                steps_per_draw=20, model=normal_mean)
    mu = posterior_draws(sample(normal_mean, step), "mu")
    post_mean = theory.normal_mean_posterior(X_MEAN, SIGMA, 0.0, PRIOR_SD)[0]
    est = cached_estimator(normal_mean)
    sigma2 = theory.minibatch_gradient_covariance(
        per_example_gradient_covariance(est, np.array([post_mean])), N_MEAN, 100)[0, 0]
    predicted = theory.heavy_ball_variance(eta, k, 0.5, eta**2 * sigma2)
    assert_close(*mean_and_se(mu), post_mean, "mean")
    assert_close(*cov_and_se(mu, mu), predicted, "heavy-ball variance")


def test_sghmc_matches_exact_momentum_lyapunov(regression):
    """SGHMC, B = 100, h = 5e-7, friction 0.2 (h k_max = 0.006 << alpha; beta_hat ~ 0.09 <
    alpha) with the beta_hat correction. Its recursion is seed 003's with lambda = h, mu = 1 - alpha and total noise
    C = V + L L^T / h^2 (V = (n^2/B) C(w) at the posterior mean), so the exact
    covariance comes from theory.sgd_stationary_covariance; it is within 10% of the posterior.
    Slowest direction: h k_min / alpha ~ 0.003 per update, 1000 updates per draw. The mean
    kinetic energy |v|^2 / (2h) must be d T / 2 up to the O(h k / alpha) discretisation error
    (< 5% here), allowed as 10% slack."""
    step = pymc_sgd.SGHMC(batch_size=100, step_size=5e-7, friction=0.2, steps_per_draw=1000, model=regression)
    idata = sample(regression, step, draws=1500)
    beta = posterior_draws(idata, "beta")
    post_mean, post_cov = theory.linear_regression_posterior(X_REG, Y_REG, 1.0, REG_PRIOR_SD)
    V = theory.minibatch_gradient_covariance(
        per_example_gradient_covariance(cached_estimator(regression), post_mean), N_REG, 100)
    total_noise = V + step.noise_factor @ step.noise_factor.T / step.h**2
    predicted = theory.sgd_stationary_covariance(H_REG, total_noise, step.h, momentum=1 - step.friction)
    assert np.all(np.abs(np.diag(predicted) / np.diag(post_cov) - 1) < 0.10)
    for i in range(D_REG):
        assert_close(*mean_and_se(beta[..., i]), post_mean[i], f"mean of beta[{i}]")
        for j in range(i, D_REG):
            assert_close(*cov_and_se(beta[..., i], beta[..., j]), predicted[i, j], f"cov[{i},{j}]")
    kinetic = idata.sample_stats["kinetic_energy"].values
    assert_close(*mean_and_se(kinetic), D_REG / 2, "kinetic energy", slack=0.1 * D_REG / 2)


def baoab_stationary_covariance(hessian: np.ndarray, h: float, gamma: float, temperature: float) -> np.ndarray:
    """Exact stationary covariance of (x, v) under full-batch BAOAB on U = x^T H x / 2.

    Each sub-step is linear: B = [[I, 0], [-h/2 H, I]], A = [[I, h/2 I], [0, I]],
    O = [[I, 0], [0, c I]] with c = exp(-gamma h) plus N(0, T (1 - c^2) I) on v. One step is
    M = B A O A B; the O noise then passes through (B A). Solve Z = M Z M^T + G G^T T (1 - c^2).
    """
    d = hessian.shape[0]
    eye, zero = np.eye(d), np.zeros((d, d))
    kick = np.block([[eye, zero], [-0.5 * h * hessian, eye]])
    drift = np.block([[eye, 0.5 * h * eye], [zero, eye]])
    c = np.exp(-gamma * h)
    ou = np.block([[eye, zero], [zero, c * eye]])
    M = kick @ drift @ ou @ drift @ kick
    G = (kick @ drift)[:, d:]
    return linalg.solve_discrete_lyapunov(M, temperature * (1 - c**2) * G @ G.T)


@pytest.mark.parametrize("h", [0.0085, 0.00425])
def test_baoab_exact_positions_and_predicted_velocity_bias(regression, h):
    """Full-batch BAOAB on the Gaussian posterior (H eigenvalues ~1.3e3..1.1e4). Positions:
    exact posterior covariance at any stable h. Velocities: kinetic temperature
    tr(Z_vv)/d from the exact recursion, 0.89 at h = 0.0085 and 0.97 at h/2 (1 - h^2 k / 4
    per direction: O(h^2), the bias falls 4x). 2 x 2000 draws, 30 steps apart (relaxation
    ~ 10 steps at gamma = 50) give ~1.3% SE on the kinetic temperature, so the h = 0.0085
    bias is ~8 SE from 1."""
    step = pymc_sgd.UnderdampedLangevin(step_size=h, friction=50.0, steps_per_draw=30, metropolis=False,
                                        model=regression)
    idata = sample(regression, step)
    beta = posterior_draws(idata, "beta")
    post_mean, post_cov = theory.linear_regression_posterior(X_REG, Y_REG, 1.0, REG_PRIOR_SD)
    oracle = baoab_stationary_covariance(H_REG, h, 50.0, 1.0)
    np.testing.assert_allclose(oracle[:D_REG, :D_REG], post_cov, rtol=1e-8)
    for i in range(D_REG):
        assert_close(*mean_and_se(beta[..., i]), post_mean[i], f"mean of beta[{i}]")
        for j in range(i, D_REG):
            assert_close(*cov_and_se(beta[..., i], beta[..., j]), post_cov[i, j], f"cov[{i},{j}]")
    kinetic_temperature = np.trace(oracle[D_REG:, D_REG:]) / D_REG
    measured = idata.sample_stats["kinetic_temperature"].values
    assert_close(*mean_and_se(measured), kinetic_temperature, "kinetic temperature")
    assert 1 - kinetic_temperature == pytest.approx(h**2 * np.trace(H_REG) / (4 * D_REG), rel=0.2)


def test_full_batch_metropolis_test_removes_the_velocity_bias(regression):
    """The setting above where unadjusted BAOAB's kinetic temperature is 0.89 (h = 0.0085): full-batch
    UnderdampedLangevin's default Metropolis test (``kernels.ghmc``) makes the joint law of (x, v) exactly
    exp(-U) N(0, I), so the kinetic temperature is 1 and the positions the posterior's. Same draws and SEs as
    above (~1.3% on the kinetic temperature: the 11% bias would be ~8 SE); the acceptance must be high at a
    step this stable (0.9 is far below what a working test gives and far above a broken one's ~0)."""
    step = pymc_sgd.UnderdampedLangevin(step_size=0.0085, friction=50.0, steps_per_draw=30, model=regression)
    assert step.metropolis
    idata = sample(regression, step)
    beta = posterior_draws(idata, "beta")
    post_mean, post_cov = theory.linear_regression_posterior(X_REG, Y_REG, 1.0, REG_PRIOR_SD)
    for i in range(D_REG):
        assert_close(*mean_and_se(beta[..., i]), post_mean[i], f"mean of beta[{i}]")
        assert_close(*cov_and_se(beta[..., i], beta[..., i]), post_cov[i, i], f"var of beta[{i}]")
    assert_close(*mean_and_se(idata.sample_stats["kinetic_temperature"].values), 1.0, "kinetic temperature")
    assert idata.sample_stats["acceptance_rate"].values.mean() > 0.9


def test_momentum_default_preconditioner_keeps_the_temperature(normal_mean):
    """ConstantSGD(momentum=0.9) with the default P = (1 - beta) 2 T Cov^-1 must have T_eff = T
    (docs/pages/sources.md: T_eff = P sigma^2 / (2 (1 - beta))). On this normal mean C does not depend on mu and
    noise_rows covers every row, so P is exact and the stationary variance is docs/pages/sources.md's heavy-ball
    formula (within 1% of the posterior's here). 2 x 1000 draws, thinned by the warm-up for ESS/draw
    >= 1/2: 4.5 SE is about 14% of the variance; counting beta twice shrinks it by 1 - beta = 90%."""
    step = pymc_sgd.ConstantSGD(batch_size=100, momentum=0.9, noise_rows=N_MEAN, model=normal_mean)
    mu = posterior_draws(sample(normal_mean, step, draws=1000, tune=200), "mu")
    k = 1 / PRIOR_SD**2 + N_MEAN / SIGMA**2
    est = cached_estimator(normal_mean)
    V = theory.minibatch_gradient_covariance(per_example_gradient_covariance(est, np.array([0.0])), N_MEAN, 100)[0, 0]
    P = 0.1 * 2.0 / V
    assert_close(*cov_and_se(mu, mu), theory.heavy_ball_variance(P, k, 0.9, P**2 * V), "heavy-ball variance at T = 1")


def test_a_chosen_sghmc_step_gets_its_predicted_error_and_a_warning(normal_mean):
    """SGHMC(batch_size=100, step_size=1e-4, friction=0.1) on the normal mean (k = 2500: h k = 0.25). The exact
    discrete Lyapunov oracle (``warmup.tuning.sghmc_sd_error`` with the exact gradient noise at the mean) puts
    the SD error well above 2 x target_error; the step records its own prediction (from its measured noise:
    within 25% of that) and warns, naming step_size=None. Draws are not needed for the claim: 20 suffice."""
    from pymc_sgd.warmup.metric import identity_metric
    from pymc_sgd.warmup.tuning import sghmc_sd_error
    post_mean = theory.normal_mean_posterior(X_MEAN, SIGMA, 0.0, PRIOR_SD)[0]
    est = cached_estimator(normal_mean)
    V = theory.minibatch_gradient_covariance(per_example_gradient_covariance(est, np.array([post_mean])), N_MEAN, 100)
    k = np.array([[1 / PRIOR_SD**2 + N_MEAN / SIGMA**2]])
    exact = sghmc_sd_error(k, V, identity_metric(1), 1e-4, 0.1)
    assert exact > 0.1
    step = pymc_sgd.SGHMC(batch_size=100, step_size=1e-4, friction=0.1, steps_per_draw=10, model=normal_mean)
    with pytest.warns(RuntimeWarning, match="step_size=None"):
        idata = sample(normal_mean, step, draws=20, tune=20)
    predicted = idata.sample_stats["predicted_sd_error"].values
    assert np.all(np.abs(predicted / exact - 1.0) < 0.25), (predicted, exact)
