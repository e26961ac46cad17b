"""Constant-learning-rate SGD as an approximate posterior sampler (Mandt, Hoffman & Blei 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import batching, langevin, schedules
from ..kernels.estimator import gradient_noise_covariance
from .base import BASE_STATS, StochasticGradientStep, require_positive

PRECONDITIONERS = {"full": langevin.FULL, "diag": langevin.DIAGONAL, None: langevin.IDENTITY}


class ConstantSGD(StochasticGradientStep):
    r"""Plain minibatch SGD, w <- w - P grad U_hat(w), read as a sampler; no injected noise.

    Only the minibatch gradient noise drives the chain. With B rows drawn with replacement
    its covariance is Cov = (n^2 / B) C(w), where C is the per-example covariance of
    grad log p(x_i | w) (times (n - B)/(n - 1) for batches without replacement). Near a mode
    with Hessian H, the continuous-time stationary covariance S solves
    P H S + S H P = P Cov P (seed 000; ERRATA.md), so

    * ``preconditioner="full"`` (default, Mandt et al. 2017, Thm. 2): P = 2 T Cov^{-1}
      = h (f C)^{-1} with h = 2 B T / n^2 and f the finite-population factor, gives
      S = T H^{-1}: the posterior at T = 1. C is measured from per-example gradients at the
      start point, then during tuning at the mean of the draws in windows ending at tuning
      draws 1, 2, 4, 8, ... and at the end of tuning; sampling uses the last measurement.
    * ``"diag"``: the same with diag(C) only; exact when C is diagonal.
    * ``None``: scalar step h = 2 B T / n^2, i.e. seed 000's learning rate eta = 2 B / n on the
      average loss (h = eta / n). Then S = (h / 2)(n^2 / B) H^{-1} C, which equals the
      posterior T H^{-1} only where C is proportional to H with ratio 1/n in every direction.
      On seed 000's regular model (a, log sigma) the SDs come out about 1.08x and 1.46x too
      large (ERRATA.md); ``pymc_sgd.theory.sgd_stationary_covariance`` predicts this.

    At a finite step the exact discrete-time covariance is larger by about 1 / (1 - h_k k / 2)
    along a curvature-k direction (seed 003, Thm. 1); for P = (2B/n) H^{-1} that is
    1 / (1 - B / n).

    Parameters
    ----------
    batch_size : rows per update (the noise source; required).
    learning_rate : eta on the average loss L = U / n (seed 000's convention); h = eta / n.
    step_size : h on U directly. Give at most one of the two; default h = 2 B T / n^2.
    preconditioner : "full", "diag" or None.
    noise_rows : rows used for each measurement of C (all rows if n is smaller).

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(0.0, 2.0, size=2000)
    >>> with pm.Model():
    ...     mu = pm.Flat("mu")
    ...     sigma = pm.HalfFlat("sigma")
    ...     y = pm.Normal("y", mu, sigma, observed=x)
    ...     idata = pm.sample(draws=300, tune=50, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.ConstantSGD(batch_size=20, steps_per_draw=100))
    >>> sd = float(idata.posterior["mu"].std())  # posterior SD of mu is about 2 / sqrt(2000)
    >>> 0.03 < sd < 0.06
    True
    """

    name = "constant_sgd"
    stats_dtypes_shapes = {**BASE_STATS, "learning_rate": (np.float64, [])}

    def __init__(self, vars=None, *, batch_size: int, learning_rate: float | None = None,
                 step_size: float | None = None, preconditioner: str | None = "full",
                 noise_rows: int = 2000, steps_per_draw: int = 100, **kwargs: Any) -> None:
        if batch_size is None:
            raise ValueError("ConstantSGD needs minibatch noise: give batch_size < n (full-batch "
                             "gradient descent just converges to the mode).")
        if preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner={preconditioner!r} is unknown; use 'full', 'diag' or None.")
        if learning_rate is not None and step_size is not None:
            raise ValueError("Give learning_rate (on the average loss) or step_size (on U), not both; "
                             "they are related by step_size = learning_rate / n.")
        self.preconditioner = preconditioner
        self.noise_rows = int(noise_rows)
        self._learning_rate, self._step_size = learning_rate, step_size
        super().__init__(vars, batch_size=batch_size, steps_per_draw=steps_per_draw, **kwargs)
        n, b = self.estimator.n_rows, self.batch_size
        if step_size is not None:
            self.h = require_positive("step_size", step_size, "Default: 2 B T / n^2.")
        elif learning_rate is not None:
            self.h = require_positive("learning_rate", learning_rate, "Default: 2 B T / n.") / n
        else:
            self.h = 2.0 * b * self.temperature / n**2
        self.finite_population = 1.0 if self.batch_mode == batching.WITH_REPLACEMENT else (n - b) / (n - 1)

    # -- preconditioner estimation --------------------------------------------------------
    def _start_chain(self) -> None:
        d = self.estimator.dim
        self._window_sum, self._window_count = np.zeros(d), 0
        self.p_diag, self.p_full = np.ones(d), np.eye(d)

    def _measure_noise(self, w: np.ndarray) -> None:
        """Set P = h (f C(w))^{-1} from per-example gradients at w (a ridge keeps it finite)."""
        est = self.estimator
        n = est.n_rows
        rows = np.sort(self.rng.choice(n, size=min(n, self.noise_rows), replace=False)).astype(np.int64)
        noise = self.finite_population * gradient_noise_covariance(est.fn, est.data, w, rows)
        noise += 1e-9 * np.trace(noise) / len(w) * np.eye(len(w))
        self.p_full = self.h * np.linalg.inv(noise)
        self.p_full = 0.5 * (self.p_full + self.p_full.T)
        self.p_diag = self.h / np.diag(noise)

    def _after_tuning_draw(self, w: np.ndarray) -> None:
        """Re-measure C at the mean of the draws since the last measurement, at draws 1, 2, 4, 8, ...

        C is measured at a window mean, not at a single draw: C(w) varies over the posterior
        (e.g. as sigma^-4 for a normal mean), and one draw would put a random error of several
        posterior SDs' worth into P.
        """
        self._window_sum += w
        self._window_count += 1
        done = self.draw + 1
        if done & (done - 1) == 0:
            self._measure_window()

    def _measure_window(self) -> None:
        if self._window_count and self.preconditioner is not None:
            self._measure_noise(self._window_sum / self._window_count)
        self._window_sum[:] = 0.0
        self._window_count = 0

    def stop_tuning(self) -> None:
        self._measure_window()
        super().stop_tuning()

    # -- updates ----------------------------------------------------------------------------
    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        if self.draw == 0 and self.preconditioner is not None:
            self._measure_noise(w)
        est = self.estimator
        kind = PRECONDITIONERS[self.preconditioner]
        unit_step = np.array([1.0 if kind != langevin.IDENTITY else self.h, 0.0, 0.0])
        w, self.t, _, grad_norm, potential, diverged = langevin.langevin_updates(
            est.fn, est.data, w, self.rng, self.batch_mode, self.perm, self.cursor, self.idx,
            self.scale, self.t, self.steps_per_draw, schedules.CONSTANT, unit_step,
            self.temperature, 0.0, kind, self.p_diag, self.p_full, self.p_full,
            self.divergence_bound)
        return w, {"step_size": self.h, "learning_rate": self.h * est.n_rows,
                   "temperature": self.temperature, "grad_norm": grad_norm,
                   "minibatch_potential": potential, "diverging": diverged}
