"""The compiled minibatch estimator agrees with PyMC's own logp and gradients."""

import numpy as np
import pymc as pm
import pytest

import pymc_sgd

from pymc_sgd import noise
from pymc_sgd.gradients import ModelSpecificationError, build_estimator
from pymc_sgd.kernels.estimator import per_example_loglik_grads, potential_and_grad
from pymc_sgd.kernels.model import gradient_into

RNG = np.random.default_rng(7)
N, D = 300, 3
X = RNG.normal(size=(N, D))
Y = X @ np.array([1.0, -2.0, 0.5]) + RNG.normal(size=N)


def regression(data_container: bool) -> pm.Model:
    with pm.Model() as model:
        design = pm.Data("X", X) if data_container else X
        beta = pm.Normal("beta", 0, 10, shape=D)
        sigma = pm.HalfNormal("sigma", 2)
        pm.Normal("y", pm.math.dot(design, beta), sigma, observed=Y, shape=N)
    return model


def mixture() -> pm.Model:
    x = np.concatenate([RNG.normal(-2, 1, 50), RNG.normal(3, 1, 50)])
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 5, shape=2)
        pm.NormalMixture("x", w=[0.5, 0.5], mu=mu, sigma=1.0, observed=x)
    return model


def model_u_and_grad(model: pm.Model, w: np.ndarray) -> tuple[float, np.ndarray]:
    point = pm.blocking.DictToArrayBijection.rmap(
        pm.blocking.RaveledVars(w, pm.blocking.DictToArrayBijection.map(model.initial_point()).point_map_info))
    return -float(model.compile_logp()(point)), -model.compile_dlogp()(point)


@pytest.mark.parametrize("make", [lambda: regression(False), lambda: regression(True), mixture],
                         ids=["constant-X", "pm.Data-X", "mixture"])
