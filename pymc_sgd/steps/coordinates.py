"""The sampler's own coordinates for a model's group effects (``pymc_sgd.hierarchy``), as a step chooses them.

``GroupCoordinates`` is the part of ``steps.base.StochasticGradientStep`` that chooses, per group, whether to
run an effect centred or non-centred: at the warm-up from posterior draws (``_choose_coordinates``), again at
every metric refit from the window of tuning draws (``_rechoose_coordinates``), carrying the chain over to new
coordinates when the choice changes. The choice is data of the compiled model (``ModelEstimator.set_coordinates``),
so changing it costs no compilation. It reads and sets the step's warm-up state (``estimator``, ``bulk``,
``laplace``, ``metric``, the tuning draws), so it is a mixin of that class, not a class of its own.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import numpy as np

from .. import warmup
from ..hierarchy import Coordinates, Reparameterisation, effect_indices
from ..warmup.bulk import NOISE_POINTS, spread_out

LAPLACE_SEARCH_STEPS = 30  # Newton steps the search in the chosen coordinates may take before MALA takes over
LAPLACE_CHECKS = 16  # Laplace draws whose importance weights test the approximation
SEARCHES_KEPT = 2  # mode searches a step keeps for its next chains (the non-centred one and the Laplace one)
MAX_LOG_WEIGHT_SD = 0.5  # per sqrt(d): largest SD of their log weights at which the Laplace approximation stands


class GroupCoordinates:
    """Mixin of ``StochasticGradientStep``: the group coordinates (see the module docstring). The step sets
    ``coordinates`` (None: the model's own), ``_written`` (the model's coordinates as a Reparameterisation,
    None when the step never reparameterises) and ``_searches`` (an empty dict: see ``_search``)."""

    def _group_cells(self, w: np.ndarray) -> list[np.ndarray]:
        """The model's group effects (``pymc_sgd.hierarchy``) as cells for the warm-up's Hessians
        (``warmup.arrowhead``): effects indexed by the same per-row array (an intercept and a slope per group)
        form one family, one cell of m coordinates per group; any other effect indexed by one per-row array is
        a family of its own. H must be zero between cells at w (``warmup.geometry.cells_are_uncoupled``): the
        families are taken largest first while it holds (crossed effects a[g] + b[h]: a's groups are cells, b
        joins the hyperparameters). An effect indexed otherwise (several index arrays, a design matrix) is never
        a cell. For a step the warm-up chooses with ``parameterisation="auto"``, also the coordinates
        ``_choose_coordinates`` will set, where each effect's own groups are uncoupled (the choice differences
        one effect at a time)."""
        effects = self.group_effects
        if not effects:
            return []
        coordinates = Coordinates(self.vars, effects, self.model.initial_point())
        indices = effect_indices(self.model, effects, self.estimator.n_rows)
        positions = {e.name: np.arange(len(w))[coordinates.slices[e.name]] for e in effects}
        families: list[list[str]] = []
        for effect in effects:  # same size and the same index array: one family
            index = indices[effect.name]
            if index is None:
                continue
            family = next((f for f in families if len(positions[f[0]]) == effect.size
                           and np.array_equal(indices[f[0]], index)), None)
            if family is None:
                families.append([effect.name])
            else:
                family.append(effect.name)
        rows = warmup.subsample_rows(self.estimator.n_rows, 10_000, self.rng)
        potential, steps = warmup.geometry.potential_on(self.estimator, rows), 1e-4 * (1.0 + np.abs(w))

        def uncoupled(cells: list[np.ndarray]) -> bool:
            with warmup.geometry.model_errors_silenced(), np.errstate(all="ignore"):
                return warmup.geometry.cells_are_uncoupled(potential, w, steps, cells)

        cells: list[np.ndarray] = []
        for family in sorted(families, key=lambda f: -len(positions[f[0]]) * len(f)):
            candidate = np.column_stack([positions[name] for name in family])
            if uncoupled(cells + [candidate]):
                cells.append(candidate)
        choosable = all(uncoupled([positions[e.name][:, None]]) for e in effects)
        if choosable and self.parameterisation == "auto" and self.auto_step_size and self.reparameterises:
            self.coordinates = coordinates
        return cells

    def _choose_coordinates(self, w: np.ndarray, cells: list[np.ndarray]) -> None:
        """Sample each group centred or non-centred as its data say (``hierarchy.choose_coordinates``), and take
        the bulk in those coordinates. Not chosen at a mode alone: a centred hierarchy has none (the search can end
        in the spike at scale -> 0, where every group looks non-centred), and the non-centred mode sits at a large
        scale, where every group looks centred (radon, 85 counties: log tau 1.1 at the mode, -1.2 in the
        posterior); a search in coordinates with centred groups can fall into the spike.
        So: the non-centred mode (a search from w with every group non-centred, whichever way the model writes
        them) and a first choice there. Then the Laplace approximation at the mode in the chosen coordinates
        where it stands the checks of ``_laplace_bulk`` (many rows per group: the centred posterior is close to
        Gaussian); otherwise an adaptive MALA run from the non-centred mode in the chosen coordinates
        (``warmup.draws.sample_bulk``; in all-non-centred coordinates its acceptance fell to 0.17 on
        well-informed groups' ridges) and the choice again at its draws. The metric refits choose again from the
        tuning draws (``_rechoose_coordinates``). A search in the model's centred coordinates first would
        chase the spike: on the 1,000-group logistic GLM with 1e6 rows its first Newton step took log tau from
        0 to -5 and 100 more (3 minutes of full-data Hessians) crawled on to -19."""
        effects, est = self.coordinates.effects, self.estimator
        noncentred = Reparameterisation(effects, tuple((False,) * e.size for e in effects))
        self.coordinates.reparameterisation = noncentred
        est.set_coordinates(noncentred)
        bulk = self._search(self.coordinates.to_sampler(w), cells)
        passes = bulk.data_passes
        mode = self.coordinates.to_model(bulk.mode)
        self.coordinates.choose(self._model_potential, mode)
        est.set_coordinates(self.coordinates.reparameterisation)
        laplace, spent = self._laplace_bulk(mode, cells, f"the non-centred mode: {bulk.message}")
        passes += spent
        if laplace is not None:
            self.bulk = dataclasses.replace(laplace, data_passes=passes)
            return
        with warmup.geometry.model_errors_silenced(), np.errstate(all="ignore"):
            draws, calls, acceptance = warmup.draws.sample_bulk(est, self.coordinates.to_sampler(mode), self.rng,
                                                                est.n_rows, cells)
        model_draws = np.array([self.coordinates.to_model(v) for v in draws])
        self.coordinates.choose(self._model_potential, spread_out(model_draws, NOISE_POINTS))
        est.set_coordinates(self.coordinates.reparameterisation)
        draws = np.array([self.coordinates.to_sampler(w) for w in model_draws])
        message = (f"{len(draws)} draws of an adaptive MALA run (acceptance {acceptance:.2f}) from the non-centred "
                   f"mode ({bulk.message}), in per-group coordinates")
        self.bulk = warmup.Bulk(draws.mean(axis=0), warmup.draws.curvature_of_draws(draws), np.nan,
                                passes + calls + 2.0 * NOISE_POINTS, acceptance >= warmup.bulk.MIN_ACCEPTANCE,
                                message, draws=spread_out(draws, NOISE_POINTS))

    def _laplace_bulk(self, start: np.ndarray, cells: list[np.ndarray],
                      where: str) -> tuple[warmup.Bulk | None, float]:
        """(the mode in the chosen coordinates, searched from the model's point ``start``, when the Laplace
        approximation N(mode, H^-1) there stands for the posterior as a start and a metric, else None; the
        full-data passes spent). The coordinates stay the ones chosen before. It stands when (1) the search
        converges, (2) the log importance weights log p - log q of LAPLACE_CHECKS draws from it have SD at most
        MAX_LOG_WEIGHT_SD sqrt(d), and (3) the groups' choice at those draws is the one made (at the spike every
        group looks non-centred). On (2): the log weight is a sum over the posterior's nearly independent
        directions, so its variance grows as d even where each is close to Gaussian; per direction, a skewness
        gamma gives a cubic term gamma z^3 / 6 of SD 0.65 gamma and a mean gamma / 2 SDs from the mode, so 0.5
        per sqrt(d) puts a typical coordinate's mean within about 0.4 SD of the mode, which the tuning draws
        burn off and their metric refits correct (measured: 0.21 and 0.35 on two logistic GLMs of 200 groups of
        50 rows; a funnel's scale moves every group at once, so its log weights grow as d, not sqrt(d)). On the
        1,000-group logistic GLM at n = 1e6 this replaces the MALA run (1,150 full-data gradients) by a search
        of a few Newton steps; on a radon-like model (85 groups of 1 to ~100 rows) the search does not converge
        (check 1) and the warm-up goes on to the MALA run."""
        est, d = self.estimator, len(start)
        found = self._search(self.coordinates.to_sampler(start), cells, max_iterations=LAPLACE_SEARCH_STEPS,
                             draws_if_no_mode=False)
        if not found.converged:
            return None, found.data_passes
        z = self.rng.standard_normal((LAPLACE_CHECKS, d))
        draws = found.mode + z @ warmup.metric_from_hessian(found.hessian, dense=True).factor.T
        potential = warmup.geometry.potential_on(est, None)
        with warmup.geometry.model_errors_silenced(), np.errstate(all="ignore"):
            U_mode = potential(found.mode)[0]
            log_weights = np.array([U_mode - potential(v)[0] for v in draws]) + 0.5 * np.sum(z**2, axis=1)
        passes = found.data_passes + 1 + LAPLACE_CHECKS
        if not (np.all(np.isfinite(log_weights)) and np.std(log_weights) <= MAX_LOG_WEIGHT_SD * np.sqrt(d)):
            return None, passes
        chosen = self.coordinates.reparameterisation
        model_draws = np.array([self.coordinates.to_model(v) for v in draws])
        passes += 2.0 * min(NOISE_POINTS, LAPLACE_CHECKS) * len(self.coordinates.effects)
        if self.coordinates.choose(self._model_potential, spread_out(model_draws, NOISE_POINTS)):
            self.coordinates.reparameterisation = chosen  # the choice at the mode, not the rejected one
            return None, passes
        message = (f"the Laplace approximation at the mode in per-group coordinates ({found.message}; log "
                   f"importance weights' SD {np.std(log_weights):.2f}), searched from {where}")
        return dataclasses.replace(found, data_passes=passes, message=message), passes

    def _search(self, start: np.ndarray, cells: list[np.ndarray], **options) -> warmup.Bulk:
        """``warmup.find_bulk`` from ``start`` in the current coordinates, or an earlier chain's result of the
        same search. With group cells a search that finds a mode is a function of the start, the coordinates
        and the data alone (all rows, no random numbers), and the chains of one process (pm.sample's default
        cores=1 on a 2-CPU machine) start at the same initial point: on 1,000 groups x 1e6 rows the non-centred
        search is about 36 s a chain. The key holds U and grad U at the start (one full-data gradient), so new
        data (pm.set_data) is a new search; a search that found no mode (then MALA draws) is never reused."""
        with warmup.geometry.model_errors_silenced(), np.errstate(all="ignore"):
            U, grad = warmup.geometry.potential_on(self.estimator, None)(start)  # one full-data pass
        if not (np.isfinite(U) and np.all(np.isfinite(grad))):  # find_bulk says what is wrong with the start
            return warmup.find_bulk(self.estimator, start, self.rng, cells=cells, **options)
        chosen = self.coordinates.reparameterisation
        key = (chosen.key, chosen.centred, start.tobytes(), float(U), grad.tobytes(),
               tuple(sorted(options.items())))
        cached = self._searches.get(key)
        if cached is not None:
            return dataclasses.replace(cached, data_passes=1.0, message=f"{cached.message}, an earlier chain's")
        bulk = warmup.find_bulk(self.estimator, start, self.rng, cells=cells, **options)
        if bulk.converged and bulk.draws is None:  # newest first; the oldest beyond SEARCHES_KEPT dropped
            self._searches = {key: bulk} | dict(list(self._searches.items())[:SEARCHES_KEPT - 1])
        return dataclasses.replace(bulk, data_passes=bulk.data_passes + 1.0)

    def _model_potential(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """(U, grad U) on the full data in the model's own coordinates (the estimator runs in the sampler's)."""
        self.estimator.set_coordinates(self._written)
        try:
            return warmup.geometry.potential_on(self.estimator, None)(w)
        finally:
            self.estimator.set_coordinates(self.coordinates.reparameterisation or self._written)

    def _rechoose_coordinates(self, window: slice) -> None:
        """Choose the groups' coordinates again at the tuning draws of ``window`` and, when the choice changes,
        carry the chain over to it: its tuning draws, bulk, Laplace scale, gradient estimator's centre and
        sampler state. The warm-up chose at a mode, which can be far from the posterior: a centred hierarchy
        has none, and its search can end in the spike at scale -> 0, where every group looks non-centred;
        the non-centred mode then sits at a large scale, where every group looks centred (measured on radon,
        85 counties: all 85 centred, log tau 0.25-0.37 SD high). The median kappa_g over the window's draws
        is the choice at the posterior's typical scale."""
        if self.coordinates is None or self.coordinates.reparameterisation is None:
            return
        recorded = self.bulk.mode + np.array(self._tuning_draws) @ self.laplace.factor.T
        model_draws = np.array([self._to_model(v) for v in recorded])
        before = copy.copy(self.coordinates).to_model  # choose() replaces the copy's reparameterisation, not this
        if not self.coordinates.choose(self._model_potential, spread_out(model_draws[window], NOISE_POINTS)):
            return
        self.estimator.set_coordinates(self.coordinates.reparameterisation)

        def remap(v: np.ndarray) -> np.ndarray:
            return self.coordinates.to_sampler(before(v))
        draws = np.array([self._to_sampler(w) for w in model_draws])
        covariance = warmup.metric.covariance_from_draws(warmup.identity_metric(len(draws[0])),
                                                         draws[window] - draws[window].mean(axis=0))
        self.laplace = warmup.metric.dense_metric(covariance)
        self.bulk = dataclasses.replace(self.bulk, mode=draws[window].mean(axis=0), gradient=None,
                                        hessian=warmup.metric.jacobi_inverse(covariance), draws=None)
        self._tuning_draws = list(warmup.whiten(self.laplace, draws.T, self.bulk.mode[:, None]).T)
        self._window = [remap(v) for v in self._window]
        if self.gradient_estimator is not None:
            self.gradient_estimator.remap(remap)
        self.metric = self._choose_metric(self.bulk)
        self._coordinates_changed(remap)

    def _coordinates_changed(self, remap: Callable[[np.ndarray], np.ndarray]) -> None:
        """Hook: sampler state in the old coordinates (``remap``: old v -> new v). The metric changed too."""
        self._metric_changed()

    def _group_advice(self) -> str:
        """For a warning about a chain that mixes slowly or drifts, on a model with group effects: how the sampler
        ran them and, where it did not choose per group, how to let it (issue 25's funnel and ridge)."""
        if not self.group_effects:
            return ""
        groups = sum(effect.size for effect in self.group_effects)
        names = ", ".join(effect.name for effect in self.group_effects)
        if self.coordinates is not None and self.coordinates.reparameterisation is not None:
            return (f" The warm-up ran {self.coordinates.centred_groups} of the {groups} group effects ({names}) "
                    "centred and the rest non-centred, each as its data say (parameterisation='auto').")
        if not self.reparameterises:
            return (f" The model has {groups} group effects ({names}), which this sampler runs as written; SGLD, "
                    "SGHMC, SGNHT and UnderdampedLangevin choose per group whether to centre them.")
        if self.parameterisation != "auto":
            return (f" The model has {groups} group effects ({names}), run as written (parameterisation="
                    f"{self.parameterisation!r}); parameterisation='auto' lets the warm-up centre each group or not "
                    "as its data say.")
        if self.auto_step_size:  # an effect's own groups are coupled (_group_cells): not per group
            return (f" The model has {groups} group effects ({names}), run as written: their rows are not one group "
                    "each (e.g. a design matrix over groups), so the warm-up cannot choose per group.")
        return (f" The model has {groups} group effects ({names}), run as written because step_size was given; with "
                "step_size=None the warm-up also chooses, per group, whether to centre them.")

    def _to_sampler(self, w: np.ndarray) -> np.ndarray:
        return w if self.coordinates is None else self.coordinates.to_sampler(w)

    def _to_model(self, v: np.ndarray) -> np.ndarray:
        return v if self.coordinates is None else self.coordinates.to_model(v)
