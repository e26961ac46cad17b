"""Closed-form oracles of pymc_sgd.theory against worked numbers, quadrature, optimisers and simulation.

Simulation checks (no PyMC): a numba heavy-ball recursion on a quadratic loss with Gaussian gradient
noise, v <- mu v - Lam (K w + noise) + xi, w <- w + v (seed 003's Eq. 5 with v = -Lam m, plus optional
injected parameter-space noise xi), CHAINS independent chains of STEPS steps after a burn-in of BURN_IN
steps (thousands of relaxation times). Every entry Sigma_ij of the empirical stationary covariance is
compared with its oracle within Z = 4.5 Monte Carlo standard errors (tests/mc.py's Z and assert_close):

- Sigma_ij is the mean of the N = CHAINS * STEPS products p_t = (w_i - mean_i)(w_j - mean_j), so its
  standard error is sd(p) / sqrt(ESS), ESS = N / (1 + 2 sum_k rho_p(k)) the effective sample size of p.
- ESS is estimated by non-overlapping batch means: each chain is cut into BATCHES batches of
  STEPS / BATCHES = 5000 steps, far longer than the integrated autocorrelation time of p (at most
  about 20 steps in every case here), so the M = CHAINS * BATCHES batch means are nearly independent with
  variance var(p) / (ESS / M), and SE = sd(batch means) / sqrt(M), i.e. ESS = var(p) / SE^2. With
  M = 200 the SE itself is uncertain by 1/sqrt(2 (M - 1)) = 5%, which leaves |z| <= 4.5 a
  false-alarm rate of about 1e-5 per check (Student t, 199 degrees of freedom).
- ArviZ's bulk and mean ESS (tests/mc.py) overestimate the ESS about 2.4-fold for the strongly
  oscillating heavy-momentum chain (mu = 0.9): over 100 replicates the z-scores had standard deviation
  1.5-1.7 with them and 0.97 with batch means, so batch means are used here.

Seeds are fixed, and each case also requires a wrong oracle (the continuous-time / first-order one, or
the uncorrected sampler's target) to miss the estimate by more than 3 Z standard errors, so the checks
have the power to tell the formulas apart.
"""

import numpy as np
import pytest
from numba import njit
from scipy import integrate, linalg, optimize

from mc import Z, assert_close
from pymc_sgd import theory

CHAINS, STEPS, BURN_IN, BATCHES = 4, 250_000, 2_000, 50

# Average-loss Hessian (eigenvalues 2.21, 0.29), gradient noise and preconditioner; no two commute.
K = np.array([[2.0, 0.6], [0.6, 0.5]])
C = np.array([[0.5, -0.3], [-0.3, 1.0]])
P = np.array([[1.0, -0.4], [-0.4, 0.8]])


# --- simulation helpers ---------------------------------------------------------------------------

@njit
def _heavy_ball_chain(hessian, step, momentum, grad_sqrt, inject_sqrt, n_steps, burn_in, seed):
    """(n_steps, d) draws of w from v <- mu v - step (H w + grad noise) + xi, w <- w + v, from w = v = 0."""
    np.random.seed(seed)
    d = hessian.shape[0]
    w = np.zeros(d)
    v = np.zeros(d)
    draws = np.empty((n_steps, d))
    for t in range(burn_in + n_steps):
        grad = hessian @ w + grad_sqrt @ np.random.standard_normal(d)
        v = momentum * v - step @ grad + inject_sqrt @ np.random.standard_normal(d)
        w = w + v
        if t >= burn_in:
            draws[t - burn_in] = w
    return draws


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    """A matrix R with R R^T = cov, for positive semi-definite cov (singular allowed)."""
    vals, vecs = np.linalg.eigh(cov)
    return np.ascontiguousarray(vecs * np.sqrt(np.clip(vals, 0.0, None)))


