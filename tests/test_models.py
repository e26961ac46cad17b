"""Reference models: seed 000's printed numbers, and each model's logp against its exact answer."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pymc.model.transform.conditioning import remove_value_transforms
from pytensor.graph.replace import vectorize_graph
from scipy import optimize

from pymc_sgd import models

# Pure-Python linker: these graphs run a handful of times, so C compilation (tens of seconds
# with a cold pytensor cache) would dominate the run time.
MODE = "FAST_COMPILE"

# Seed 000's own loops (data generation, grid, gradient descent), run verbatim once.
SEED_X_SUM = 14.716689567588517
SEED_X_FIRST = 1.5197898054870407
SEED_MLE = (0.48516844110748236, 0.14398365467995913)
SEED_GRID_MEAN = (0.34234520948900266, 0.2384449289562603)


def batched_logp(model, values: dict[str, np.ndarray]) -> np.ndarray:
    """The model's logp in its constrained space (no transforms, no Jacobian) at a batch of
    points; values[name] has one leading batch axis before the variable's own shape."""
    model = remove_value_transforms(model)
    inputs = {v: pt.tensor(v.name, dtype=v.dtype, shape=(None,) * (v.ndim + 1)) for v in model.value_vars}
    fn = pytensor.function(list(inputs.values()), vectorize_graph(model.logp(), inputs), mode=MODE)
    return fn(*(np.asarray(values[v.name], dtype=v.dtype) for v in model.value_vars))


def assert_constant_offset(log_a: np.ndarray, log_b: np.ndarray, atol: float = 1e-9) -> None:
    """log_a - log_b is the same number everywhere (equal densities up to normalisation)."""
    offset = log_a - log_b
    assert np.ptp(offset) < atol, f"log densities differ by a non-constant: spread {np.ptp(offset):.3g}"


# --- Seed 000, singular model ------------------------------------------------------------

def test_singular_data_are_the_seeds():
    x = models.seed000_singular_data()
    assert x.shape == (200,)
    assert x[0] == SEED_X_FIRST
    assert x.sum() == pytest.approx(SEED_X_SUM, abs=1e-12)


def test_singular_mle_reproduces_seed():
    a, b = models.seed000_singular_mle()
    assert (round(a, 4), round(b, 4)) == (0.4852, 0.1440)  # printed by the seed
    np.testing.assert_allclose((a, b), SEED_MLE, atol=1e-12)


def test_singular_mle_is_unconverged_gradient_descent():
    """The seed's "MLE" sits on the flat ridge, not at the maximum: the corner a = 0.99 of its
    clip window has a higher likelihood."""
    a, b = models.seed000_singular_mle()
    corner = optimize.minimize_scalar(lambda b_: -models.seed000_singular_loglik(0.99, b_),
                                      bounds=(-0.5, 1.0), method="bounded")
    gain = -corner.fun - models.seed000_singular_loglik(a, b)
    assert corner.x == pytest.approx(0.0743, abs=1e-4)
    assert 0.02 < gain < 0.04


def test_singular_grid_is_normalised_and_reproduces_seed_means():
    a, b, weights = models.seed000_singular_grid()
    assert a.shape == b.shape == (200,) and weights.shape == (200, 200)
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0, abs=1e-12)
    summary = models.seed000_singular_grid_posterior()
    means = (summary["a"]["mean"], summary["b"]["mean"])
    assert tuple(round(m, 4) for m in means) == (0.3423, 0.2384)  # printed by the seed
    np.testing.assert_allclose(means, SEED_GRID_MEAN, atol=1e-12)


@pytest.mark.parametrize("a_bounds", [models.SEED000_A_WINDOW, (0.0, 1.0)])
def test_singular_model_posterior_is_the_grid(a_bounds):
    model = models.seed000_singular_model(a_bounds=a_bounds)
    a, b, weights = models.seed000_singular_grid(size=60, a_bounds=a_bounds)
    A, B = np.meshgrid(a[1:-1], b)  # a = 0 and 1 are outside the open support of U(0, 1)
    logp = batched_logp(model, {"a": A.ravel(), "b": B.ravel()})
    assert_constant_offset(np.log(weights[:, 1:-1]).ravel(), logp)


# --- Conjugate Gaussian models -----------------------------------------------------------

