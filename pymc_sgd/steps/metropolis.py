"""The Metropolis test on full batches: MALA for the Langevin steps, generalised HMC for the momentum steps.

When a step's batch is all rows, its gradient is exact and one more number, the potential U, buys a
Metropolis test that removes the discretisation bias: the chain's law is exactly exp(-U/T) at any step
size. Where the density is too stiff for the step (the neck of a funnel, the heavy tail of a group
scale) the chain then rejects where unadjusted updates blow up or wander (eight schools: docs/pages/hierarchical.md).
"""

from __future__ import annotations

import numpy as np

from .. import warmup
from ..hierarchy import Reparameterisation, flat_slices
from ..kernels import batching, ghmc, mala, schedules
from ..kernels.scale_moves import ScaleMoves, no_scale_moves
from ..scales import scale_moves
from ..warmup.acceptance import MALA_ACCEPTANCE, DualAveraging
from ..warmup.tuning import curvature_range

DYNAMICS_ACCEPTANCE = 0.8  # generalised HMC's target acceptance (MetropolisAdjustedDynamics)
SCALE_MOVE_EVERY = 4  # updates between rounds of scale moves: each costs a potential per family, <= 25% more
SCALE_MOVE_ACCEPTANCE = 0.44  # one-dimensional random-walk Metropolis (Gelman, Roberts & Gilks 1996)


def resolve_metropolis(step, metropolis: bool | None, *other_blockers: tuple[str, bool]) -> bool:
    """The ``metropolis`` option of a step: None is True exactly where the test is possible (a full batch and a
    constant step); True where it is not raises, naming why. The option is kept as ``metropolis_option``: with None a
    minibatched step may fall back to the full batch and its test (``steps.batches.Batches._tune_cheapest``)."""
    step.metropolis_option = metropolis
    blockers = [reason for reason, present in (
        ("a minibatch (the test needs the full-data potential; use batch_size=None)",
         step.batch_mode != batching.FULL),
        ("a step-size schedule (the test needs a constant step)",
         getattr(step, "schedule_kind", schedules.CONSTANT) != schedules.CONSTANT or step.cycle is not None),
        *other_blockers) if present]
    if metropolis is None:
        return not blockers
    if metropolis and blockers:
        raise ValueError(f"metropolis=True cannot be combined with {blockers[0]}.")
    return bool(metropolis)


class ScaleMoving:
    """Scale moves (``kernels.scale_moves``) between the full-data updates, for the model's scale families
    (``pymc_sgd.scales``: a random walk's innovation SD, a group scale with the groups run centred): a mixin of
    ``StochasticGradientStep`` with the Metropolis test. Each family's proposal SD delta starts at the posterior SD
    of its log scale in the metric (M_ss) and is adapted in tuning by dual averaging to an acceptance of
    SCALE_MOVE_ACCEPTANCE. Measured on a latent random walk (docs/pages/hierarchical.md): UnderdampedLangevin on 300
    steps right in 31 s with them, 66 s without; on 100 steps (a deeper funnel) right with them, SDs 17% short
    without."""

    scale_move_sd: np.ndarray | None = None
    scale_move_adaptation: list | None = None

    def _tune_scale_moves(self) -> None:
        """(Re)start each family's proposal SD from the metric."""
        families = self.scale_families
        if not families:
            return
        self._scale_slices = slices = flat_slices(self.vars, self.model.initial_point())
        self.scale_move_sd = np.array([np.sqrt(self.metric.matrix[slices[f.scale].start, slices[f.scale].start])
                                       for f in families])
        self.scale_move_adaptation = [DualAveraging(sd, delta=SCALE_MOVE_ACCEPTANCE) for sd in self.scale_move_sd]

    def _forget_metropolis_tuning(self) -> None:
        """Drop what tuning the test began (a chain's warm-up tries the full batch, then may keep its minibatches:
        ``steps.batches.Batches._tune_cheapest``)."""
        self.scale_move_sd = self.scale_move_adaptation = None

    def _stop_scale_move_tuning(self) -> None:
        if self.scale_move_adaptation:
            self.scale_move_sd = np.array([adaptation.final for adaptation in self.scale_move_adaptation])
        self.scale_move_adaptation = None

    def _scale_moves(self) -> ScaleMoves:
        """The kernels' moves in the sampler's current coordinates (no families: none)."""
        if not self.scale_families or self.scale_move_sd is None:
            return no_scale_moves()
        chosen = None if self.coordinates is None else self.coordinates.reparameterisation
        return scale_moves(self.scale_families, self._scale_slices, self.scale_move_sd, SCALE_MOVE_EVERY,
                           chosen or Reparameterisation.as_written(self.group_effects))

    def _adapt_scale_moves(self, rates: np.ndarray) -> None:
        """In tuning, each family's proposal SD from its acceptance rate in this draw's moves."""
        if self.tune and self.scale_move_adaptation:
            self.scale_move_sd = np.array([adaptation.update(rate) if np.isfinite(rate) else sd for adaptation, rate, sd
                                           in zip(self.scale_move_adaptation, rates, self.scale_move_sd)])


