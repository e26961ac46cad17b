"""Stochastic gradient Hamiltonian Monte Carlo as a PyMC step (Chen, Fox & Guestrin 2014)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import theory, warmup
from ..kernels import batching, momentum
from ..warmup.tuning import (curvature_range, relaxation_rate, sghmc_parameters, sghmc_sd_error, whitened_noise,
                             whitened_injection)
from .base import BASE_STATS, FROM_MINIBATCH, StochasticGradientStep, kinetic_energy, require_positive
from .metropolis import MetropolisAdjustedDynamics, resolve_metropolis
from .schedules import Cyclical
from .gradient_estimator import check_gradient_estimator


class SGHMC(MetropolisAdjustedDynamics, StochasticGradientStep):
    r"""SGHMC with friction and the gradient-noise correction beta_hat.

    .. math::
        v \leftarrow (1 - \alpha) v - h \nabla \hat U(w) + N(0, 2 (\alpha - \hat\beta) h T),
        \qquad w \leftarrow w + v

    (Chen, Fox & Guestrin 2014, Eq. 15; v = h r in their practical parameterisation, h the
    step on U, alpha the friction.) beta_hat = h V_hat / 2 per coordinate, with V_hat the
    diagonal of Cov(grad U_hat) = (n^2 / B) C measured from per-example gradients at the
    start and during tuning (``noise_correction=True``); the injected noise then tops the
    gradient noise up to 2 alpha h T, so the chain targets exp(-U/T) up to O(h). Where
    beta_hat > alpha the gradient noise alone is too hot: the injection is clipped at 0 and
    a warning tells you to lower h or raise the friction. In the underdamped-Langevin
    mapping the time step is sqrt(h) and the friction gamma = alpha / sqrt(h) (docs/pages/sources.md).
    The velocity persists across draws (and pickling); ``kinetic_energy`` = ``|v|^2 / (2 h)``
    has mean d T / 2 at equilibrium.

    Parameters
    ----------
    batch_size
        rows per gradient (None for full batch). Default: the model's pm.Minibatch batch size
        (a model written with pm.Minibatch + total_size); otherwise required.
    step_size
        None (chosen), h on U, or :class:`Cyclical` (cSGHMC, with the uncorrected injection); the
        recursion is stable iff h k_max < 2 (2 - alpha) (seed 003 with mu = 1 - alpha); the O(h) bias is small
        when h k_max << alpha.
    friction
        alpha in (0, 1], i.e. momentum 1 - alpha.
    noise_correction
        "full", "diag" or None (see above); "full" is "diag" when the metric is diagonal (over 100
        coordinates), so that an update costs O(d).
    gradient_estimator
        "auto" (default), "minibatch", "control_variate", "svrg", "saga" or a point, as
        SGLD's (``steps.gradient_estimator``); the noise correction then measures the centred noise.

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=1000)
    >>> with pm.Model():
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=x)
    ...     idata = pm.sample(draws=200, tune=50, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.SGHMC(batch_size=50, step_size=1e-5, friction=0.1))
    >>> bool(abs(idata.posterior["mu"].mean() - x.mean()) < 0.1)
    True
    """

    name = "sghmc"
    stratifies = True  # its noise correction measures stratified batches' own noise (_use_gradient_noise)
    stats_dtypes_shapes = {**BASE_STATS, "kinetic_energy": (np.float64, []), "friction": (np.float64, []),
                           "predicted_sd_error": (np.float64, []), "control_variate": (bool, []),
                           "acceptance_rate": (np.float64, [])}

    def __init__(self, vars=None, *, batch_size: int | None | str = FROM_MINIBATCH,
                 step_size: float | Cyclical | None = None,
                 friction: float | None = None, noise_correction: str | None = "full",
                 steps_per_draw: int | None = None, gradient_estimator: Any = "auto",
                 metropolis: bool | None = None, **kwargs: Any) -> None:
        step_size = self._take_step_size(step_size)
        self.h = np.nan if step_size is None else require_positive(
            "step_size", step_size, "It is h on U; try h ~ 0.01 friction / (largest curvature), or None.")
        if friction is not None and not 0.0 < friction <= 1.0:
            raise ValueError(f"friction must be in (0, 1], got {friction}; 1 - friction is the momentum. "
                             "None chooses it.")
        self.user_friction = None if friction is None else float(friction)
        self.friction = 0.1 if friction is None else float(friction)
        if noise_correction not in ("full", "diag", None):
            raise ValueError(f"noise_correction={noise_correction!r} is unknown; use 'full', 'diag' or None.")
        if self.cycle is not None:  # Zhang et al.'s cSGHMC: the injection is not corrected for the gradient noise
            noise_correction = None
        self.noise_correction = noise_correction
        self.measures_gradient_noise = noise_correction is not None and batch_size is not None
        gradient_estimator = check_gradient_estimator(gradient_estimator, kwargs)
        super().__init__(vars, batch_size=batch_size, steps_per_draw=steps_per_draw, **kwargs)
        self._use_gradient_estimator(gradient_estimator)
        self.metropolis = resolve_metropolis(self, metropolis)

    def _underdamped_parameters(self) -> tuple[float, float]:
        """Time step sqrt(h), friction alpha / sqrt(h) (docs/pages/sources.md)."""
        return np.sqrt(self.h), self.friction / np.sqrt(self.h)

    def _set_underdamped(self, time_step: float, gamma: float) -> None:
        self.h, self.friction = time_step**2, gamma * time_step

    def stop_tuning(self) -> None:
        self._stop_dynamics_tuning()
        super().stop_tuning()

    def _start_chain(self) -> None:
        d = self.estimator.dim
        self.velocity = np.zeros(d)
        self.noise_factor = np.sqrt(2.0 * self.friction * self.h * self.temperature) * np.eye(d)
        self.predicted_error = np.nan
        self._warned_hot = False
        self._velocity_step = np.nan  # the step the velocity was last updated with (set at each draw)

    def _metric_changed(self) -> None:
        """The velocity's units were the old metric's (or coordinates', or it diverged): start it at rest (the
        friction restores its law within about 1 / friction updates)."""
        self.velocity = np.zeros(self.estimator.dim)

    def _tune_sampler(self, bulk: warmup.Bulk) -> None:
        """(h, alpha) from ``warmup.tuning.sghmc_parameters`` with the plain or centred gradient noise
        (``steps.gradient_estimator``); thinning from the slowest mode's relaxation (time step sqrt(h),
        gamma = alpha / sqrt(h))."""
        k_min = curvature_range(self.metric, bulk.hessian)[0]

        def rate(h: float, friction: float) -> float:
            return relaxation_rate(friction / np.sqrt(h), k_min) * np.sqrt(h)

        def tune(centre: np.ndarray | None) -> tuple[tuple[float, float, float], float]:
            h, friction, error = sghmc_parameters(bulk.hessian, self._minibatch_noise(bulk, centre), self.metric,
                                                  self.temperature, self.target_error, self.user_friction,
                                                  corrected=self._injection_corrected)
            return (h, friction, error), rate(h, friction)

        chosen = self._choose_gradient_estimator(bulk, tune)
        if chosen is not None:
            self.h, self.friction, self.predicted_error = chosen
        elif self.cycle is None:  # a step the user chose: predict its error, and the step that would meet the target
            noise = self._minibatch_noise(bulk, self.gradient_estimator.noise_centre)
            self.predicted_error = sghmc_sd_error(bulk.hessian, noise, self.metric, self.h, self.friction,
                                                  self.temperature, self._injection_corrected)
            if not self.predicted_error <= 2.0 * self.target_error:
                self.advised_step = sghmc_parameters(bulk.hessian, noise, self.metric, self.temperature,
                                                     self.target_error, self.user_friction,
                                                     self._injection_corrected)[0]
        self.noise_factor = self._in_metric(np.sqrt(2.0 * self.friction * self.h * self.temperature) * np.eye(
            len(bulk.mode)))
        self._set_updates_per_draw(rate(self.h, self.friction), step=self.h)
        if self.metropolis:
            self.predicted_error = 0.0  # exact: only Monte Carlo error
            self._tune_dynamics()

    @property
    def _injection_corrected(self) -> bool:
        """Whether the injected noise makes room for the gradient noise (the warm-up then predicts the error
        of the corrected chain); without it the step must keep the gradient noise's heat small itself."""
        return self.noise_correction is not None

    def _stable_step_limit(self) -> float:
        """h k_max < 2 (2 - alpha) (seed 003 with mu = 1 - alpha)."""
        return 2.0 * (2.0 - self.friction) / curvature_range(self.metric, self.bulk.hessian)[1]

    def _peak_noise_factor(self) -> np.ndarray:
        """The injected noise's factor for the kernel, which scales its variance by h_t / schedule[0]: the
        tuned one, or, in a cycle (uncorrected injection 2 alpha h T), the one for the cycle's peak."""
        if self.cycle is None:
            return self.noise_factor
        return np.sqrt(self.cycle_peak / self.h) * self.noise_factor

    def _use_gradient_noise(self, per_example_cov: np.ndarray, w: np.ndarray) -> None:
        """Injected noise L N_z with N_z N_z^T = 2 alpha h T I - h^2 L^T V L (V = Cov(grad U_hat)),
        negative eigenvalues clipped at 0 (``warmup.tuning.whitened_injection``)."""
        if self.batch_mode == batching.STRATIFIED:  # the stratified batches' own noise, at the window's mean
            V = self._stratified_noise(w[None], self.gradient_estimator.noise_centre)[0]
        else:  # (n^2 / B) C, times the finite-population factor without replacement, as the warm-up measures it
            V = theory.minibatch_gradient_covariance(per_example_cov, self.estimator.n_rows, self.batch_size,
                                                     self.batch_mode == batching.WITH_REPLACEMENT)
        if self.noise_correction == "diag" or self.metric.kind == "diag":
            V = np.diag(np.diag(V))
        V_z = whitened_noise(V, self.metric)
        factor, clipped = whitened_injection(V_z, self.h, self.friction, self.temperature)
        if clipped and not self._warned_hot:  # once per chain: tuning windows measure again
            self._warned_hot = True
            beta_hat = 0.5 * self.h * np.linalg.eigvalsh(V_z).max()
            self._warn(f"SGHMC: the gradient noise alone exceeds the target temperature (beta_hat up to "
                       f"{beta_hat:.3g} > friction {self.friction}); lower step_size or raise friction.")
        self.noise_factor = self._in_metric(factor)

    def _in_metric(self, factor: np.ndarray) -> np.ndarray:
        """The injected noise's factor L N_z for the kernel from its whitened one N_z: in a diagonal metric
        (with diagonal N_z) its diagonal, which the kernel applies in O(d) instead of O(d^2)."""
        if self.metric.kind != "diag":
            return self.metric.factor @ factor
        return np.sqrt(np.diag(self.metric.matrix)) * np.sqrt(np.sum(factor * factor, axis=1))  # diag(N N^T)

    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        if self.metropolis:
            w, stats = self._ghmc_updates(w)
            return w, {**stats, "friction": self.friction, "predicted_sd_error": self.predicted_error,
                       "control_variate": False}
        kind, schedule = self._schedule(self.h)
        # v = sqrt(h) r belongs to the step it was last updated with: carry r over to this draw's first step
        carried = self.cycle is not None and np.isfinite(self._velocity_step)
        velocity = self.velocity * np.sqrt(schedule[0] / self._velocity_step) if carried else self.velocity
        (w, self.velocity), info = momentum.momentum_updates(
            self.batch_model, self.batch, self._kernel_estimator(w), self._metric_preconditioner(),
            momentum.State(w, velocity),
            momentum.Params(kind, schedule, self.friction, self._peak_noise_factor(), self.divergence_bound),
            self.steps_per_draw, self.rng)
        self._velocity_step = info.step_size
        return w, {**self._kernel_stats(info, self.h), "friction": self.friction,
                   "predicted_sd_error": self.predicted_error, "control_variate": self.gradient_estimator.active,
                   "kinetic_energy": kinetic_energy(self.metric, self.velocity) / self._velocity_step,
                   "acceptance_rate": np.nan}
