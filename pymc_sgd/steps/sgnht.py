"""Stochastic gradient Nose-Hoover thermostat as a PyMC step (Ding et al. 2014)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import warmup
from ..kernels import thermostat
from .base import BASE_STATS, FROM_MINIBATCH, require_positive
from .schedules import Cyclical
from .sghmc import SGHMC


MAX_DIFFUSION = 0.5  # see SGNHT._tune_sampler


class SGNHT(SGHMC):
    r"""SGNHT: SGHMC whose friction is a thermostat that absorbs gradient noise it never measures.

    .. math::
        u \leftarrow (1 - \xi) u - h L^T \nabla \hat U(w) + \sqrt{2 a h T}\, \zeta,\qquad
        w \leftarrow w + L u,\qquad \xi \leftarrow \xi + ((1 - \xi / 2) \lVert u \rVert^2 / d - h T) / \mu

    (Ding, Fang, Babbush, Chen, Skeel & Neven 2014, NeurIPS, Alg. 1, in SGHMC's parameterisation u = p
    delta, h = delta^2 on U, in the whitened coordinates of the metric M = L L^T; ``kernels.thermostat``.)
    The diffusion a is the injected noise; the minibatch noise adds heat the sampler does not know, and the
    thermostat xi rises until the mean kinetic temperature ``(1 - xi / 2) |u|^2 / (d h)`` is exactly T (the factor
    1 - xi / 2 corrects Ding et al.'s continuous-time target for the discrete scheme, so that a Gaussian
    target's variances are exact: ``kernels.thermostat``). Unlike SGHMC it
    needs no measurement of Cov(grad U_hat) during sampling: one scalar xi absorbs the noise's average over
    coordinates (not its shape). mu is the thermostat's mass (Leimkuhler & Shang 2016): Ding et al.'s 1 unless
    xi's fluctuations, SD ~ sqrt(h T / (d mu)), would exceed a / 4 (``kernels.thermostat.thermostat_mass``).

    Defaults: give only ``batch_size``. The warm-up chooses (h, a) as SGHMC's (h, friction), with the
    measured noise of the chosen gradient estimator, and a at most 0.5 (see ``_tune_sampler``;
    ``predicted_sd_error`` is SGHMC's prediction for them); xi starts at a. Stats: ``thermostat`` (xi),
    ``kinetic_temperature`` (mean T at equilibrium),
    ``kinetic_energy`` = ``|u|^2 / (2 h)``.

    Parameters
    ----------
    batch_size
        rows per gradient (None for full batch); default: the model's pm.Minibatch batch size.
    step_size
        h on U (None: chosen).
    diffusion
        a in (0, 1], the injected noise's friction scale and xi's start (None: chosen).
    gradient_estimator
        "auto" (default), "minibatch", "control_variate", "svrg", "saga" or a point, as SGLD's.

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=1000)
    >>> with pm.Model():
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=x)
    ...     idata = pm.sample(draws=400, tune=200, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.SGNHT(batch_size=50))
    >>> post = idata.posterior["mu"]  # posterior N(mean(x), 0.0316^2)
    >>> bool(abs(post.mean() - x.mean()) < 0.015), bool(0.025 < post.std() < 0.04)
    (True, True)
    >>> bool(abs(idata.sample_stats["kinetic_temperature"].mean() - 1.0) < 0.3)
    True
    """

    name = "sgnht"
    stats_dtypes_shapes = {**BASE_STATS, "kinetic_energy": (np.float64, []), "kinetic_temperature": (np.float64, []),
                           "thermostat": (np.float64, []), "friction": (np.float64, []),
                           "predicted_sd_error": (np.float64, []), "control_variate": (bool, []),
                           "acceptance_rate": (np.float64, [])}

    def __init__(self, vars=None, *, batch_size: int | None | str = FROM_MINIBATCH, step_size: float | None = None,
                 diffusion: float | None = None, steps_per_draw: int | None = None,
                 gradient_estimator: Any = "auto", metropolis: bool | None = None, **kwargs: Any) -> None:
        if diffusion is not None:
            require_positive("diffusion", diffusion, "It is a in (0, 1], the injected noise N(0, 2 a h T); None "
                             "chooses it.")
            if diffusion > 1.0:
                raise ValueError(f"diffusion must be in (0, 1], got {diffusion}. None chooses it.")
        if isinstance(step_size, Cyclical):
            raise ValueError("SGNHT's thermostat cannot follow a cyclical step (its target h T changes within the "
                             "cycle faster than it adapts: chains diverged); use SGLD, SGHMC or UnderdampedLangevin "
                             "with step_size=Cyclical(), or SGNHT with step_size=None.")
        super().__init__(vars, batch_size=batch_size, step_size=step_size, friction=diffusion, noise_correction=None,
                         steps_per_draw=steps_per_draw, gradient_estimator=gradient_estimator,
                         metropolis=metropolis, **kwargs)
        self.friction = MAX_DIFFUSION if diffusion is None else float(diffusion)

    @property
    def _injection_corrected(self) -> bool:
        """The thermostat absorbs the gradient noise's heat, as SGHMC's correction does (on average)."""
        return True

    def _start_chain(self) -> None:
        super()._start_chain()
        self.thermostat = np.nan  # set to the diffusion once the step is known

    def _fresh_velocity(self) -> None:
        """u ~ N(0, h T I), its stationary law."""
        self.velocity = np.sqrt(self.h * self.temperature) * self.rng.standard_normal(self.estimator.dim)

    def _tune_sampler(self, bulk: warmup.Bulk) -> None:
        """SGHMC's (h, friction), then, if the friction exceeds MAX_DIFFUSION, h again for a = MAX_DIFFUSION.

        Why the cap: the thermostat settles at xi = a + h V_z / (2 T) (``kernels.thermostat``), and SGHMC's
        step keeps h V_z / T up to about its friction, so at SGHMC's friction (up to 1) xi could reach 1.5,
        where the scheme's stability limit h k < 2 (2 - xi) is four times tighter than at xi = 0.5.
        """
        super()._tune_sampler(bulk)
        if self.user_friction is None and self.friction > MAX_DIFFUSION:
            self.user_friction = MAX_DIFFUSION
            super()._tune_sampler(bulk)
            self.user_friction = None
        if np.isnan(self.thermostat):
            self.thermostat = self.friction
            self._fresh_velocity()

    def _metric_changed(self) -> None:
        """u lives in the old metric's whitened coordinates: draw it afresh."""
        self._fresh_velocity()

    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        est = self.estimator
        if self.metropolis:  # exact gradients: the thermostat would settle at xi = a, the friction GHMC runs at
            w, stats = self._ghmc_updates(w)
            return w, {**stats, "friction": self.friction, "thermostat": self.friction,
                       "predicted_sd_error": self.predicted_error, "control_variate": False,
                       "kinetic_temperature": 2.0 * stats["kinetic_energy"] / est.dim}
        if np.isnan(self.thermostat):  # an explicit step size and diffusion: no tuning ran
            self.thermostat = self.friction
            self._fresh_velocity()
        mass = thermostat.thermostat_mass(self.h, self.friction, self.temperature, est.dim)
        (w, self.velocity, self.thermostat), info = thermostat.thermostat_updates(
            self.batch_model, self.batch, self._kernel_estimator(w), self._metric_preconditioner(whitened=True),
            thermostat.State(w, self.velocity, self.thermostat),
            thermostat.Params(self.h, self.friction, mass, self.temperature, self.divergence_bound),
            self.steps_per_draw, self.rng)
        kinetic_temperature, = info.extras
        u2 = float(self.velocity @ self.velocity)
        return w, {**self._kernel_stats(info, self.h), "friction": self.friction,
                   "thermostat": self.thermostat, "predicted_sd_error": self.predicted_error,
                   "control_variate": self.gradient_estimator.active, "kinetic_energy": 0.5 * u2 / self.h,
                   "kinetic_temperature": kinetic_temperature, "acceptance_rate": np.nan}