def test_full_batch_equals_model_logp(make):
    model = make()
    est = build_estimator(model)
    w = RNG.normal(scale=0.5, size=est.dim)
    u, grad = potential_and_grad(est.kernel, w, np.arange(est.n_rows), 1.0)
    u_ref, grad_ref = model_u_and_grad(model, w)
    np.testing.assert_allclose(u, u_ref, rtol=1e-10)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-9, atol=1e-9)
    u_full, grad_full = noise.full_potential_and_grad(est, w)  # all rows read in place, no gather
    np.testing.assert_allclose(u_full, u_ref, rtol=1e-10)
    np.testing.assert_allclose(grad_full, grad_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("make", [lambda: regression(False), mixture], ids=["constant-X", "mixture"])
def test_unsliced_full_batch_equals_model_logp(make):
    """The full-batch estimator (batch_size=None: the model's own likelihood, unsliced). pm.logp of a
    pm.NormalMixture kept a random generator in the graph, and the model's C function failed to compile
    (UnderdampedLangevin() on defaults crashed on this model)."""
    model = make()
    est = build_estimator(model, full_batch=True)
    w = RNG.normal(scale=0.5, size=est.dim)
    u_ref, grad_ref = model_u_and_grad(model, w)
    u_full, grad_full = noise.full_potential_and_grad(est, w)
    np.testing.assert_allclose(u_full, u_ref, rtol=1e-10)
    np.testing.assert_allclose(grad_full, grad_ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gradient_into(est.kernel, w, np.zeros(0, dtype=np.int64), np.ones(1), np.empty(est.dim)),
                               grad_ref, rtol=1e-9, atol=1e-9)


def test_design_matrix_is_detected_and_subsampled_with_y():
    est = build_estimator(regression(True))
    assert est.data_names == ("y", "X") and est.n_rows == N
    w = RNG.normal(size=est.dim)
    rows = np.array([5, 17, 17, 250])
    _, _, loglik, _ = est.fn(w, rows, *est.data)
    beta, sigma = w[:D], np.exp(w[D])
    resid = Y[rows] - X[rows] @ beta
    expected = np.sum(-0.5 * (resid / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(loglik, expected, rtol=1e-12)


def test_per_example_gradients_sum_to_full_gradient():
    est = build_estimator(regression(False))
    w = RNG.normal(size=est.dim)
    rows = np.arange(N)
    per_example = per_example_loglik_grads(est.kernel, w, rows)
    assert per_example.shape == (N, est.dim)
    np.testing.assert_allclose(per_example.sum(axis=0), est.fn(w, rows, *est.data)[3], rtol=1e-10)


def test_minibatch_estimate_is_unbiased_over_all_single_row_batches():
    """U_hat with B = 1 and scale n, averaged over the n possible rows, is exactly U."""
    est = build_estimator(regression(False))
    w = RNG.normal(size=est.dim)
    estimates = [potential_and_grad(est.kernel, w, np.array([i]), float(N)) for i in range(N)]
    u_full, g_full = potential_and_grad(est.kernel, w, np.arange(N), 1.0)
    np.testing.assert_allclose(np.mean([e[0] for e in estimates]), u_full, rtol=1e-10)
    np.testing.assert_allclose(np.mean([e[1] for e in estimates], axis=0), g_full, rtol=1e-9)


def test_several_observed_variables_of_same_length():
    z = 2 * X[:, 0] + RNG.normal(size=N)
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, 10, shape=D)
        pm.Normal("y", pm.math.dot(X, beta), 1.0, observed=Y)
        pm.Normal("z", beta[0] * X[:, 0], 1.0, observed=z)
    est = build_estimator(model)
    assert est.data_names[:2] == ("y", "z")
    assert sorted(a.shape for a in est.data[2:]) == [(N,), (N, D)]  # X[:, 0] and X, both per-row
    w = RNG.normal(size=D)
    u, grad = potential_and_grad(est.kernel, w, np.arange(N), 1.0)
    u_ref, grad_ref = model_u_and_grad(model, w)
    np.testing.assert_allclose([u, *grad], [u_ref, *grad_ref], rtol=1e-10)


def test_explicit_data_names_the_tensors():
    est = build_estimator(regression(True), data=["X"])
    assert est.data_names == ("y", "X")


def test_errors_name_the_problem_and_the_fix():
    with pm.Model() as discrete:
        k = pm.Poisson("k", 3.0)
        pm.Normal("y", k, 1.0, observed=Y)
    with pytest.raises(ModelSpecificationError, match=r"\['k'\] are discrete.*pm.Metropolis"):
        build_estimator(discrete)

    with pm.Model() as ambiguous:
        shared = pm.Data("weights", np.ones(N))
        beta = pm.Normal("beta", 0, pm.math.sum(shared))
        pm.Normal("y", beta * shared, 1.0, observed=Y)
    with pytest.raises(ModelSpecificationError, match=r"'weights'.*both the likelihood and the prior.*data="):
        build_estimator(ambiguous)
    assert build_estimator(ambiguous, data=["weights"]).data_names == ("y", "weights")

    with pytest.raises(ModelSpecificationError, match=r"data='Z' is not a data tensor.*Known data tensors: \['X'\]"):
        build_estimator(regression(True), data=["Z"])

    with pm.Model() as unscaled:
        xb, yb = pm.Minibatch(X, Y, batch_size=10)
        pm.Normal("y", pm.math.dot(xb, pm.Normal("beta", 0, 10, shape=D)), 1.0, observed=yb)
    with pytest.raises(ModelSpecificationError, match=r"pm.Minibatch but has no total_size.*total_size=<number"):
        build_estimator(unscaled)
    with pm.Model() as wrong_total:
        xb, yb = pm.Minibatch(X, Y, batch_size=10)
        pm.Normal("y", pm.math.dot(xb, pm.Normal("beta", 0, 10, shape=D)), 1.0, observed=yb, total_size=2 * N)
    with pytest.raises(ModelSpecificationError, match=rf"total_size={2 * N} but its data has {N} rows. Set total_size={N}"):
        build_estimator(wrong_total)
    with pm.Model() as tempered:  # total_size on full data would scale the likelihood: refused, not ignored
        pm.Normal("y", pm.math.dot(X, pm.Normal("beta", 0, 10, shape=D)), 1.0, observed=Y, total_size=2 * N)
    with pytest.raises(ModelSpecificationError, match=rf"total_size={2 * N} but its data has {N} rows"):
        build_estimator(tempered)


def _rows_terms(est, w):
    """r_i(w) for every row i: the estimator's log-likelihood on the single-row batch [i]."""
    return np.array([est.fn(w, np.array([i]), *est.data)[2].item() for i in range(est.n_rows)])


def test_observed_of_different_lengths_share_one_unbiased_index():
    """A row-level (300 rows) and a group-level (40 rows) likelihood: with i uniform over 300 rows
    the estimator (n/B) sum r_i is unbiased iff sum_i r_i is the full log-likelihood, exactly
    (E over one uniform row of n r_i is sum_i r_i). Checked to rounding for the value, the
    gradient, and the 40-row likelihood alone (each group row weighted to total 1)."""
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 10.0)
        pm.Normal("rows", mu, 1.0, observed=Y)
        pm.Normal("groups", mu, 2.0, observed=Y[:40])
    est = build_estimator(model)
    assert est.n_rows == N
    w = np.array([0.3])
    full = est.full_fn(w, *est.data)[2].item()
    np.testing.assert_allclose(_rows_terms(est, w).sum(), full, rtol=1e-12)
    exact = pm.logp(pm.Normal.dist(0.3, 1.0), Y).sum().eval() + pm.logp(pm.Normal.dist(0.3, 2.0), Y[:40]).sum().eval()
    np.testing.assert_allclose(full, exact, rtol=1e-12)
    grads = np.array([est.fn(w, np.array([i]), *est.data)[3][0] for i in range(N)])
    # pytensor's numba backend compiles with fastmath: rounding ~1e-9 of the terms' total size
    np.testing.assert_allclose(grads.sum(), est.full_fn(w, *est.data)[3][0], rtol=0, atol=1e-8 * np.abs(grads).sum())


def test_pm_minibatch_model_is_its_full_data_model():
    """pm.Minibatch + total_size (PyMC's big-data idiom): the estimator reads the full arrays the
    Minibatch draws from, and equals the same model written on full data, at every row."""
    with pm.Model() as minibatched:
        xb, yb = pm.Minibatch(X, Y, batch_size=10)
        beta = pm.Normal("beta", 0, 10, shape=D)
        pm.Normal("y", pm.math.dot(xb, beta), pm.HalfNormal("sigma", 2), observed=yb, total_size=N)
    est, reference = build_estimator(minibatched), build_estimator(regression(False))
    w = RNG.normal(scale=0.5, size=est.dim)
    assert est.n_rows == N
    np.testing.assert_allclose(_rows_terms(est, w), _rows_terms(reference, w), rtol=1e-12)


def location_scale() -> pm.Model:
    """Seed 000's regular model: scalar parameters, one column of data."""
    with pm.Model() as model:
        pm.Normal("x", pm.Flat("a"), pm.HalfFlat("sigma"), observed=RNG.normal(1.0, 2.0, 200))
    return model


def indexed_coefficients() -> pm.Model:
    """posteriordb's kidiq style: beta[k] times separate columns, int observations, a half-Cauchy scale."""
    columns = RNG.normal(size=(3, N))
    with pm.Model() as model:
        beta = pm.Flat("beta", shape=4)
        mu = beta[0] + beta[1] * columns[0] + beta[2] * columns[1] + beta[3] * columns[0] * columns[1]
        pm.Normal("y", mu, pm.HalfCauchy("sigma", 2.5), observed=np.round(10 * Y).astype(np.int64))
    return model


def poisson_glm() -> pm.Model:
    """log-link counts (log-gamma of the data, exp of a dot product with a design matrix)."""
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, 1, shape=D)
        pm.Poisson("y", pm.math.exp(pm.math.dot(X, beta) / 3), observed=RNG.poisson(2.0, N))
    return model


