"""Closed-form oracles: conjugate posteriors and exact stationary covariances of the samplers.

Conventions as in docs/pages/design.md: U = -log prior - sum_i log p(x_i | w), step h on U, target
exp(-U/T). Every formula names its source; docs/pages/sources.md wins over seed 002.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, optimize


def normal_mean_posterior(x: np.ndarray, sigma: float, prior_mean: float, prior_sd: float) -> tuple[float, float]:
    """Posterior (mean, variance) of mu for x_i ~ N(mu, sigma^2), mu ~ N(prior_mean, prior_sd^2).

    Precision adds: 1/v = 1/prior_sd^2 + n/sigma^2; mean = v (prior_mean/prior_sd^2 + sum x / sigma^2).
    """
    precision = 1.0 / prior_sd**2 + len(x) / sigma**2
    mean = (prior_mean / prior_sd**2 + np.sum(x) / sigma**2) / precision
    return float(mean), float(1.0 / precision)


def linear_regression_posterior(X: np.ndarray, y: np.ndarray, noise_sd: float,
                                prior_sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Posterior (mean, covariance) of beta for y ~ N(X beta, noise_sd^2 I), beta ~ N(0, prior_sd^2 I).

    Sigma = (X^T X / noise_sd^2 + I / prior_sd^2)^{-1}, mean = Sigma X^T y / noise_sd^2.
    """
    precision = X.T @ X / noise_sd**2 + np.eye(X.shape[1]) / prior_sd**2
    cov = np.linalg.inv(precision)
    return cov @ X.T @ y / noise_sd**2, cov


def minibatch_gradient_covariance(per_example_cov: np.ndarray, n: int, batch_size: int,
                                  replacement: bool = True) -> np.ndarray:
    """Covariance of grad U_hat for B rows: (n^2 / B) C, times (n - B)/(n - 1) without replacement.

    C is the per-example covariance of grad log p(x_i | w) (seed 000, rescaled from the
    average loss to U = n L); the finite-population factor is docs/pages/sources.md's (1 - B/n) exactly.
    """
    factor = 1.0 if replacement else (n - batch_size) / (n - 1)
    return factor * n**2 / batch_size * np.asarray(per_example_cov)


def langevin_stationary_covariance(hessian: np.ndarray, step_size: float, temperature: float = 1.0,
                                   grad_noise_cov: np.ndarray | None = None,
                                   preconditioner: np.ndarray | None = None,
                                   injected_noise: bool = True) -> np.ndarray:
    """Exact stationary covariance of w <- w - h P (H w + g) + sqrt(2 h T) P^{1/2} xi on a quadratic U.

    The recursion is linear: w' = A w + e with A = I - h P H and Cov(e) = h^2 P Cov(g) P
    + 2 h T P (the last term only for SGLD, ``injected_noise=True``), so Sigma solves the
    discrete Lyapunov equation Sigma = A Sigma A^T + Cov(e) (seed 003, Liu, Ziyin & Ueda,
    Thm. 1 with mu = 0, solved exactly as docs/pages/sources.md recommends). Special cases, 1-D with
    curvature k and P = 1: ULA T / (k (1 - h k / 2)) (docs/pages/sources.md); constant SGD
    h c / (k (2 - h k)) for gradient-noise variance c.
    """
    H = np.atleast_2d(hessian)
    d = H.shape[0]
    P = np.eye(d) if preconditioner is None else np.atleast_2d(preconditioner)
    A = np.eye(d) - step_size * P @ H
    if np.max(np.abs(np.linalg.eigvals(A))) >= 1.0:
        raise ValueError("The recursion is unstable at this step size: the spectral radius of "
                         "I - h P H is >= 1 (need h < 2 / largest eigenvalue of P H).")
    Q = np.zeros((d, d))
    if grad_noise_cov is not None:
        Q += step_size**2 * P @ np.atleast_2d(grad_noise_cov) @ P.T
    if injected_noise:
        Q += 2.0 * step_size * temperature * P
    return linalg.solve_discrete_lyapunov(A, Q)


