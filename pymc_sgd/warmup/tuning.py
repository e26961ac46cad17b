"""Step sizes, frictions and thinning chosen from measured curvature and gradient noise.

Every choice uses the project's exact oracles on the quadratic model at the bulk (``theory``):
H the Hessian of U, V_p = Cov(grad U_hat) the minibatch-gradient noise measured at points p
that stand for the posterior (a k x d x d stack), M the metric. The *predicted SD error* of a
configuration is max_j |sqrt(S_jj / (T H^-1)_jj) - 1| with S the sampler's exact stationary
covariance, taken at the worst point: the noise varies over the posterior (on a non-centred
hierarchical model by 2x between posterior draws), and a chain whose heat varies with its
position is biased away from where it runs hot, so the local error must be small everywhere,
not on average. The step is the largest one whose predicted error is below ``target_error``,
at most half the stability limit (a margin for curvature that varies over the posterior).

Thinning: a mode relaxing at rate r per update has lag-s autocorrelation exp(-r s); an AR(1)
chain thinned to correlation rho has ESS per draw (1 - rho) / (1 + rho), which is 1/2 at
rho = 1/3, so s = ln 3 / r updates per draw give ESS/draw >= 1/2 on a Gaussian target;
``updates_per_draw`` takes twice that for targets that are not Gaussian.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .. import theory
from .metric import Metric, whitened_curvature

TARGET_ERROR = 0.03
MAX_UPDATES_PER_DRAW = 10_000


def whitened_noise(V: np.ndarray, metric: Metric) -> np.ndarray:
    """V_z = L^T V L: gradient noise in the metric's coordinates (V and V_z a d x d matrix or a k x d x d stack
    of them, one per point)."""
    V_z = metric.factor.T @ V @ metric.factor
    return 0.5 * (V_z + np.swapaxes(V_z, -1, -2))


def whitened(H: np.ndarray, V: np.ndarray, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """(K, V_z) = (L^T H L, L^T V L): curvature and gradient noise in the metric's coordinates."""
    return whitened_curvature(metric, H), whitened_noise(V, metric)


HALVING = float(np.log(2.0))
PRECISION = 0.01  # of log h: the step to 1% (below the largest feasible one: the promise holds, thinning +1% at most)
ErrorAt = Callable[[float, np.ndarray], float]  # (h, noise at one point V_p) -> predicted SD error


def _points(V_z: np.ndarray) -> list[np.ndarray]:
    """The noise stack's points (a single d x d matrix is one point)."""
    return list(V_z.reshape(-1, *V_z.shape[-2:]))


def worst_point(error_at: ErrorAt, h: float, V_z: np.ndarray) -> float:
    """max over the noise stack's points p of error_at(h, V_z[p])."""
    return max(error_at(h, V_p) for V_p in _points(V_z))


def largest_step(error_at: ErrorAt, V_z: np.ndarray, h_max: float, target: float) -> float:
    """Largest h in (0, h_max] with error_at(h, V_p) <= target at every point, by bisection on log h
    (error_at is inf where the configuration is unstable or infeasible, and grows with h).

    Each error is an O(d^3) Lyapunov solve (seconds per search at d ~ 60 if done naively), so the
    search follows one point, the worst seen so far: h is divided by 2, 4, 16, ... from above until
    that point is within the target, then bisected to 1% relative, and checked at every
    point; a point over the target there becomes the one followed, below that step. Where no step
    above h_max e^-40 is feasible it returns that bottom.
    """
    points = _points(V_z)

    def first_violation(h: float) -> int | None:
        return next((k for k, V_p in enumerate(points) if not error_at(h, V_p) <= target), None)

    violation = first_violation(h_max)
    if violation is None:
        return h_max
    bottom, hi = np.log(h_max) - 40.0, np.log(h_max)
    lo = hi
    for _ in range(len(points)):  # each round follows a new point: at most one round per point
        points.insert(0, points.pop(violation))
        stride = HALVING  # down from above, doubling the stride: tiny steps can be infeasible too (SGHMC)
        while lo > bottom and not error_at(np.exp(lo), points[0]) <= target:
            hi, lo, stride = lo, max(lo - stride, bottom), 2.0 * stride
        while hi - lo > PRECISION:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if error_at(np.exp(mid), points[0]) <= target else (lo, mid)
        violation = first_violation(np.exp(lo))
        if violation is None:
            break
        hi = lo
    return float(np.exp(lo))


