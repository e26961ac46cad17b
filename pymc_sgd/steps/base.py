"""Shared PyMC BlockedStep adapter for stochastic-gradient samplers.

A step owns the compiled model estimator (``pymc_sgd.gradients``), the chain's batch
sampler state and update counter. At the first draw of every chain it runs the warm-up
(``pymc_sgd.warmup``: bulk, metric, then the sampler's ``_tune_sampler`` hook for its step
size), then each ``step`` call runs ``steps_per_draw`` updates inside one numba call
(``_run_updates``, implemented by each sampler) and records the last state. A state that is
non-finite, explodes, leaves the bulk the warm-up found by more than ``MAX_WHITENED_RMS``
posterior SDs, or whose constrained values overflow halts the chain (flagged ``diverging``
with a ``divergence_reason``). PyMC calls ``set_rng`` and ``reset_tuning`` at the start of
every chain, so per-chain state is (re)initialised there; compiled functions are dropped on
pickling and rebuilt in workers.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pymc as pm
from pymc.blocking import DictToArrayBijection, RaveledVars
from pymc.stats.convergence import SamplerWarning, WarningType
from pymc.step_methods.compound import BlockedStep
from pytensor.graph.basic import Variable
from rich.progress import TextColumn
from rich.table import Column

from .. import warmup
from ..data.chunks import ShuffledChunks
from ..gradients import ModelEstimator, cached_estimator, sampled_value_vars
from ..hierarchy import Coordinates, Reparameterisation, find_group_effects
from ..scales import find_scale_families
from ..rows import minibatch_size
from ..kernels import batching as batch_sampling
from .threads import one_blas_thread_in_a_worker
from ..kernels import langevin
from ..kernels import schedules as kernel_schedules
from ..kernels.info import Info
from ..warmup.bulk import NOISE_POINTS, spread_out
from ..warmup.settle import settling_message
from ..warmup import mixing
from ..warmup.tuning import curvature_range
from .batches import AUTO_BATCHING, BATCHING_NAMES, Batches
from .coordinates import GroupCoordinates
from .gradient_estimator import SVRG, GradientEstimator
from .schedules import Cyclical, relaxation_fraction
from .validation import require_int, require_positive

BASE_STATS = {
    "step_size": (np.float64, []),
    "temperature": (np.float64, []),
    "grad_norm": (np.float64, []),
    "minibatch_potential": (np.float64, []),
    "diverging": (bool, []),
    "divergence_reason": (np.int64, []),
    "steps_per_draw": (np.int64, []),
    "mixing_shortfall": (np.float64, []),  # the factor the measured mixing put on steps_per_draw (warmup.mixing)
    "warmup_time": (np.float64, []),
    "warmup_grad_evals": (np.float64, []),
    "grad_evals": (np.float64, []),
    "energy": (np.float64, []),  # U_hat (+ kinetic energy for momentum samplers), for az.plot_energy
    "lp": (np.float64, []),  # -U_hat: the minibatch estimate of the log density PyMC's NUTS records as lp
    "centred_groups": (np.int64, []),  # group coordinates the sampler runs centred (pymc_sgd.hierarchy)
    "full_batch": (bool, []),  # all rows every update (batch_size=None, or the warm-up's choice: _tune_cheapest)
    "warning": (SamplerWarning, None),  # messages from worker processes, logged by PyMC in the parent
}
METRICS = ("auto", "dense", "diag", "identity")
PARAMETERISATIONS = ("auto", "model")
FROM_MINIBATCH = "from pm.Minibatch"  # batch_size default: the model's own pm.Minibatch batch size
REFITS = (75, 175, 375, 775, 1575)  # tuning draws after the warm-up at which the metric is re-estimated
WINDOW_STARTS = dict(zip(REFITS, (25,) + REFITS[:-1]))  # each from the draws since the previous refit
MAX_TUNING_DIVERGENCES = 6  # halvings of target_error after divergences in tuning before the chain halts
MAX_WHITENED_RMS = 100.0  # posterior SDs (root mean square over coordinates) from the bulk's mode
MAX_WHITENED_RMS_CHOSEN_STEP = 1000.0  # the same with a step size the user chose (SGD's own spread may be wide)
DIVERGENCE_REASONS = {
    1: "a non-finite gradient or state (or an error the model raised, printed above), or |w_i| above divergence_bound",
    2: f"the chain left the bulk the warm-up found (more than {MAX_WHITENED_RMS:g} posterior SDs from its mode, "
       f"{MAX_WHITENED_RMS_CHOSEN_STEP:g} with a step size you chose)",
    3: "a constrained value of the model overflowed (e.g. exp of a huge log-scale)",
}


def kinetic_energy(metric: warmup.Metric, velocity: np.ndarray) -> float:
    """|L^{-1} v|^2 / 2: the kinetic energy v^T M^{-1} v / 2 of a velocity in the metric M = L L^T."""
    z = warmup.whiten(metric, velocity, np.zeros_like(velocity))
    return 0.5 * float(z @ z)


def _every_coordinate_moved(window: np.ndarray) -> bool:
    """Whether a window of tuning draws varies, finitely, in every coordinate: a chain stuck in a region too
    stiff for its step (every Metropolis proposal rejected) gives a singular covariance, which must not
    become the metric (the warm-up keeps the old one and the settling check reports the stuck chain)."""
    variance = np.var(window, axis=0)
    return bool(np.all(np.isfinite(variance)) and np.all(variance > 0.0))


class StochasticGradientStep(Batches, GroupCoordinates, BlockedStep):
    """Base class: seeding, the warm-up, the per-draw compiled loop, stats, pickling. Its batches are the
    ``steps.batches.Batches`` mixin's, its group coordinates ``steps.coordinates.GroupCoordinates``'s.

    Subclasses implement ``_run_updates(w) -> (w, stats)`` (one numba call), may override
    ``_start_chain``, and implement ``_tune_sampler(bulk)`` to choose their step size (and
    ``self.steps_per_draw`` when it is None) in ``self.metric`` once the bulk is found. Samplers that need the per-example gradient covariance C(w)
    set ``measures_gradient_noise`` and implement ``_use_gradient_noise(C, w)``: C is measured
    at the start point, then averaged over NOISE_POINTS tuning draws of each window ending at
    tuning draws 1, 2, 4, 8, ... and at the end of tuning (w: the window's mean); sampling uses
    the last measurement. (An average over draws: C(w) varies over the posterior, e.g. as
    sigma^-4 for a normal mean. Not C at the mean draw: on a non-centred hierarchical model
    C at the mode is 60 times smaller than its posterior average, measured.)
    """

    measures_gradient_noise = False
    gradient_estimator: GradientEstimator | None = None  # samplers whose kernel takes one set it
    auto_step_size = False  # subclasses set it before calling __init__ when step_size=None
    checks_settling = True  # warn when the tuning draws were still drifting (warmup.settle)
    metropolis = False  # the updates pass a Metropolis test (steps.metropolis): their law is exact
    metropolis_option: bool | None = False  # the step's metropolis= (steps.metropolis.resolve_metropolis)
    offers_metropolis = False  # a full batch turns the test on (steps.metropolis's mixins)
    cycle: Any = None  # a schedules.Cyclical from step_size=Cyclical(...) (see _take_step_size)
    refines_metric = True  # re-estimate the metric from tuning draws (see _maybe_refine_metric)
    streams_rows = True  # reads rows only through its batches, so it can take them from a buffer of chunks
    streams_rows_reason = ""  # why not, when it cannot
    reparameterises = True  # parameterisation="auto" runs group effects in coordinates chosen per group
    stratifies = False  # its warm-up measures the noise of stratified batches (``_minibatch_noise``) and uses only it
    batch_mode: int | None = None

    name = "stochastic_gradient"
    stats_dtypes_shapes = dict(BASE_STATS)

    def __init__(
        self,
        vars: Sequence[Variable] | None = None,
        *,
        batch_size: int | None | str = FROM_MINIBATCH,
        steps_per_draw: int | None = None,
        metric: str | None = None,
        target_error: float = warmup.TARGET_ERROR,
        max_steps_per_draw: int = warmup.tuning.MAX_UPDATES_PER_DRAW,
        batching: str = AUTO_BATCHING,
        chunk_rows: int | None = None,
        buffer_chunks: int = 8,
        data: Sequence[str | Variable] | None = None,
        temperature: float = 1.0,
        divergence_bound: float = 1e8,
        noise_rows: int = 2000,
        model: pm.Model | None = None,
        blocked: bool = True,
        rng: Any = None,
        parameterisation: str = "auto",
    ) -> None:
        model = pm.modelcontext(model)
        self._pending_warnings: list[tuple[str, str]] = []  # (level, message): see _warn
        self.vars = sampled_value_vars(model, vars)
        self.var_names = tuple(v.name for v in self.vars)
        self.model = model
        self.blocked = blocked
        self.rng = np.random.default_rng(rng)
        self.temperature = require_positive("temperature", temperature, "T = 1 is the posterior.")
        self.divergence_bound = require_positive("divergence_bound", divergence_bound, "")
        self.auto_steps_per_draw = steps_per_draw is None
        self.steps_per_draw = 1 if steps_per_draw is None else require_int(
            "steps_per_draw", steps_per_draw, 1, "It is the number of updates per recorded draw; None chooses it.")
        self.max_steps_per_draw = require_int("max_steps_per_draw", max_steps_per_draw, 1)
        if metric is None:  # an explicit step size keeps its meaning in the parameters' own units
            metric = "auto" if self.auto_step_size else "identity"
        if metric not in METRICS:
            raise ValueError(f"metric={metric!r} is unknown; use one of {list(METRICS)} "
                             "('auto': the inverse Hessian at the bulk, dense up to 100 parameters).")
        self.metric_choice = metric
        self.requested_target_error = require_positive(
            "target_error", target_error, "It is the largest predicted relative error of a posterior SD, e.g. 0.03.")
        self.target_error = self.requested_target_error  # a chain that diverges in tuning lowers it (_retune_smaller)
        if batching not in BATCHING_NAMES and batching != AUTO_BATCHING:
            raise ValueError(f"batching={batching!r} is unknown; use one of {sorted(BATCHING_NAMES)} or 'auto'.")
        self.batching_choice = batching
        self._minibatching: tuple | None = None  # the batching the step was built with (_tune_cheapest)
        self.chunk_rows = None if chunk_rows is None else require_int("chunk_rows", chunk_rows, 1)
        self.buffer_chunks = require_int("buffer_chunks", buffer_chunks, 1)
        self.data = data
        self.noise_rows = int(noise_rows)
        if parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"parameterisation={parameterisation!r} is unknown; use 'auto' (the warm-up chooses, "
                             "per group, centred or non-centred coordinates for group effects) or 'model' (as written).")
        self.parameterisation = parameterisation
        self.coordinates: Coordinates | None = None  # the sampler's own coordinates (see _choose_coordinates)
        self._searches: dict = {}  # mode searches earlier chains ran (GroupCoordinates._search)
        held = set(model.value_vars) - set(self.vars)
        self.group_effects = [] if held else find_group_effects(model, self.vars)
        self.scale_families = [] if held else find_scale_families(model, self.vars, self.group_effects)
        may_choose = parameterisation == "auto" and self.auto_step_size and self.reparameterises
        # compiled with the coordinates as data, so the warm-up's choices need no new compilation
        self._written = Reparameterisation.as_written(self.group_effects) if may_choose and self.group_effects else None
        self._estimator: ModelEstimator | None = None
        self._constrained_fn = None
        if isinstance(batch_size, str) and batch_size == FROM_MINIBATCH:
            batch_size = minibatch_size(model)
            if batch_size is None:
                raise TypeError(f"{type(self).__name__} needs batch_size=<rows per update>, e.g. batch_size=100, "
                                "or batch_size=None for full-batch gradients.")
        self.full_batch = batch_size is None  # the model's own likelihood, unsliced: any model works
        n = self.estimator.n_rows
        if batch_size is None:
            self.batch_size, self.batch_mode = n, batch_sampling.FULL
        else:
            if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or not 1 <= batch_size <= n:
                raise ValueError(
                    f"batch_size must be an integer in [1, n] with n = {n} rows, got {batch_size!r}. "
                    "Use batch_size=None for full-batch gradients."
                )
            self.batch_size = int(batch_size)
            self.batch_mode = BATCHING_NAMES[self._resolve_batching(batching)]
            if batching == AUTO_BATCHING and self.batch_size == n and self.batch_mode == batch_sampling.WITH_REPLACEMENT:
                self.batch_mode = batch_sampling.FULL  # all n rows: n draws with replacement would only add noise
            if self.batch_mode == batch_sampling.WITH_REPLACEMENT and batching == AUTO_BATCHING and \
                    self._row_strata(batching) is not None:
                self.batch_mode = batch_sampling.STRATIFIED
            if self.batch_mode == batch_sampling.STRATIFIED:
                self._estimator = None  # one likelihood weight per row
        self.reset_tuning()

    # -- compiled estimator, rebuilt lazily after unpickling -------------------------------
    @property
    def estimator(self) -> ModelEstimator:
        if self._estimator is None:
            chosen = None if self.coordinates is None else self.coordinates.reparameterisation
            chosen = self._written if chosen is None else chosen
            self._estimator = cached_estimator(self.model, self.data, self.full_batch, self.vars, chosen,
                                               weighted=self.batch_mode == batch_sampling.STRATIFIED)
        return self._estimator

    def _refresh_data(self) -> None:
        """Read the model's data afresh (pm.set_data since the step was built). A new number of rows n
        keeps the batch size (full batch follows n), and reset_tuning's new batch sampler rescales the
        minibatch by n / B; the warm-up that follows re-measures everything else that depends on n."""
        self._estimator = None
        n = self.estimator.n_rows
        if self.full_batch:
            self.batch_size = n
        elif self.batch_size > n:
            raise ValueError(
                f"The model's data now has n = {n} rows (pm.set_data), fewer than this {type(self).__name__}'s "
                f"batch_size = {self.batch_size}. Build a new step: step={type(self).__name__}(batch_size=<= {n}).")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_estimator"] = None
        state["_constrained_fn"] = None
        state["rows"] = None  # its reader thread; reset_tuning makes a new one in the worker
        return state

    # -- PyMC protocol ----------------------------------------------------------------------
    def reset_tuning(self) -> None:
        """Start a chain: the model's current data, fresh batch sampler (the kernels' ``Batch``, with the
        likelihood scale n / B), update counter and sampler-specific state."""
        self.coordinates = None  # the model's own until the warm-up chooses
        # tuning until stop_tuning at draw `tune`, as PyMC's HMC resets it: pm.sample sets `tune` on a compound step
        # only, so without this a compound step's second chain would never tune (nor check that it settled)
        self.tune = True
        if self._minibatching is not None:  # every chain's warm-up chooses afresh
            self._set_batching(self._minibatching)
        self._minibatch_cost: float | None = None  # set while a chain runs the full batch in their stead
        self._refresh_data()
        if self.batch_mode == batch_sampling.STRATIFIED:  # the groups of the model's current data
            self.batch = batch_sampling.new_stratified_batch(self._row_strata("stratified"), self.batch_size)
        else:
            self.batch = batch_sampling.new_batch(self.batch_mode, self.estimator.n_rows, self.batch_size)
        if self._minibatching is not None:  # the fall-back restores this chain's batches, not an earlier chain's
            self._minibatching = self._current_batching()
        self.rows: ShuffledChunks | None = None  # made at the chain's first draw (_new_row_stream)
        self.t = 0
        self.draw = 0
        self.halted = False
        self.bulk: warmup.Bulk | None = None
        self.metric = warmup.identity_metric(self.estimator.dim)
        self._window: list[np.ndarray] = []  # tuning draws since the last noise measurement
        self._tuning_draws: list[np.ndarray] = []
        self.warmup_time = 0.0
        self.predicted_ess_per_draw = np.nan
        self.mixing_shortfall = 1.0  # the thinning's factor from measured mixing (warmup.mixing)
        self.target_error = self.requested_target_error
        self.tuning_divergences = 0
        self._tuned_on: warmup.Bulk | None = None
        if self.gradient_estimator is not None:
            self.gradient_estimator.reset()
        self._start_chain()

    def set_rng(self, rng: Any) -> None:
        """PyMC's per-chain seeding. Worker processes never call reset_tuning, so start the chain here."""
        super().set_rng(rng)
        one_blas_thread_in_a_worker()
        self.reset_tuning()

    def _start_chain(self) -> None:
        """Hook for sampler-specific per-chain state."""

    # -- warm-up -----------------------------------------------------------------------------
    def _choose_metric(self, bulk: warmup.Bulk) -> warmup.Metric:
        if self.metric_choice == "identity":
            return warmup.identity_metric(len(bulk.mode))
        return warmup.metric_from_hessian(bulk.hessian, dense={"dense": True, "diag": False}.get(self.metric_choice))

    def _warm_up(self, w: np.ndarray) -> np.ndarray:
        """Find the bulk, set the metric, let the sampler tune; return a Laplace draw to start from."""
        cells = self._group_cells(w)
        if self.coordinates is None:
            self.bulk = warmup.find_bulk(self.estimator, w, self.rng, cells=cells)
        else:
            self._choose_coordinates(w, cells)
        self.laplace = warmup.metric_from_hessian(self.bulk.hessian, dense=True)
        self.spread = (self.bulk.mode, self.laplace)  # centre and scale of the bulk, for divergence checks
        self.metric = self._choose_metric(self.bulk)
        self._tune_cheapest(self.bulk)
        self._warn_if_untrustworthy()
        return self.bulk.mode + self.laplace.factor @ self.rng.standard_normal(len(w))

    def _maybe_refine_metric(self) -> None:
        """At tuning draws REFITS after the warm-up, re-estimate the posterior's centre and
        covariance from the window of draws since the previous refit: they become the bulk the
        divergence check measures against (the curvature at the mode can be far off, e.g. at the
        kink of a Laplace likelihood), and, when the warm-up chose the step and the metric, the
        new metric, the sampler re-tuning in it with the Hessian replaced by the inverse covariance:
        the Gaussian that fits the draws rather than the curvature at the mode (doubling windows,
        as Stan and PyMC adapt NUTS's mass matrix); otherwise the sampler re-tunes in its metric
        with the gradient noise measured at the window's draws."""
        count = len(self._tuning_draws)
        if not (self.auto_step_size and count in REFITS):
            return
        self._rechoose_coordinates(slice(WINDOW_STARTS[count], count))
        window = np.array(self._tuning_draws[WINDOW_STARTS[count]:count])
        if self.auto_steps_per_draw:
            self.mixing_shortfall *= mixing.shortfall(window, self.predicted_ess_per_draw)
        covariance = warmup.metric.covariance_from_draws(self.laplace, window)
        draws = self.bulk.mode + window @ self.laplace.factor.T
        moved = _every_coordinate_moved(window)
        if moved:
            self.spread = (draws.mean(axis=0), warmup.metric.dense_metric(covariance))
        noise_points = spread_out(draws, NOISE_POINTS)
        if not (self.refines_metric and self.metric_choice == "auto" and moved and self._draws_make_a_metric(window)):
            # same metric, noise where the chain is
            self._tune(dataclasses.replace(self.bulk, draws=noise_points))
        else:
            fitted = dataclasses.replace(self.bulk, mode=draws.mean(axis=0), draws=noise_points,
                                         hessian=warmup.metric.jacobi_inverse(covariance), gradient=None)
            self.metric = self._choose_metric(fitted)
            self._tune(fitted)
            self._metric_changed()
        self._reconsider_full_batch()

    def _draws_make_a_metric(self, window: np.ndarray) -> bool:
        """Hook: whether the covariance of these tuning draws (whitened by the Laplace metric) may
        become the metric."""
        return True

    def _metric_changed(self) -> None:
        """Hook: sampler state tied to the old metric (e.g. a velocity in its coordinates)."""

    def _warn_if_untrustworthy(self) -> None:
        """Say so when the warm-up could not deliver its promise (no mode, or no step meets target_error)."""
        problems = []
        # with the Metropolis test the draws' law is exact wherever the chain starts, and the settling check and the
        # measured thinning judge the chain itself (eight schools: this warning on 6 of 8 right runs)
        if not self.bulk.converged and not self.metropolis:
            problems.append(f"the search for the posterior's bulk did not converge ({self.bulk.message})")
        predicted = getattr(self, "predicted_error", None)  # samplers whose step the warm-up chooses
        if predicted is not None and self.auto_step_size and not predicted <= self.target_error:
            problems.append(f"no step size has a predicted SD error below target_error={self.target_error} "
                            f"(predicted {predicted:.3g}; the curvature at the bulk is not that of a mode)")
        if problems:
            self._warn(f"{type(self).__name__}: {'; '.join(problems)}. The draws may be wrong: check them "
                       "against NUTS, reparameterise the model, or pass step_size explicitly.", stacklevel=4)
        if predicted is not None and not self.auto_step_size and not np.isnan(predicted) \
                and not predicted <= 2.0 * self.target_error:
            self._warn(f"{type(self).__name__}: at the step_size you chose, the theory predicts the posterior SDs "
                       f"off by up to {predicted:.0%} (target_error={self.target_error}). Pass step_size=None: the "
                       f"warm-up then chooses one that meets target_error (in this metric: "
                       f"{getattr(self, 'advised_step', np.nan):.3g}).", stacklevel=4)

    def _tune_sampler(self, bulk: warmup.Bulk) -> None:
        """Choose the step size (and steps_per_draw when auto) in self.metric."""

    def _tune(self, bulk: warmup.Bulk) -> None:
        self._tuned_on = bulk
        self._tune_sampler(bulk)

    def _retune_smaller(self) -> bool:
        """After a divergence in tuning, with the step the warm-up's: halve target_error and tune again in the
        same metric (a smaller step), so the chain goes on from its last good state; False after
        MAX_TUNING_DIVERGENCES. The step is tuned to a Gaussian fit of the bulk, and where the curvature grows
        in the posterior's tails (eight schools: the groups' curvature tau^2 / sigma_j^2 non-centred, 1 / tau^2
        centred) a chain that wanders there blows up; NUTS's adaptation lowers its step after divergences too."""
        if not (self.tune and self.auto_step_size and self._tuned_on is not None) or \
                self.tuning_divergences >= MAX_TUNING_DIVERGENCES:
            return False
        self.tuning_divergences += 1
        self.target_error *= 0.5
        self._tune(self._tuned_on)
        self._metric_changed()
        return True

    def _noise_points(self, bulk: warmup.Bulk) -> np.ndarray:
        """Where to measure the gradient noise: the bulk's tuning draws, else NOISE_POINTS Laplace draws."""
        return bulk.draws if bulk.draws is not None else warmup.laplace_draws(bulk, self.rng, NOISE_POINTS)

    def _minibatch_noise(self, bulk: warmup.Bulk, centre: np.ndarray | None = None) -> np.ndarray:
        """Cov(grad U_hat) of this step's batches at each of ``_noise_points`` (a k x d x d stack; 0 for full
        batch), which the tuning keeps within target at the worst point: the plain estimator's noise varies over
        the posterior (as sigma^-4 for a normal mean)."""
        d = len(bulk.mode)
        if self.batch_mode == batch_sampling.FULL:
            return np.zeros((d, d))
        if self.batch_mode == batch_sampling.STRATIFIED:
            return self._stratified_noise(self._noise_points(bulk), centre)
        return warmup.gradient_noise(self.estimator, self._noise_points(bulk), self.rng, self.batch_size,
                                     self.batch_mode == batch_sampling.WITH_REPLACEMENT, self.noise_rows, centre)

    def _stratified_noise(self, points: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
        """Cov(grad U_hat) of this step's stratified batches at each of ``points`` (k x d x d)."""
        strata, taken = batch_sampling.strata_of(self.batch)
        return warmup.stratified_gradient_noise(self.estimator, points, self.rng, strata, taken, self.noise_rows,
                                                centre)

    def _take_step_size(self, step_size: Any) -> Any:
        """Record a ``Cyclical`` schedule (the warm-up then chooses the base step: returns None) or pass the
        step size through; sets ``auto_step_size``."""
        if isinstance(step_size, Cyclical):
            self.cycle, self.cycle_peak, step_size = step_size, np.nan, None
        self.auto_step_size = step_size is None
        return step_size

    def _use_gradient_estimator(self, choice: Any) -> None:
        """Set the gradient estimator (``steps.gradient_estimator``; call after __init__ found the batch size)."""
        if self.full_batch and (choice == "saga" or isinstance(choice, SVRG)):
            raise ValueError(f"gradient_estimator={choice!r} reduces minibatch noise, and batch_size=None has none; "
                             "give a batch_size, or use gradient_estimator='minibatch'.")
        if self.batch_mode == batch_sampling.SHUFFLED_CHUNKS and (isinstance(choice, SVRG) or choice in ("svrg", "saga")):
            raise ValueError(f"batching='shuffled_chunks' (data on disk) cannot take gradient_estimator={choice!r}: "
                             "it reads rows by their number outside the batches. Use gradient_estimator='auto' "
                             "(the control variate), or batching='with_replacement'.")
        self.gradient_estimator = GradientEstimator(choice, self.var_names)

    def _choose_gradient_estimator(self, bulk: warmup.Bulk, tune: Callable) -> Any:
        """``GradientEstimator.choose`` for this step: "auto" may centre only with minibatches (inside a
        compound step the centre's full-data gradient is recomputed at every draw)."""
        return self.gradient_estimator.choose(bulk, self.auto_step_size, self.batch_mode != batch_sampling.FULL, tune,
                                              lambda: warmup.laplace_draws(bulk, self.rng, 1)[0])

    def _kernel_estimator(self, w: np.ndarray):
        """The kernel's ``Estimator`` for an update run starting at w."""
        return self.gradient_estimator.for_kernel(self.estimator, w, self.batch_size)

    def _set_updates_per_draw(self, rate_per_update: float, step: float | None = None) -> None:
        """steps_per_draw from the slowest relaxation rate at the step ``step``, when the user left it to
        us. With a ``Cyclical`` schedule, also the cycle's peak, and the rate is that of the cycle's part
        at steps <= ``step`` (``schedules.relaxation_fraction``)."""
        if self.cycle is not None and step is not None:
            self.cycle_peak = self.cycle.peak_for(step, self._stable_step_limit())
            rate_per_update *= relaxation_fraction(self.cycle_peak / step)
        if self.auto_steps_per_draw:
            self.steps_per_draw, self.predicted_ess_per_draw = warmup.tuning.updates_per_draw(
                rate_per_update / self.mixing_shortfall, self.max_steps_per_draw)

    def _stable_step_limit(self) -> float:
        """The largest stable step in the current metric (SGLD's 2 / k_max; samplers override)."""
        return 2.0 / curvature_range(self.metric, self.bulk.hessian)[1]

    def _schedule(self, h: float) -> tuple[int, np.ndarray]:
        """(kind, params) of this draw's steps for the kernels: constant h, or the ``Cyclical`` cycle."""
        if self.cycle is None:
            return kernel_schedules.CONSTANT, np.array([h, 0.0, 0.0])
        return kernel_schedules.CYCLICAL, np.array([self.cycle_peak, float(self.steps_per_draw), 0.0])

    def _metric_preconditioner(self, whitened: bool = False) -> langevin.Preconditioner:
        """The metric M = L L^T as the kernels take it: P = M with root L. The identity metric is IDENTITY (no
        multiplications) unless ``whitened``: kernels that run in z = L^{-1} w multiply by L always. A diagonal
        metric (and the identity, whitened) goes as its diagonal, O(d) an update instead of O(d^2)."""
        if self.metric.kind == "identity" and not whitened:
            return langevin.preconditioner(langevin.IDENTITY)
        if self.metric.kind in ("diag", "identity"):
            return langevin.preconditioner(langevin.DIAGONAL, diag=np.diag(self.metric.matrix).copy())
        return langevin.preconditioner(langevin.FULL, matrix=self.metric.matrix, root=self.metric.factor)

    def _warn_if_undersampled(self) -> None:
        """Say so when max_steps_per_draw caps the thinning below half an effective draw per draw
        (for the choice sampling uses: after the last metric refit)."""
        if self.auto_steps_per_draw and self.predicted_ess_per_draw < 0.5:
            self._warn(
                f"{type(self).__name__}: {self.max_steps_per_draw} updates per draw (max_steps_per_draw) give a "
                f"predicted ESS of only {self.predicted_ess_per_draw:.2f} per draw; raise max_steps_per_draw or "
                f"draw more.{self._group_advice()}")

    # -- divergence checks beyond the kernel's ------------------------------------------------
    def _constrained_values_finite(self, w: np.ndarray, point_map_info, point: dict) -> bool:
        if self._constrained_fn is None:
            model = self.model
            outputs = model.replace_rvs_by_values(list(model.free_RVs) + list(model.deterministics))
            self._constrained_fn = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore",
                                                    point_fn=True)
        point = {**point, **DictToArrayBijection.rmap(RaveledVars(w, point_map_info))}
        return all(np.all(np.isfinite(value)) for value in self._constrained_fn(point))

    def _divergence_reason(self, v: np.ndarray, w: np.ndarray, point_map_info, point: dict) -> int:
        """0, or why the sampler's state v (the model's w) must halt the chain (DIVERGENCE_REASONS)."""
        # a compound step's conditional posterior moves; a user's own step may mean a wider spread (constant SGD
        # near its stability limit: 57 SDs), but not a chain at mu = 4,000 with a prior SD of 1, silently. With the
        # Metropolis test far from the bulk is the posterior's own tail (a random walk's funnel: 100 SDs of a
        # Laplace fit to a stuck warm-up run), not a blow-up.
        if self.bulk is not None and not self.estimator.held and not self.metropolis:
            centre, scale = self.spread
            z = warmup.whiten(scale, v, centre)
            if not np.sqrt(np.mean(z * z)) <= (MAX_WHITENED_RMS if self.auto_step_size else MAX_WHITENED_RMS_CHOSEN_STEP):
                return 2
        return 0 if self._constrained_values_finite(w, point_map_info, point) else 3

    # -- gradient-noise measurement (for samplers that set measures_gradient_noise) ----------
    def _use_gradient_noise(self, per_example_cov: np.ndarray, w: np.ndarray) -> None:
        raise NotImplementedError

    def _measure_noise_at(self, points: np.ndarray) -> None:
        """C averaged over up to NOISE_POINTS of the given points (rows of a k x d array, or one
        point), each from per-example gradients on the same min(n, noise_rows) random rows."""
        est = self.estimator
        points = spread_out(np.atleast_2d(points), NOISE_POINTS)
        rows = np.sort(self.rng.choice(est.n_rows, size=min(est.n_rows, self.noise_rows), replace=False))
        centre = None if self.gradient_estimator is None else self.gradient_estimator.noise_centre  # in use
        covariances = [warmup.per_example_gradient_covariance(est, w, rows.astype(np.int64), centre) for w in points]
        self._check_gradient_noise(covariances)
        self._use_gradient_noise(np.mean(covariances, axis=0), points.mean(axis=0))

    def _check_gradient_noise(self, covariances: list[np.ndarray]) -> None:
        """Hook: refuse gradient noise the sampler cannot use, point by point (an average over
        points can hide what is true at each, e.g. a null direction that moves with the point)."""

    def _after_tuning_draw(self, w: np.ndarray) -> None:
        self._window.append(w)
        done = self.draw + 1
        if done & (done - 1) == 0:  # tuning draws 1, 2, 4, 8, ...
            self._measure_window()

    def _measure_window(self) -> None:
        if self._window:
            self._measure_noise_at(np.array(self._window))
        self._window = []

    def stop_tuning(self) -> None:
        if self.measures_gradient_noise:
            self._measure_window()
        if self.bulk is not None:
            self._warn_if_undersampled()
        if self.tuning_divergences and not self.halted:
            self._warn(f"{type(self).__name__}: the chain diverged {self.tuning_divergences} times in tuning; each time "
                       f"the warm-up halved target_error and chose a smaller step (now target_error="
                       f"{self.target_error:.3g}, {self.steps_per_draw} updates per draw). Pass "
                       f"target_error={self.target_error:.3g} to start there.", stacklevel=2)
        if not self.halted and self.checks_settling:
            message = settling_message(self._tuning_draws, self.draw, self._coordinate_names())
            if message:
                self._warn(f"{type(self).__name__}: {message}{self._full_batch_advice()}{self._group_advice()}",
                           stacklevel=2)
        super().stop_tuning()

    def _coordinate_names(self) -> list[str]:
        point = self.model.initial_point()
        sizes = [int(np.size(point[name])) for name in self.var_names]
        return [name if size == 1 else f"{name}[{i}]" for name, size in zip(self.var_names, sizes) for i in range(size)]

    def step(self, point: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[dict]]:
        q = DictToArrayBijection.map({name: point[name] for name in self.var_names})
        w = q.data.astype(np.float64)
        if self.halted:
            return point, [{**self._halted_stats(), "warning": self._take_warnings()}]
        self.estimator.hold(point)  # a compound step's other blocks, as they are now
        if self.bulk is None:  # the warm-up chooses the sampler's coordinates v and its start in them
            started = time.perf_counter()
            v = self._warm_up(w)
            self.warmup_time = time.perf_counter() - started
            if not self.tune:  # tune=0: no stop_tuning will follow
                self._warn_if_undersampled()
        else:
            v = self._to_sampler(w)
        if self.draw == 0 and self.measures_gradient_noise:
            self._measure_noise_at(self._noise_points(self.bulk))
        if self.batch_mode == batch_sampling.SHUFFLED_CHUNKS:
            if self.rows is None:
                self.rows = self._new_row_stream()
            _, perm, cursor = self.rows.prepare(self._rows_per_draw())
            self.batch = self.batch._replace(perm=perm, cursor=cursor)
            if self.draw == 0:
                self._warn_if_rows_sorted(v)
        new_v, stats = self._run_updates(v)
        new_w = self._to_model(new_v)
        if self.rows is not None:
            if not stats["diverging"]:  # a diverging loop stops early, short of its rows
                self.rows.finish(self.batch.cursor)
        reason = 1 if stats["diverging"] else self._divergence_reason(new_v, new_w, q.point_map_info, point)
        if reason:
            if not self._retune_smaller():
                self._halt(reason)
            new_w = w  # the state this draw started from passed every check
        elif self.tune:
            self._tuning_draws.append(warmup.whiten(self.laplace, new_v, self.bulk.mode))
            self._maybe_refine_metric()
            if self.measures_gradient_noise:
                self._after_tuning_draw(new_v)
        stats.update(diverging=bool(reason), divergence_reason=reason, steps_per_draw=self.steps_per_draw,
                     mixing_shortfall=self.mixing_shortfall,
                     warmup_time=self.warmup_time, warmup_grad_evals=self.bulk.data_passes,
                     grad_evals=self._grad_evals_per_draw(), warning=self._take_warnings(),
                     energy=stats["minibatch_potential"] + stats.get("kinetic_energy", 0.0),
                     lp=-stats["minibatch_potential"],
                     centred_groups=0 if self.coordinates is None else self.coordinates.centred_groups,
                     full_batch=self.batch_mode == batch_sampling.FULL)
        self.draw += 1
        return DictToArrayBijection.rmap(RaveledVars(new_w, q.point_map_info), start_point=point), [stats]

    def _grad_evals_per_draw(self) -> float:
        """Gradient evaluations of one draw, in units of a full-data gradient."""
        cost = 1.0 if self.gradient_estimator is None else self.gradient_estimator.cost(
            self.batch_size, self.estimator.n_rows)
        return cost * self.steps_per_draw * self.batch_size / self.estimator.n_rows

    def _halt(self, reason: int) -> None:
        self.halted, self.halt_reason = True, reason
        self._warn(
            f"{type(self).__name__}: {DIVERGENCE_REASONS[reason]} at draw {self.draw} (update {self.t}); the "
            "chain is halted and repeats the last state that passed every check, flagged as diverging. Pass a smaller "
            "step_size (or leave it to the warm-up: step_size=None), or a smaller target_error.")

    def _warn(self, message: str, stacklevel: int = 3) -> None:
        """A RuntimeWarning in the main process. In a worker of pm.sample(cores > 1) warnings never
        reach the user, so the message rides on the next draw's ``warning`` stat instead, which
        PyMC logs in the parent process (as it does for NUTS's)."""
        if multiprocessing.parent_process() is None:
            warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)
        else:
            self._pending_warnings.append(("warn", message))

    def _say(self, message: str) -> None:
        """A choice the user should know of, not a problem: logged at INFO by PyMC's logger (beside its "Sequential
        sampling ..." lines), from a worker process through the ``warning`` stat as ``_warn``'s messages."""
        if multiprocessing.parent_process() is None:
            logging.getLogger("pymc").info(message)
        else:
            self._pending_warnings.append(("info", message))

    def _take_warnings(self) -> SamplerWarning | None:
        pending, self._pending_warnings = self._pending_warnings, []
        if not pending:
            return None
        level = "warn" if any(level == "warn" for level, _ in pending) else "info"
        return SamplerWarning(WarningType.BAD_PARAMS, " | ".join(message for _, message in pending), level)

    def _halted_stats(self) -> dict:
        stats = {name: np.nan if np.issubdtype(dtype, np.floating) else 0
                 for name, (dtype, _) in self.stats_dtypes_shapes.items()}
        stats.update(temperature=self.temperature, diverging=True, divergence_reason=self.halt_reason,
                     full_batch=self.batch_mode == batch_sampling.FULL, steps_per_draw=0, warmup_time=self.warmup_time, warmup_grad_evals=self.bulk.data_passes,
                     grad_evals=0.0)
        return stats

    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def _kernel_stats(self, info: Info, step_size: float) -> dict:
        """The base stats of a kernel call from its ``kernels.info.Info`` (``step_size``: the one to report)."""
        return {"step_size": step_size, "temperature": self.temperature, "grad_norm": info.grad_norm,
                "minibatch_potential": info.potential, "diverging": info.diverged}

    @staticmethod
    def _progressbar_config(n_chains: int = 1) -> tuple[list, dict]:
        """pm.sample's progress bar shows divergences (1: the chain halted) and the step size, as for NUTS."""
        columns = [TextColumn("{task.fields[divergences]}", table_column=Column("Divergences", ratio=1)),
                   TextColumn("{task.fields[step_size]}", table_column=Column("Step size", ratio=1))]
        return columns, {"divergences": [0] * n_chains, "step_size": [""] * n_chains}

    @staticmethod
    def _make_progressbar_update_functions() -> tuple:
        def update_stats(stats: dict) -> dict:
            return {"divergences": int(stats["diverging"]), "step_size": f"{stats['step_size']:.3g}",
                    "failing": bool(stats["diverging"])}

        return (update_stats,)

    @staticmethod
    def competence(var, has_grad):
        """Never auto-assigned: pass the step explicitly to pm.sample."""
        return pm.step_methods.compound.Competence.INCOMPATIBLE