def assert_gaussian_posterior(model, exact: models.GaussianPosterior) -> None:
    """At the exact mean the model's gradient vanishes and its Hessian is minus the exact
    precision (the log posterior of a Gaussian is quadratic, so both checks are exact)."""
    point = {exact.name: exact.mean}
    precision = np.linalg.inv(np.atleast_2d(exact.cov))
    gradient = model.compile_dlogp(mode=MODE)(point)
    np.testing.assert_allclose(gradient, 0.0, atol=1e-9 * np.abs(precision).max())
    np.testing.assert_allclose(model.compile_d2logp(mode=MODE)(point), precision, rtol=1e-9)


def test_conjugate_normal_mean_model():
    model, exact = models.conjugate_normal_mean_model(n=50, sigma=2.0, prior_sd=3.0, seed=1)
    assert exact.mean.shape == exact.cov.shape == ()
    assert exact.cov == pytest.approx(1 / (1 / 9 + 50 / 4))
    assert_gaussian_posterior(model, exact)


@pytest.mark.parametrize("as_data", [False, True])
def test_conjugate_linear_regression_model(as_data):
    model, exact = models.conjugate_linear_regression_model(n=80, d=4, noise_sd=0.5, prior_sd=2.0,
                                                            seed=3, as_data=as_data)
    assert exact.mean.shape == (4,) and exact.cov.shape == (4, 4)
    assert ("X" in model.named_vars) == as_data
    assert_gaussian_posterior(model, exact)


# --- Two-component mixture ---------------------------------------------------------------

@pytest.fixture(scope="module")
def mixture():
    return models.two_component_mixture_model()


def test_mixture_grid_is_exactly_label_symmetric(mixture):
    _, exact = mixture
    assert np.array_equal(exact.weights, exact.weights.T)
    assert exact.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert exact.ordered_fraction() == pytest.approx(0.5, abs=1e-14)
    np.testing.assert_array_equal(exact.modes[1], exact.modes[0][::-1])


def test_mixture_modes_and_moments(mixture):
    model, exact = mixture
    mode = exact.modes[0]
    assert mode[0] < mode[1] and abs(mode[0] + 2) < 0.5 and abs(mode[1] - 3) < 0.5
    np.testing.assert_allclose(model.compile_dlogp(mode=MODE)({"mu": mode}), 0.0, atol=1e-6)
    mean, cov = exact.ordered_moments()
    np.testing.assert_allclose(mean, mode, atol=0.01)  # nearly Gaussian modes: mean ~ mode
    sd = np.sqrt(np.diag(cov))
    assert np.all((0.1 < sd) & (sd < 0.2))  # about 1 / sqrt(n / 2) each
    assert np.all(sd > 4 * np.diff(exact.axis[:2]))  # the grid resolves each mode


def test_mixture_model_posterior_is_the_grid(mixture):
    model, exact = mixture
    i, j = np.nonzero(exact.weights > 1e-250)  # elsewhere the weights underflow to 0
    i, j = i[::10], j[::10]
    assert i.size > 100
    logp = batched_logp(model, {"mu": np.column_stack([exact.axis[i], exact.axis[j]])})
    assert_constant_offset(np.log(exact.weights[i, j]), logp, atol=1e-7)


# --- Multimodal 2-D target ---------------------------------------------------------------

@pytest.fixture(scope="module")
def multimodal():
    return models.multimodal_2d_target()


def test_multimodal_logp_is_the_exact_mixture(multimodal):
    model, exact = multimodal
    points = np.random.default_rng(0).uniform(-8, 8, size=(50, 2))
    np.testing.assert_allclose(batched_logp(model, {exact.name: points}), exact.logpdf(points), rtol=1e-10)


def test_multimodal_grid_integrals_match_weights_and_moments(multimodal):
    """Integrate the model's own density on a fine grid (tails below 1e-12 outside it)."""
    model, exact = multimodal
    axis = np.linspace(-11.0, 13.0, 481)
    X, Y = np.meshgrid(axis, axis)
    points = np.column_stack([X.ravel(), Y.ravel()])
    mass = np.exp(batched_logp(model, {exact.name: points})) * np.diff(axis[:2]) ** 2
    assert mass.sum() == pytest.approx(1.0, abs=1e-9)
    mean = mass @ points
    np.testing.assert_allclose(mean, exact.mean, atol=1e-8)
    np.testing.assert_allclose((points - mean).T @ ((points - mean) * mass[:, None]), exact.cov, atol=1e-8)
    np.testing.assert_allclose(mass @ exact.responsibilities(points), exact.weights, atol=1e-9)
