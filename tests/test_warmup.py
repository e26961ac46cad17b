"""The automatic warm-up: every sampler on defaults (only batch_size) against exact posteriors.

The target is a linear regression with known noise, covariates on scales 1e-2 .. 1e2 and an
intercept 200 posterior SDs from PyMC's initial point, so its posterior is Gaussian with a
closed form (theory.linear_regression_posterior). The warm-up promises every posterior SD
within ``target_error`` = 3% (predicted by the exact discrete-time oracles) and unbiased
means. Tolerances: a mean within Z = 4.5 Monte Carlo SEs (tests/mc.py); a variance within
4.5 SEs plus the promised bias, (1.03)^2 - 1 = 6.1% of the exact variance. A sampler that
ignores its metric, takes the wrong step or never leaves the start fails by far more.
"""

import warnings

import numpy as np
import pymc as pm
import pytest

import pymc_sgd
from mc import assert_close, cov_and_se, mean_and_se
from pymc_sgd import models, theory, warmup
from pymc_sgd.gradients import cached_estimator
from pymc_sgd.warmup import arrowhead, settle, tuning

N, NOISE_SD, PRIOR_SD = 2000, 1.0, 1e4
SCALES = np.array([1.0, 1e-2, 1.0, 1e2])  # the first column is the intercept
_rng = np.random.default_rng(21)
X = np.column_stack([np.ones(N), _rng.normal(size=(N, 3))]) * SCALES
Y = X @ np.array([5.0, 300.0, -2.0, 0.03]) + NOISE_SD * _rng.normal(size=N)
EXACT_MEAN, EXACT_COV = theory.linear_regression_posterior(X, Y, NOISE_SD, PRIOR_SD)
VARIANCE_BIAS = (1.0 + warmup.TARGET_ERROR) ** 2 - 1.0


@pytest.fixture(scope="module")
def regression():
    with pm.Model() as model:
        beta = pm.Normal("beta", 0.0, PRIOR_SD, shape=4)
        pm.Normal("y", pm.math.dot(X, beta), NOISE_SD, observed=Y)
    return model


def test_start_is_far_from_the_posterior():
    """PyMC starts at beta = 0: the intercept is (5 - 0) / SD = ~200 posterior SDs away."""
    assert EXACT_MEAN[0] / np.sqrt(EXACT_COV[0, 0]) > 150


def test_bulk_and_metric_recover_the_exact_posterior(regression):
    """On a Gaussian posterior the mode is the mean and H^-1 the covariance, exactly: damped
    Newton from beta = 0 must land within 1e-3 SD and the metric within 1e-5 of each entry's scale."""
    est = cached_estimator(regression)
    bulk = warmup.find_bulk(est, np.zeros(4), np.random.default_rng(0))
    sd = np.sqrt(np.diag(EXACT_COV))
    assert bulk.converged, bulk.message
    np.testing.assert_allclose((bulk.mode - EXACT_MEAN) / sd, 0.0, atol=1e-3)
    metric = warmup.metric_from_hessian(bulk.hessian)
    np.testing.assert_allclose(metric.matrix / np.outer(sd, sd), EXACT_COV / np.outer(sd, sd), atol=1e-5)
    np.testing.assert_allclose(tuning.curvature_range(metric, bulk.hessian), (1.0, 1.0), rtol=1e-6)


def test_full_batch_langevin_step_is_the_ula_closed_form():
    """In the metric H^-1 every curvature is 1; ULA's SD ratio 1 / sqrt(1 - h / 2) (docs/pages/sources.md)
    equals 1.03 at h = 2 (1 - 1.03^-2) = 0.1148. The search fixes h to 1e-4 relative
    (tuning.PRECISION), and the error then to the same order."""
    H = np.diag([1e4, 1.0, 1e-2])
    metric = warmup.metric_from_hessian(H)
    h, error = tuning.langevin_step_size(H, np.zeros((3, 3)), metric)
    np.testing.assert_allclose(h, 2 * (1 - 1.03**-2), rtol=2 * tuning.PRECISION)
    assert 0.03 * (1 - 4 * tuning.PRECISION) <= error <= 0.03


