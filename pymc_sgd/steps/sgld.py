"""Stochastic gradient Langevin dynamics as a PyMC step (Welling & Teh 2011)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymc.blocking import DictToArrayBijection

from .. import noise, theory
from ..kernels import batching, langevin, schedules
from ..kernels.estimator import potential_hessian
from .base import StochasticGradientStep, require_positive


@dataclass(frozen=True)
class PolynomialDecay:
    """Step size h_t = a (b + t)^(-gamma), t = updates since the chain started.

    Welling & Teh (2011), Sec. 3: 0.5 < gamma <= 1 satisfies sum h_t = inf, sum h_t^2 < inf,
    so the O(h) discretisation bias vanishes as t grows.
    """

    a: float
    b: float = 1.0
    gamma: float = 0.55

    def __post_init__(self) -> None:
        require_positive("PolynomialDecay.a", self.a, "It is the step size at t = 0 (times b^gamma).")
        if self.b < 0 or not 0 < self.gamma <= 1:
            raise ValueError(f"PolynomialDecay needs b >= 0 and 0 < gamma <= 1, got b={self.b}, gamma={self.gamma}.")


def schedule_arrays(step_size: float | PolynomialDecay) -> tuple[int, np.ndarray]:
    """(kind, params) for ``kernels.schedules.step_size_at``."""
    if isinstance(step_size, PolynomialDecay):
        return schedules.POLYNOMIAL, np.array([step_size.a, step_size.b, step_size.gamma])
    h = require_positive("step_size", step_size, "It is h in w <- w - h grad U + sqrt(2 h T) xi; "
                         "stability needs h < 2 / (largest curvature of U), e.g. h ~ 0.1 / n for n rows.")
    return schedules.CONSTANT, np.array([h, 0.0, 0.0])


class SGLD(StochasticGradientStep):
    r"""Stochastic gradient Langevin dynamics on a full-data PyMC model.

    Each update draws a minibatch of ``batch_size`` rows and moves

    .. math:: w \leftarrow w - h_t \nabla \hat U(w) + \sqrt{2 h_t T}\, \xi,\quad \xi \sim N(0, I),

    with :math:`\hat U = -\log p(w) - (n/B) \sum_{i \in batch} \log p(x_i \mid w)` in PyMC's
    unconstrained space (Welling & Teh's :math:`\epsilon` is :math:`2h`). At a constant step
    the stationary law is exp(-U/T) up to an O(h) bias: on a quadratic with curvature
    lambda the variance is T / (lambda (1 - lambda h / 2)) plus the minibatch-noise excess
    h C / 2 (ERRATA.md); use a :class:`PolynomialDecay` step size to remove it, or
    ``correction="exact"``: inject N(0, Q) instead of N(0, 2hT I) with

    .. math:: Q = 2hT I - h^2 T H - h^2 V,

    H the Hessian of U and V = Cov(grad U_hat) = (n^2/B) C, both measured at the start and
    during tuning. On a Gaussian target this makes the stationary covariance exactly T H^{-1}
    at any step where Q is positive semi-definite (seed 003, Thm. 3, as derived in ERRATA.md;
    ``theory.exact_injected_noise``); where it is not, the nearest PSD matrix is used and a
    warning says to reduce the step size.

    Parameters
    ----------
    batch_size : rows per update; None for full-batch gradients (unadjusted Langevin).
    step_size : h (on U, not on the average loss) or a :class:`PolynomialDecay` schedule.
    steps_per_draw : updates per recorded draw, all inside one numba call.
    control_variate : None, "mode", or a point (dict of value-variable arrays, e.g. a MAP
        estimate from ``pm.find_MAP``): centre the gradient estimator at w* (SGLD-CV, Baker,
        Fearnhead, Fox & Nemeth 2019): grad U_hat(w) - grad U_hat(w*) + grad U(w*). Its noise
        shrinks from O(n^2 / B) to O(n d / B) near w*, so on large n the step can approach
        the stability limit 2 / k_max with a small minibatch-noise bias. "mode" finds w* by
        BFGS on the full-data U from the chain's start point when the chain begins (inside
        pm.sample's timing) and moves the chain there; the cost is two gradient evaluations
        per update.
    batching : "with_replacement" (default), "without_replacement" or "epoch".
    data : per-row data tensors to subsample, when automatic detection is ambiguous.
    temperature : T; 1 samples the posterior.
    correction : None (plain SGLD) or "exact" (finite-step injected-noise correction).

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=1000)
    >>> with pm.Model():
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=x)
    ...     idata = pm.sample(draws=200, tune=50, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.SGLD(batch_size=50, step_size=1e-4, steps_per_draw=50))
    ...     centred = pm.sample(draws=200, tune=50, chains=1, random_seed=1, progressbar=False,
    ...                         step=pymc_sgd.SGLD(batch_size=50, step_size=2e-4, control_variate="mode"))
    >>> bool(abs(idata.posterior["mu"].mean() - x.mean()) < 0.1)
    True
    >>> # ULA's SD at h k = 0.2 is 0.0316 / sqrt(1 - 0.1) = 0.0333 (the centred noise is exactly 0
    >>> # here); 200 near-independent draws give SE(SD) ~ 0.0333 / sqrt(400) = 0.0017: 4 SE range
    >>> sd = float(centred.posterior["mu"].std())
    >>> 0.027 < sd < 0.04
    True
    """

    name = "sgld"

    def __init__(self, vars=None, *, batch_size: int | None, step_size: float | PolynomialDecay,
                 correction: str | None = None, control_variate: str | dict | None = None,
                 steps_per_draw: int = 100, **kwargs: Any) -> None:
        self.schedule_kind, self.schedule = schedule_arrays(step_size)
        if correction not in (None, "exact"):
            raise ValueError(f"correction={correction!r} is unknown; use None or 'exact'.")
        if correction == "exact" and self.schedule_kind != schedules.CONSTANT:
            raise ValueError("correction='exact' needs a constant step_size (the correction depends on h).")
        self.correction = correction
        self.measures_gradient_noise = correction == "exact"
        if not (control_variate is None or control_variate == "mode" or isinstance(control_variate, dict)):
            raise ValueError(f"control_variate={control_variate!r} is unknown; use None, 'mode' or a point "
                             "(dict of value-variable arrays, e.g. from pm.find_MAP).")
        if control_variate is not None and correction is not None:
            raise ValueError("correction='exact' models the plain minibatch noise; it cannot be combined "
                             "with control_variate.")
        self.control_variate = control_variate
        self._centre: np.ndarray | None = None
        super().__init__(vars, batch_size=batch_size, steps_per_draw=steps_per_draw, **kwargs)
        if isinstance(control_variate, dict):
            self._centre = self._flat_point(control_variate)

    def _flat_point(self, point: dict) -> np.ndarray:
        missing = [name for name in self.var_names if name not in point]
        if missing:
            raise ValueError(f"control_variate point lacks {missing}; give every value variable "
                             f"({list(self.var_names)}), e.g. pm.find_MAP(include_transformed=True).")
        return DictToArrayBijection.map({name: np.asarray(point[name]) for name in self.var_names}).data.astype(np.float64)

    def _centre_at(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(w*, grad U(w*)) for the control variate; w* found once per step object for "mode"."""
        if self.control_variate is None:
            return langevin.NO_CENTRE, langevin.NO_CENTRE
        if self._centre is None:
            self._centre = noise.mode(self.estimator, start=w)
        return self._centre, noise.full_potential_and_grad(self.estimator, self._centre)[1]

    def _start_chain(self) -> None:
        d = self.estimator.dim
        self._unit = np.ones(d)
        self._identity = np.eye(d)
        self._noise_factor = np.eye(d) if self.correction == "exact" else np.zeros((0, 0))
        self._control: tuple[np.ndarray, np.ndarray] | None = None  # set at the chain's first draw

    def _use_gradient_noise(self, per_example_cov: np.ndarray, w: np.ndarray) -> None:
        """Noise factor L with L L^T = Q / (2 h T) (the kernel scales it by sqrt(2 h T))."""
        est, h, T = self.estimator, self.schedule[0], self.temperature
        rows = np.arange(est.n_rows, dtype=np.int64)
        H = potential_hessian(est.fn, est.data, w, rows, 1.0, 1e-5)
        V = (np.zeros_like(H) if self.batch_mode == batching.FULL else theory.minibatch_gradient_covariance(
            per_example_cov, est.n_rows, self.batch_size, self.batch_mode == batching.WITH_REPLACEMENT))
        try:
            Q = theory.exact_injected_noise(H, V, h, temperature=T)
        except ValueError as error:
            if self.draw > 0:  # the start point may be far from the mode; later windows should not be
                warnings.warn(f"SGLD(correction='exact'): {error} Using the nearest feasible noise.",
                              RuntimeWarning, stacklevel=3)
            Q = theory.exact_injected_noise(H, V, h, temperature=T, clip=True)
        eigenvalues, eigenvectors = np.linalg.eigh(Q / (2.0 * h * T))
        self._noise_factor = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))

    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        est = self.estimator
        if self._control is None:
            self._control = self._centre_at(w)
            if self.control_variate == "mode":  # start where the estimator's noise is smallest
                w = self._centre.copy()
        w, self.t, h, grad_norm, potential, diverged = langevin.langevin_updates(
            est.fn, est.grad_fn, est.data, w, self.rng, self.batch_mode, self.perm, self.cursor, self.idx,
            self.scale, self.t, self.steps_per_draw, self.schedule_kind, self.schedule,
            self.temperature, 1.0, langevin.FULL if self.correction else langevin.IDENTITY, self._unit,
            self._identity, self._noise_factor, self.divergence_bound, *self._control)
        return w, {"step_size": h, "temperature": self.temperature, "grad_norm": grad_norm,
                   "minibatch_potential": potential, "diverging": diverged}