def langevin_eigenbasis_covariance(curvatures: np.ndarray, step_size: float, temperature: float = 1.0,
                                   grad_noise_cov: np.ndarray | None = None) -> np.ndarray:
    """``langevin_stationary_covariance`` of SGLD (P = I) for the Hessian diag(curvatures): any quadratic
    in its eigenbasis, with the gradient-noise covariance rotated into it. A = I - h diag(k) is diagonal, so
    the discrete Lyapunov equation is solved elementwise, Sigma_ij = Q_ij / (1 - a_i a_j) with a = 1 - h k and
    Q = 2 h T I + h^2 Cov(g): O(d^2) a step size instead of a Schur decomposition's O(d^3) (1 s at d = 200).
    """
    a = 1.0 - step_size * np.asarray(curvatures, dtype=float)
    if np.max(np.abs(a)) >= 1.0:
        raise ValueError("The recursion is unstable at this step size: need h < 2 / largest curvature.")
    Q = 2.0 * step_size * temperature * np.eye(len(a))
    if grad_noise_cov is not None:
        Q = Q + step_size**2 * np.asarray(grad_noise_cov)
    return Q / (1.0 - np.outer(a, a))


# --- Exact finite-learning-rate SGD (seed 003, Liu, Ziyin & Ueda; docs/pages/sources.md) -------------------
#
# Seed 003 writes everything on the AVERAGE loss L = U/n: Hessian K, gradient-noise covariance C of
# grad L, learning rate lambda, heavy ball g = K w + noise, m <- mu m + g, w <- w - Lam m. The same
# recursion on U = n L with step h = lambda/n has Hessian H = n K and noise n^2 C, and the same
# stationary covariance: the linear-algebra oracles below hold in either unit system as long as
# hessian, noise and step refer to the same loss.

_UNIT_CIRCLE = 1.0 - 1e-12  # spectral radii within rounding of 1 count as unstable


def control_variate_sgld_covariance(hessian: np.ndarray, per_example_hessians: np.ndarray, batch_size: int,
                                    step_size: float, temperature: float = 1.0,
                                    centre_offset: np.ndarray | None = None) -> np.ndarray:
    """Exact stationary covariance of SGLD-CV on a quadratic U with linear per-example gradients.

    U = w^T H w / 2 with H = prior precision + sum_i K_i (K_i = per_example_hessians[i], n of
    them) and mode m; the control-variate gradient centred at c, on B rows drawn with
    replacement, is H delta + n (mean_batch K - K_bar)(w - c), delta = w - m (Baker et al.
    2019, their SGLD-CV estimator). Its noise is multiplicative, Cov = (n^2 / B) Cov_i[K_i (w - c)]; with
    e = m - c (``centre_offset``, default 0) and E[delta] = 0 the second moment obeys the linear
    recursion (derived here; with K_i = K_bar it is ULA's Lyapunov equation)

        Sigma = A Sigma A^T + h^2 (n^2 / B) (E_i[K_i S K_i] - K_bar S K_bar) + 2 h T I,  S = Sigma + e e^T,

    A = I - h H, solved exactly as a d^2 x d^2 linear system (the mean is m exactly).
    """
    H = np.atleast_2d(hessian)
    K = np.asarray(per_example_hessians)
    n, d = K.shape[0], H.shape[0]
    A = np.eye(d) - step_size * H
    K_bar = K.mean(axis=0)
    # vec(M S N^T) = (M kron N) vec(S) in row-major order
    second = np.einsum("iab,icd->acbd", K, K).reshape(d * d, d * d) / n - np.kron(K_bar, K_bar)
    transition = np.kron(A, A) + step_size**2 * n**2 / batch_size * second
    if np.max(np.abs(np.linalg.eigvals(transition))) >= 1.0:
        raise ValueError("SGLD-CV's second moment diverges at this step size; reduce it.")
    source = (2.0 * step_size * temperature * np.eye(d)).ravel()
    if centre_offset is not None:
        source += step_size**2 * n**2 / batch_size * second @ np.outer(centre_offset, centre_offset).ravel()
    return np.linalg.solve(np.eye(d * d) - transition, source).reshape(d, d)


def _check_momentum(momentum: float) -> None:
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")


def _step_matrix(step: float | np.ndarray, d: int) -> np.ndarray:
    """A scalar step as step * I, or a (d, d) step matrix as given."""
    step = np.asarray(step, dtype=float)
    return step * np.eye(d) if step.ndim == 0 else np.atleast_2d(step)