def _guarded(error: Callable[[], float]) -> float:
    try:
        value = error()
    except (ValueError, np.linalg.LinAlgError):
        return np.inf
    return value if np.isfinite(value) else np.inf


def curvature_range(metric: Metric, H: np.ndarray) -> tuple[float, float]:
    """(smallest, largest) eigenvalue of the whitened Hessian K = L^T H L."""
    eigenvalues = np.linalg.eigvalsh(whitened_curvature(metric, H))
    return float(max(eigenvalues.min(), 1e-12 * eigenvalues.max())), float(eigenvalues.max())


class _Eigenbasis(NamedTuple):
    """A step search's fixed part, in the eigenbasis K = U diag(k) U^T of the whitened Hessian: the oracles'
    covariances are mode by mode there (``theory.*_modal_covariance``), so U, L U and the target variances
    T diag(L K^-1 L^T) are computed once per search and each step tried forms only diag(L U S U^T L^T).
    ``curvatures`` are floored as ``curvature_range`` floors k_min."""

    curvatures: np.ndarray
    U: np.ndarray
    LU: np.ndarray
    target_variance: np.ndarray

    def sd_error(self, modal: np.ndarray) -> float:
        """The predicted SD error max_j |sqrt(S_jj / (T H^-1)_jj) - 1| for S = L U modal U^T L^T."""
        variance = np.sum((self.LU @ modal) * self.LU, axis=1)
        return float(np.max(np.abs(np.sqrt(variance / self.target_variance) - 1.0)))


def _eigenbasis(H: np.ndarray, V: np.ndarray, metric: Metric, temperature: float) -> tuple[_Eigenbasis, np.ndarray]:
    """(the eigenbasis of the whitened Hessian, the whitened noise points rotated into it: U^T V_z U)."""
    K, V_z = whitened(H, V, metric)
    curvatures, U = np.linalg.eigh(0.5 * (K + K.T))
    curvatures = np.maximum(curvatures, 1e-12 * curvatures.max())
    LU = metric.factor @ U
    return _Eigenbasis(curvatures, U, LU, temperature * np.sum(LU * LU / curvatures, axis=1)), U.T @ V_z @ U


def langevin_step_size(H: np.ndarray, V: np.ndarray, metric: Metric, temperature: float = 1.0,
                       target: float = TARGET_ERROR) -> tuple[float, float]:
    """(h, predicted SD error) for w <- w - h M grad U_hat + sqrt(2 h T) L xi (SGLD in the metric): the largest
    h whose predicted error (``langevin_sd_error``) is below ``target`` at every noise point."""
    error_at, rotated, curvatures = _langevin_error(H, V, metric, temperature)
    h = largest_step(error_at, rotated, 1.0 / curvatures.max(), target)
    return h, worst_point(error_at, h, rotated)


def langevin_sd_error(H: np.ndarray, V: np.ndarray, metric: Metric, h: float, temperature: float = 1.0) -> float:
    """The predicted relative error of the posterior SDs for SGLD at the step h (worst noise point).

    Oracle: ``theory.langevin_stationary_covariance`` (ULA's T / (k (1 - h k / 2)) plus the
    minibatch excess h^2 M V M through the discrete Lyapunov equation), solved in the eigenbasis
    K = Q diag(k) Q^T of the whitened Hessian (``theory.langevin_eigenbasis_covariance``): one
    eigendecomposition and one rotation of each noise point, then O(d^2) plus a matrix product per step
    tried. The SDs are those of L Q Sigma Q^T L^T against T L K^-1 L^T's; inf where h is unstable.
    """
    error_at, rotated, _ = _langevin_error(H, V, metric, temperature)
    return worst_point(error_at, h, rotated)


