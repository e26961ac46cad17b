"""Underdamped Langevin dynamics (BAOAB / OBABO) as a PyMC step."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import warmup
from ..kernels import underdamped
from ..warmup.tuning import baoab_parameters, baoab_sd_error, curvature_range, relaxation_rate
from .base import BASE_STATS, StochasticGradientStep, require_positive
from .metropolis import MetropolisAdjustedDynamics, resolve_metropolis
from .schedules import Cyclical
from .gradient_estimator import check_gradient_estimator

SCHEMES = {"BAOAB": underdamped.BAOAB, "OBABO": underdamped.OBABO}


class UnderdampedLangevin(MetropolisAdjustedDynamics, StochasticGradientStep):
    r"""Underdamped Langevin dynamics with a splitting integrator (Leimkuhler & Matthews 2013).

    .. math:: dx = v\,dt,\quad dv = -\nabla U(x)\,dt - \gamma v\,dt + \sqrt{2\gamma T}\,dW

    integrated by BAOAB (default; B = half kick, A = half drift, O = exact Ornstein-Uhlenbeck
    step of v over h with fresh noise) or OBABO; see ``kernels.underdamped`` (docs/pages/sources.md fixes
    the textbook's noise reuse). For a Gaussian target BAOAB's x-marginal is exact at any
    stable h; the velocity's kinetic temperature is biased as T (1 - h^2 k / 4).
    ``batch_size=None`` (default) uses full-batch gradients; a batch size makes it a
    stochastic-gradient sampler whose gradient noise adds heat of order h Var(grad) / (4 gamma);
    ``gradient_estimator`` ("auto" by default; "control_variate", "svrg", "saga", ...) as SGLD's
    (``steps.gradient_estimator``).

    ``step_size`` is the time step h (None: chosen) or :class:`Cyclical` (one cosine cycle of h per draw).

    Stats: ``kinetic_energy`` = ``|v|^2 / 2`` (mean d T / 2) and ``kinetic_temperature`` = ``|v|^2 / d``.

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=1000)
    >>> with pm.Model():
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=x)
    ...     idata = pm.sample(draws=200, tune=50, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.UnderdampedLangevin(step_size=0.02, friction=20.0))
    >>> bool(abs(idata.posterior["mu"].mean() - x.mean()) < 0.1)
    True
    """

    name = "underdamped_langevin"
    stratifies = True
    stats_dtypes_shapes = {**BASE_STATS, "kinetic_energy": (np.float64, []), "kinetic_temperature": (np.float64, []),
                           "friction": (np.float64, []), "predicted_sd_error": (np.float64, []),
                           "control_variate": (bool, []), "acceptance_rate": (np.float64, [])}

    def __init__(self, vars=None, *, step_size: float | Cyclical | None = None, friction: float | None = None,
                 batch_size: int | None = None, scheme: str = "BAOAB", steps_per_draw: int | None = None,
                 gradient_estimator: Any = "auto", metropolis: bool | None = None, **kwargs: Any) -> None:
        step_size = self._take_step_size(step_size)
        self.h = np.nan if step_size is None else require_positive(
            "step_size", step_size, "It is the time step; stability needs h < 2 / sqrt(k_max). None chooses it.")
        self.user_friction = None if friction is None else require_positive(
            "friction", friction, "It is gamma in dv = ... - gamma v dt; None chooses it.")
        self.gamma = 1.0 if friction is None else self.user_friction
        if scheme not in SCHEMES:
            raise ValueError(f"scheme={scheme!r} is unknown; use 'BAOAB' or 'OBABO'.")
        self.scheme = scheme
        gradient_estimator = check_gradient_estimator(gradient_estimator, kwargs)
        super().__init__(vars, batch_size=batch_size, steps_per_draw=steps_per_draw, **kwargs)
        self._use_gradient_estimator(gradient_estimator)
        self.metropolis = resolve_metropolis(self, metropolis)

    def _underdamped_parameters(self) -> tuple[float, float]:
        return self.h, self.gamma

    def _set_underdamped(self, time_step: float, gamma: float) -> None:
        self.h, self.gamma = time_step, gamma

    def stop_tuning(self) -> None:
        self._stop_dynamics_tuning()
        super().stop_tuning()

    def _start_chain(self) -> None:
        d = self.estimator.dim
        self.velocity = np.sqrt(self.temperature) * self.rng.standard_normal(d)
        self.predicted_error = np.nan

    def _metric_changed(self) -> None:
        """The velocity lives in the old metric's coordinates: draw it afresh (its law is N(0, T I))."""
        self.velocity = np.sqrt(self.temperature) * self.rng.standard_normal(self.estimator.dim)

    def _tune_sampler(self, bulk: warmup.Bulk) -> None:
        """(h, gamma) from ``warmup.tuning.baoab_parameters`` with the plain or centred gradient noise
        (``steps.gradient_estimator``); thinning from the slowest mode's relaxation."""
        k_min = curvature_range(self.metric, bulk.hessian)[0]

        def tune(centre: np.ndarray | None) -> tuple[tuple[float, float, float], float]:
            h, gamma, error = baoab_parameters(bulk.hessian, self._minibatch_noise(bulk, centre), self.metric,
                                               self.temperature, self.target_error, self.user_friction)
            return (h, gamma, error), relaxation_rate(gamma, k_min) * h

        chosen = self._choose_gradient_estimator(bulk, tune)
        if chosen is not None:
            self.h, self.gamma, self.predicted_error = chosen
        elif self.cycle is None:  # a step the user chose: predict its error, and the step that would meet the target
            noise = self._minibatch_noise(bulk, self.gradient_estimator.noise_centre)
            self.predicted_error = baoab_sd_error(bulk.hessian, noise, self.metric, self.h, self.gamma, self.temperature)
            if not self.predicted_error <= 2.0 * self.target_error:
                self.advised_step = baoab_parameters(bulk.hessian, noise, self.metric, self.temperature,
                                                     self.target_error, self.user_friction)[0]
        self._set_updates_per_draw(relaxation_rate(self.gamma, k_min) * self.h, step=self.h)
        if self.metropolis:
            self.predicted_error = 0.0  # exact: only Monte Carlo error
            self._tune_dynamics()

    def _stable_step_limit(self) -> float:
        """BAOAB is stable for h^2 k_max < 4 (Leimkuhler & Matthews 2013)."""
        return 2.0 / np.sqrt(curvature_range(self.metric, self.bulk.hessian)[1])

    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        est = self.estimator
        if self.metropolis:
            w, stats = self._ghmc_updates(w)
            return w, {**stats, "friction": self.gamma, "predicted_sd_error": self.predicted_error,
                       "control_variate": False, "kinetic_temperature": 2.0 * stats["kinetic_energy"] / est.dim}
        (w, self.velocity), info = underdamped.underdamped_updates(
            self.batch_model, self.batch, self._kernel_estimator(w), self._metric_preconditioner(whitened=True),
            underdamped.State(w, self.velocity),
            underdamped.Params(*self._schedule(self.h), self.gamma, self.temperature, SCHEMES[self.scheme],
                               self.divergence_bound), self.steps_per_draw, self.rng)
        v2 = float(self.velocity @ self.velocity)
        return w, {**self._kernel_stats(info, self.h), "friction": self.gamma,
                   "predicted_sd_error": self.predicted_error, "control_variate": self.gradient_estimator.active,
                   "kinetic_energy": 0.5 * v2, "kinetic_temperature": v2 / est.dim,
                   "acceptance_rate": np.nan}
