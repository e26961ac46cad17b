"""SGLD recovers exact conjugate posteriors, up to its exactly known finite-step bias.

On a Gaussian target the SGLD recursion is linear, so its stationary covariance is known
exactly (theory.langevin_stationary_covariance: discrete Lyapunov equation with the
injected noise 2hT and the minibatch gradient noise h^2 Cov). The mean is unbiased. Each
test states how far that prediction is from the exact posterior (the O(h) bias), and checks
the sampler against the prediction within Z = 4.5 Monte Carlo standard errors (tests/mc.py).
"""

import warnings

import numpy as np
import pymc as pm
import pytest

import pymc_sgd
from mc import assert_close, cov_and_se, mean_and_se, posterior_draws
from pymc_sgd import theory
from pymc_sgd.gradients import cached_estimator
from pymc_sgd.noise import per_example_gradient_covariance

SIGMA, PRIOR_SD, N_MEAN = 2.0, 10.0, 10_000
X_MEAN = np.random.default_rng(11).normal(1.0, SIGMA, size=N_MEAN)


@pytest.fixture(scope="module")
def normal_mean():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, PRIOR_SD)
        pm.Normal("x", mu, SIGMA, observed=X_MEAN)
    post_mean, post_var = theory.normal_mean_posterior(X_MEAN, SIGMA, 0.0, PRIOR_SD)
    return model, post_mean, post_var


def sample(model, step, draws, tune=100, chains=2, seed=3):
    with model:
        return pm.sample(draws=draws, tune=tune, chains=chains, cores=1, step=step, random_seed=seed,
                         progressbar=False, compute_convergence_checks=False)


def grad_noise_cov(model, w, batch_size):
    est = cached_estimator(model)
    return theory.minibatch_gradient_covariance(per_example_gradient_covariance(est, w), est.n_rows, batch_size)


@pytest.mark.parametrize("batch_size, step_size, steps_per_draw", [(None, 8e-5, 20), (100, 2e-6, 600)],
                         ids=["full-batch", "minibatch-100"])
def test_normal_mean_constant_step(normal_mean, batch_size, step_size, steps_per_draw):
    """Curvature k = 1/10^2 + n/2^2 = 2500. Full batch: h k = 0.2, so the variance is the
    posterior's times 1/(1 - h k/2) = 1.11 (ULA, docs/pages/sources.md). B = 100: h k = 0.005 but the
    gradient noise h^2 Cov (Cov = n^2/B * Var(x)/sigma^4 ~ 2.5e5) inflates it by ~1 + h Cov/2
    = 1.25. 2 x 2000 draws (autocorrelation (1 - h k)^K < 0.05 per draw) give ~1.6%
    SE on the variance, so both biases are resolved and a wrong noise scale would fail."""
    model, post_mean, post_var = normal_mean
    step = pymc_sgd.SGLD(batch_size=batch_size, step_size=step_size, steps_per_draw=steps_per_draw,
                         metropolis=False, model=model)
    mu = posterior_draws(sample(model, step, draws=2000), "mu")
    curvature = 1 / PRIOR_SD**2 + N_MEAN / SIGMA**2
    noise = None if batch_size is None else grad_noise_cov(model, np.array([post_mean]), batch_size)
    predicted = theory.langevin_stationary_covariance(np.array([[curvature]]), step_size, grad_noise_cov=noise)[0, 0]
    assert 1.05 < predicted / post_var < 1.35  # the bias this configuration is designed to show
    assert_close(*mean_and_se(mu), post_mean, "posterior mean")
    assert_close(*cov_and_se(mu, mu), predicted, "variance vs exact finite-step prediction")


def test_normal_mean_decaying_step(normal_mean):
    """h_t = a (b + t)^-0.55 falls from 1.4e-6 to 0.7e-6 over the recorded draws, so the
    variance must lie between the posterior's and the constant-step prediction at the
    largest h in the window (1.2 x posterior); the recorded step sizes follow the formula."""
    model, post_mean, post_var = normal_mean
    schedule = pymc_sgd.PolynomialDecay(a=5e-4, b=1e5, gamma=0.55)
    step = pymc_sgd.SGLD(batch_size=100, step_size=schedule, steps_per_draw=800, model=model)
    idata = sample(model, step, draws=1500, tune=200)
    mu = posterior_draws(idata, "mu")
    h = idata.sample_stats["step_size"].values
    t_last = (200 + np.arange(1, 1501)) * 800 - 1  # update index of each draw's last update
    np.testing.assert_allclose(h[0], 5e-4 * (1e5 + t_last) ** -0.55, rtol=1e-12)
    noise = grad_noise_cov(model, np.array([post_mean]), 100)
    curvature = np.array([[1 / PRIOR_SD**2 + N_MEAN / SIGMA**2]])
    upper = theory.langevin_stationary_covariance(curvature, h.max(), grad_noise_cov=noise)[0, 0]
    var, se = cov_and_se(mu, mu)
    assert_close(*mean_and_se(mu), post_mean, "posterior mean")
    assert post_var - 4.5 * se <= var <= upper + 4.5 * se, (var, post_var, upper, se)