def simulate(hessian: np.ndarray, step: np.ndarray, grad_cov: np.ndarray, momentum: float = 0.0,
             injected_cov: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """(chain, draw, d) stationary draws of the heavy-ball recursion, CHAINS chains of STEPS steps."""
    injected_cov = np.zeros_like(hessian) if injected_cov is None else injected_cov
    args = (np.ascontiguousarray(hessian, dtype=float), np.ascontiguousarray(step, dtype=float), momentum,
            _sqrt_psd(grad_cov), _sqrt_psd(injected_cov), STEPS, BURN_IN)
    return np.stack([_heavy_ball_chain(*args, 1000 * seed + chain) for chain in range(CHAINS)])


def cov_and_se(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Covariance of two (chain, step) arrays and its batch-means standard error (module docstring)."""
    products = (x - x.mean()) * (y - y.mean())
    batch_means = products.reshape(products.shape[0], BATCHES, -1).mean(axis=-1)
    return float(products.mean()), float(batch_means.std(ddof=1) / np.sqrt(batch_means.size))


def assert_covariance(draws: np.ndarray, exact: np.ndarray, wrong: np.ndarray, what: str) -> list[tuple]:
    """Each Sigma_ij within Z SE of exact, and some entry more than 3 Z SE from the wrong oracle.

    Returns rows (entry, estimate, SE, exact, wrong) for reporting.
    """
    rows = []
    for i, j in zip(*np.triu_indices(exact.shape[0])):
        estimate, se = cov_and_se(draws[..., i], draws[..., j])
        assert_close(estimate, se, exact[i, j], f"{what} Sigma[{i},{j}]")
        rows.append(((i, j), estimate, se, exact[i, j], wrong[i, j]))
    worst = max(abs(estimate - bad) / se for _, estimate, se, _, bad in rows)
    assert worst > 3 * Z, f"{what}: the wrong oracle is only {worst:.1f} SE off; the test has no power"
    return rows


def first_order_covariance(hessian: np.ndarray, noise_cov: np.ndarray, lam: np.ndarray,
                           momentum: float) -> np.ndarray:
    """Continuous-time truncation of seed 003's Theorem 3: (1 - mu)(Lam K S + S K Lam) = Lam C Lam."""
    return linalg.solve_continuous_lyapunov((1.0 - momentum) * lam @ hessian, lam @ noise_cov @ lam)


def learning_rate_at(fraction: float, momentum: float, preconditioner: np.ndarray) -> float:
    """Scalar lambda putting the largest eigenvalue of lambda P K at `fraction` of the limit 2 (1 + mu)."""
    return fraction * 2.0 * (1.0 + momentum) / np.max(np.linalg.eigvals(preconditioner @ K).real)


# --- worked numbers (docs/pages/sources.md, notes on seed 003) --------------------------------------------

@pytest.mark.parametrize("lam, variance", [(0.5, 1 / 3), (1.0, 1.0), (1.5, 3.0), (1.9, 19.0)])
def test_sgd_variance_worked_numbers(lam: float, variance: float) -> None:
    """1-D, k = 1, sigma^2 = 1: Var = lambda / (2 - lambda)."""
    assert theory.sgd_stationary_covariance(1.0, 1.0, lam)[0, 0] == pytest.approx(variance, rel=1e-12)


@pytest.mark.parametrize("momentum, variance", [(0.5, 33.0), (0.7, 23.974), (0.9, 49.762)])
def test_momentum_variance_worked_numbers(momentum: float, variance: float) -> None:
    """lambda k = 2.75, sigma^2 = 1: Var = (1 + mu) 2.75 / ((1 - mu)(2 (1 + mu) - 2.75)); the 1-D closed
    form with velocity noise s^2 = lambda^2 sigma^2 agrees with the Lyapunov oracle."""
    exact = theory.sgd_stationary_covariance(1.0, 1.0, 2.75, momentum)[0, 0]
    assert exact == pytest.approx(variance, rel=2e-5)
    assert theory.heavy_ball_variance(2.75, 1.0, momentum, 2.75**2) == pytest.approx(exact, rel=1e-10)


@pytest.mark.parametrize("momentum", [0.0, 0.2, 0.375])
def test_momentum_instability_below_threshold(momentum: float) -> None:
    """lambda k = 2.75 diverges for mu <= (lambda k - 2) / 2 = 0.375."""
    with pytest.raises(ValueError, match=r"2 \(1 \+ momentum\)"):
        theory.sgd_stationary_covariance(1.0, 1.0, 2.75, momentum)
    with pytest.raises(ValueError, match="unstable"):
        theory.heavy_ball_variance(2.75, 1.0, momentum, 1.0)


def test_momentum_just_above_threshold_is_finite() -> None:
    assert theory.sgd_stationary_covariance(1.0, 1.0, 2.75, 0.376)[0, 0] > 1e3


def test_baoab_by_modes_equals_the_lyapunov_solve_of_its_docstring() -> None:
    """theory.baoab_stationary_covariance solves mode by mode; the 2d x 2d discrete Lyapunov equation of its
    docstring (A and the noise written out here) gives the same position covariance to rounding, for a dense H
    and gradient noise V (d = 30) near the stability limit h < 2 / sqrt(k_max)."""
    rng = np.random.default_rng(6)
    M, N = rng.normal(size=(2, 30, 30))
    H, V = M @ M.T / 30 + 0.1 * np.eye(30), N @ N.T / 30
    h, gamma, T = 1.8 / np.sqrt(np.linalg.eigvalsh(H).max()), 0.7, 1.3
    eye, c = np.eye(30), np.exp(-gamma * h)
    s = np.sqrt(T * (1 - c * c))
    A = np.block([[eye, 0.5 * h * (1 + c) * eye], [-h * H, c * eye - 0.5 * h * h * (1 + c) * H]])
    kick, gradient = np.vstack([0.5 * h * s * eye, s * (eye - 0.5 * h * h * H)]), np.vstack([0 * eye, -h * eye])
    Z = linalg.solve_discrete_lyapunov(A, kick @ kick.T + gradient @ V @ gradient.T)
    np.testing.assert_allclose(theory.baoab_stationary_covariance(H, h, gamma, T, V), Z[:30, :30], rtol=1e-8,
                               atol=1e-12 * np.abs(Z[:30, :30]).max())


@pytest.mark.parametrize("momentum", [0.0, 0.7])
def test_mode_by_mode_solution_equals_the_lyapunov_solve(momentum: float) -> None:
    """Without a preconditioner the oracle solves K's modes pairwise (4 x 4 systems); the 2d x 2d discrete
    Lyapunov solve it replaced (still used with a preconditioner, here the identity) gives the same covariance
    to rounding, for a dense K and C (d = 30) and at a step near the stability limit."""
    rng = np.random.default_rng(5)
    M, N = rng.normal(size=(2, 30, 30))
    K, C = M @ M.T / 30 + 0.1 * np.eye(30), N @ N.T / 30
    lam = 0.9 * 2.0 * (1.0 + momentum) / np.linalg.eigvalsh(K).max()
    modes = theory.sgd_stationary_covariance(K, C, lam, momentum)
    lyapunov = theory.sgd_stationary_covariance(K, C, lam, momentum, preconditioner=np.eye(30))
    np.testing.assert_allclose(modes, lyapunov, rtol=1e-9, atol=1e-12 * np.abs(lyapunov).max())


# --- continuous-time forms and temperatures --------------------------------------------------------

def test_continuous_covariance_is_first_order_truncation() -> None:
    """H S + S H = (eta/B) C: 1-D eta sigma^2 / (2 B kappa) (docs/pages/sources.md), equal to the first-order
    truncation of Theorem 3, and the limit of the exact discrete covariance as eta -> 0."""
    assert theory.sgd_continuous_covariance(3.0, 2.0, 0.1, batch_size=4)[0, 0] == pytest.approx(0.1 * 2 / (2 * 4 * 3))
    lam = 1e-5
    continuous = theory.sgd_continuous_covariance(K, C, lam)
    np.testing.assert_allclose(continuous, first_order_covariance(K, C, lam * np.eye(2), 0.0), rtol=1e-10)
    np.testing.assert_allclose(theory.sgd_stationary_covariance(K, C, lam), continuous, rtol=1e-4)


def test_temperatures_are_continuous_limits() -> None:
    """Var = T_eff / curvature in the continuous limit, for plain and heavy-ball SGD."""
    eta, sigma2, batch, kappa, beta = 1e-4, 3.0, 5, 2.0, 0.8
    plain = theory.sgd_continuous_covariance(kappa, sigma2, eta, batch)[0, 0]
    assert theory.sgd_temperature(eta, sigma2, batch) / kappa == pytest.approx(plain, rel=1e-12)
    heavy = theory.heavy_ball_variance(eta, kappa, beta, eta**2 * sigma2)
    assert theory.momentum_temperature(eta, sigma2, beta) / kappa == pytest.approx(heavy, rel=1e-3)


def test_euler_maruyama_variance_matches_lyapunov_oracle() -> None:
    curvature, dt, temperature = 4.0, 0.3, 1.5
    exact = theory.langevin_stationary_covariance(curvature, dt, temperature)[0, 0]
    assert theory.euler_maruyama_variance(curvature, dt, temperature) == pytest.approx(exact, rel=1e-12)
    with pytest.raises(ValueError, match="unstable"):
        theory.euler_maruyama_variance(curvature, 0.5, temperature)


# --- Kramers ------------------------------------------------------------------------------------

def double_well(x: float) -> float:
    """x-part of the corrections page's f = (x^2 - 1)^2 + y^2: barrier 1, U''(+-1) = 8, U''(0) = -4."""
    return (x**2 - 1.0) ** 2


def mean_first_passage(start: float, end: float, temperature: float) -> float:
    """Exact MFPT of dx = -U' dt + sqrt(2T) dW from start to end > start (reflecting far left):
    (1/T) int_start^end exp(U(y)/T) int_{-inf}^y exp(-U(z)/T) dz dy, by quadrature."""
    def inner(y: float) -> float:
        return integrate.quad(lambda z: np.exp(-double_well(z) / temperature), -3.0, y, points=[-1.0], limit=200)[0]

    outer = integrate.quad(lambda y: np.exp(double_well(y) / temperature) * inner(y), start, end,
                           points=[0.0], limit=200)[0]
    return outer / temperature


@pytest.mark.parametrize("temperature, mfpt", [(0.1, 1.28e4), (0.15, 467.0), (0.2, 90.4), (0.3, 17.6), (0.5, 4.54)])
def test_mean_first_passage_reproduces_errata(temperature: float, mfpt: float) -> None:
    """The quadrature oracle reproduces docs/pages/sources.md's exact MFPTs from (-0.9, 0) to x > 0."""
    assert mean_first_passage(-0.9, 0.0, temperature) == pytest.approx(mfpt, rel=5e-3)


def test_kramers_time_is_low_temperature_limit() -> None:
    """MFPT from well to well / Kramers time = 1 + O(T): the linear extrapolation to T = 0 of the ratio
    at T = 0.025, 0.05 is 1 (a prefactor off by sqrt(2), e.g. from f''(0) = -2, would give 0.71 or 1.41)."""
    ratios = [mean_first_passage(-1.0, 1.0, t) / theory.kramers_escape_time(1.0, 8.0, -4.0, t) for t in (0.025, 0.05)]
    assert 2 * ratios[0] - ratios[1] == pytest.approx(1.0, abs=5e-3)
    assert ratios[0] == pytest.approx(1.0, abs=0.02)


# --- exact covariance of SGD vs simulation ------------------------------------------------------

SGD_CASES = {  # name: (fraction of the stability limit 2 (1 + mu), momentum, preconditioned)
    "plain": (0.5, 0.0, False),
    "plain-near-limit": (0.95, 0.0, False),
    "momentum-near-limit": (0.95, 0.5, False),
    "heavy-momentum": (0.7, 0.9, False),
    "preconditioned-momentum": (0.9, 0.3, True),
}


def run_sgd_case(name: str) -> list[tuple]:
    fraction, momentum, preconditioned = SGD_CASES[name]
    pre = P if preconditioned else np.eye(2)
    lam = learning_rate_at(fraction, momentum, pre)
    exact = theory.sgd_stationary_covariance(K, C, lam, momentum, P if preconditioned else None)
    draws = simulate(K, lam * pre, C, momentum, seed=100 + list(SGD_CASES).index(name))
    return assert_covariance(draws, exact, first_order_covariance(K, C, lam * pre, momentum), name)


@pytest.mark.parametrize("name", SGD_CASES)
def test_sgd_covariance_matches_simulation(name: str) -> None:
    """Non-commuting K, C (and P); lambda k_max up to 95% of 2 (1 + mu). The continuous-time
    (first-order) covariance is the wrong oracle that must fail."""
    run_sgd_case(name)


# --- Bayes-optimal learning rate (seed 003, Theorem 6) --------------------------------------------

def kl_to_posterior(sigma: np.ndarray, precision: np.ndarray) -> float:
    """D_KL(N(0, sigma) || N(0, precision^-1))."""
    inside = np.trace(precision @ sigma) - sigma.shape[0]
    return 0.5 * (inside - np.linalg.slogdet(precision)[1] - np.linalg.slogdet(sigma)[1])


def numerical_optimal_learning_rate(hessian: np.ndarray, n: int, batch: int) -> float:
    """argmin over lambda of D_KL(exact SGD law || N(0, (N K)^-1)) for C = (N - S)/(N S) K."""
    noise = (n - batch) / (n * batch) * hessian

    def kl(lam: float) -> float:
        return kl_to_posterior(theory.sgd_stationary_covariance(hessian, noise, lam), n * hessian)

    upper = 2.0 / np.linalg.eigvalsh(hessian).max()
    return optimize.minimize_scalar(kl, bounds=(1e-9 * upper, (1 - 1e-9) * upper), method="bounded",
                                    options={"xatol": 1e-12 * upper}).x


@pytest.mark.parametrize("hessian, n, batch", [(K, 12, 4), (K, 50, 5), (np.diag([0.1, 1.0, 10.0]), 30, 3),
                                                 (K, 1000, 10), (K, 7, 4)])
def test_theorem6_minimises_kl(hessian: np.ndarray, n: int, batch: int) -> None:
    """Eq. 16's root equals a direct numerical minimisation of the KL over lambda."""
    expected = numerical_optimal_learning_rate(hessian, n, batch)
    assert theory.bayes_optimal_learning_rate(hessian, n, batch) == pytest.approx(expected, rel=1e-6)


def test_mandt_rate_is_first_order_limit_of_theorem6() -> None:
    """2 S D / (N Tr K) agrees with Theorem 6 when S << N and lambda k << 1, and not at N = 3 S."""
    assert theory.mandt_learning_rate(K, 100_000, 10) == pytest.approx(
        theory.bayes_optimal_learning_rate(K, 100_000, 10), rel=1e-3)
    assert theory.mandt_learning_rate(K, 12, 4) > 1.2 * theory.bayes_optimal_learning_rate(K, 12, 4)


# --- exact finite-step corrections (docs/pages/sources.md, consequences of Theorem 3) --------------------------

N_DATA, BATCH = 20, 5


def run_preconditioner_case(momentum: float) -> list[tuple]:
    """Constant SGD, minibatch noise C = (N - S)/(N S) K, exact vs first-order (Mandt) preconditioner."""
    seed = 10 * round(10 * momentum)
    noise = (N_DATA - BATCH) / (N_DATA * BATCH) * K
    target = np.linalg.inv(N_DATA * K)
    exact_lam = theory.exact_posterior_preconditioner(K, N_DATA, BATCH, momentum)
    mandt_lam = 2 * (1 - momentum) * BATCH / (N_DATA - BATCH) * np.linalg.inv(K)
    mandt_sigma = theory.sgd_stationary_covariance(K, noise, 1.0, momentum, mandt_lam)
    rows = assert_covariance(simulate(K, exact_lam, noise, momentum, seed=200 + seed), target, mandt_sigma,
                             f"exact preconditioner mu={momentum}")
    rows += assert_covariance(simulate(K, mandt_lam, noise, momentum, seed=201 + seed), mandt_sigma, target,
                              f"first-order preconditioner mu={momentum}")
    return rows


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_exact_preconditioner_samples_posterior(momentum: float) -> None:
    """N = 20, S = 5: with the exact Lam the covariance is (N K)^-1 within MC error; with Mandt's
    continuous-time 2 (1 - mu) S / (N - S) K^-1 it is visibly off (x 1.5 at mu = 0), as predicted."""
    np.testing.assert_allclose(
        theory.sgd_stationary_covariance(K, (N_DATA - BATCH) / (N_DATA * BATCH) * K, 1.0, momentum,
                                         theory.exact_posterior_preconditioner(K, N_DATA, BATCH, momentum)),
        np.linalg.inv(N_DATA * K), rtol=1e-10)
    run_preconditioner_case(momentum)


H_U = np.array([[20.0, 4.0], [4.0, 2.0]])  # Hessian of U, eigenvalues 20.85 and 1.15
C_GRAD = np.array([[2.0, -1.0], [-1.0, 3.0]])  # Cov(grad U_hat), not commuting with H_U
STEP = 0.045  # h lambda_max = 0.94: plain SGLD's fast-direction variance is ~1.9 x the target


def run_injected_noise_case(momentum: float) -> list[tuple]:
    """SGLD / heavy-ball Langevin on U = w^T H w / 2 with gradient noise: exact vs 2 (1 - mu) h I noise."""
    seed = 10 * round(10 * momentum)
    target = np.linalg.inv(H_U)
    exact_q = theory.exact_injected_noise(H_U, C_GRAD, STEP, momentum)
    naive_q = 2 * (1 - momentum) * STEP * np.eye(2)
    naive_sigma = theory.sgd_stationary_covariance(H_U, C_GRAD + naive_q / STEP**2, STEP, momentum)
    step = STEP * np.eye(2)
    rows = assert_covariance(simulate(H_U, step, C_GRAD, momentum, exact_q, seed=300 + seed), target, naive_sigma,
                             f"exact injected noise mu={momentum}")
    rows += assert_covariance(simulate(H_U, step, C_GRAD, momentum, naive_q, seed=301 + seed), naive_sigma, target,
                              f"plain SGLD noise mu={momentum}")
    return rows


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_exact_injected_noise_samples_posterior(momentum: float) -> None:
    """Injecting exact_injected_noise gives Cov = H^-1 within MC error; SGLD's 2 (1 - mu) h I does not
    (and matches its own exact prediction, which at mu = 0 is theory.langevin_stationary_covariance)."""
    naive = theory.sgd_stationary_covariance(H_U, C_GRAD + 2 / STEP * np.eye(2), STEP)
    np.testing.assert_allclose(naive, theory.langevin_stationary_covariance(H_U, STEP, grad_noise_cov=C_GRAD),
                               rtol=1e-10)
    run_injected_noise_case(momentum)


def test_exact_injected_noise_closed_forms() -> None:
    """mu = 0, scalar step: 2 h I - h^2 H - h^2 C_grad; any T and step matrix give Sigma = T H^-1 exactly."""
    np.testing.assert_allclose(theory.exact_injected_noise(H_U, C_GRAD, STEP),
                               2 * STEP * np.eye(2) - STEP**2 * (H_U + C_GRAD), rtol=1e-12)
    step, temperature, momentum = 0.02 * np.linalg.inv(P), 2.0, 0.6
    q = theory.exact_injected_noise(H_U, C_GRAD, step, momentum, temperature)
    grad_equivalent = np.linalg.solve(step, np.linalg.solve(step, q).T)  # Lam^-1 Q Lam^-1
    sigma = theory.sgd_stationary_covariance(H_U, C_GRAD + grad_equivalent, 1.0, momentum, step)
    np.testing.assert_allclose(sigma, temperature * np.linalg.inv(H_U), rtol=1e-9)


def test_exact_injected_noise_rejects_too_large_step() -> None:
    with pytest.raises(ValueError, match="No exact noise correction"):
        theory.exact_injected_noise(H_U, C_GRAD, 0.09)


def test_pair_factors_by_cayley_hamilton_equal_the_kronecker_solve() -> None:
    """theory._pair_factors eliminates the 4 x 4 system (I - A_j kron A_i) vec X = vec q by hand; here the system
    itself, solved by numpy, on heavy-ball modes from overdamped to oscillating, one at critical damping (a
    double eigenvalue, where a solution through eigenvalues would divide by zero), for one q and one per mode."""
    rng = np.random.default_rng(0)
    k = np.concatenate([rng.uniform(0.01, 3.0, 40), [0.0]])
    lr, mu = 0.3, 0.9
    A = np.zeros((len(k), 2, 2))
    A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1] = 1.0 - lr * k, -mu * lr, k, mu
    critical = (1.0 - np.sqrt(mu)) ** 2 / lr  # trace^2 = 4 det = 4 mu: a double eigenvalue sqrt(mu)
    A[-1] = [[1.0 - lr * critical, -mu * lr], [critical, mu]]
    assert np.isclose(np.trace(A[-1]) ** 2, 4.0 * np.linalg.det(A[-1]))
    q = np.outer([-lr, 1.0], [-lr, 1.0])
    system = np.eye(4) - np.einsum("jab,icd->ijacbd", A, A).reshape(len(k), len(k), 4, 4)
    kronecker = np.linalg.solve(system, np.broadcast_to(q.ravel(order="F"), (len(k), len(k), 4))[..., None])
    np.testing.assert_allclose(theory._pair_factors(A, q), kronecker[..., 0, 0], rtol=1e-10, atol=0)
    per_mode = np.einsum("ia,ib->iab", *(2 * [rng.normal(size=(len(k), 2))]))
    diagonal = np.linalg.solve(np.eye(4) - np.einsum("iab,icd->iacbd", A, A).reshape(len(k), 4, 4),
                               per_mode.transpose(0, 2, 1).reshape(len(k), 4, 1))[:, 0, 0]
    np.testing.assert_allclose(theory._pair_factors(A, per_mode), diagonal, rtol=1e-10, atol=0)
