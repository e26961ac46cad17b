"""A step's batches: what ``batching`` resolves to, and the warm-up's choice between minibatches and the full batch.

``Batches`` is the part of ``steps.base.StochasticGradientStep`` that turns ``batch_size`` and ``batching`` into the
kernels' ``Batch`` (``kernels.batching``): "auto" resolved to stratified batches on group models, shuffled chunks
for data on disk (``pymc_sgd.data``) or plain batches with replacement; the warnings about data on disk; the
chunk stream; and, at each chain's warm-up, the fall-back to the full batch with its Metropolis test where that
reads fewer rows per effective draw (``_tune_cheapest``). It reads and sets the step's state (``estimator``,
``batch_size``, ``batch_mode``, ``batch``, ``metropolis``), so it is a mixin of that class, as
``steps.coordinates.GroupCoordinates`` is.
"""

from __future__ import annotations

import multiprocessing

import numpy as np

from .. import warmup
from ..data.chunks import ShuffledChunks, chunk_heterogeneity, default_chunk_rows, row_readers
from ..data.ondisk import disk_array
from ..hierarchy import row_groups
from ..kernels import batching as batch_sampling

BATCHING_NAMES = {k: v for k, v in batch_sampling.MODES.items() if k != "full"}
AUTO_BATCHING = "auto"  # shuffled chunks when the per-row data is memory-mapped, else with replacement (or stratified)
STRATA_PER_BATCH = 0.5  # "auto" stratifies by group when the groups are at most this fraction of batch_size
SORTED_ROWS_RATIO = 2.0  # chunk-mean spread, in units of random order's, above which the rows look sorted
IN_MEMORY_ROWS = 64 << 20  # bytes of per-row data in memory beside data on disk before a warning
INFERENCE_DATA_COPY = 1 << 30  # bytes of on-disk data pm.sample's InferenceData may copy before a warning
MINIBATCH_ROW_COST = 3.0  # a minibatch row's cost in rows of a full-data pass (random index, gather, one row at a time)
FULL_BATCH_TRIAL = 100.0  # the warm-up tries the full batch when n is at most this many minibatch updates' rows


