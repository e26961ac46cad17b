"""Constant-learning-rate SGD as an approximate posterior sampler (Mandt, Hoffman & Blei 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import theory
from ..kernels import batching, langevin, schedules
from ..kernels import momentum as heavy_ball  # not to be confused with ConstantSGD's momentum= argument
from ..kernels.estimator import plain
from ..warmup.geometry import finite_difference_hessian, potential_on
from ..warmup.metric import jacobi_inverse
from .base import BASE_STATS, FROM_MINIBATCH, StochasticGradientStep, require_positive

NOISE_RANK_TOLERANCE = 1e-10  # smallest eigenvalue of the per-example gradient correlation matrix
PRECONDITIONERS = {"full": langevin.FULL, "diag": langevin.DIAGONAL, "exact": langevin.FULL, None: langevin.IDENTITY}


class ConstantSGD(StochasticGradientStep):
    r"""Plain minibatch SGD, w <- w - P grad U_hat(w), read as a sampler; no injected noise.

    Only the minibatch gradient noise drives the chain. With B rows drawn with replacement
    its covariance is Cov = (n^2 / B) C(w), where C is the per-example covariance of
    grad log p(x_i | w) (times (n - B)/(n - 1) for batches without replacement). Near a mode
    with Hessian H, the continuous-time stationary covariance S solves
    P H S + S H P = P Cov P (seed 000; docs/pages/sources.md), so

    * ``preconditioner="full"`` (default, Mandt et al. 2017, Thm. 2): P = 2 T Cov^{-1}
      = h (f C)^{-1} with h = 2 B T / n^2 and f the finite-population factor, gives
      S = T H^{-1}: the posterior at T = 1. C is measured from per-example gradients at the
      start point and during tuning (see ``StochasticGradientStep``).
    * ``"diag"``: the same with diag(C) only; exact when C is diagonal.
    * ``"exact"``: P = 2 (1 - beta) [V / T + (1 - beta)/(1 + beta) H]^{-1} with V = Cov(grad U_hat)
      and H the Hessian of U, both measured like C: the stationary covariance of the exact
      discrete-time recursion is then T H^{-1} on a Gaussian target at any batch size
      (seed 003 Thm. 3 via docs/pages/sources.md; ``theory.exact_preconditioner``). "full" drops the H
      term and overshoots the variance by about 1 / (1 - B/n). Step size and learning rate
      are ignored.
    * ``None``: scalar step h = 2 B T / n^2, i.e. seed 000's learning rate eta = 2 B / n on the
      average loss (h = eta / n). Then S = (h / 2)(n^2 / B) H^{-1} C = T H^{-1} C, which equals
      the posterior T H^{-1} only where the per-example gradient covariance C is the identity
      (for a well-specified model: where the per-example Fisher information is I).
      On seed 000's regular model (a, log sigma) the SDs come out about 1.08x and 1.46x too
      large (docs/pages/sources.md); ``pymc_sgd.theory.sgd_stationary_covariance`` predicts this.

    ``momentum=beta`` runs heavy-ball SGD, v <- beta v - P grad U_hat, w <- w + v
    (``kernels.momentum``). Its temperature is T_eff = h sigma^2 / (2 (1 - beta)) (docs/pages/sources.md),
    so every default step above is multiplied by (1 - beta) to keep T_eff = T: Mandt et al.
    (2017, Sec. 4.3)'s damping adjustment of the momentum sampler.

    A model whose C is singular (a parameter no row informs, or linearly dependent per-example
    gradients, e.g. a non-centred hierarchical model) is refused with a ValueError: minibatch
    noise never moves those directions. Nearly singular models (seed 000's mixture, along its
    ridge) make P ~ C^{-1} exceed the stability limit and the chain halts as diverging: use SGLD there.

    At a finite step the exact discrete-time covariance is larger by about 1 / (1 - h_k k / 2)
    along a curvature-k direction (seed 003, Thm. 1); for P = (2B/n) H^{-1} that is
    1 / (1 - B / n).

    Parameters
    ----------
    batch_size
        rows per update (the noise source). Default: the model's pm.Minibatch batch size
        (a model written with pm.Minibatch + total_size); otherwise required.
    learning_rate
        eta on the average loss L = U / n (seed 000's convention); h = eta / n.
    step_size
        h on U directly. Give at most one of the two; default h = 2 B T / n^2.
    preconditioner
        "full", "diag" or None.
    momentum
        heavy-ball momentum beta in [0, 1).
    noise_rows
        rows used for each measurement of C (all rows if n is smaller).

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
    reparameterises = False  # it must see the model's own gradient noise, which it refuses where it is singular
    refines_metric = False  # its preconditioner comes from the gradient noise, not a metric
    stats_dtypes_shapes = {**BASE_STATS, "learning_rate": (np.float64, []), "predicted_sd_error": (np.float64, [])}

    def __init__(self, vars=None, *, batch_size: int | None | str = FROM_MINIBATCH,
                 learning_rate: float | None = None,
                 step_size: float | None = None, preconditioner: str | None = "full",
                 momentum: float = 0.0, steps_per_draw: int | None = None, **kwargs: Any) -> None:
        if batch_size is None:
            raise ValueError("ConstantSGD needs minibatch noise: give batch_size < n (full-batch "
                             "gradient descent just converges to the mode).")
        if preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner={preconditioner!r} is unknown; use 'full', 'diag', 'exact' or None.")
        if learning_rate is not None and step_size is not None:
            raise ValueError("Give learning_rate (on the average loss) or step_size (on U), not both; "
                             "they are related by step_size = learning_rate / n.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}; 0 is plain SGD.")
        self.preconditioner = preconditioner
        self.momentum = float(momentum)
        self.auto_step_size = learning_rate is None and step_size is None
        self._learning_rate, self._step_size = learning_rate, step_size
        super().__init__(vars, batch_size=batch_size, steps_per_draw=steps_per_draw, **kwargs)
        n, b = self.estimator.n_rows, self.batch_size
        if step_size is not None:
            self.h = require_positive("step_size", step_size, "Default: 2 B T / n^2.")
        elif learning_rate is not None:
            self.h = require_positive("learning_rate", learning_rate, "Default: 2 B T / n.") / n
        else:
            self.h = 2.0 * b * self.temperature * (1.0 - self.momentum) / n**2
        self.measures_gradient_noise = preconditioner is not None
        self.finite_population = 1.0 if self.batch_mode == batching.WITH_REPLACEMENT else (n - b) / (n - 1)

    # -- preconditioner from the measured gradient noise ---------------------------------
    def _start_chain(self) -> None:
        d = self.estimator.dim
        self.p_diag, self.p_full = np.ones(d), np.eye(d)
        self.noise_root = None  # a factor of injected noise (SGFS at finite epsilon); None: only minibatch noise
        self.velocity = np.zeros(d)
        self._plain = plain(d)  # the kernels' plain gradient estimator (it keeps no state)
        self.approximation_error = np.nan

    def _use_gradient_noise(self, per_example_cov: np.ndarray, w: np.ndarray) -> None:
        """P = h (f C)^{-1} (Jacobi-scaled inverse: unscaled covariates put C's diagonal over many
        decades), its diagonal version, or for "exact" theory.exact_preconditioner(H, V)."""
        noise = self.finite_population * per_example_cov
        if self.preconditioner == "exact":
            est = self.estimator
            H = finite_difference_hessian(potential_on(est, None), w, np.full(len(w), 1e-5))  # full-data passes
            V = theory.minibatch_gradient_covariance(per_example_cov, est.n_rows, self.batch_size,
                                                     replacement=self.batch_mode == batching.WITH_REPLACEMENT)
            self.p_full = theory.exact_preconditioner(H, V, self.momentum, self.temperature)
            self._predict_error(per_example_cov)
            return
        # self.h = 2 B T (1 - beta) / n^2 already holds heavy-ball's (1 - beta): P = (1 - beta) 2 T V^-1
        # (docs/pages/sources.md: T_eff = P sigma^2 / (2 (1 - beta))). Dividing C by (1 - beta) again made the SDs
        # sqrt(1 - beta) too small (0.71 at beta = 0.5, 0.32 at 0.9, measured).
        self.p_diag = self.h / np.diag(noise)
        if self.preconditioner == "full":
            self.p_full = self.h * jacobi_inverse(noise)
        self._predict_error(per_example_cov)

    def _predict_error(self, per_example_cov: np.ndarray) -> None:
        """The relative error of every posterior SD that the exact discrete recursion predicts at the bulk
        (``theory.sgd_stationary_covariance`` with this P, momentum and V = Cov(grad U_hat), against
        T H^-1 of the bulk's Hessian H): constant SGD's law only approximates the posterior (Mandt et al.
        2017), and the chain is otherwise silent about how well (inf: unstable at the bulk)."""
        if self.bulk is None:
            return
        H = self.bulk.hessian
        V = theory.minibatch_gradient_covariance(per_example_cov, self.estimator.n_rows, self.batch_size,
                                                 replacement=self.batch_mode == batching.WITH_REPLACEMENT)
        P = {langevin.IDENTITY: self.h * np.eye(len(H)), langevin.DIAGONAL: np.diag(self.p_diag)}.get(
            PRECONDITIONERS[self.preconditioner], self.p_full)
        try:
            S = theory.sgd_stationary_covariance(H, V, 1.0, self.momentum, P)
            target = self.temperature * np.diag(jacobi_inverse(H))
            self.approximation_error = float(np.max(np.abs(np.sqrt(np.diag(S) / target) - 1.0)))
        except (ValueError, np.linalg.LinAlgError):
            self.approximation_error = np.inf

    def stop_tuning(self) -> None:
        super().stop_tuning()
        predicted = self.approximation_error
        if not self.halted and not np.isnan(predicted) and not predicted <= 2.0 * self.target_error:
            self._warn(f"{type(self).__name__}: its stationary law only approximates the posterior, and here the "
                       f"theory predicts posterior SDs off by up to {predicted:.0%} (target_error="
                       f"{self.target_error}). Use pymc_sgd.SGLD(batch_size={self.batch_size}), whose step is chosen "
                       "to meet target_error, or preconditioner='exact'.", stacklevel=2)

    def _check_gradient_noise(self, covariances: list[np.ndarray]) -> None:
        """Only minibatch noise moves this chain: a direction with no per-example gradient variance
        at a point (a parameter outside the likelihood, or gradients that are linearly dependent,
        e.g. group effects summing to tau times the common mean's gradient, a direction that turns
        with tau) is never sampled there, and P ~ C^{-1} blows up. Checked at every point: the
        average over points of a non-centred model's C is regular, and the chain diverged."""
        if self.preconditioner is not None and any(self._degenerate(C) for C in covariances):
            raise ValueError(
                f"{type(self).__name__}: the per-example gradients of this model do not vary in every direction of the "
                f"parameters {list(self.var_names)} (their covariance is singular: a parameter that no data row "
                "informs, or gradients that are linearly dependent, as in a non-centred hierarchical model). "
                "Constant-rate SGD is moved only by that variation, so it cannot sample those directions. "
                "Use pymc_sgd.SGLD(batch_size=...), which injects its own noise.")

    def _degenerate(self, C: np.ndarray) -> bool:
        scale = np.sqrt(np.clip(np.diag(C), 0.0, None))
        if scale.min() == 0.0:
            return True
        correlation = C / np.outer(scale, scale)
        return self.preconditioner != "diag" and np.linalg.eigvalsh(correlation).min() < NOISE_RANK_TOLERANCE

    def _tune_sampler(self, bulk) -> None:
        """The preconditioner from the noise averaged over the bulk's noise points (Laplace or
        tuning draws); thinning from the slowest eigenvalue of P H (the relaxation rate per update
        of w <- w - P grad U, times 1 - beta for heavy-ball, whose effective step is P / (1 - beta))."""
        if not self.auto_steps_per_draw:
            return
        if self.measures_gradient_noise:
            self._measure_noise_at(self._noise_points(bulk))
        kind = PRECONDITIONERS[self.preconditioner]
        P = {langevin.IDENTITY: self.h * np.eye(len(bulk.mode)), langevin.DIAGONAL: np.diag(self.p_diag)}.get(
            kind, self.p_full)
        rate = np.linalg.eigvals(P @ bulk.hessian).real.min() / (1.0 - self.momentum)
        self._set_updates_per_draw(max(rate, 1e-12))

    # -- updates ----------------------------------------------------------------------------
    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        est = self.estimator
        kind = PRECONDITIONERS[self.preconditioner]
        h = 1.0 if kind != langevin.IDENTITY else self.h  # P already holds h when preconditioned
        noise, root = (0.0, self.p_full) if self.noise_root is None else (1.0, self.noise_root)  # no noise: any root
        P = langevin.preconditioner(kind, self.p_diag, self.p_full, root)
        schedule = np.array([h, 0.0, 0.0])
        if self.momentum > 0.0:
            (w, self.velocity), info = heavy_ball.momentum_updates(
                self.batch_model, self.batch, self._plain, P, heavy_ball.State(w, self.velocity),
                heavy_ball.Params(schedules.CONSTANT, schedule, 1.0 - self.momentum, np.zeros((est.dim, est.dim)),
                                  self.divergence_bound), self.steps_per_draw, self.rng)
        else:
            (w, self.t), info = langevin.langevin_updates(
                self.batch_model, self.batch, self._plain, P, langevin.State(w, self.t),
                langevin.Params(schedules.CONSTANT, schedule, self.temperature, noise, self.divergence_bound),
                self.steps_per_draw, self.rng)
        return w, {**self._kernel_stats(info, self.h), "learning_rate": self.h * est.n_rows,
                   "predicted_sd_error": self.approximation_error}