def test_baoab_oracle_is_exact_without_noise_and_matches_simulation_with_it():
    """Full batch: BAOAB's positions have covariance exactly T H^-1 (Leimkuhler & Matthews 2013).
    With gradient noise V the Lyapunov oracle must match a direct simulation of 4000 independent
    1-D chains: the variance over chains has SE var * sqrt(2 / 4000) = 2.2%; 4.5 SE is 10%, and the
    noise here adds 26% to the variance."""
    H = np.array([[2.0, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(theory.baoab_stationary_covariance(H, 0.7, 1.5), np.linalg.inv(H), rtol=1e-10)
    rng, k, h, gamma, V, chains = np.random.default_rng(0), 2.0, 0.4, 1.5, 3.0, 4000
    c = np.exp(-gamma * h)
    x, v = np.zeros(chains), rng.standard_normal(chains)
    grad = k * x + np.sqrt(V) * rng.standard_normal(chains)
    for _ in range(400):
        v -= 0.5 * h * grad
        x += 0.5 * h * v
        v = c * v + np.sqrt(1 - c * c) * rng.standard_normal(chains)
        x += 0.5 * h * v
        grad = k * x + np.sqrt(V) * rng.standard_normal(chains)
        v -= 0.5 * h * grad
    exact = theory.baoab_stationary_covariance(np.array([[k]]), h, gamma, grad_noise_cov=np.array([[V]]))[0, 0]
    assert exact > 1.2 / k
    assert abs(x.var() - exact) <= 4.5 * exact * np.sqrt(2 / chains)


SAMPLERS = {
    "SGLD": lambda model: pymc_sgd.SGLD(batch_size=100, model=model),
    "SGHMC": lambda model: pymc_sgd.SGHMC(batch_size=100, model=model),
    "UnderdampedLangevin": lambda model: pymc_sgd.UnderdampedLangevin(model=model),
    "UnderdampedLangevin-minibatch": lambda model: pymc_sgd.UnderdampedLangevin(batch_size=100, model=model),
    "ReplicaExchangeSGLD": lambda model: pymc_sgd.ReplicaExchangeSGLD(batch_size=100, n_replicas=3,
                                                                      max_temperature=4.0, model=model),
}


@pytest.mark.usefixtures("minibatches_kept")
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_on_defaults_matches_the_exact_posterior(regression, name):
    """2 chains x 600 draws at >= 1/2 effective draw each: SE of a variance ~ sqrt(2 / 600) = 6%
    of it, so 4.5 SE + 6.1% bias is about 30%: an unwhitened or mis-stepped sampler (SD ratios
    of 1e2 or more before this warm-up existed) or one stuck at the start fails by orders of magnitude."""
    with regression:
        idata = pm.sample(draws=600, tune=100, chains=2, cores=1, random_seed=4, progressbar=False,
                          compute_convergence_checks=False, step=SAMPLERS[name](regression))
    draws = idata.posterior["beta"].values
    assert not idata.sample_stats["diverging"].values.any()
    report = pymc_sgd.tuning_report(idata)
    assert (report["predicted_sd_error"] <= warmup.TARGET_ERROR + 1e-9).all()
    for j in range(4):
        assert_close(*mean_and_se(draws[..., j]), EXACT_MEAN[j], f"{name} mean of beta[{j}]")
        assert_close(*cov_and_se(draws[..., j], draws[..., j]), EXACT_COV[j, j], f"{name} variance of beta[{j}]",
                     slack=VARIANCE_BIAS * EXACT_COV[j, j])


@pytest.mark.parametrize("name", ["SGLD", "SGHMC", "UnderdampedLangevin"])
def test_control_variate_is_chosen_when_n_is_large(regression, name):
    """n / B = 20: the plain estimator's noise (V ~ n / B in the metric) forces SGLD to h ~ 0.003
    (SGHMC and BAOAB alike), the centred one allows steps near their caps at twice the rows per
    update: "auto" must centre, and the step must then be that large (SGLD's h > 0.05). Minibatches asked for
    (batching="with_replacement"): on n = 2000 and d = 4 SGLD's warm-up would take the full batch instead."""
    step = getattr(pymc_sgd, name)(batch_size=100, batching="with_replacement", model=regression)
    with regression, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # tune=5 is too short to check settling
        idata = pm.sample(draws=5, tune=5, chains=1, random_seed=1, progressbar=False,
                          compute_convergence_checks=False, step=step)
    assert bool(idata.sample_stats["control_variate"].values.all())
    assert idata.sample_stats["step_size"].values.min() > 0.05


def test_posterior_never_holds_inf_when_sigma_overflows():
    """A step far beyond stability sends log sigma to +inf within a few updates: the chain must be
    halted at its last finite state, flagged with a reason, and leave nothing non-finite."""
    y = np.random.default_rng(1).normal(0.0, 1.0, size=200)
    with pm.Model():
        mu = pm.Normal("mu", 0, 10)
        sigma = pm.HalfNormal("sigma", 10)
        pm.Normal("y", mu, sigma, observed=y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = pm.sample(draws=20, tune=5, chains=1, random_seed=1, progressbar=False,
                              compute_convergence_checks=False,
                              step=pymc_sgd.SGLD(batch_size=20, step_size=0.5, steps_per_draw=50))
    for name in ("mu", "sigma"):
        assert np.all(np.isfinite(idata.posterior[name].values))
    stats = idata.sample_stats
    assert stats["diverging"].values.all()
    assert set(np.unique(stats["divergence_reason"].values)) <= {1, 3}


def test_too_short_tuning_is_reported(regression):
    with regression, pytest.warns(RuntimeWarning, match="too few tuning draws"):
        pm.sample(draws=5, tune=3, chains=1, random_seed=1, progressbar=False, compute_convergence_checks=False,
                  step=pymc_sgd.SGLD(batch_size=100, model=regression))


def test_drift_statistic_flags_a_trend_and_not_a_stationary_chain():
    """iid N(0, 1) draws: max |z| over 4 coordinates exceeds 4.5 with probability ~3e-5. A trend of
    8 SDs over 400 draws puts the last two quarters' means 2 apart with window variances ~1.33:
    z ~ 2 / sqrt(2 * 1.33 / 50) = 8.7, so the check must fire (on the drifting coordinate)."""
    rng = np.random.default_rng(3)
    stationary = rng.standard_normal((400, 4))
    assert settle.drift_statistic(stationary)[0] < settle.DRIFT_Z
    drifting = stationary + np.linspace(0.0, 8.0, 400)[:, None] * np.array([0, 0, 1, 0])
    z, coordinate = settle.drift_statistic(drifting)
    assert z > settle.DRIFT_Z and coordinate == 2


def test_bulk_search_leaves_the_saddle_of_a_symmetric_start():
    """PyMC starts the label-switching mixture at mu = (0, 0), on its symmetry line, where the
    gradient has no component off the line: plain Newton converges to the saddle between the
    modes. The search must step off along the negative curvature and end at a mode, where the
    Hessian is positive definite and the two means differ by about the data's 5 units."""
    model, _ = models.two_component_mixture_model(n=100)
    bulk = warmup.find_bulk(cached_estimator(model), np.zeros(2), np.random.default_rng(0))
    assert bulk.converged, bulk.message
    assert np.linalg.eigvalsh(bulk.hessian).min() > 0
    assert abs(bulk.mode[0] - bulk.mode[1]) > 3.0


@pytest.fixture(scope="module")
def hierarchical():
    return models.noncentred_hierarchical_model()


@pytest.mark.usefixtures("minibatches_kept")
@pytest.mark.parametrize("name", ["SGLD", "SGHMC", "UnderdampedLangevin"])
def test_defaults_hold_where_the_gradient_noise_varies_over_the_posterior(hierarchical, name):
    """Non-centred hierarchical model, exact by quadrature (models.noncentred_hierarchical_model):
    the minibatch noise on posterior draws is ~60x that at the mode and varies 2x between draws.
    A step tuned to the noise at Laplace draws, averaged, runs hot where tau is large and the
    chain avoids it: before the warm-up measured the noise on tuning draws and took the worst
    one, SGHMC's variance of mu came out 0.67 of the exact one here (and on the benchmark's
    version with unknown slope and sigma tau's SD was 0.75x for SGHMC, 0.88x for BAOAB). 2 chains x 1000
    draws: SE of a variance ~ sqrt(2 / ESS) ~ 5-6%, so 4.5 SE + the 6.1% promised bias ~ 30%
    catches SD ratios below 0.83; means within 4.5 SE."""
    model, exact = hierarchical
    with model:
        idata = pm.sample(draws=1000, tune=500, chains=2, cores=1, random_seed=5, progressbar=False,
                          compute_convergence_checks=False, step=getattr(pymc_sgd, name)(batch_size=100))
    assert not idata.sample_stats["diverging"].values.any()
    post = idata.posterior
    columns = [post["mu"].values, np.log(post["tau"].values)] + [post["z"].values[..., j] for j in range(12)]
    for label, draws, mean, sd in zip(exact.labels, columns, exact.mean, exact.sd):
        assert_close(*mean_and_se(draws), mean, f"{name} mean of {label}")
        assert_close(*cov_and_se(draws, draws), sd**2, f"{name} variance of {label}", slack=VARIANCE_BIAS * sd**2)


def test_step_size_is_set_by_the_noisiest_point():
    """The predicted error is the worst point's: a stack (V, 4 V) must give the step of 4 V alone,
    smaller than that of their average 2.5 V."""
    H, metric = np.eye(3), warmup.identity_metric(3)
    V = np.diag([50.0, 20.0, 5.0])
    for tune in (tuning.langevin_step_size, tuning.baoab_parameters, tuning.sghmc_parameters):
        worst, alone, average = (tune(H, noise, metric)[0] for noise in (np.array([V, 4 * V]), 4 * V, 2.5 * V))
        assert worst < average, tune.__name__
        if tune is not tuning.sghmc_parameters:  # SGHMC corrects for the average, so its worst point is milder
            assert worst == pytest.approx(alone, rel=1e-6), tune.__name__


def test_constant_sgd_refuses_gradients_that_leave_a_direction_without_noise(hierarchical):
    """Per-example gradients of the non-centred model satisfy sum_g grad z_g = tau grad mu: their
    covariance is singular, constant-rate SGD cannot move along that direction, and P ~ C^-1 blows
    up there (every draw diverged before this check). The error names the fix, and the fix works."""
    model, _ = hierarchical
    with model, pytest.raises(ValueError, match=r"singular.*Use pymc_sgd\.SGLD\(batch_size=\.\.\.\)"):
        pm.sample(draws=5, tune=5, chains=1, random_seed=1, progressbar=False, compute_convergence_checks=False,
                  step=pymc_sgd.ConstantSGD(batch_size=100))
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # tune=5 is too short to check settling
        idata = pm.sample(draws=5, tune=5, chains=1, random_seed=1, progressbar=False, compute_convergence_checks=False,
                          step=pymc_sgd.SGLD(batch_size=100))
    assert not idata.sample_stats["diverging"].values.any()


def quartic_model() -> pm.Model:
    """U = x^2 / 2 + 2 x^4, whose curvature 1 + 24 x^2 grows away from the mode."""
    with pm.Model() as model:
        x = pm.Normal("x", 0.0, 1.0)
        pm.Potential("quartic", -2.0 * x**4)
    return model


def quartic_variance() -> float:
    """Var(x) under exp(-U) of ``quartic_model``, by quadrature (SD 0.456)."""
    from scipy import integrate

    def density(x):
        return np.exp(-0.5 * x**2 - 2.0 * x**4)

    return integrate.quad(lambda x: x * x * density(x), -5, 5)[0] / integrate.quad(density, -5, 5)[0]


def test_a_chain_that_diverges_in_tuning_goes_on_with_a_smaller_step_and_says_so():
    """U = x^2 / 2 + 2 x^4: the curvature at the mode is 1 but 1 + 24 x^2 where the chain goes (exact SD 0.456
    by quadrature), so the step tuned to the mode (h ~ 0.11) blows up past |x| = 0.85 (h k > 2) within a few
    tuning draws (both chains halted, at draws 2 and 13, before the warm-up halved target_error after a
    divergence in tuning).
    Now each chain goes on from its last good state with a smaller step, says so, and is right: 2 chains x
    1000 draws, moments within 4.5 MC SE (+ the promised 6.1% on the variance). Unadjusted updates
    (metropolis=False): on a full batch the default Metropolis test rejects instead (the test below)."""
    exact_var = quartic_variance()
    with quartic_model():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            idata = pm.sample(draws=1000, tune=1000, chains=2, cores=1, random_seed=3, progressbar=False,
                              compute_convergence_checks=False,
                              step=pymc_sgd.SGLD(batch_size=None, metropolis=False))
    said = [str(w.message) for w in caught if "diverged" in str(w.message) and "target_error=" in str(w.message)]
    assert said, [str(w.message) for w in caught]
    assert not idata.sample_stats["diverging"].values.any()
    draws = idata.posterior["x"].values
    assert_close(*mean_and_se(draws), 0.0, "mean of x")
    assert_close(*cov_and_se(draws, draws), exact_var, "variance of x", slack=VARIANCE_BIAS * exact_var)


@pytest.mark.parametrize("sampler", ["SGLD", "SGHMC", "UnderdampedLangevin", "SGNHT"])
def test_full_batch_defaults_are_exact_where_the_curvature_grows(sampler):
    """The quartic target above, each sampler on defaults with batch_size=None: the Metropolis test
    (``steps.metropolis``) rejects where the curvature outgrows the step, so no chain diverges and the
    law is exact: moments within 4.5 MC SE with no allowance for a step-size bias (the unadjusted chains'
    6% would be 2-3 SE here at 2 x 1000 draws, the blow-ups they had were far more)."""
    exact_var = quartic_variance()
    with quartic_model():
        idata = pm.sample(draws=1000, tune=1000, chains=2, cores=1, random_seed=3, progressbar=False,
                          compute_convergence_checks=False, step=getattr(pymc_sgd, sampler)(batch_size=None))
    assert not idata.sample_stats["diverging"].values.any()
    assert 0.3 < idata.sample_stats["acceptance_rate"].values.mean() < 1.0
    draws = idata.posterior["x"].values
    assert_close(*mean_and_se(draws), 0.0, "mean of x")
    assert_close(*cov_and_se(draws, draws), exact_var, "variance of x")


def _arrowhead(rng: np.random.Generator, d: int, k: int, negative_pivots: int, coupling: float, margin: float,
               cell_size: int = 1):
    """(H, cells): a random H whose first d - k coordinates form cells of ``cell_size`` (H zero between two
    cells; within a cell of two a correlation of -0.6 to 0.6), scales over 4 orders of magnitude; its Schur
    complement is about (margin - 1) (d - k) coupling^2 I + C C^T. Negative pivots with coupling 0 are
    uncoupled (their rows of B are zero)."""
    inner, outer = np.arange(d - k), np.arange(d - k, d)
    pivots = rng.uniform(0.5, 5e3, d - k)
    pivots[:negative_pivots] *= -1.0
    H = np.zeros((d, d))
    H[inner, inner] = pivots
    cells = inner.reshape(-1, cell_size)
    if cell_size == 2:
        within = rng.uniform(-0.6, 0.6, len(cells)) * np.sqrt(np.abs(pivots[cells[:, 0]] * pivots[cells[:, 1]]))
        H[cells[:, 0], cells[:, 1]] = H[cells[:, 1], cells[:, 0]] = within
    B = rng.normal(size=(d - k, k)) * np.sqrt(np.abs(pivots))[:, None] * max(coupling, 0.1)
    if coupling == 0:
        B[:negative_pivots + cell_size - 1] = 0.0  # the cells holding a negative pivot
    H[np.ix_(inner, outer)], H[np.ix_(outer, inner)] = B, B.T
    C = rng.normal(size=(k, k))
    H[np.ix_(outer, outer)] = C @ C.T + margin * (d - k) * max(coupling, 0.1) ** 2 * np.eye(k)
    return H, [cells]


@pytest.mark.parametrize("cell_size", [1, 2])
@pytest.mark.parametrize("negative_pivots, coupling, margin, positive_definite",
                         [(0, 0.1, 2.0, True), (0, 1.0, 0.5, False), (3, 0.1, 2.0, False), (3, 0.0, 2.0, False)])
def test_arrowhead_algebra_equals_the_dense_one(negative_pivots, coupling, margin, positive_definite, cell_size):
    """Block elimination and the reduced eigenproblem (``warmup.arrowhead``) against numpy's dense solve,
    inverse and eigendecomposition of the same Jacobi-scaled matrix, to rounding: positive definite, with a
    Schur complement that is not, with negative pivots, and with uncoupled negative pivots (the lowest
    eigenvalue is then the -1 outside the reduced span); cells of one coordinate and of two (congruent to the
    diagonal case by T_c = Q_c |Lambda_c|^-1/2, so the direction is one of negative curvature, -1 along H, and
    the lowest eigenvector of the scaled matrix only where the cells have one coordinate)."""
    rng = np.random.default_rng(negative_pivots + int(100 * coupling))
    H, cells = _arrowhead(rng, 120, 2 + cell_size, negative_pivots, coupling, margin, cell_size)  # d - k cells
    g = rng.normal(size=len(H))
    factor = arrowhead.factorise(H, cells)
    D = 1.0 / np.sqrt(np.abs(np.diag(H)))
    eigenvalues, eigenvectors = np.linalg.eigh(D[:, None] * H * D[None, :])
    assert factor.positive_definite == (eigenvalues[0] > 0) == positive_definite
    np.testing.assert_allclose(arrowhead.solve(factor, g), np.linalg.solve(H, g), rtol=1e-9, atol=0)
    np.testing.assert_allclose(arrowhead.inverse_diagonal(factor), np.diag(np.linalg.inv(H)), rtol=1e-9)
    direction, pseudo_decrement = arrowhead.negative_curvature(factor, g)
    if cell_size == 1 or positive_definite:  # g^T |A'|^-1 g is g^T |A|^-1 g for T = 1, and g^T A^-1 g for A > 0
        np.testing.assert_allclose(pseudo_decrement, np.sum((eigenvectors.T @ (D * g)) ** 2 / np.abs(eigenvalues)),
                                   rtol=1e-9)
    if eigenvalues[0] > 0:
        assert direction is None
    else:  # unit |H| length along the lowest eigenvector (of the scaled matrix) or one of its eigenvalue
        np.testing.assert_allclose(direction @ H @ direction, -1.0, rtol=1e-9)
        if cell_size == 1:
            scaled = direction / D
            np.testing.assert_allclose(scaled @ (D[:, None] * H * D[None, :]) @ scaled / (scaled @ scaled),
                                       eigenvalues[0], rtol=1e-9)
    shift = rng.uniform(0.0, 10.0, len(H))
    np.testing.assert_allclose(arrowhead.solve(arrowhead.factorise(H, cells, shift), g),
                               np.linalg.solve(H + np.diag(shift), g), rtol=1e-9, atol=0)


def test_arrowhead_mixes_cells_of_one_and_two_and_sets_nearly_singular_cells_aside():
    """A family of single cells and a family of pairs in one factor, one pair correlated 0.99 (an intercept and a
    slope of an uncentred covariate) and one 1 - 1e-12 (singular to rounding: it goes with the outer
    coordinates): solve and the inverse's diagonal equal the dense ones."""
    rng = np.random.default_rng(7)
    H, (pairs,) = _arrowhead(rng, 64, 4, 0, 0.1, 2.0, cell_size=2)
    for cell, correlation in ((pairs[0], 0.99), (pairs[1], 1.0 - 1e-12)):
        H[cell[0], cell[1]] = H[cell[1], cell[0]] = correlation * np.sqrt(H[cell[0], cell[0]] * H[cell[1], cell[1]])
    cells = [pairs[:10].ravel()[:, None], pairs[10:]]  # the first ten pairs as twenty single cells
    H_single = H.copy()
    first = pairs[:10]
    H_single[first[:, 0], first[:, 1]] = H_single[first[:, 1], first[:, 0]] = 0.0  # single cells: no coupling
    g = rng.normal(size=len(H))
    factor = arrowhead.factorise(H_single, cells)
    assert len(factor.inner) == 60 and len(factor.transforms) == 2  # every cell kept, T for both families
    np.testing.assert_allclose(arrowhead.solve(factor, g), np.linalg.solve(H_single, g), rtol=1e-9, atol=0)
    factor = arrowhead.factorise(H, [pairs])
    assert pairs[1, 0] in factor.outer and pairs[1, 1] in factor.outer and pairs[0, 0] in factor.inner
    np.testing.assert_allclose(arrowhead.inverse_diagonal(factor), np.diag(np.linalg.inv(H)), rtol=1e-5)


def _sd_error_directly(whitened_covariance: np.ndarray, K: np.ndarray, metric, temperature: float) -> float:
    """The predicted SD error by its definition: max_j |sqrt(S_jj / (T H^-1)_jj) - 1| with S = L S_z L^T and
    T H^-1 = T L K^-1 L^T."""
    L = metric.factor
    variance = np.diag(L @ whitened_covariance @ L.T)
    return float(np.max(np.abs(np.sqrt(variance / (temperature * np.diag(L @ np.linalg.inv(K) @ L.T))) - 1.0)))


def _sghmc_covariance_directly(K, V_p, h, friction, temperature, corrected_for):
    """SGHMC's stationary covariance in the metric's coordinates by its definition: seed 003's heavy-ball
    recursion with step h, momentum 1 - alpha and gradient noise V_p + N N^T / h^2, the injection N for the
    noise ``corrected_for`` (``tuning.whitened_injection``)."""
    N = tuning.whitened_injection(corrected_for, h, friction, temperature)[0]
    return theory.sgd_stationary_covariance(K, V_p + N @ N.T / (h * h), h, 1.0 - friction)


@pytest.mark.parametrize("kind", ["dense", "diag"])
@pytest.mark.parametrize("corrected", [True, False])
def test_sghmc_error_in_the_eigenbasis_equals_the_direct_route(kind, corrected):
    """tuning._sghmc_error computes the SD error of SGHMC's stationary covariance in K's eigenbasis with
    the injection through V_c's eigenvectors; it must equal the direct route (its definition) at every step
    tried, stable or not, for a dense and a diagonal metric, with and without the noise correction. Both routes
    share theory's mode-by-mode covariance, which test_theory checks against the 2d x 2d Lyapunov solve."""
    rng = np.random.default_rng(3)
    d = 30
    root = rng.normal(size=(d, d)) / np.sqrt(d)
    H = root @ root.T + np.diag(rng.uniform(0.5, 20.0, d))
    noise_roots = rng.normal(size=(3, d, d)) / np.sqrt(d)
    V = 5.0 * noise_roots @ np.swapaxes(noise_roots, 1, 2)
    metric = warmup.metric_from_hessian(H if kind == "dense" else np.diag(np.diag(H)), dense=kind == "dense")
    error_at, alpha_at, points, k_max = tuning._sghmc_error(H, V, metric, 1.0, None, corrected)
    K, V_z = tuning.whitened(H, V, metric)
    correction = V_z.mean(axis=0) if corrected else np.zeros((d, d))
    hot = np.linalg.eigvalsh(V_z.mean(axis=0)).max()  # alpha would exceed 1 above h = 1 / hot: infeasible
    compared = 0
    for h in np.geomspace(1e-4, 2.0, 12) / k_max:
        for V_p, rotated in zip(V_z, points):
            direct = np.inf if h * hot > 1.0 else tuning._guarded(lambda: _sd_error_directly(
                _sghmc_covariance_directly(K, V_p, h, alpha_at(h), 1.0, correction), K, metric, 1.0))
            fast = error_at(h, rotated)
            assert np.isinf(direct) == np.isinf(fast), (h, direct, fast)
            if np.isinf(direct):
                continue
            np.testing.assert_allclose(fast, direct, rtol=1e-8)
            compared += 1
    assert compared >= 12  # most steps tried are stable: the comparison is not vacuous


def test_baoab_error_in_the_eigenbasis_equals_the_direct_route():
    """tuning._baoab_error forms only the diagonal of L U S U^T L^T from the modal covariance; it must equal the SD
    error of theory.baoab_stationary_covariance by its definition at every step tried."""
    rng = np.random.default_rng(4)
    d = 25
    root = rng.normal(size=(d, d)) / np.sqrt(d)
    H = root @ root.T + np.diag(rng.uniform(0.5, 20.0, d))
    noise_roots = rng.normal(size=(2, d, d)) / np.sqrt(d)
    V = noise_roots @ np.swapaxes(noise_roots, 1, 2)
    metric = warmup.metric_from_hessian(H, dense=True)
    error_at, points = tuning._baoab_error(H, V, metric, 1.0, 0.7)
    K, V_z = tuning.whitened(H, V, metric)
    compared = 0
    for h in np.geomspace(0.01, 3.0, 10):
        for V_p, rotated in zip(V_z, points):
            direct = tuning._guarded(lambda: _sd_error_directly(
                theory.baoab_stationary_covariance(K, h, 0.7, 1.0, V_p), K, metric, 1.0))
            fast = error_at(h, rotated)
            assert np.isinf(direct) == np.isinf(fast), (h, direct, fast)
            if np.isfinite(direct):
                np.testing.assert_allclose(fast, direct, rtol=1e-8)
                compared += 1
    assert compared >= 10