class Batches:
    """Mixin of ``StochasticGradientStep``: its batches (see the module docstring). The step sets ``batch_size``,
    ``batch_mode``, ``batching_choice`` (the ``batching`` asked for) and ``_minibatching`` (None until a warm-up
    tried the full batch)."""

    def _resolve_batching(self, batching: str) -> str:
        """'auto': shuffled chunks for data in memory-mapped files (``pymc_sgd.data``), which this sampler can
        stream, else with replacement. Refuses shuffled chunks where they would be wrong."""
        on_disk = [name for name, array in zip(self.estimator.data_names, self.estimator.data) if disk_array(array)]
        if batching == AUTO_BATCHING:
            if on_disk and not self.streams_rows:
                self._warn(f"{type(self).__name__} reads rows outside its minibatches, so it reads the memory-mapped "
                           f"data {on_disk} at random rows: slow when the files do not fit in memory.", stacklevel=4)
            batching = "shuffled_chunks" if on_disk and self.streams_rows else "with_replacement"
        self._warn_if_inference_data_copies(on_disk)
        self._warn_if_rows_partly_in_memory(on_disk)
        if batching == "shuffled_chunks":
            if not self.streams_rows:
                raise ValueError(f"{type(self).__name__} cannot take batching='shuffled_chunks': "
                                 f"{self.streams_rows_reason}. Use batching='with_replacement'.")
            est = self.estimator
            per_row_held = [name for name, a in zip(est.held, est.held_arrays) if np.ndim(a) and len(a) == est.n_rows]
            if per_row_held:
                raise ValueError(f"batching='shuffled_chunks' cannot slice the other blocks' per-row values "
                                 f"{per_row_held}; use batching='with_replacement'.")
        if batching == "stratified":
            self._row_strata(batching)
        return batching

    def _row_strata(self, batching: str) -> np.ndarray | None:
        """The group of each row (``hierarchy.row_groups``) for stratified batches (``kernels.batching``):
        asked for, or "auto" for a sampler that ``stratifies``, on a model with a group effect indexed per row
        and at most STRATA_PER_BATCH x batch_size groups (fewer rows per batch from the large groups would
        make the noise on effects they share larger than a plain batch's). A row of every group in every
        batch takes away the noise that small groups' rare appearances cause (about n / (B n_g) of a group's
        posterior variance with a control variate; measured: up to 600 on 500 groups, n = 2e5, B = 1000)."""
        est = self.estimator
        labels = row_groups(self.model, self.group_effects, est.n_rows) if self.group_effects else None
        if batching == AUTO_BATCHING:
            fits = labels is not None and labels.max() + 1 <= STRATA_PER_BATCH * self.batch_size
            return labels if fits and self.stratifies else None
        name = type(self).__name__
        if not self.stratifies:
            raise ValueError(f"{name} cannot take batching='stratified' (its warm-up models plain batches' noise); "
                             "use batching='auto'.")
        if labels is None:
            raise ValueError("batching='stratified' needs a group effect indexed by one group per row (a[g], g an "
                             "integer array of the rows' groups) and found none; use batching='auto'.")
        if labels.max() + 1 > self.batch_size:
            raise ValueError(f"batching='stratified' takes a row of each of the {labels.max() + 1} groups: give "
                             f"batch_size >= {labels.max() + 1}, or use batching='auto'.")
        return labels

    def _warn_if_rows_partly_in_memory(self, on_disk: list[str]) -> None:
        """Per-row data in memory beside data on disk is usually a copy PyMC made (observed= and pm.Data copy
        their values): say which, and how to keep it on disk, when it exceeds IN_MEMORY_ROWS bytes."""
        est = self.estimator
        rows = zip(est.data_names[:len(est.row_arrays)], est.data)
        in_memory = {name: array.nbytes for name, array in rows if name not in on_disk}
        if on_disk and sum(in_memory.values()) > IN_MEMORY_ROWS:
            self._warn(f"The per-row data {sorted(in_memory)} is in memory ({sum(in_memory.values()) / 2**20:.0f} MB) while "
                       f"{on_disk} is on disk: PyMC copies observed= arrays and pm.Data values. Wrap them in "
                       "pymc_sgd.Data(name, np.load(path, mmap_mode='r')) to keep them on disk.", stacklevel=4)

    def _warn_if_inference_data_copies(self, on_disk: list[str]) -> None:
        """pm.sample's InferenceData copies observed and constant data into memory, with two int64 coordinate
        arrays per row (arviz's and pandas'): say so when that exceeds INFERENCE_DATA_COPY for data on disk."""
        if multiprocessing.parent_process() is not None:  # a worker: the main process said it (or uses to_inference_data)
            return
        est = self.estimator
        copied = sum((array.nbytes + 16 * len(array)) for name, array in zip(est.data_names, est.data) if name in on_disk)
        if copied > INFERENCE_DATA_COPY:
            self._warn(f"pm.sample's InferenceData would copy the on-disk data {on_disk} into memory (about "
                       f"{copied / 2**30:.1f} GiB with its coordinates). Call pm.sample(..., return_inferencedata=False, "
                       "compute_convergence_checks=False) and convert with pymc_sgd.to_inference_data(trace, model), which "
                       "leaves it on disk (then az.summary(idata) for R-hat and ESS).", stacklevel=4)

    def _new_row_stream(self) -> ShuffledChunks:
        """The chain's shuffled-chunk reader, its chunk order from a generator seeded by the chain's at its first
        draw (a point that is the same whether the chain runs here or in a worker process)."""
        est = self.estimator
        rows = est.row_arrays
        chunk_rows = self.chunk_rows or default_chunk_rows(row_readers(rows), self.batch_size)
        return ShuffledChunks(rows, est.data[len(rows):], est.evaluate.address,
                              np.random.default_rng(self.rng.integers(2**63)), chunk_rows, self.buffer_chunks)

    @property
    def batch_model(self) -> tuple:
        """The ``model`` the update loops read their batches through: the buffer of chunks when streaming."""
        return self.estimator.kernel if self.rows is None else self.rows.model

    def _tune_cheapest(self, bulk: warmup.Bulk) -> None:
        """Tune with the step's minibatches or, where it reads fewer rows per effective draw, with the full batch
        and its Metropolis test (``steps.metropolis``), and say so. The cost of one update is its rows, a
        minibatch row counted MINIBATCH_ROW_COST rows of a full-data pass (measured, one update of SGLD:
        37 against 12.5 ns a row on a logistic regression with 20 features and n = 5000, 38 against 7 ns on
        radon, n = 919); what each update costs beyond its rows is left out, which favours the minibatch (it
        takes more, smaller updates). Only with everything left to the warm-up (step size, thinning,
        ``batching``, ``gradient_estimator`` and ``metropolis``), on n at most FULL_BATCH_TRIAL minibatch
        updates' rows. Radon (85 counties, n = 919) with batch_size=200: the full batch predicted 3.1-4.1 times
        cheaper for SGLD, 1.3-5.7 for the momentum samplers, and SGLD's runs 9.4-12 s against 16-27 s
        (docs/pages/benchmarks.md)."""
        n = self.estimator.n_rows
        may_fall_back = (self.offers_metropolis and self.metropolis_option is None and self.auto_step_size
                         and self.auto_steps_per_draw and self.cycle is None and self.batching_choice == AUTO_BATCHING
                         and self.batch_mode != batch_sampling.FULL and not self.estimator.held
                         and getattr(self.gradient_estimator, "choice", None) == "auto"
                         and n <= FULL_BATCH_TRIAL * MINIBATCH_ROW_COST * self.batch_size)
        if not may_fall_back:
            self._tune(bulk)
            return
        self._minibatching = self._minibatching or self._current_batching()
        full_batch = (n, batch_sampling.FULL, batch_sampling.new_batch(batch_sampling.FULL, n, n), True, False)
        self._switch_batching(full_batch)
        self._tune(bulk)
        full_cost = self._rows_per_effective_draw()
        self._switch_batching(self._minibatching)
        self._tune(bulk)
        minibatch_cost = self._rows_per_effective_draw()
        if full_cost < minibatch_cost:
            self._switch_batching(full_batch)
            self._tune(bulk)
            self._minibatch_cost = minibatch_cost
            self._say(f"{type(self).__name__}: the full batch reads {minibatch_cost / full_cost:.1f} times fewer rows "
                      f"per effective draw than batches of {self._minibatching[0]} here (n = {n} rows), so this chain "
                      "samples with full-data gradients and a Metropolis test (exact at any step). Pass "
                      "batching='with_replacement' to keep the minibatches.")

    def _reconsider_full_batch(self) -> None:
        """At a metric refit of a chain that ``_tune_cheapest`` moved to the full batch: where the thinning its
        measured mixing asks for (``warmup.mixing``) makes it dearer per effective draw than the minibatches were
        predicted to be at the warm-up, tune the minibatches again where the chain is now and go back to them if
        they are cheaper, once a chain, and say so. The hierarchical logistic GLM with 1,000 groups (n = 1e5,
        SGHMC): the full batch predicted 1.3-1.5 times cheaper, its generalised HMC then mixed 5.5 times slower
        than predicted, 1,414 s against 785 s with minibatches (docs/pages/benchmarks.md)."""
        if self._minibatch_cost is None or self.batch_mode != batch_sampling.FULL:
            return
        full_cost = self._rows_per_effective_draw()
        if full_cost <= self._minibatch_cost:
            return
        self._minibatch_cost = None
        full_batch, full_shortfall = self._current_batching(), self.mixing_shortfall
        self._switch_batching(self._minibatching)
        self.mixing_shortfall = 1.0  # measured for the full batch's dynamics, not the minibatches'
        self._tune(self._tuned_on)
        minibatch_cost = self._rows_per_effective_draw()
        if minibatch_cost >= full_cost:
            self._switch_batching(full_batch)
            self.mixing_shortfall = full_shortfall
            self._tune(self._tuned_on)
            return
        if self.measures_gradient_noise:  # the minibatches' own noise, as at a chain's first draw
            self._measure_noise_at(self._noise_points(self._tuned_on))
        self._say(f"{type(self).__name__}: with its measured mixing the full batch reads {full_cost / minibatch_cost:.1f} "
                  f"times more rows per effective draw than batches of {self.batch_size} here, so this chain goes "
                  "back to them.")
        self._warn_if_untrustworthy()

    def _rows_per_effective_draw(self) -> float:
        """The tuned updates' rows per predicted effective draw, a minibatch row counted MINIBATCH_ROW_COST."""
        n = self.estimator.n_rows
        per_update = n if self.batch_mode == batch_sampling.FULL else \
            MINIBATCH_ROW_COST * self.batch_size * self.gradient_estimator.cost(self.batch_size, n)
        return self.steps_per_draw * per_update / self.predicted_ess_per_draw

    def _current_batching(self) -> tuple:
        """(batch_size, batch_mode, batch, metropolis, measures_gradient_noise): what ``_tune_cheapest`` switches."""
        return self.batch_size, self.batch_mode, self.batch, self.metropolis, self.measures_gradient_noise

    def _set_batching(self, batching: tuple) -> None:
        self.batch_size, self.batch_mode, self.batch, self.metropolis, self.measures_gradient_noise = batching

    def _switch_batching(self, batching: tuple) -> None:
        """Switch to ``batching`` before the chain's first update: its per-chain state starts afresh, and so does
        the Metropolis test's tuning."""
        self._set_batching(batching)
        self._start_chain()
        if self.offers_metropolis:
            self._forget_metropolis_tuning()

    def _full_batch_advice(self) -> str:
        """For a minibatched step that can run the Metropolis test: the full batch's cost, as advice."""
        if not self.offers_metropolis or self.batch_mode == batch_sampling.FULL:
            return ""
        n = self.estimator.n_rows
        return (f" Or pass batch_size=None: a full-data gradient costs {n / self.batch_size:.0f} batches here, and "
                "full batches get a Metropolis test, exact at any step.")

    def _warn_if_rows_sorted(self, w: np.ndarray) -> None:
        """Shuffled chunks add correlated gradient noise, which the warm-up does not measure, when the rows are
        stored in an order (``data.chunks``): warn when the first buffer's chunk means say so."""
        statistic, dof = chunk_heterogeneity(self.rows, w, self.rng)
        if statistic > max(SORTED_ROWS_RATIO, 1.0 + 4.5 * np.sqrt(2.0 / max(dof, 1))):
            self._warn(f"{type(self).__name__}: the data's rows look stored in an order (the variance of its chunks' "
                       f"mean gradients is {statistic:.1f} times what random order gives), so batches from a buffer of "
                       f"{self.buffer_chunks} chunks carry extra, correlated noise and the draws may be too wide or "
                       "off centre. Shuffle the rows when writing the file, raise buffer_chunks, or pass "
                       "batching='with_replacement' (random reads: slow when the data does not fit in memory).")

    def _rows_per_draw(self) -> int:
        """Rows the next draw's updates read (the shuffled-chunk buffer must hold them)."""
        return self.steps_per_draw * self.batch_size
