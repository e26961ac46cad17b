"""Stochastic Gradient Fisher Scoring as a PyMC step (Ahn, Korattikara & Welling 2012)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import FROM_MINIBATCH, require_positive
from .constant_sgd import ConstantSGD


class SGFS(ConstantSGD):
    r"""Stochastic Gradient Fisher Scoring: SGD preconditioned by the running empirical Fisher information.

    .. math::
        w \leftarrow w - P \nabla \hat U(w) + P \eta,\quad \eta \sim N(0, 4 B / \epsilon),\qquad
        P = 2 T \Big[\gamma \frac{N f + n T}{n} N \hat I + \frac{4 B}{\epsilon}\Big]^{-1}

    (Ahn, Korattikara & Welling 2012, ICML, Eq. 14, in U units: N rows, n = batch_size, f = 1 for batches
    drawn with replacement and (N - n)/(N - 1) without, T = 1 in the paper.) :math:`\hat I` is the running
    empirical Fisher information per row, the covariance of the per-example scores grad log p(x_i | w)
    averaged over every measurement so far (their kappa_t = 1/t): at the start point and at the tuning
    draws 1, 2, 4, 8, ...; it is frozen for sampling so that the chain is time-homogeneous. B is the inverse
    of the warm-up's metric (~ the Hessian).

    * ``step_size=None`` (default, epsilon -> inf): no injected noise; the minibatch noise alone drives the
      chain. For a Gaussian posterior with N Î = H (a well-specified model, Bernstein-von Mises) and
      gamma = 1 the stationary covariance is exactly T H^{-1} at any batch size: with P = c H^{-1} the
      recursion's variance is c V / (H^2 c (2 - c)), V = N^2 f Î / n, which is T / H iff
      c = 2 n T / (N f + n T) (Ahn et al.'s (N + n)/n factor at f = T = 1; derived here for f and T).
    * a finite epsilon adds Langevin noise and tends to preconditioned SGLD with step matrix
      (epsilon T / 2) B^{-1} as epsilon -> 0 (P -> that matrix, and P (4B/epsilon) P -> 2 T P).

    gamma >= 1 inflates the Fisher term (Ahn et al. use it to absorb the noise their Î misses); 1 is exact
    for the Gaussian case above. Like ConstantSGD it refuses models whose per-example gradients do not
    vary in every direction (Î singular). Mandt, Hoffman & Blei (2017, Sec. 5) analyse its finite-rate
    error; this sampler is the discrete-time exact form of ConstantSGD(preconditioner="full").

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(1.0, 2.0, size=2000)
    >>> with pm.Model():
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 2.0, observed=x)
    ...     idata = pm.sample(draws=400, tune=100, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.SGFS(batch_size=20))
    >>> post = idata.posterior["mu"]  # posterior N(mean(x), 0.0447^2)
    >>> bool(abs(post.mean() - x.mean()) < 0.02), bool(0.035 < post.std() < 0.055)
    (True, True)
    """

    name = "sgfs"

    def __init__(self, vars=None, *, batch_size: int | None | str = FROM_MINIBATCH, step_size: float | None = None,
                 gamma: float = 1.0, steps_per_draw: int | None = None, **kwargs: Any) -> None:
        self.epsilon = None if step_size is None else require_positive(
            "step_size", step_size, "It is Ahn et al.'s epsilon; None (default) is the epsilon -> inf limit.")
        self.gamma = require_positive("gamma", gamma, "It scales the Fisher term; 1 is exact for a Gaussian posterior.")
        if self.gamma < 1.0:
            raise ValueError(f"gamma must be >= 1 (Ahn et al. 2012), got {gamma}; 1 is exact for a Gaussian posterior.")
        super().__init__(vars, batch_size=batch_size, preconditioner="full", steps_per_draw=steps_per_draw, **kwargs)

    def _start_chain(self) -> None:
        super()._start_chain()
        self.fisher_sum, self.fisher_count = np.zeros((self.estimator.dim,) * 2), 0

    def _use_gradient_noise(self, per_example_cov: np.ndarray, w: np.ndarray) -> None:
        """Add the measurement to the running Fisher Î (while tuning) and rebuild P and the noise factor."""
        if self.tune or self.fisher_count == 0:
            self.fisher_sum += per_example_cov
            self.fisher_count += 1
        n_rows, batch, T = self.estimator.n_rows, self.batch_size, self.temperature
        fisher = n_rows * self.fisher_sum / self.fisher_count
        precision = self.gamma * (n_rows * self.finite_population + batch * T) / batch * fisher
        if self.epsilon is not None:
            b_matrix = np.linalg.inv(self.metric.matrix)
            precision = precision + 4.0 * b_matrix / self.epsilon
        self.p_full = 2.0 * T * np.linalg.inv(precision)
        self.p_full = 0.5 * (self.p_full + self.p_full.T)
        if self.epsilon is not None:  # root R with 2 T R R^T = P (4 B / epsilon) P (the kernel scales by sqrt(2T))
            self.noise_root = self.p_full @ np.linalg.cholesky(2.0 * b_matrix / (self.epsilon * T))
