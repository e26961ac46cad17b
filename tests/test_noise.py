"""noise.py's measured geometry against closed forms on seed 000's regular model.

In (a, s = log sigma): grad_a log p(x|w) = (x - a)/sigma^2, grad_s log p = (x - a)^2/sigma^2 - 1;
U = n s + sum (x - a)^2 / (2 sigma^2) - s (HalfFlat Jacobian), so at the mode
sigma^2 = sum (x - a)^2 / (n - 1), a = mean(x), H = diag(n / sigma^2, 2 (n - 1)).
"""

import numpy as np

from pymc_sgd import models, noise
from pymc_sgd.gradients import cached_estimator

X = models.seed000_regular_data()
N = len(X)


def test_mode_hessian_and_gradient_noise_match_closed_forms():
    geo = noise.geometry(cached_estimator(models.seed000_regular_model()))
    a, sigma2 = X.mean(), np.sum((X - X.mean()) ** 2) / (N - 1)
    np.testing.assert_allclose(geo.w, [a, 0.5 * np.log(sigma2)], atol=1e-6)
    np.testing.assert_allclose(geo.hessian, np.diag([N / sigma2, 2 * (N - 1)]), rtol=1e-5, atol=1e-3)
    per_example = np.column_stack([(X - a) / sigma2, (X - a) ** 2 / sigma2 - 1])
    np.testing.assert_allclose(geo.per_example_cov, np.cov(per_example.T, bias=True), rtol=1e-8, atol=1e-10)
    assert np.allclose(geo.hessian_eig[1] @ np.diag(geo.hessian_eig[0]) @ geo.hessian_eig[1].T, geo.hessian)


def test_scalar_learning_rate_error_is_erratas():
    """docs/pages/sources.md: SGD at eta = 2B/n over posterior SD is ~1.08 (a), ~1.46 (log sigma) with
    batches without replacement; with replacement the (1 - B/n) factor is absent: 1.46/sqrt(0.95)."""
    geo = noise.geometry(cached_estimator(models.seed000_regular_model()))
    ratio = noise.scalar_learning_rate_sd_ratio(geo, N, 10)
    np.testing.assert_allclose(ratio, [1.08 / np.sqrt(0.95), 1.46 / np.sqrt(0.95)], rtol=0.03)


def test_implicit_prior_score_formula():
    """At a point w, s = grad L - (2/h) V^{-1} grad L with V = (n^2/B) C(w) (seed 001)."""
    est = cached_estimator(models.seed000_regular_model())
    w = np.array([0.1, -0.05])
    h, B = 1e-3, 10
    grad_loss = -est.fn(w, np.arange(N), *est.data)[3]
    V = N**2 / B * noise.per_example_gradient_covariance(est, w)
    expected = grad_loss - 2 * h * np.linalg.solve(h**2 * V, grad_loss)
    np.testing.assert_allclose(noise.implicit_prior_score(est, h, B)(w), expected, rtol=1e-10)


def test_singular_model_geometry_agrees_with_finite_differences():
    """Seed 000's singular mixture (logit coordinates): C from autodiff per-example gradients
    equals C from central differences of each log p(x_i | w) (step 1e-6, error O(eps^2)),
    and H from differences of the exact gradient equals second differences of U itself
    (step 1e-4, error O(eps^2) ~ 1e-6 relative plus rounding ~1e-8 U / eps^2)."""
    est = cached_estimator(models.seed000_singular_model())
    w = np.array([0.2, -0.3])
    rows = np.arange(est.n_rows)

    def loglik_rows(point):
        return np.array([est.fn(point, np.array([i]), *est.data)[2] for i in rows], dtype=float)

    eps = 1e-6
    grads = np.column_stack([(loglik_rows(w + eps * e) - loglik_rows(w - eps * e)) / (2 * eps) for e in np.eye(2)])
    np.testing.assert_allclose(noise.per_example_gradient_covariance(est, w), np.cov(grads.T, bias=True),
                               rtol=1e-6, atol=1e-10)

    def U(point):
        return noise.full_potential_and_grad(est, point)[0]

    h, E = 1e-4, np.eye(2)
    second = np.array([[(U(w + h * E[i] + h * E[j]) - U(w + h * E[i] - h * E[j]) - U(w - h * E[i] + h * E[j])
                         + U(w - h * E[i] - h * E[j])) / (4 * h * h) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(noise.hessian(est, w), second, rtol=1e-4, atol=1e-3)