def _pair_factors(A: np.ndarray, q: np.ndarray) -> np.ndarray:
    """F_ij = X_ij[0, 0] where X_ij = A_i X_ij A_j^T + q (A: d x 2 x 2 per-mode transitions, q: 2 x 2, or d x 2 x 2
    with one per mode, then only the pairs (i, i)).

    With B = A_j of trace t and determinant e, Cayley-Hamilton gives (B^T)^2 = t B^T - e I, and substituting
    X = q + A X B^T into itself twice: (I - t A + e A^2) X = q + A q B^T - t A q, a 2 x 2 system per pair
    (the 4 x 4 Kronecker system (I - B kron A) vec X = vec q, eliminated by hand): whole-array arithmetic
    over the d^2 pairs, no batched solve (0.56 s of SGHMC's step search per call at d = 1,006 before)."""
    d = len(A)
    if q.ndim == 3:  # one source per mode, on the diagonal pairs only
        return _stein_corner(A, A, q)
    F = np.empty((d, d))
    rows = max(1, (1 << 18) // d)  # modes i per block of pairs: bounded memory at large d
    for start in range(0, d, rows):
        F[start:start + rows] = _stein_corner(A[start:start + rows, None], A[None], q)
    return F


def _stein_corner(A: np.ndarray, B: np.ndarray, q: np.ndarray) -> np.ndarray:
    """X[0, 0] of X = A X B^T + q for broadcasting stacks of 2 x 2 matrices (``_pair_factors``): with
    M = I - t A + e A^2 and R = q + A q B^T - t A q, X[0, 0] = (M_11 R_00 - M_01 R_10) / det M, written out
    element by element (only B's first row enters R's first column)."""
    t = B[..., 0, 0] + B[..., 1, 1]
    e = B[..., 0, 0] * B[..., 1, 1] - B[..., 0, 1] * B[..., 1, 0]
    A2, Aq = A @ A, A @ q  # per A only: no pair dimension yet
    m00, m01 = 1.0 - t * A[..., 0, 0] + e * A2[..., 0, 0], -t * A[..., 0, 1] + e * A2[..., 0, 1]
    m10, m11 = -t * A[..., 1, 0] + e * A2[..., 1, 0], 1.0 - t * A[..., 1, 1] + e * A2[..., 1, 1]
    r00 = q[..., 0, 0] + Aq[..., 0, 0] * B[..., 0, 0] + Aq[..., 0, 1] * B[..., 0, 1] - t * Aq[..., 0, 0]
    r10 = q[..., 1, 0] + Aq[..., 1, 0] * B[..., 0, 0] + Aq[..., 1, 1] * B[..., 0, 1] - t * Aq[..., 1, 0]
    return (m11 * r00 - m01 * r10) / (m00 * m11 - m01 * m10)


def _modal_covariance(A: np.ndarray, C_modal: np.ndarray, g: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Position block of the stationary covariance of z = (x, y) <- A z + noise, in the eigenbasis U of a
    symmetric K for a transition block diagonal there (A: d x 2 x 2, mode i's (x_i, y_i) block), with noise whose
    (i, j) block is C_modal_ij g g^T (C_modal = U^T C U), plus b_i b_i^T on each mode's own block when b (d x 2)
    is given: O(d^2) instead of a 2d x 2d Lyapunov solve (seconds at d = 500, hundreds of times per warm-up).
    The (i, j) block of Z solves Z_ij = A_i Z_ij A_j^T + source_ij (``_pair_factors``); Sigma = U modal U^T.
    Raises ValueError where a mode is unstable."""
    if np.max(np.abs(np.linalg.eigvals(A))) >= _UNIT_CIRCLE:
        raise ValueError("unstable")
    modal = C_modal * _pair_factors(A, np.outer(g, g))
    if b is not None:
        modal[np.diag_indices(len(A))] += _pair_factors(A, np.einsum("ia,ib->iab", b, b))
    return modal


def _heavy_ball_by_modes(K: np.ndarray, C: np.ndarray, lr: float, mu: float) -> np.ndarray:
    """``sgd_stationary_covariance`` with P = I, mode by mode (``heavy_ball_modal_covariance``)."""
    k, U = np.linalg.eigh(0.5 * (K + K.T))
    sigma = U @ heavy_ball_modal_covariance(k, U.T @ C @ U, lr, mu) @ U.T
    return (sigma + sigma.T) / 2


def heavy_ball_modal_covariance(k: np.ndarray, C_modal: np.ndarray, lr: float, mu: float) -> np.ndarray:
    """U^T Sigma U for heavy-ball SGD (``sgd_stationary_covariance`` with P = I) on K = U diag(k) U^T with noise
    covariance U C_modal U^T: in the eigenbasis mode i's (x_i, y_i) moves by A_i = [[1 - lr k_i, -mu lr],
    [k_i, mu]] and the noise enters as Bn = (-lr, 1) (``_modal_covariance``: O(d^2) given the eigenbasis).
    Raises ValueError where a mode is unstable."""
    A = np.zeros((len(k), 2, 2))
    A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1] = 1.0 - lr * k, -mu * lr, k, mu
    try:
        return _modal_covariance(A, C_modal, np.array([-lr, 1.0]))
    except ValueError:
        radius = np.max(np.abs(np.linalg.eigvals(A)))
        raise ValueError(
            f"SGD is unstable: the spectral radius of its transition matrix is {radius:.6g} >= 1. "
            f"Stability needs every eigenvalue of Lam K (Lam = learning_rate * preconditioner) below "
            f"2 (1 + momentum) = {2 * (1 + mu):.6g}; the largest is {lr * k.max():.6g}.") from None


def sgd_stationary_covariance(hessian: np.ndarray, noise_cov: np.ndarray, learning_rate: float,
                              momentum: float = 0.0,
                              preconditioner: np.ndarray | None = None) -> np.ndarray:
    """Exact stationary covariance Sigma of heavy-ball SGD on the quadratic L = w^T K w / 2.

    Recursion (seed 003, Eq. 5, with a preconditioner as in its Theorem 3): g = K w + noise,
    Cov(noise) = C; m <- mu m + g; w <- w - Lam m, Lam = learning_rate * P (P = I by default).
    The state z = (w, m) is a linear AR(1): z' = A z + Bn noise with
    A = [[I - Lam K, -mu Lam], [K, mu I]], Bn = [-Lam; I], so Z = A Z A^T + Bn C Bn^T and
    Sigma = Z[:D, :D] (docs/pages/sources.md on seed 003; this solves Theorems 1-3 exactly, for any K, C, P).
    It exists iff the spectral radius of A is < 1, i.e. (for symmetric positive-definite P and K)
    every eigenvalue of Lam K is below 2 (1 + mu). Units: the learning rate is on the average loss L
    (K, C of grad L), or equivalently h = lambda / n on U with H = n K and noise covariance n^2 C.
    """
    _check_momentum(momentum)
    K = np.atleast_2d(hessian)
    if preconditioner is None and np.allclose(K, K.T):
        return _heavy_ball_by_modes(K, np.atleast_2d(noise_cov), learning_rate, momentum)
    d = K.shape[0]
    eye = np.eye(d)
    lam = learning_rate * (eye if preconditioner is None else np.atleast_2d(preconditioner))
    A = np.block([[eye - lam @ K, -momentum * lam], [K, momentum * eye]])
    radius = np.max(np.abs(np.linalg.eigvals(A)))
    if radius >= _UNIT_CIRCLE:
        largest = np.max(np.linalg.eigvals(lam @ K).real)
        raise ValueError(
            f"SGD is unstable: the spectral radius of its transition matrix is {radius:.6g} >= 1. "
            f"Stability needs every eigenvalue of Lam K (Lam = learning_rate * preconditioner) below "
            f"2 (1 + momentum) = {2 * (1 + momentum):.6g}; the largest is {largest:.6g}.")
    Bn = np.vstack([-lam, eye])
    Z = linalg.solve_discrete_lyapunov(A, Bn @ np.atleast_2d(noise_cov) @ Bn.T)
    sigma = Z[:d, :d]
    return (sigma + sigma.T) / 2


def averaged_iterate_covariance(hessian: np.ndarray, noise_cov: np.ndarray, step_matrix: float | np.ndarray,
                                count: int) -> np.ndarray:
    """Exact covariance of the mean of ``count`` consecutive constant-SGD iterates on a quadratic U, started
    at stationarity (Mandt, Hoffman & Blei 2017, Sec. 6, seed 004, in U units: H the Hessian of U,
    V = noise_cov = Cov(grad U_hat), S = step_matrix, e.g. h M).

    With A = I - S H and Sigma the stationary covariance (Sigma = A Sigma A^T + S V S^T),
    Cov(x_s, x_t) = A^(t-s) Sigma for t >= s, so

        Cov(mean) = (1/K^2) [K Sigma + sum_{k=1}^{K-1} (K - k) (A^k Sigma + Sigma A^kT)],

    which tends to (1/K) H^-1 V H^-1 (independent of S) as K grows past the relaxation time.
    """
    H = np.atleast_2d(hessian)
    d = H.shape[0]
    S = _step_matrix(step_matrix, d)
    A = np.eye(d) - S @ H
    if np.max(np.abs(np.linalg.eigvals(A))) >= _UNIT_CIRCLE:
        raise ValueError("Constant SGD is unstable at this step: every eigenvalue of S H must lie in (0, 2).")
    sigma = linalg.solve_discrete_lyapunov(A, S @ np.atleast_2d(noise_cov) @ S.T)
    weighted_powers, power = np.zeros((d, d)), np.eye(d)
    for k in range(1, count):
        power = power @ A
        weighted_powers += (count - k) * power
    lagged = weighted_powers @ sigma
    return (count * sigma + lagged + lagged.T) / count**2


def sgd_continuous_covariance(hessian: np.ndarray, noise_cov: np.ndarray, learning_rate: float,
                              batch_size: int = 1) -> np.ndarray:
    """Continuous-time (Ornstein-Uhlenbeck) covariance S of constant SGD: H S + S H = (eta / B) C.

    Mandt, Hoffman & Blei 2017 (seed 004); docs/pages/sources.md ("the Lyapunov equation H C + C H = (eta/B)
    Sigma is right"). eta is on the average loss L with Hessian H, C the per-example gradient
    covariance, so the batch gradient has covariance C / B. This is the first-order-in-eta truncation
    of sgd_stationary_covariance (seed 003, remark after Theorem 1); the exact 1-D answer is larger
    by 2 / (2 - eta h).
    """
    q = learning_rate / batch_size * np.atleast_2d(noise_cov)
    return linalg.solve_continuous_lyapunov(np.atleast_2d(hessian), q)


# --- Temperatures and 1-D closed forms ---------------------------------------------------------

def sgd_temperature(learning_rate: float, noise_var: float, batch_size: int) -> float:
    """T_eff = eta sigma^2 / (2 B) of constant SGD (docs/pages/sources.md, conventions; seed 000's eta/(2B) at
    sigma^2 = Fisher = Hessian). eta on the average loss L, sigma^2 the per-example gradient-noise
    variance, B the batch size; continuous-time limit (stationary variance T_eff / curvature)."""
    return learning_rate * noise_var / (2.0 * batch_size)


def momentum_temperature(learning_rate: float, noise_var: float, momentum: float) -> float:
    """T_eff = eta sigma^2 / (2 (1 - beta)) of heavy-ball SGD (docs/pages/sources.md on seed 002; not
    sigma^2 / (1 - beta^2)). v <- beta v - eta g, w <- w + v, with sigma^2 the variance of the
    gradient noise of g (the batch gradient of the average loss); continuous-time limit."""
    _check_momentum(momentum)
    return learning_rate * noise_var / (2.0 * (1.0 - momentum))


def heavy_ball_variance(eta: float, h: float, beta: float, s2: float) -> float:
    """Exact stationary Var(x) of v <- beta v - eta (h x + noise), x <- x + v, with per-step
    velocity noise variance s^2 (= eta^2 sigma^2 for gradient noise sigma^2):
    (1 + beta) s^2 / ((1 - beta) eta h (2 (1 + beta) - eta h)) (docs/pages/sources.md on seed 002; seed 003,
    Corollary 1). Stable iff eta h < 2 (1 + beta). eta is on the loss whose curvature is h."""
    _check_momentum(beta)
    if not 0.0 < eta * h < 2.0 * (1.0 + beta):
        raise ValueError(f"heavy ball is unstable: need 0 < eta h < 2 (1 + beta) = {2 * (1 + beta):.6g}, "
                         f"got eta h = {eta * h:.6g}")
    return (1.0 + beta) * s2 / ((1.0 - beta) * eta * h * (2.0 * (1.0 + beta) - eta * h))


def euler_maruyama_variance(curvature: float, dt: float, temperature: float) -> float:
    """Stationary variance T / (lambda (1 - lambda dt / 2)) of Euler-Maruyama (ULA)
    x <- x - dt lambda x + sqrt(2 dt T) xi on U = lambda x^2 / 2 (docs/pages/sources.md). dt is the step h on U
    (docs/pages/design.md). Stable iff dt < 2 / lambda."""
    if not 0.0 < curvature * dt < 2.0:
        raise ValueError(f"Euler-Maruyama is unstable: need 0 < curvature * dt < 2, got {curvature * dt:.6g}")
    return temperature / (curvature * (1.0 - curvature * dt / 2.0))


def kramers_escape_time(barrier: float, curvature_min: float, curvature_saddle: float,
                        temperature: float) -> float:
    """Eyring-Kramers mean transition time ``2 pi / sqrt(U''(a) |U''(b)|) exp(Delta U / T)``.

    For dx = -U'(x) dt + sqrt(2 T) dW from the minimum a over the saddle b (barrier
    Delta U = U(b) - U(a)) to the next well, in the SDE's time units, to leading order as T -> 0
    (Kramers 1940; prefactor as in docs/pages/sources.md). The first passage to the saddle itself takes half as
    long. Directions transverse to the escape path with equal curvature at a and b cancel. A sampler
    with step h on U needs about this time / h steps.
    """
    return 2.0 * np.pi / np.sqrt(curvature_min * abs(curvature_saddle)) * np.exp(barrier / temperature)


# --- Bayes-optimal learning rates and exact posterior corrections ------------------------------

def _minibatch_noise_scale(n: int, batch_size: int) -> float:
    """(N - S) / S for the minibatch noise C = (N - S)/(N S) K of seed 003 (Sec. 6.1)."""
    if not 0 < batch_size < n:
        raise ValueError(f"need 0 < batch_size < n for minibatch noise, got S = {batch_size}, N = {n}")
    return (n - batch_size) / batch_size


def bayes_optimal_learning_rate(hessian_avg: np.ndarray, n: int, batch_size: int) -> float:
    """KL-optimal scalar learning rate of constant SGD (seed 003, Theorem 6, Eq. 16).

    With minibatch noise C = (N - S)/(N S) K and posterior N(0, (N K)^-1), D_KL(q || posterior) is
    minimised by the root lambda in (0, 2 / k_max) of::

        (N - 2S)/S sum_i k_i / (2 - lambda k_i) + (N - S)/S lambda sum_i k_i^2 / (2 - lambda k_i)^2
        = D / lambda,

    k_i the eigenvalues of K. lambda is on the average loss L (Hessian K = hessian_avg); the step
    on U is lambda / N. Even at this lambda the match is exact only if K is a multiple of I
    (docs/pages/sources.md); see exact_posterior_preconditioner for the exact answer.
    """
    k = np.linalg.eigvalsh(np.atleast_2d(hessian_avg))
    a = _minibatch_noise_scale(n, batch_size)

    def kl_derivative(lam: float) -> float:
        r = k / (2.0 - lam * k)
        return (a - 1.0) * np.sum(r) + a * lam * np.sum(r**2) - k.size / lam

    upper = 2.0 / k.max()
    return optimize.brentq(kl_derivative, 1e-12 * upper, (1.0 - 1e-12) * upper, xtol=1e-15 * upper,
                           rtol=1e-13)


def mandt_learning_rate(hessian_avg: np.ndarray, n: int, batch_size: int) -> float:
    """Mandt, Hoffman & Blei's continuous-time optimal scalar rate 2 S D / (N Tr K) (seed 004;
    seed 003, Sec. 6.1, which shows it is Eq. 16 to first order in lambda for S << N; docs/pages/sources.md).
    On the average loss L (Hessian K); the step on U is this / N."""
    K = np.atleast_2d(hessian_avg)
    return 2.0 * batch_size * K.shape[0] / (n * np.trace(K))


def exact_posterior_preconditioner(hessian_avg: np.ndarray, n: int, batch_size: int,
                                   momentum: float = 0.0) -> np.ndarray:
    """Preconditioner Lam with which constant (heavy-ball) SGD samples N(0, (N K)^-1) exactly.

    For minibatch noise C = (N - S)/(N S) K, Theorem 3 of seed 003 with Lam = c K^-1 and
    Sigma = (N K)^-1 gives (docs/pages/sources.md, consequences of Theorem 3)::

        Lam = 2 (1 - mu^2) / [(1 + mu)(N - S)/S + 1 - mu] K^-1,

    i.e. damped Newton with c = 2 S / N at mu = 0. Lam is the learning-rate matrix on the average
    loss L (w <- w - Lam m, K = hessian_avg); on U = N L the same update is h P = c (N K)^-1.
    The continuous-time (first-order) solution 2 (1 - mu) S / (N - S) K^-1 (Mandt et al.) is biased.
    """
    _check_momentum(momentum)
    a = _minibatch_noise_scale(n, batch_size)
    c = 2.0 * (1.0 - momentum**2) / ((1.0 + momentum) * a + 1.0 - momentum)
    return c * np.linalg.inv(np.atleast_2d(hessian_avg))


def exact_preconditioner(hessian_U: np.ndarray, grad_noise_cov: np.ndarray, momentum: float = 0.0,
                         temperature: float = 1.0) -> np.ndarray:
    """Step matrix Lam with which constant (heavy-ball) SGD on U samples N(0, T H^-1) exactly.

    Update w <- w - Lam grad U_hat (or v <- mu v - Lam grad U_hat, w <- w + v), H the Hessian of U,
    V = Cov(grad U_hat) the measured gradient noise. Seed 003's Theorem 3 (docs/pages/sources.md) gives
    Sigma = H^-1 iff V = 2 (1 - mu) Lam^-1 - (1 - mu)/(1 + mu) H; Sigma is linear in V, so for
    T H^-1 divide V by T::

        Lam = 2 (1 - mu) [V / T + (1 - mu)/(1 + mu) H]^-1      (mu = 0: 2 (V/T + H)^-1).

    Mandt et al.'s continuous-time choice is 2 (1 - mu) T V^-1: it drops the H term, which is
    the finite-step correction. With V = a N K, H = N K this is exact_posterior_preconditioner.
    """
    _check_momentum(momentum)
    H = np.atleast_2d(hessian_U)
    inner = np.atleast_2d(grad_noise_cov) / temperature + (1.0 - momentum) / (1.0 + momentum) * H
    lam = 2.0 * (1.0 - momentum) * np.linalg.inv(inner)
    return (lam + lam.T) / 2


def exact_injected_noise(hessian_U: np.ndarray, grad_noise_cov: np.ndarray, step_size: float | np.ndarray,
                         momentum: float = 0.0, temperature: float = 1.0, clip: bool = False) -> np.ndarray:
    """Covariance Q of the parameter-space noise xi that makes SGLD sample N(0, T H^-1) exactly.

    Update (step h on U, docs/pages/design.md; Lam = h I, or a positive-definite step matrix)::

        mu = 0:  w <- w - Lam grad U_hat(w) + xi;
        mu > 0:  v <- mu v - Lam grad U_hat(w) + xi,  w <- w + v      (xi ~ N(0, Q)).

    By Theorem 3 of seed 003, Sigma = T H^-1 iff the total gradient-noise covariance is
    C_tot = T [2 (1 - mu) Lam^-1 - (1 - mu)/(1 + mu) H] (docs/pages/sources.md, consequences of Theorem 3), so::

        Q = Lam (C_tot - C_grad) Lam = T [2 (1 - mu) Lam - (1 - mu)/(1 + mu) Lam H Lam] - Lam C_grad Lam,

    which for mu = 0, T = 1 and a scalar step is 2 h I - h^2 H - h^2 C_grad: SGLD's 2 h I minus an
    exact finite-step correction. C_grad = Cov(grad U_hat). Raises if Q is not positive semi-definite
    (the step or the gradient noise is too large for any injected noise to compensate), or with
    ``clip=True`` sets its negative eigenvalues to 0 (the closest PSD matrix; no longer exact).
    """
    _check_momentum(momentum)
    H = np.atleast_2d(hessian_U)
    lam = _step_matrix(step_size, H.shape[0])
    q = (temperature * (2.0 * (1.0 - momentum) * lam - (1.0 - momentum) / (1.0 + momentum) * lam @ H @ lam)
         - lam @ np.atleast_2d(grad_noise_cov) @ lam)
    q = (q + q.T) / 2
    eigenvalues, eigenvectors = np.linalg.eigh(q)
    if clip:
        return (eigenvectors * np.clip(eigenvalues, 0.0, None)) @ eigenvectors.T
    smallest = eigenvalues.min()
    if smallest < -1e-12 * np.abs(q).max():
        raise ValueError(f"No exact noise correction at this step: the required injected covariance has "
                         f"eigenvalue {smallest:.3g} < 0 (the gradient noise Lam C_grad Lam and the finite-step "
                         f"term exceed 2 (1 - mu) T Lam). Reduce the step size or the gradient noise.")
    return q


def baoab_stationary_covariance(hessian: np.ndarray, step_size: float, friction: float, temperature: float = 1.0,
                                grad_noise_cov: np.ndarray | None = None) -> np.ndarray:
    """Exact stationary covariance of the position under BAOAB (unit mass) on a quadratic U.

    One BAOAB step with the gradient reused between steps (``kernels.underdamped``) is, from the
    state (x, v) just after a kick: A: x1 = x + (h/2) v; O: v2 = c v + s xi (c = exp(-gamma h),
    s^2 = T (1 - c^2)); A: x2 = x1 + (h/2) v2; B+B: v3 = v2 - h (H x2 + e) with gradient noise
    e ~ N(0, V). Hence (x2, v3) = A (x, v) + noise with::

        A = [[I, (h/2)(1 + c) I], [-h H, c I - (h^2/2)(1 + c) H]],
        noise = [(h/2) s I; s (I - (h^2/2) H)] xi + [0; -h I] e,

    and the covariance solves a discrete Lyapunov equation (derived here; for V = 0 its position
    block is T H^-1 exactly at any stable h, Leimkuhler & Matthews 2013, which the tests check). A and the kick
    are polynomials in H, so the equation is solved mode by mode in H's eigenbasis
    (``baoab_modal_covariance``; the tests check it against the 2d x 2d solve).
    """
    H = np.atleast_2d(hessian)
    k, U = np.linalg.eigh(0.5 * (H + H.T))  # A is block diagonal in H's eigenbasis: solved mode by mode
    noise = np.zeros_like(H) if grad_noise_cov is None else np.atleast_2d(grad_noise_cov)
    sigma = U @ baoab_modal_covariance(k, U.T @ noise @ U, step_size, friction, temperature) @ U.T
    return (sigma + sigma.T) / 2


def baoab_modal_covariance(k: np.ndarray, noise_modal: np.ndarray, step_size: float, friction: float,
                           temperature: float = 1.0) -> np.ndarray:
    """U^T Sigma U of ``baoab_stationary_covariance`` on H = U diag(k) U^T with gradient noise U noise_modal U^T:
    mode i moves by A_i = [[1, (h/2)(1 + c)], [-h k_i, c - (h^2/2)(1 + c) k_i]] with the kick
    ((h/2) s, s (1 - (h^2/2) k_i)) and the gradient noise entering as (0, -h) (``_modal_covariance``)."""
    h, d = step_size, len(k)
    c = np.exp(-friction * h)
    s = np.sqrt(temperature * (1.0 - c * c))
    modes = np.zeros((d, 2, 2))
    modes[:, 0, 0], modes[:, 0, 1] = 1.0, 0.5 * h * (1.0 + c)
    modes[:, 1, 0], modes[:, 1, 1] = -h * k, c - 0.5 * h * h * (1.0 + c) * k
    kicks = np.column_stack([np.full(d, 0.5 * h * s), s * (1.0 - 0.5 * h * h * k)])
    try:
        return _modal_covariance(modes, noise_modal, np.array([0.0, -h]), kicks)
    except ValueError:
        raise ValueError("BAOAB is unstable at this step size (need h < 2 / sqrt(largest curvature)).") from None
