"""Replica-exchange (parallel tempering) SGLD as a PyMC step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import warmup
from ..kernels import exchange
from ..warmup.ladder import equalised_ladder
from ..warmup.tuning import curvature_range, langevin_step_size
from .base import BASE_STATS, FROM_MINIBATCH, REFITS, StochasticGradientStep, require_int, require_positive

SWAP_ROUNDS_PER_DRAW = 10
MODES_SPREAD = 25.0  # whitened variance of tuning draws (SD 5x the Laplace one) taken as several modes
SWAP_ENERGIES = {"corrected": exchange.CORRECTED, "full": exchange.FULL, "naive": exchange.NAIVE}


def geometric_ladder(n_replicas: int, max_temperature: float) -> np.ndarray:
    """T_k = T_max^(k / (K - 1)), k = 0..K-1: constant ratio between neighbours."""
    return max_temperature ** (np.arange(n_replicas) / (n_replicas - 1))


class ReplicaExchangeSGLD(StochasticGradientStep):
    r"""K SGLD replicas at T_0 = 1 < T_1 < ... < T_{K-1} inside one PyMC chain, with swaps.

    Every replica runs w <- w - h grad U_hat(w) + sqrt(2 h T_k) xi. Every ``swap_every``
    updates, adjacent slots (alternately even and odd pairs) exchange states with probability
    min(1, exp((1/T_k - 1/T_{k+1}) (U_k - U_{k+1}))) (docs/pages/sources.md). With minibatch energies the
    plain rule is biased; ``swap_energy="auto"`` (default) uses exact full-data energies where they
    cost no more than the updates between swaps, else ``"corrected"``, Deng et al. (2020)'s
    variance correction; ``"full"`` always uses exact full-data energies (an exact Metropolis
    swap), ``"naive"`` the biased rule. The recorded draw is the T = 1 slot; all replica states live
    in the step (``replica_states``).

    The default ladder starts geometric and adapts during tuning: at the metric refits (tuning
    draws 75, 175, 375, ... after the warm-up) the temperatures between 1 and ``max_temperature``
    move so that the swap rejection rates measured since the previous refit become equal
    (``warmup.ladder.equalised_ladder``, Syed et al. 2022). An explicit ``temperatures`` is kept.

    Stats: ``swap_rate_k`` (acceptance of pair (k, k+1) in this draw, NaN without attempts),
    ``temperature_k`` (the ladder, k >= 1), ``round_trips`` (cold -> hot -> cold journeys
    completed so far), ``cold_replica`` (label of the replica now at T = 1).

    Parameters
    ----------
    temperatures
        explicit ladder starting at 1, kept as given; default geometric with
        ``n_replicas`` up to ``max_temperature``, then adapted.
    swap_every
        updates between swap rounds; default ``steps_per_draw // SWAP_ROUNDS_PER_DRAW``
        (at least 1), i.e. about 10 swap rounds per recorded draw.
    swap_batch_size
        rows for the minibatch swap energies (default ``batch_size``).

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=500)
    >>> with pm.Model():
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=x)
    ...     step = pymc_sgd.ReplicaExchangeSGLD(batch_size=50, step_size=1e-4, n_replicas=3,
    ...                                         max_temperature=4.0, swap_every=20)
    ...     idata = pm.sample(draws=100, tune=20, chains=1, random_seed=1, progressbar=False, step=step)
    >>> sorted(name for name in idata.sample_stats if name.startswith("swap_rate"))
    ['swap_rate_0', 'swap_rate_1']
    """

    streams_rows = False
    streams_rows_reason = "its swap test reads rows outside the batches"

    name = "replica_exchange_sgld"
    stats_dtypes_shapes = {**BASE_STATS, "round_trips": (np.int64, []), "cold_replica": (np.int64, []),
                           "predicted_sd_error": (np.float64, [])}

    def __init__(self, vars=None, *, batch_size: int | None | str = FROM_MINIBATCH,
                 step_size: float | None = None,
                 temperatures: Sequence[float] | None = None, n_replicas: int = 8,
                 max_temperature: float = 100.0, swap_every: int | None = None, swap_energy: str = "auto",
                 swap_batch_size: int | None = None, steps_per_draw: int | None = None, **kwargs: Any) -> None:
        self.auto_step_size = step_size is None
        self.h = np.nan if step_size is None else require_positive(
            "step_size", step_size, "It is h on U for every replica; None chooses it.")
        self.adapts_ladder = temperatures is None
        if temperatures is None:
            if n_replicas < 2:
                raise ValueError(f"n_replicas must be >= 2, got {n_replicas}.")
            temperatures = geometric_ladder(n_replicas, require_positive("max_temperature", max_temperature, ""))
        self.temperatures = np.asarray(temperatures, dtype=np.float64)
        if len(self.temperatures) < 2 or self.temperatures[0] != 1.0 or np.any(np.diff(self.temperatures) <= 0):
            raise ValueError(f"temperatures must increase strictly from 1 (the posterior), got {list(temperatures)}.")
        if swap_energy not in (*SWAP_ENERGIES, "auto"):
            raise ValueError(f"swap_energy={swap_energy!r} is unknown; use 'auto' or one of {sorted(SWAP_ENERGIES)}.")
        self.user_swap_every = None if swap_every is None else require_int(
            "swap_every", swap_every, 1, "It is the number of updates between swap rounds; None chooses it.")
        self.swap_energy = swap_energy
        # PyMC's NDArray trace stores scalar stats only: one swap-rate stat per adjacent pair.
        self.swap_stat_names = [f"swap_rate_{k}" for k in range(len(self.temperatures) - 1)]
        self.ladder_stat_names = [f"temperature_{k}" for k in range(1, len(self.temperatures))]
        self.stats_dtypes_shapes = {**self.stats_dtypes_shapes, **{
            name: (np.float64, []) for name in self.swap_stat_names + self.ladder_stat_names}}
        self.initial_temperatures = self.temperatures.copy()
        self.stats_dtypes = [{name: dtype for name, (dtype, _) in self.stats_dtypes_shapes.items()}]
        super().__init__(vars, batch_size=batch_size, steps_per_draw=steps_per_draw, **kwargs)
        self.swap_batch_size = self.batch_size if swap_batch_size is None else int(swap_batch_size)
        if swap_energy not in ("full", "auto") and self.swap_batch_size < 2:
            raise ValueError("swap_batch_size must be >= 2 to estimate the energy variance for the correction.")

    def _start_chain(self) -> None:
        k = len(self.temperatures)
        self.replica_states: np.ndarray | None = None
        self.labels = np.arange(k, dtype=np.int64)
        self.direction = np.zeros(k, dtype=np.int64)
        self.round_trips = np.zeros(1, dtype=np.int64)
        self.predicted_error = np.nan
        self.temperatures = self.initial_temperatures.copy()
        self._swaps = np.zeros((2, k - 1), dtype=np.int64)  # accepted, attempted since the last ladder change

    def _draws_make_a_metric(self, window: np.ndarray) -> bool:
        """Not when the draws span several modes: their covariance is then no metric for the moves
        within one (on the seed-0 mixture it made the step 500x smaller: 10000 updates per draw).
        Sign of it: a variance above MODES_SPREAD in the Laplace coordinates of the mode the warm-up
        found (measured: 464 on the mixture, 1.2-2.0 on unimodal models)."""
        return float(np.linalg.eigvalsh(np.atleast_2d(np.cov(window, rowvar=False))).max()) <= MODES_SPREAD

    def _coordinates_changed(self, remap) -> None:
        """Every replica moves to the new coordinates (the same point of the model)."""
        if self.replica_states is not None:
            self.replica_states = np.array([remap(v) for v in self.replica_states])

    def _maybe_refine_metric(self) -> None:
        """At the refits, also move the ladder to equalise the rejection rates measured since the last one."""
        if self.adapts_ladder and len(self._tuning_draws) in REFITS and self._swaps[1].all():
            accepted, attempted = self._swaps
            self.temperatures = equalised_ladder(self.temperatures, 1.0 - accepted / attempted)
            self._swaps[:] = 0
        super()._maybe_refine_metric()

    def _tune_sampler(self, bulk: warmup.Bulk) -> None:
        """Every replica's step is SGLD's at T = 1 (``warmup.tuning.langevin_step_size``): the
        discretisation error is relative to each replica's own spread, and the gradient noise
        matters least at the hottest. Thinning for the T = 1 replica."""
        if self.auto_step_size:
            self.h, self.predicted_error = langevin_step_size(bulk.hessian, self._minibatch_noise(bulk), self.metric,
                                                              1.0, self.target_error)
        self._set_updates_per_draw(self.h * curvature_range(self.metric, bulk.hessian)[0])

    def _swap_energy(self) -> str:
        """"auto": exact full-data energies when a swap round's (K n rows) costs no more than the
        updates between rounds (K B swap_every rows), i.e. n <= B swap_every; else Deng et al.'s
        corrected minibatch energies. The correction is approximate (it assumes Gaussian energy
        noise) and its bias grows with the number of swaps: at 10 rounds per draw on seed 000's
        n = 100 model it moved a mean by 0.23 posterior SD, the full energies by 0.05 (MC error)."""
        if self.swap_energy != "auto":
            return self.swap_energy
        cheap = self.estimator.n_rows <= self.batch_size * self._swap_every() or self.swap_batch_size < 2
        return "full" if cheap else "corrected"

    def _swap_every(self) -> int:
        if self.user_swap_every is not None:
            return self.user_swap_every
        return max(1, self.steps_per_draw // SWAP_ROUNDS_PER_DRAW)

    def _grad_evals_per_draw(self) -> float:
        return super()._grad_evals_per_draw() * len(self.temperatures)

    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        est = self.estimator
        if self.replica_states is None or not np.all(np.isfinite(self.replica_states)):  # new, or diverged in tuning
            self.replica_states = np.tile(w, (len(self.temperatures), 1))
        self.replica_states[0] = w
        accepted = np.zeros(len(self.temperatures) - 1, dtype=np.int64)
        attempted = np.zeros_like(accepted)
        state = exchange.State(self.replica_states, self.t, self.labels, self.direction, self.round_trips, accepted,
                               attempted)
        params = exchange.Params(self.h, self.temperatures, self._swap_every(), SWAP_ENERGIES[self._swap_energy()],
                                 est.n_rows, self.swap_batch_size, self.divergence_bound)
        state, info = exchange.exchange_updates(est.kernel, self.batch, self._metric_preconditioner(), state, params,
                                                self.steps_per_draw, self.rng)
        self.t = state.t
        if self.tune:
            self._swaps += np.array([accepted, attempted])
        with np.errstate(invalid="ignore", divide="ignore"):
            swap_rate = np.where(attempted > 0, accepted / attempted, np.nan)
        return self.replica_states[0].copy(), {
            **self._kernel_stats(info, self.h), "temperature": 1.0, **dict(zip(self.swap_stat_names, swap_rate)),
            "round_trips": int(self.round_trips[0]),
            "predicted_sd_error": self.predicted_error, **dict(zip(self.ladder_stat_names, self.temperatures[1:])),
            "cold_replica": int(self.labels[0])}
