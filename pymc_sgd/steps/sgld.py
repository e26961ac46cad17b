"""Stochastic gradient Langevin dynamics as a PyMC step (Welling & Teh 2011)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import theory, warmup
from ..kernels import batching, langevin, schedules
from ..kernels.estimator import potential_hessian
from ..warmup.tuning import curvature_range, langevin_sd_error, langevin_step_size
from .base import BASE_STATS, FROM_MINIBATCH, StochasticGradientStep
from .schedules import Cyclical, PolynomialDecay, schedule_arrays
from .gradient_estimator import check_gradient_estimator
from .metropolis import MetropolisAdjusted, resolve_metropolis


class SGLD(MetropolisAdjusted, StochasticGradientStep):
    r"""Stochastic gradient Langevin dynamics on a full-data PyMC model.

    Each update draws a minibatch of ``batch_size`` rows and moves

    .. math:: w \leftarrow w - h_t \nabla \hat U(w) + \sqrt{2 h_t T}\, \xi,\quad \xi \sim N(0, I),

    with :math:`\hat U = -\log p(w) - (n/B) \sum_{i \in batch} \log p(x_i \mid w)` in PyMC's
    unconstrained space (Welling & Teh's :math:`\epsilon` is :math:`2h`). At a constant step
    the stationary law is exp(-U/T) up to an O(h) bias: on a quadratic with curvature
    lambda the variance is T / (lambda (1 - lambda h / 2)) plus the minibatch-noise excess
    h C / 2 (docs/pages/sources.md); use a :class:`PolynomialDecay` step size to remove it, or
    ``correction="exact"``: inject N(0, Q) instead of N(0, 2hT I) with

    .. math:: Q = 2hT I - h^2 T H - h^2 V,

    H the Hessian of U and V = Cov(grad U_hat) = (n^2/B) C, both measured at the start and
    during tuning. On a Gaussian target this makes the stationary covariance exactly T H^{-1}
    at any step where Q is positive semi-definite (seed 003, Thm. 3, as derived in docs/pages/sources.md;
    ``theory.exact_injected_noise``); where it is not, the nearest PSD matrix is used and a
    warning says to reduce the step size.

    Defaults: give only ``batch_size``. At the first draw of each chain the warm-up
    (``pymc_sgd.warmup``) finds the bulk by damped Newton, sets the metric M = H^{-1} (the
    update becomes w <- w - h M grad U_hat + sqrt(2 h T) M^{1/2} xi), measures the gradient
    noise at Laplace draws, and chooses the largest h whose predicted error of every
    posterior SD is below ``target_error`` (exact discrete Lyapunov oracle, ``theory``), with
    or without the control variate, whichever reads fewer rows per effective draw; then
    ``steps_per_draw`` for about one effective draw per two recorded draws. On small data, where the full batch
    with its Metropolis test (MALA) reads fewer rows per effective draw, the warm-up takes it and says so (with
    ``batching="auto"``: ``steps.batches.Batches._tune_cheapest``). The choices are
    in sample_stats (``pymc_sgd.tuning_report``).

    Parameters
    ----------
    batch_size
        rows per update; None for full-batch gradients (Metropolis-adjusted: see ``metropolis``). Default: the
        model's pm.Minibatch batch size (a model written with pm.Minibatch + total_size); otherwise required.
    step_size
        None (default: chosen by the warm-up), h (on U, not on the average loss) or
        a :class:`PolynomialDecay` schedule, or :class:`Cyclical` (cSGLD: one cosine cycle per draw
        around the warm-up's step). An explicit h is in the parameters' own units
        (metric "identity" unless ``metric`` says otherwise).
    steps_per_draw
        updates per recorded draw, all inside one numba call (None: chosen).
    gradient_estimator
        "auto" (default), "minibatch", "control_variate", "svrg" (or ``SVRG(epoch_length)``),
        "saga", or a point (dict of value-variable arrays, e.g. ``pm.find_MAP(include_transformed=True)``) to
        centre a control variate at (``steps.gradient_estimator``). "auto" centres the gradient at the mode
        the warm-up found (SGLD-CV, Baker, Fearnhead, Fox & Nemeth 2019: grad U_hat(w) - grad U_hat(w*) +
        grad U(w*), two gradient evaluations per update) when the theory says that reads fewer rows per
        effective draw: its noise shrinks from O(n^2 / B) to O(n d / B) near w*, so on large n the step can
        approach the stability limit with a small minibatch-noise bias. SVRG and SAGA (Dubey et al. 2016)
        move their reference points with the chain.
    metric
        "auto" (default with step_size=None), "dense", "diag" or "identity".
    target_error
        largest predicted relative error of a posterior SD (default 0.03).
    max_steps_per_draw
        the compute budget of the automatic thinning (default 10000).
    batching
        "auto" (default: all rows once per update when batch_size is n or where the warm-up finds that cheaper, "shuffled_chunks" when the per-row
        data is memory-mapped, see ``pymc_sgd.Data``,
        "stratified" on a model with a group effect a[g] of at most batch_size / 2 groups, else
        "with_replacement"), "with_replacement", "without_replacement", "epoch", "stratified" (b_g rows
        of every group g in every batch, weighted n_g / b_g: ``kernels.batching``) or "shuffled_chunks"
        (``pymc_sgd.data.chunks``: chunks of ``chunk_rows`` rows, default 256 KiB of them, in a random order
        each epoch, batches drawn from a buffer of ``buffer_chunks`` chunks, default 8).
    data
        per-row data tensors to subsample, when automatic detection is ambiguous.
    temperature
        T; 1 samples the posterior.
    correction
        None (plain SGLD) or "exact" (finite-step injected-noise correction).
    metropolis
        whether each update is a Metropolis-adjusted proposal (MALA, Roberts & Tweedie 1996; ``MALA``).
        None (default): when the batch is all rows and the step constant. On a full batch the Metropolis
        test costs one potential beside the gradient and removes the O(h) bias, so the law is exactly
        exp(-U/T) and h is tuned for the acceptance (0.574) instead of ``target_error``; in a region
        too stiff for h (the neck of a funnel, the heavy tail of a group scale) the chain rejects
        where unadjusted updates would blow up or wander. ``acceptance_rate`` is in sample_stats.
        False: unadjusted full-batch Langevin (ULA), with the bias the theory predicts.

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=1000)
    >>> with pm.Model():
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=x)
    ...     idata = pm.sample(draws=400, tune=100, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.SGLD(batch_size=50))
    ...     fixed = pm.sample(draws=200, tune=50, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.SGLD(batch_size=50, step_size=1e-4, steps_per_draw=50))
    >>> # posterior SD 1 / sqrt(1000 + 0.01) = 0.0316; 400 draws at >= 1/2 effective draw each give
    >>> # SE(mean) <= 0.0316 / sqrt(200) = 0.0022 and SE(SD) <= 0.0316 / sqrt(400) = 0.0016 (4.5 SE ranges
    >>> # around the posterior SD times the predicted 3% error bound)
    >>> post = idata.posterior["mu"]
    >>> bool(abs(post.mean() - x.mean()) < 0.01), bool(0.0316 * 0.97 - 0.0072 < post.std() < 0.0316 * 1.03 + 0.0072)
    (True, True)
    >>> bool(abs(fixed.posterior["mu"].mean() - x.mean()) < 0.1)
    True
    """

    name = "sgld"
    stats_dtypes_shapes = {**BASE_STATS, "control_variate": (bool, []), "predicted_sd_error": (np.float64, []),
                           "acceptance_rate": (np.float64, [])}

    def __init__(self, vars=None, *, batch_size: int | None | str = FROM_MINIBATCH,
                 step_size: float | PolynomialDecay | Cyclical | None = None,
                 correction: str | None = None, gradient_estimator: Any = "auto",
                 steps_per_draw: int | None = None, metropolis: bool | None = None, **kwargs: Any) -> None:
        step_size = self._take_step_size(step_size)
        self.schedule_kind, self.schedule = (schedules.CONSTANT, np.full(3, np.nan)) if step_size is None \
            else schedule_arrays(step_size)
        if correction not in (None, "exact"):
            raise ValueError(f"correction={correction!r} is unknown; use None or 'exact'.")
        if correction == "exact" and (self.schedule_kind != schedules.CONSTANT or self.cycle is not None):
            raise ValueError("correction='exact' needs a constant step_size (the correction depends on h).")
        self.correction = correction
        self.measures_gradient_noise = correction == "exact"
        gradient_estimator = check_gradient_estimator(gradient_estimator, kwargs)
        if correction is not None and gradient_estimator == "auto":
            gradient_estimator = "minibatch"
        if gradient_estimator != "minibatch" and correction is not None:
            raise ValueError("correction='exact' models the plain minibatch noise; it cannot be combined "
                             f"with gradient_estimator={gradient_estimator!r}: use gradient_estimator='minibatch'.")
        super().__init__(vars, batch_size=batch_size, steps_per_draw=steps_per_draw, **kwargs)
        self._use_gradient_estimator(gradient_estimator)
        self.metropolis = resolve_metropolis(
            self, metropolis, ("correction='exact' (it corrects the unadjusted chain's bias)", correction is not None))
        self.h = self.schedule[0]

    @property
    def stratifies(self) -> bool:
        """Stratified batches on group models (``steps.base``), except with correction='exact' (which models
        the plain batches' noise)."""
        return self.correction is None

    def _tune_sampler(self, bulk: warmup.Bulk) -> None:
        """Step size, control variate and thinning from the bulk's curvature and measured noise.

        With step_size=None: the largest h whose predicted SD error is below target_error
        (``warmup.tuning.langevin_step_size``), for the plain and, when allowed, the centred
        estimator (``steps.gradient_estimator``: the relaxation rate per update is h k_min).
        """
        if self.metropolis:
            self._tune_metropolis(bulk)
            self.predicted_error = 0.0  # exact: only Monte Carlo error
            return
        H, T = bulk.hessian, self.temperature
        k_min = curvature_range(self.metric, H)[0]

        def tune(centre: np.ndarray | None) -> tuple[tuple[float, float], float]:
            h, error = langevin_step_size(H, self._langevin_noise(bulk, centre), self.metric, T, self.target_error)
            return (h, error), h * k_min

        chosen = self._choose_gradient_estimator(bulk, tune)
        if chosen is not None:
            h, self.predicted_error = chosen
            self.schedule = np.array([h, 0.0, 0.0])
        elif self.schedule_kind == schedules.CONSTANT and self.cycle is None and self.correction is None:
            noise = self._langevin_noise(bulk, self.gradient_estimator.noise_centre)
            self.predicted_error = langevin_sd_error(H, noise, self.metric, self.schedule[0], T)
            if not self.predicted_error <= self.target_error:
                self.advised_step = langevin_step_size(H, noise, self.metric, T, self.target_error)[0]
        self._set_updates_per_draw(self.schedule[0] * k_min, step=self.schedule[0])

    def _langevin_noise(self, bulk: warmup.Bulk, centre: np.ndarray | None) -> np.ndarray:
        """The noise the step is tuned to: ``_minibatch_noise``'s worst point, but with a control variate
        centred at w* the mean over the points. That noise is, to first order, C (w - w*)(w - w*)^T C per row,
        so at one point each coordinate's noise is its own deviation squared, a chi-square draw: the worst of
        k points takes, for every coordinate, the largest of k draws, and over d coordinates the largest of
        d k (1000 groups, 4 points: about 13 times the mean). What sets SGLD's stationary covariance S is the
        mean: for a linear drift, by the law of total variance, S = (I - h K) S (I - h K)^T + 2 h T I +
        h^2 E[V(w)] exactly, E over the chain's law. Measured on a 1000-group logistic GLM (n = 1e5, B = 1000):
        a step 2.5 times larger, the draws as accurate (docs/pages/benchmarks.md). Not for SGHMC, whose
        injected noise is corrected by the mean and whose error is then the worst point's (on the same GLM
        the mean put its SDs 15% short)."""
        noise = self._minibatch_noise(bulk, centre)
        return noise if centre is None or self.batch_mode == batching.FULL else noise.mean(axis=0, keepdims=True)

    def _start_chain(self) -> None:
        d = self.estimator.dim
        self._noise_factor = np.eye(d) if self.correction == "exact" else np.zeros((0, 0))
        self.predicted_error = np.nan
        self._start_metropolis()

    def stop_tuning(self) -> None:
        if self.metropolis:
            self._stop_metropolis_tuning()
        super().stop_tuning()

    def _use_gradient_noise(self, per_example_cov: np.ndarray, w: np.ndarray) -> None:
        """Noise factor L with L L^T = Q / (2 h T) (the kernel scales it by sqrt(2 h T)), Q for the
        step matrix h M of the metric."""
        est, T = self.estimator, self.temperature
        h = self.schedule[0] * self.metric.matrix
        rows = np.arange(est.n_rows, dtype=np.int64)
        H = potential_hessian(est.kernel, w, rows, 1.0, 1e-5)
        V = (np.zeros_like(H) if self.batch_mode == batching.FULL else theory.minibatch_gradient_covariance(
            per_example_cov, est.n_rows, self.batch_size, self.batch_mode == batching.WITH_REPLACEMENT))
        try:
            Q = theory.exact_injected_noise(H, V, h, temperature=T)
        except ValueError as error:
            if self.draw > 0:  # the start point may be far from the mode; later windows should not be
                self._warn(f"SGLD(correction='exact'): {error} Using the nearest feasible noise.")
            Q = theory.exact_injected_noise(H, V, h, temperature=T, clip=True)
        eigenvalues, eigenvectors = np.linalg.eigh(Q / (2.0 * self.schedule[0] * T))
        self._noise_factor = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))

    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        if self.metropolis:
            w, stats = self._metropolis_updates(w)
            return w, {**stats, "control_variate": False, "predicted_sd_error": self.predicted_error}
        preconditioner = langevin.preconditioner(langevin.FULL, matrix=self.metric.matrix, root=self._noise_factor) \
            if self.correction else self._metric_preconditioner()
        schedule_kind, schedule, t0 = self.schedule_kind, self.schedule, self.t
        if self.cycle is not None:  # one cycle per draw, from its start
            (schedule_kind, schedule), t0 = self._schedule(self.schedule[0]), 0
        state, info = langevin.langevin_updates(
            self.batch_model, self.batch, self._kernel_estimator(w),
            preconditioner, langevin.State(w, t0),
            langevin.Params(schedule_kind, schedule, self.temperature, 1.0, self.divergence_bound),
            self.steps_per_draw, self.rng)
        self.t += state.t - t0
        return state.w, {**self._kernel_stats(info, info.step_size if self.cycle is None else self.schedule[0]),
                         "control_variate": self.gradient_estimator.active, "predicted_sd_error": self.predicted_error,
                         "acceptance_rate": np.nan}
