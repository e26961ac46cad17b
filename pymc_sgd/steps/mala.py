"""Metropolis-adjusted Langevin (MALA) as a PyMC step."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import warmup
from .base import BASE_STATS, StochasticGradientStep, require_positive
from .metropolis import MetropolisAdjusted


class MALA(MetropolisAdjusted, StochasticGradientStep):
    r"""Metropolis-adjusted Langevin algorithm on full-data gradients (Roberts & Tweedie 1996).

    .. math::
        w' = w - h M \nabla U(w) + \sqrt{2 h T} L \xi,\qquad
        \text{accept w.p. } \min\{1, e^{-(U(w') - U(w))/T}\, q(w \mid w') / q(w' \mid w)\}

    with q the Gaussian proposal density and M = L L^T the warm-up's metric (``kernels.mala``; the
    standard ratio, which seed 002 inverts). Its stationary law is exactly exp(-U/T) at any h: the
    reference the stochastic-gradient samplers and the diagnostics are checked against, at one
    full-data gradient and potential per update.

    Defaults: the warm-up finds the bulk and sets M = H^{-1}; h starts at 1.36 d^(-1/3) (the optimal
    scaling 2h = 1.65^2 d^(-1/3) of Roberts & Rosenthal 1998 on a whitened Gaussian) and is adapted
    during tuning by dual averaging to an acceptance of 0.574 (``warmup.acceptance``); the number of
    updates per draw follows the slowest whitened mode's relaxation, about h k_min times the acceptance
    per update. Stats: ``acceptance_rate`` (over the draw's updates), ``minibatch_potential`` is the exact U.

    Parameters
    ----------
    step_size
        h (None: chosen and adapted).
    steps_per_draw
        updates per draw (None: chosen).
    metric
        "auto" (default with step_size=None), "dense", "diag" or "identity".

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> with pm.Model():
    ...     x = pm.Gamma("x", alpha=3.0, beta=2.0)  # mean 1.5, SD 0.866; sampled as log x
    ...     idata = pm.sample(draws=1000, tune=300, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.MALA())
    >>> post = idata.posterior["x"]
    >>> bool(abs(post.mean() - 1.5) < 0.15), bool(abs(post.std() - 0.866) < 0.12)
    (True, True)
    >>> bool(0.4 < idata.sample_stats["acceptance_rate"].mean() < 0.75)
    True
    """

    streams_rows = False
    streams_rows_reason = "it reads all rows at every update"

    name = "mala"
    metropolis = True
    stats_dtypes_shapes = {**BASE_STATS, "acceptance_rate": (np.float64, [])}

    def __init__(self, vars=None, *, step_size: float | None = None, steps_per_draw: int | None = None,
                 **kwargs: Any) -> None:
        if kwargs.get("batch_size") is not None:
            raise ValueError("MALA's Metropolis test needs the full-data potential; it takes no batch_size. "
                             "For minibatches use SGLD.")
        kwargs.pop("batch_size", None)
        self.auto_step_size = step_size is None
        self.h = np.nan if step_size is None else require_positive(
            "step_size", step_size, "It is h in w' = w - h M grad U + sqrt(2 h T) L xi; None chooses and adapts it.")
        super().__init__(vars, batch_size=None, steps_per_draw=steps_per_draw, **kwargs)

    def _start_chain(self) -> None:
        self._start_metropolis()

    def _tune_sampler(self, bulk: warmup.Bulk) -> None:
        self._tune_metropolis(bulk)

    def stop_tuning(self) -> None:
        self._stop_metropolis_tuning()
        super().stop_tuning()

    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        return self._metropolis_updates(w)
