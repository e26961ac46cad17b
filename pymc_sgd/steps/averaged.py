"""The Averaged Stochastic Gradient Sampler as a PyMC step (Mandt, Hoffman & Blei 2017, seed 004)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import warmup
from ..kernels import averaging, batching
from ..warmup.tuning import curvature_range, whitened_noise
from .base import BASE_STATS, FROM_MINIBATCH, StochasticGradientStep, require_positive
from .gradient_estimator import GradientEstimator

RELAXATIONS_PER_DRAW = 20  # the averaging window, in relaxation times 1 / (h k_min) of the iterates


class AveragedSGD(StochasticGradientStep):
    r"""Averaged Stochastic Gradient Sampler: constant SGD whose iterates, averaged over windows, are draws.

    Constant SGD :math:`w \leftarrow w - h M \nabla \hat U(w)` (no injected noise) runs throughout; each
    recorded draw is the mean :math:`\bar w` of the ``steps_per_draw`` = K iterates since the last, rescaled
    about the running mean m of those means:

    .. math:: w_{draw} = m + s (\bar w - m),\qquad s^2 = \frac{B K T}{n f},

    f = 1 for batches drawn with replacement, (n - B) / (n - 1) without. Why (Mandt, Hoffman & Blei 2017,
    JMLR 18, Sec. 6-7; ``kernels.averaging``): the mean of K iterates has covariance (1/K) H^{-1} V H^{-1}
    whatever h and M, with V = (n^2 f / B) C the minibatch noise and C the per-example gradient covariance;
    for a well-specified model n C ~ H (the Fisher information), so s^2 times it is T H^{-1}, the posterior
    covariance (at T = 1). In general the draws have the sandwich covariance n H^{-1} C H^{-1} (robust to a
    misspecified likelihood; the Bayesian posterior only when C matches H / n) around the mode plus O(h).
    At K = n / B (one epoch) s = 1 and the draws are the epoch means themselves. The centre m is the running
    mean of the K-iterate means since tuning ended (during tuning, since the warm-up); the draws' mean is
    close to its final value, the Polyak average of the sampling iterates, the asymptotically optimal point
    estimate (Polyak & Juditsky 1992), and equal to it when s = 1. Its own
    sampling covariance is that of the K-iterate means over their number, Cov(draws) / (s^2 N) for N draws
    (``theory.averaged_iterate_covariance`` with K = all iterates gives it exactly on a quadratic).

    Defaults: give only ``batch_size``. The warm-up sets M = H^{-1}, measures the whitened gradient noise
    V_z = L^T V L and takes h = min(1 / k_max, 2 / lambda_max(V_z)), so that the iterates' own spread
    h V_z / 2 is at most one posterior SD in every direction (Mandt et al.'s posterior-matching rate; larger
    steps let the iterates wander where the noise grows, e.g. small scale parameters, and the chains
    diverged on 4 of 4 posteriordb models, measured), and K = max(n / B, 20 / (h k_min)) (at most
    ``max_steps_per_draw``), twenty relaxation times. Stats: ``step_size``, ``averaged_iterates`` (K),
    ``rescale`` (s). The iterate the next draw continues from is kept by the step, so this sampler cannot
    share a compound step with others.

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=2000)
    >>> with pm.Model():
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=x)
    ...     idata = pm.sample(draws=400, tune=100, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.AveragedSGD(batch_size=20))
    >>> post = idata.posterior["mu"]  # posterior N(mean(x), 0.0224^2)
    >>> bool(abs(post.mean() - x.mean()) < 0.01), bool(0.017 < post.std() < 0.028)
    (True, True)
    """

    streams_rows = False
    streams_rows_reason = "its rescaling assumes batches independent across updates, and a buffer's batches are not"

    name = "averaged_sgd"
    stats_dtypes_shapes = {**BASE_STATS, "averaged_iterates": (np.int64, []), "rescale": (np.float64, [])}

    def __init__(self, vars=None, *, batch_size: int | None | str = FROM_MINIBATCH, step_size: float | None = None,
                 steps_per_draw: int | None = None, **kwargs: Any) -> None:
        self.auto_step_size = step_size is None
        self.h = np.nan if step_size is None else require_positive(
            "step_size", step_size,
            "It is h in w <- w - h M grad U_hat; stability needs h < 2 / k_max. None chooses it.")
        if kwargs.get("batching") == "epoch":
            raise ValueError("AveragedSGD needs batches drawn at random: an epoch's gradient noise sums to zero, so "
                             "its means are not the averages the rescaling assumes. Use batching='with_replacement'.")
        super().__init__(vars, batch_size=batch_size, steps_per_draw=steps_per_draw, **kwargs)
        if self.batch_mode == batching.WITHOUT_REPLACEMENT and self.batch_size == self.estimator.n_rows:
            raise ValueError("AveragedSGD with batching='without_replacement' and batch_size = n has no gradient "
                             "noise; use a smaller batch_size.")
        if self.full_batch:
            raise ValueError("AveragedSGD draws from the minibatch noise of constant SGD; give a batch_size.")
        self.gradient_estimator = GradientEstimator("minibatch", self.var_names)

    def _start_chain(self) -> None:
        self.iterate: np.ndarray | None = None
        self.mean_sum, self.mean_count = None, 0

    def _tune_sampler(self, bulk: warmup.Bulk) -> None:
        """h and K in the metric (see the class docstring)."""
        k_min, k_max = curvature_range(self.metric, bulk.hessian)
        epoch = int(np.ceil(self.estimator.n_rows / self.batch_size))
        if self.auto_step_size:
            noise = whitened_noise(self._minibatch_noise(bulk).mean(axis=0), self.metric)
            self.h = min(1.0 / k_max, 2.0 / max(float(np.linalg.eigvalsh(noise).max()), 1e-300))
        if self.auto_steps_per_draw:
            wanted = max(epoch, int(np.ceil(RELAXATIONS_PER_DRAW / (self.h * k_min))))
            self.steps_per_draw = min(wanted, self.max_steps_per_draw)

    @property
    def rescale(self) -> float:
        """s = sqrt(B K T / (n f))."""
        n, batch = self.estimator.n_rows, self.batch_size
        f = 1.0 if self.batch_mode == batching.WITH_REPLACEMENT else (n - batch) / (n - 1)
        return float(np.sqrt(batch * self.steps_per_draw * self.temperature / (n * f)))

    def stop_tuning(self) -> None:
        """Sampling draws are rescaled about the mean of the sampling iterates only (not tuning's)."""
        self.mean_sum, self.mean_count = None, 0
        super().stop_tuning()

    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        est = self.estimator
        start = w if self.iterate is None else self.iterate
        (self.iterate, mean), info = averaging.averaged_updates(
            est.kernel, self.batch, self._kernel_estimator(start), self._metric_preconditioner(),
            averaging.State(start, start),
            averaging.Params(self.h, self.divergence_bound), self.steps_per_draw, self.rng)
        self.mean_sum = mean if self.mean_sum is None else self.mean_sum + mean
        self.mean_count += 1
        centre = self.mean_sum / self.mean_count
        s = self.rescale
        return centre + s * (mean - centre), {**self._kernel_stats(info, self.h),
                                              "averaged_iterates": self.steps_per_draw, "rescale": s}