def free_degrees_of_freedom() -> pm.Model:
    """Student-t with a free nu: its gradient needs the digamma function (kernels.scalar_math)."""
    with pm.Model() as model:
        pm.StudentT("y", nu=pm.Gamma("nu", 2, 0.1), mu=pm.Normal("mu", 0, 5), sigma=1.0, observed=Y)
    return model


def truncated_normal() -> pm.Model:
    """A truncated likelihood: its normalising constant's gradient uses ops the unroller does not know."""
    with pm.Model() as model:
        pm.TruncatedNormal("y", mu=pm.Normal("mu", 0, 1), sigma=1.0, lower=-1.0, observed=np.abs(Y))
    return model


HOT_LOOP_MODELS = {"regression": (lambda: regression(True), True), "mixture": (mixture, True),
                   "location-scale": (location_scale, True), "indexed": (indexed_coefficients, True),
                   "poisson": (poisson_glm, True), "student-t": (free_degrees_of_freedom, True),
                   "truncated": (truncated_normal, False)}


@pytest.mark.parametrize("name", HOT_LOOP_MODELS)
def test_hot_loop_gradient_equals_the_scaled_parts(name):
    """The samplers' inner-loop gradient is -(grad log p(w) + (n/B) grad sum_batch log p(x_i|w)) of
    pytensor's array code, whether it is the unrolled row loop (pymc_sgd.unrolled: the model's
    graph has small static shapes and ops it knows; no grad_fn is compiled) or pytensor's grad_fn."""
    make, unrolled = HOT_LOOP_MODELS[name]
    est = build_estimator(make())
    assert (est.grad_fn is None) == unrolled
    w = RNG.normal(scale=0.5, size=est.dim)
    rows = RNG.integers(0, est.n_rows, size=7)
    scale = est.n_rows / len(rows)
    _, expected = potential_and_grad(est.kernel, w, rows, scale)
    np.testing.assert_allclose(gradient_into(est.kernel, w, rows, np.full(1, scale), np.empty(est.dim)),
                               expected, rtol=1e-12, atol=1e-12)