def _langevin_error(H: np.ndarray, V: np.ndarray, metric: Metric,
                    temperature: float) -> tuple[ErrorAt, np.ndarray, np.ndarray]:
    """(error_at, the noise points in the eigenbasis, the whitened curvatures) of ``langevin_sd_error``."""
    basis, rotated = _eigenbasis(H, V, metric, temperature)

    def error_at(h: float, V_p: np.ndarray) -> float:
        return _guarded(lambda: basis.sd_error(
            theory.langevin_eigenbasis_covariance(basis.curvatures, h, temperature, V_p)))

    return error_at, rotated, basis.curvatures


def whitened_injection(V_z: np.ndarray, h: float, friction: float, temperature: float) -> tuple[np.ndarray, bool]:
    """Factor N_z (N_z N_z^T = 2 alpha h T I - h^2 V_z, negative eigenvalues clipped) of SGHMC's
    injected noise in the metric's coordinates (Chen, Fox & Guestrin 2014, Eq. 15 with B_hat = h V / 2),
    and whether clipping was needed (the gradient noise alone is hotter than T)."""
    injected = 2.0 * friction * h * temperature * np.eye(len(V_z)) - h * h * V_z
    eigenvalues, eigenvectors = np.linalg.eigh(injected)
    return eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None)), bool(eigenvalues.min() < 0)


def sghmc_parameters(H: np.ndarray, V: np.ndarray, metric: Metric, temperature: float = 1.0,
                     target: float = TARGET_ERROR, friction: float | None = None,
                     corrected: bool = True) -> tuple[float, float, float]:
    """(h, alpha, predicted SD error) for SGHMC in the metric.

    The friction is the critical damping of the slowest whitened mode, alpha = 2 sqrt(h k_min)
    (underdamped mapping: time step sqrt(h), gamma = alpha / sqrt(h), critical at gamma = 2 sqrt(k)),
    raised so that the average gradient noise is at most half the total heat
    (alpha >= h lambda_max(L^T V L) / T), and at most 1. Steps needing alpha > 1 are infeasible.
    The error is ``sghmc_sd_error``'s.
    """
    error_at, alpha_at, V_z, k_max = _sghmc_error(H, V, metric, temperature, friction, corrected)
    h = largest_step(error_at, V_z, 1.0 / k_max, target)
    return h, alpha_at(h), worst_point(error_at, h, V_z)


def sghmc_sd_error(H: np.ndarray, V: np.ndarray, metric: Metric, h: float, friction: float,
                   temperature: float = 1.0, corrected: bool = True) -> float:
    """The predicted relative error of the posterior SDs for SGHMC at (h, alpha = friction), worst noise point:
    the exact discrete Lyapunov covariance of seed 003's heavy-ball recursion with the injected noise
    (``_sghmc_error``). The injection corrects for the average noise
    over the points; the error is the worst point's, whose own noise the correction misses.
    ``corrected=False``: the injection is 2 alpha h T, uncorrected (SGHMC with noise_correction=None, or in a
    cyclical schedule), and the error counts all of the gradient noise's heat."""
    error_at, _, V_z, _ = _sghmc_error(H, V, metric, temperature, friction, corrected)
    return worst_point(error_at, h, V_z)


def _sghmc_error(H: np.ndarray, V: np.ndarray, metric: Metric, temperature: float, friction: float | None,
                 corrected: bool) -> tuple[ErrorAt, Callable[[float], float], np.ndarray, float]:
    """(error_at, alpha_at, the noise points in the eigenbasis, k_max) of ``sghmc_parameters`` and
    ``sghmc_sd_error``: error_at(h, V_p) is the SD error of theory.sgd_stationary_covariance(K, V_p + N N^T / h^2,
    h, 1 - alpha) (seed 003's heavy-ball recursion with step h, momentum 1 - alpha), computed in the eigenbasis
    (``_Eigenbasis``), the injection 2 alpha h T I - h^2 V_c through V_c's eigenvectors (eigenvalues
    2 alpha h T - h^2 lambda_c, clipped at 0). Per step tried: two d x d products and O(d^2), where the direct
    route took two eigendecompositions, an inverse and six products (0.9 s at d = 1,006, 240 times in SGHMC's
    warm-up and refits)."""
    k_min, k_max = curvature_range(metric, H)
    basis, rotated = _eigenbasis(H, V, metric, temperature)
    V_mean = rotated.reshape(-1, *basis.U.shape).mean(axis=0)  # in the eigenbasis: the same eigenvalues
    noise_max = float(np.linalg.eigvalsh(V_mean).max()) if np.any(V) else 0.0
    lambda_c, Q = np.linalg.eigh(V_mean if corrected else np.zeros_like(V_mean))

    def alpha_at(h: float) -> float:
        if friction is not None:
            return friction
        return float(min(max(2.0 * np.sqrt(h * k_min), h * noise_max / temperature), 1.0))

    def error_at(h: float, V_p: np.ndarray) -> float:
        if friction is None and h * noise_max / temperature > 1.0:
            return np.inf
        alpha = alpha_at(h)
        injected = np.clip(2.0 * alpha * h * temperature - h * h * lambda_c, 0.0, None)  # whitened_injection's
        noise = V_p + (Q * injected) @ Q.T / (h * h)
        return _guarded(lambda: basis.sd_error(theory.heavy_ball_modal_covariance(basis.curvatures, noise, h,
                                                                                  1.0 - alpha)))

    return error_at, alpha_at, rotated, k_max