N_REG, D_REG, NOISE_SD, REG_PRIOR_SD = 5000, 3, 1.0, 10.0
_rng = np.random.default_rng(5)
X_REG = _rng.normal(size=(N_REG, D_REG)) @ np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.5, 1.2]])
Y_REG = X_REG @ np.array([0.5, -1.0, 2.0]) + NOISE_SD * _rng.normal(size=N_REG)


@pytest.mark.parametrize("as_data", [False, True], ids=["constant-X", "pm.Data-X"])
def test_linear_regression_posterior(as_data):
    """Correlated design, Hessian eigenvalues ~1.3e3..1.1e4; h = 4e-7 (h k_max = 0.0044)
    with B = 100. The exact discrete Lyapunov prediction differs from the posterior by <15%;
    1500 draws x 2 chains; each entry of mean and covariance is checked at Z = 4.5 SE.
    If X were not subsampled together with y, the mean would be off by many SE."""
    with pm.Model() as model:
        design = pm.Data("X", X_REG) if as_data else X_REG
        beta = pm.Normal("beta", 0, REG_PRIOR_SD, shape=D_REG)
        pm.Normal("y", pm.math.dot(design, beta), NOISE_SD, observed=Y_REG)
    post_mean, post_cov = theory.linear_regression_posterior(X_REG, Y_REG, NOISE_SD, REG_PRIOR_SD)
    h = 4e-7
    step = pymc_sgd.SGLD(batch_size=100, step_size=h, steps_per_draw=1000, model=model)
    beta = posterior_draws(sample(model, step, draws=1500), "beta")
    hessian = X_REG.T @ X_REG / NOISE_SD**2 + np.eye(D_REG) / REG_PRIOR_SD**2
    predicted = theory.langevin_stationary_covariance(hessian, h, grad_noise_cov=grad_noise_cov(model, post_mean, 100))
    assert np.all(np.abs(np.diag(predicted) / np.diag(post_cov) - 1) < 0.15)
    for i in range(D_REG):
        assert_close(*mean_and_se(beta[..., i]), post_mean[i], f"mean of beta[{i}]")
        for j in range(i, D_REG):
            assert_close(*cov_and_se(beta[..., i], beta[..., j]), predicted[i, j], f"cov[{i},{j}]")


def test_exact_noise_correction_recovers_the_posterior_at_a_large_step():
    """correction="exact" injects Q = 2hI - h^2 H - h^2 V (docs/pages/sources.md, seed 003 Thm. 3): the
    stationary covariance is then exactly H^-1. At h = 2.7e-6 (h k_max = 0.03, close to the
    largest step where Q is PSD, V ~ 50 H here) plain SGLD's exact prediction of the variances
    is 17-37% too large, i.e. 5-10 SE at ~3.7% SE per variance, while the corrected chain must match
    the posterior covariance within Z SE (1500 x 2 draws, 700 updates apart)."""
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, REG_PRIOR_SD, shape=D_REG)
        pm.Normal("y", pm.math.dot(X_REG, beta), NOISE_SD, observed=Y_REG)
    post_mean, post_cov = theory.linear_regression_posterior(X_REG, Y_REG, NOISE_SD, REG_PRIOR_SD)
    h = 2.7e-6
    hessian = X_REG.T @ X_REG / NOISE_SD**2 + np.eye(D_REG) / REG_PRIOR_SD**2
    plain = theory.langevin_stationary_covariance(hessian, h, grad_noise_cov=grad_noise_cov(model, post_mean, 100))
    assert np.min(np.diag(plain) / np.diag(post_cov)) > 1.15
    step = pymc_sgd.SGLD(batch_size=100, step_size=h, correction="exact", steps_per_draw=700, model=model)
    beta = posterior_draws(sample(model, step, draws=1500), "beta")
    for i in range(D_REG):
        assert_close(*mean_and_se(beta[..., i]), post_mean[i], f"mean of beta[{i}]")
        for j in range(i, D_REG):
            assert_close(*cov_and_se(beta[..., i], beta[..., j]), post_cov[i, j], f"cov[{i},{j}]")