class MetropolisAdjusted(ScaleMoving):
    """MALA updates for a step whose gradients are full-data (a mixin of ``StochasticGradientStep``).

    The step sets ``h`` (nan: chosen) and ``auto_step_size``. With h chosen, each (re)tuning starts h at
    the optimal scaling 1.36 d^(-1/3) / k_max (2h = 1.65^2 d^(-1/3), Roberts & Rosenthal 1998, on the
    whitened Gaussian) and tuning adapts it by dual averaging to an acceptance of 0.574
    (``warmup.acceptance``); the updates per draw follow the slowest whitened mode's relaxation, about
    h k_min times the acceptance per update.
    """

    h: float
    auto_step_size: bool
    offers_metropolis = True

    def _start_metropolis(self) -> None:
        self.adaptation: DualAveraging | None = None
        self.k_min = np.nan

    def _forget_metropolis_tuning(self) -> None:
        super()._forget_metropolis_tuning()
        self.adaptation = None

    def _tune_metropolis(self, bulk: warmup.Bulk) -> None:
        """Start (or, after a metric refit, restart) dual averaging from the optimal-scaling step."""
        self.k_min, k_max = curvature_range(self.metric, bulk.hessian)
        if self.auto_step_size:
            self.h = 1.36 * len(bulk.mode) ** (-1.0 / 3.0) / k_max
            self.adaptation = DualAveraging(self.h)
        self._set_updates_per_draw(self.h * self.k_min * MALA_ACCEPTANCE)
        self._tune_scale_moves()

    def _stop_metropolis_tuning(self) -> None:
        """Sample with the averaged step; thinning for it."""
        self._stop_scale_move_tuning()
        if self.adaptation is not None:
            self.h = self.adaptation.final
            self.adaptation = None
            self._set_updates_per_draw(self.h * self.k_min * MALA_ACCEPTANCE)

    def _metropolis_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        """steps_per_draw MALA updates from w; the base stats and ``acceptance_rate``."""
        h = self.h
        (w,), info = mala.mala_updates(self.estimator.kernel, self._metric_preconditioner(whitened=True),
                                       self._scale_moves(), mala.State(w),
                                       mala.Params(h, self.temperature, self.divergence_bound), self.steps_per_draw,
                                       self.rng)
        acceptance = info.extras[0]
        self._adapt_scale_moves(info.extras[1:])
        if self.adaptation is not None and self.tune:
            self.h = self.adaptation.update(acceptance)
        return w, {**self._kernel_stats(info, h), "acceptance_rate": acceptance}