def test_an_error_inside_the_model_is_nan_not_stale_values():
    """The kernels call the model through a cfunc, which cannot raise: an error the model raises (here
    PyMC's sigma > 0 check at mu < 0, in the log-density; the gradient-only graph has no check) must
    leave NaN, which the kernels' divergence guard stops on, never the previous call's numbers."""
    y = np.random.default_rng(0).normal(1.0, 1.0, 50)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("y", mu, sigma=mu, observed=y)
    est = build_estimator(model)
    rows = np.arange(5)
    assert np.all(np.isfinite(potential_and_grad(est.kernel, np.array([1.0]), rows, 1.0)[1]))
    u, grad = potential_and_grad(est.kernel, np.array([-1.0]), rows, 1.0)
    assert np.isnan(u) and np.isnan(grad).all()
    with model:
        idata = pm.sample(draws=10, tune=0, chains=1, random_seed=1, progressbar=False, compute_convergence_checks=False,
                          initvals={"mu": 1.0}, step=pymc_sgd.SGLD(batch_size=10, step_size=0.1))  # overshoots
    assert idata.sample_stats["diverging"].values[0, -1] and np.isfinite(idata.posterior["mu"].values).all()


def test_a_wrong_unrolled_gradient_is_caught_and_the_array_code_kept(monkeypatch, caplog):
    """The unrolled gradient is checked against pytensor's at build time: a wrong translation of an
    op (here exp read as exp(2x)) falls back to grad_fn with a warning, never a wrong gradient."""
    import pytensor.scalar as ps

    from pymc_sgd import unrolled
    monkeypatch.setitem(unrolled.SCALAR_OPS, ps.Exp, lambda a: f"np.exp(2.0 * {a})")
    est = build_estimator(location_scale())
    assert est.grad_fn is not None and "disagrees" in caplog.text
    w, rows = np.array([0.3, 0.2]), np.arange(10)
    _, expected = potential_and_grad(est.kernel, w, rows, 20.0)
    np.testing.assert_allclose(gradient_into(est.kernel, w, rows, np.full(1, 20.0), np.empty(2)), expected, rtol=1e-12)


def test_digamma_matches_scipy():
    """The unrolled gradients' digamma (Gamma, Beta, Student-t shapes) against scipy.special.psi over
    1e-6..1e6 and negative non-integers (reflection); the series is truncated below 1e-15 at x >= 10."""
    import scipy.special

    from pymc_sgd.kernels.scalar_math import digamma
    xs = np.concatenate([np.geomspace(1e-6, 1e6, 200), -np.linspace(0.01, 5.99, 100) + 1e-3])
    exact = scipy.special.psi(xs)
    np.testing.assert_allclose([digamma(x) for x in xs], exact, rtol=1e-12, atol=1e-12)
    assert np.isnan(digamma(-2.0)) and np.isnan(digamma(0.0))