@pytest.mark.parametrize("centre", ["mode", "point-3-sd-away"])
def test_control_variate_matches_its_exact_covariance_at_a_large_step(centre):
    """SGLD-CV (Baker et al. 2019) at h k_max = 0.5 with B = 100 on the regression. Its
    gradient noise is multiplicative, (n^2/B) Cov_i[K_i (w - w*)], and the stationary
    covariance solves theory.control_variate_sgld_covariance exactly; it differs from the
    posterior by the ULA factor (up to 1/(1 - 0.25)), while plain SGLD at this step would
    have variances 4.7-9x the posterior's, and a wrong centring (missing grad U(w*)) would
    shift the mean by many SE. 1500 x 2 draws, 100 updates apart (h k_min = 0.06: ~6 e-folds);
    every mean and covariance entry within Z = 4.5 SE. A user-given centre 3 posterior SDs
    from the mode must give the same mean (the estimator is unbiased anywhere; there the
    grad U(c) term is large) and the oracle's covariance with that offset."""
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, REG_PRIOR_SD, shape=D_REG)
        pm.Normal("y", pm.math.dot(X_REG, beta), NOISE_SD, observed=Y_REG)
    post_mean, post_cov = theory.linear_regression_posterior(X_REG, Y_REG, NOISE_SD, REG_PRIOR_SD)
    hessian = np.linalg.inv(post_cov)
    h = 0.5 / np.linalg.eigvalsh(hessian).max()
    per_example = np.einsum("ia,ib->iab", X_REG, X_REG) / NOISE_SD**2
    offset = np.zeros(D_REG) if centre == "mode" else -3.0 * np.sqrt(np.diag(post_cov))
    predicted = theory.control_variate_sgld_covariance(hessian, per_example, 100, h, centre_offset=offset)
    plain = theory.langevin_stationary_covariance(hessian, h, grad_noise_cov=grad_noise_cov(model, post_mean, 100))
    assert np.min(np.diag(plain) / np.diag(post_cov)) > 4
    assert np.max(np.diag(predicted) / np.diag(post_cov)) > 1.15
    control = "control_variate" if centre == "mode" else {"beta": post_mean - offset}
    step = pymc_sgd.SGLD(batch_size=100, step_size=h, gradient_estimator=control, steps_per_draw=100, model=model)
    beta = posterior_draws(sample(model, step, draws=1500), "beta")
    for i in range(D_REG):
        assert_close(*mean_and_se(beta[..., i]), post_mean[i], f"mean of beta[{i}]")
        for j in range(i, D_REG):
            assert_close(*cov_and_se(beta[..., i], beta[..., j]), predicted[i, j], f"cov[{i},{j}]")


def test_gradient_estimator_refuses_bad_arguments():
    with pm.Model():
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("x", mu, 1.0, observed=np.zeros(10))
        with pytest.raises(ValueError, match="gradient_estimator='median' is unknown"):
            pymc_sgd.SGLD(batch_size=5, step_size=1e-3, gradient_estimator="median")
        with pytest.raises(ValueError, match="lacks"):
            pymc_sgd.SGLD(batch_size=5, step_size=1e-3, gradient_estimator={"sigma": 1.0})
        with pytest.raises(ValueError, match="cannot be combined"):
            pymc_sgd.SGLD(batch_size=5, step_size=1e-3, gradient_estimator="control_variate", correction="exact")
        with pytest.raises(ValueError, match="batch_size=None has none"):
            pymc_sgd.SGLD(batch_size=None, step_size=1e-3, gradient_estimator="svrg")
        with pytest.raises(ValueError, match="epoch_length"):
            pymc_sgd.SVRG(epoch_length=0)
        with pytest.warns(FutureWarning, match="gradient_estimator='control_variate'"):
            step = pymc_sgd.SGLD(batch_size=5, step_size=1e-3, control_variate="mode")
        assert step.gradient_estimator.choice == "control_variate"


def test_a_chosen_step_gets_its_predicted_error_and_a_warning_whose_advice_works(normal_mean):
    """The minibatch case above (B = 100, h = 2e-6): the exact oracle puts the variance at 1.25x the
    posterior's, an SD error of 12%, which the test above measures. A step size the user chooses is no
    longer trusted blindly: the warm-up predicts that error (``predicted_sd_error``; from its own noise
    measurement at a few points, so within 25% of the oracle's with the exact noise) and warns, naming
    step_size=None; following the advice gives no warning (the defaults' accuracy is tested elsewhere)."""
    model, post_mean, post_var = normal_mean
    noise = grad_noise_cov(model, np.array([post_mean]), 100)
    curvature = 1 / PRIOR_SD**2 + N_MEAN / SIGMA**2
    exact = np.sqrt(theory.langevin_stationary_covariance(np.array([[curvature]]), 2e-6,
                                                          grad_noise_cov=noise)[0, 0] / post_var) - 1.0

    def run(**kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            idata = sample(model, pymc_sgd.SGLD(batch_size=100, model=model, **kwargs), draws=50, tune=50)
        return idata, [str(w.message) for w in caught if "step_size=None" in str(w.message)]

    idata, said = run(step_size=2e-6, steps_per_draw=100)
    predicted = idata.sample_stats["predicted_sd_error"].values
    assert 0.05 < exact < 0.2
    assert np.all(np.abs(predicted / exact - 1.0) < 0.25), (predicted, exact)
    assert said and "off by up to" in said[0]
    assert run()[1] == []