class MetropolisAdjustedDynamics(ScaleMoving):
    """Generalised HMC updates (``kernels.ghmc``: OBABO with a Metropolis test on its BAB part) for a momentum
    step whose batch is all rows (a mixin of ``StochasticGradientStep``).

    The step tunes as it would without the test; ``_underdamped_parameters`` turns its (step, friction) into
    the time step tau and friction gamma of dx = v dt, dv = -grad U dt - gamma v dt + sqrt(2 gamma T) dW, and
    ``_set_underdamped`` back. Through tuning, dual averaging (``warmup.acceptance``) then lowers tau, never
    above the step's own choice, towards an acceptance of DYNAMICS_ACCEPTANCE, with the updates per draw
    scaled by the same factor (the relaxation per update is proportional to tau at a fixed gamma). Each
    rejection reverses the velocity, so the target is high: at 0.8 a reversal comes every 5 updates, while
    the friction renews the velocity over 1 / (gamma tau) updates (5-50 at the steps' choices). This
    target is chosen here, not taken from a paper. The velocity is z = L^{-1} x's (unit mass), drawn afresh
    at every tuning draw (the metric and the coordinates may change there; a fresh N(0, T I) velocity is a
    Gibbs step, so the target is kept) and carried over between sampling draws.
    """

    offers_metropolis = True
    ghmc_velocity: np.ndarray | None = None
    time_step_adaptation: DualAveraging | None = None

    def _underdamped_parameters(self) -> tuple[float, float]:
        """(time step tau, friction gamma) of the dynamics the step's own parameters discretise."""
        raise NotImplementedError

    def _set_underdamped(self, time_step: float, gamma: float) -> None:
        """Set the step's own parameters to those of (tau, gamma)."""
        raise NotImplementedError

    def _forget_metropolis_tuning(self) -> None:
        super()._forget_metropolis_tuning()
        self.time_step_adaptation = None

    def _tune_dynamics(self) -> None:
        """Call at the end of each (re)tuning: adapt the time step from the one just chosen."""
        self.tuned_time_step, self.tuned_friction = self._underdamped_parameters()
        self.tuned_steps_per_draw = self.steps_per_draw
        if self.auto_step_size:
            self.time_step_adaptation = DualAveraging(self.tuned_time_step, delta=DYNAMICS_ACCEPTANCE)
        self._tune_scale_moves()

    def _stop_dynamics_tuning(self) -> None:
        """Sample with the averaged time step (at most the tuned one)."""
        self._stop_scale_move_tuning()
        if self.time_step_adaptation is not None:
            self._use_time_step(self.time_step_adaptation.final)
            self.time_step_adaptation = None

    def _use_time_step(self, time_step: float) -> None:
        time_step = min(time_step, self.tuned_time_step)
        self._set_underdamped(time_step, self.tuned_friction)
        if self.auto_steps_per_draw:
            self.steps_per_draw = int(min(self.max_steps_per_draw,
                                          np.ceil(self.tuned_steps_per_draw * self.tuned_time_step / time_step)))

    def _ghmc_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        """steps_per_draw generalised HMC updates from w; the base stats, ``acceptance_rate`` and
        ``kinetic_energy`` |v|^2 / 2."""
        if self.tune or self.ghmc_velocity is None or len(self.ghmc_velocity) != len(w):
            self.ghmc_velocity = np.sqrt(self.temperature) * self.rng.standard_normal(len(w))
        time_step, gamma = self._underdamped_parameters()
        h = self.h
        (w, self.ghmc_velocity), info = ghmc.ghmc_updates(
            self.estimator.kernel, self._metric_preconditioner(whitened=True), self._scale_moves(),
            ghmc.State(w, self.ghmc_velocity), ghmc.Params(time_step, gamma, self.temperature, self.divergence_bound),
            self.steps_per_draw, self.rng)
        acceptance = info.extras[0]
        self._adapt_scale_moves(info.extras[1:])
        if self.time_step_adaptation is not None and self.tune:
            self._use_time_step(self.time_step_adaptation.update(acceptance))
        return w, {**self._kernel_stats(info, h), "acceptance_rate": acceptance,
                   "kinetic_energy": 0.5 * float(self.ghmc_velocity @ self.ghmc_velocity)}