def baoab_parameters(H: np.ndarray, V: np.ndarray, metric: Metric, temperature: float = 1.0,
                     target: float = TARGET_ERROR, friction: float | None = None) -> tuple[float, float, float]:
    """(h, gamma, predicted SD error) for BAOAB in the metric (``baoab_sd_error``). gamma defaults to critical
    damping 2 sqrt(k_min) of the slowest mode. On a Gaussian target with exact gradients BAOAB's positions are
    exact at any stable h, so the step is also capped by its velocity bias: the kinetic temperature is
    T (1 - h^2 k / 4) (Leimkuhler & Matthews 2013), kept within 2 * target (h <= sqrt(8 target / k_max)), the
    part of the discretisation error a non-Gaussian target feels.
    """
    k_min, k_max = curvature_range(metric, H)
    gamma = 2.0 * np.sqrt(k_min) if friction is None else friction
    error_at, V_z = _baoab_error(H, V, metric, temperature, gamma)
    h = largest_step(error_at, V_z, min(1.0 / np.sqrt(k_max), np.sqrt(8.0 * target / k_max)), target)
    return h, gamma, worst_point(error_at, h, V_z)


def baoab_sd_error(H: np.ndarray, V: np.ndarray, metric: Metric, h: float, gamma: float,
                   temperature: float = 1.0) -> float:
    """The predicted relative error of the posterior SDs for BAOAB at (h, gamma), worst noise point
    (``theory.baoab_stationary_covariance`` on the whitened Hessian and noise)."""
    error_at, V_z = _baoab_error(H, V, metric, temperature, gamma)
    return worst_point(error_at, h, V_z)


def _baoab_error(H: np.ndarray, V: np.ndarray, metric: Metric, temperature: float,
                 gamma: float) -> tuple[ErrorAt, np.ndarray]:
    """(error_at, the noise points in the eigenbasis) of ``baoab_sd_error``: sd_error of
    ``theory.baoab_stationary_covariance`` at each step tried, in the eigenbasis (``_Eigenbasis``)."""
    basis, rotated = _eigenbasis(H, V, metric, temperature)

    def error_at(h: float, V_p: np.ndarray) -> float:
        return _guarded(lambda: basis.sd_error(theory.baoab_modal_covariance(basis.curvatures, V_p, h, gamma,
                                                                             temperature)))

    return error_at, rotated


def relaxation_rate(friction: float, curvature: float) -> float:
    """Slowest decay rate (per unit time) of a damped oscillator x'' = -k x - gamma x'."""
    discriminant = friction * friction / 4.0 - curvature
    return friction / 2.0 - np.sqrt(discriminant) if discriminant > 0 else friction / 2.0


def updates_per_draw(rate_per_update: float, budget: int = MAX_UPDATES_PER_DRAW) -> tuple[int, float]:
    """(updates per draw, predicted ESS per draw): 2 ln 3 / r updates, at most ``budget``."""
    wanted = int(np.ceil(2.0 * np.log(3.0) / rate_per_update))
    chosen = int(min(max(wanted, 1), budget))
    rho = np.exp(-rate_per_update * chosen)
    return chosen, float((1.0 - rho) / (1.0 + rho))
