"""Shared PyMC BlockedStep adapter for stochastic-gradient samplers.

A step owns the compiled model estimator (``pymc_sgd.gradients``), the chain's batch
sampler state and update counter. One ``step`` call runs ``steps_per_draw`` updates inside
one numba call (``_run_updates``, implemented by each sampler) and records the last state.
PyMC calls ``set_rng`` and ``reset_tuning`` at the start of every chain, so per-chain state
is (re)initialised there; compiled functions are dropped on pickling and rebuilt in workers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pymc as pm
from pymc.blocking import DictToArrayBijection, RaveledVars
from pymc.step_methods.compound import BlockedStep
from pytensor.graph.basic import Variable

from ..gradients import ModelEstimator, cached_estimator
from ..kernels import batching as batch_sampling
from ..kernels.estimator import gradient_noise_covariance

BASE_STATS = {
    "step_size": (np.float64, []),
    "temperature": (np.float64, []),
    "grad_norm": (np.float64, []),
    "minibatch_potential": (np.float64, []),
    "diverging": (bool, []),
}
_BATCHING_NAMES = {k: v for k, v in batch_sampling.MODES.items() if k != "full"}


def require_positive(name: str, value: float, hint: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}. {hint}")
    return value


class StochasticGradientStep(BlockedStep):
    """Base class: minibatching, seeding, the per-draw compiled loop, stats, pickling.

    Subclasses implement ``_run_updates(w) -> (w, stats)`` (one numba call) and may
    override ``_start_chain``. Samplers that need the per-example gradient covariance C(w)
    set ``measures_gradient_noise`` and implement ``_use_gradient_noise(C, w)``: C is measured
    at the start point, then at the mean of the tuning draws in windows ending at tuning
    draws 1, 2, 4, 8, ... and at the end of tuning; sampling uses the last measurement.
    (A window mean, not a single draw: C(w) varies over the posterior, e.g. as sigma^-4 for
    a normal mean, and one random draw would put an error of several percent into C.)
    """

    measures_gradient_noise = False

    name = "stochastic_gradient"
    stats_dtypes_shapes = dict(BASE_STATS)

    def __init__(
        self,
        vars: Sequence[Variable] | None = None,
        *,
        batch_size: int | None,
        steps_per_draw: int = 100,
        batching: str = "with_replacement",
        data: Sequence[str | Variable] | None = None,
        temperature: float = 1.0,
        divergence_bound: float = 1e8,
        noise_rows: int = 2000,
        model: pm.Model | None = None,
        blocked: bool = True,
        rng: Any = None,
    ) -> None:
        model = pm.modelcontext(model)
        value_vars = list(model.value_vars)
        if vars is not None and {v.name for v in vars} != {v.name for v in value_vars}:
            raise ValueError(
                f"{type(self).__name__} samples all free variables of the model jointly "
                f"({[v.name for v in value_vars]}); it cannot be restricted to {[v.name for v in vars]}. "
                "Leave vars=None."
            )
        self.vars = value_vars
        self.var_names = tuple(v.name for v in value_vars)
        self.model = model
        self.blocked = blocked
        self.rng = np.random.default_rng(rng)
        self.temperature = require_positive("temperature", temperature, "T = 1 is the posterior.")
        self.divergence_bound = require_positive("divergence_bound", divergence_bound, "")
        self.steps_per_draw = int(steps_per_draw)
        if self.steps_per_draw < 1:
            raise ValueError(f"steps_per_draw must be >= 1, got {steps_per_draw}.")
        if batching not in _BATCHING_NAMES:
            raise ValueError(f"batching={batching!r} is unknown; use one of {sorted(_BATCHING_NAMES)}.")
        self.data = data
        self.noise_rows = int(noise_rows)
        self._estimator: ModelEstimator | None = None
        n = self.estimator.n_rows
        if batch_size is None:
            self.batch_size, self.batch_mode = n, batch_sampling.FULL
        else:
            if int(batch_size) != batch_size or not 1 <= batch_size <= n:
                raise ValueError(
                    f"batch_size must be an integer in [1, n] with n = {n} rows, got {batch_size}. "
                    "Use batch_size=None for full-batch gradients."
                )
            self.batch_size = int(batch_size)
            self.batch_mode = _BATCHING_NAMES[batching]
        self.scale = n / self.batch_size
        self.tune = True
        self.reset_tuning()

    # -- compiled estimator, rebuilt lazily after unpickling -------------------------------
    @property
    def estimator(self) -> ModelEstimator:
        if self._estimator is None:
            self._estimator = cached_estimator(self.model, self.data)
        return self._estimator

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_estimator"] = None
        return state

    # -- PyMC protocol ----------------------------------------------------------------------
    def reset_tuning(self) -> None:
        """Start a chain: fresh batch sampler, update counter and sampler-specific state."""
        n = self.estimator.n_rows
        self.perm, self.cursor, self.idx = batch_sampling.new_batch_state(self.batch_mode, n, self.batch_size)
        self.t = 0
        self.draw = 0
        self.halted = False
        self._window_sum, self._window_count = 0.0, 0
        self._start_chain()

    def set_rng(self, rng: Any) -> None:
        """PyMC's per-chain seeding. Worker processes never call reset_tuning, so start the chain here."""
        super().set_rng(rng)
        self.reset_tuning()

    def _start_chain(self) -> None:
        """Hook for sampler-specific per-chain state."""

    # -- gradient-noise measurement (for samplers that set measures_gradient_noise) ----------
    def _use_gradient_noise(self, per_example_cov: np.ndarray, w: np.ndarray) -> None:
        raise NotImplementedError

    def _measure_noise_at(self, w: np.ndarray) -> None:
        """Measure C(w) from per-example gradients on min(n, noise_rows) random rows."""
        est = self.estimator
        rows = self.rng.choice(est.n_rows, size=min(est.n_rows, self.noise_rows), replace=False)
        self._use_gradient_noise(gradient_noise_covariance(est.fn, est.data, w, np.sort(rows).astype(np.int64)), w)

    def _after_tuning_draw(self, w: np.ndarray) -> None:
        self._window_sum = self._window_sum + w
        self._window_count += 1
        done = self.draw + 1
        if done & (done - 1) == 0:  # tuning draws 1, 2, 4, 8, ...
            self._measure_window()

    def _measure_window(self) -> None:
        if self._window_count:
            self._measure_noise_at(self._window_sum / self._window_count)
        self._window_sum, self._window_count = 0.0, 0

    def stop_tuning(self) -> None:
        if self.measures_gradient_noise:
            self._measure_window()
        super().stop_tuning()

    def step(self, point: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[dict]]:
        q = DictToArrayBijection.map({name: point[name] for name in self.var_names})
        if self.halted:
            w, stats = q.data, self._halted_stats()
        else:
            if self.draw == 0 and self.measures_gradient_noise:
                self._measure_noise_at(q.data.astype(np.float64))
            w, stats = self._run_updates(q.data.astype(np.float64))
            if stats["diverging"]:
                self.halted = True
                warnings.warn(
                    f"{type(self).__name__}: non-finite or exploding state at draw {self.draw} "
                    f"(update {self.t}); the chain is halted and repeats its last finite state, "
                    "flagged as diverging. Reduce the step size.",
                    RuntimeWarning, stacklevel=2,
                )
            elif self.tune and self.measures_gradient_noise:
                self._after_tuning_draw(w)
        self.draw += 1
        new = RaveledVars(w, q.point_map_info)
        return DictToArrayBijection.rmap(new, start_point=point), [stats]

    def _halted_stats(self) -> dict:
        stats = {name: np.nan if np.issubdtype(dtype, np.floating) else 0
                 for name, (dtype, _) in self.stats_dtypes_shapes.items()}
        stats.update(temperature=self.temperature, diverging=True)
        return stats

    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    @staticmethod
    def competence(var, has_grad):
        """Never auto-assigned: pass the step explicitly to pm.sample."""
        return pm.step_methods.compound.Competence.INCOMPATIBLE

