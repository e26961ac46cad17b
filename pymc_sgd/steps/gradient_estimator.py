"""A step's gradient estimator: which one, and its per-chain state (``kernels.estimator.Estimator``).

One ``gradient_estimator=`` argument for SGLD, SGHMC and UnderdampedLangevin (and the samplers built
on them); every estimator is unbiased for grad U:

- "minibatch": grad U_hat on B rows.
- "control_variate": grad U_hat(w) - grad U_hat(w*) + grad U(w*) (Baker, Fearnhead, Fox & Nemeth 2019,
  Statistics and Computing 29, 599-615), centred at the mode the warm-up found (after a metric refit,
  the tuning draws' mean), or at a given point (a dict of value-variable arrays, e.g.
  ``pm.find_MAP(include_transformed=True)``). Its noise is O(n d / B) near w* instead of O(n^2 / B),
  at 2 B rows per update.
- "svrg": the control variate re-centred at the current state every ``SVRG(epoch_length)`` updates
  (default n / B, one epoch) with a full-data gradient (Dubey et al. 2016, "Variance reduction in
  stochastic gradient Langevin dynamics", NeurIPS, Alg. 1): ~3 B rows per update, and the centre
  follows the chain, so it also serves where no single centre is close (e.g. several modes).
- "saga": a table of the n rows' likelihood gradients, each at the last state its row was drawn at
  (Dubey et al. 2016, Alg. 2): B rows per update, but n x d numbers of memory and one gradient call
  per row.
- "auto" (default): with the step size chosen by the warm-up and minibatches, the sampler is tuned with
  the plain and the mode-centred estimator's measured noise, and the one that reads fewer rows per
  effective draw wins (rows per update over the relaxation rate per update).

SVRG's and SAGA's noise depends on where the chain was an epoch ago; the warm-up tunes them with
the noise of a control variate centred at an independent Laplace draw (``choose``), about the typical
distance between a state and its centre (or a row's table entry).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymc.blocking import DictToArrayBijection

from .. import warmup
from ..kernels import estimator as kernel_estimators
from ..kernels.estimator import per_example_loglik_grads
from ..warmup.geometry import full_potential_and_grad

NAMES = ("auto", "minibatch", "control_variate", "svrg", "saga")
CENTRED_COST = 2.0  # rows read per centred update, in units of a plain update's B
SAGA_MAX_TABLE = 50_000_000  # n x d numbers (400 MB) above which "saga" is refused
_LEGACY = {"auto": "auto", "mode": "control_variate", None: "minibatch"}  # control_variate= values


@dataclass(frozen=True)
class SVRG:
    """SVRG with a full-data gradient every ``epoch_length`` updates (None: n / B, one epoch).

    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=1000)
    >>> with pm.Model():
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=x)
    ...     idata = pm.sample(draws=300, tune=100, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.SGLD(batch_size=50, gradient_estimator=pymc_sgd.SVRG(epoch_length=10)))
    >>> bool(abs(idata.posterior["mu"].mean() - x.mean()) < 0.01)
    True
    """

    epoch_length: int | None = None

    def __post_init__(self) -> None:
        if self.epoch_length is not None and (isinstance(self.epoch_length, bool) or not isinstance(
                self.epoch_length, int | np.integer) or self.epoch_length < 1):
            raise ValueError(f"SVRG(epoch_length={self.epoch_length!r}) needs an integer >= 1 (updates between "
                             "full-data gradients), or None for n / B.")


def check_gradient_estimator(value: Any, kwargs: dict) -> Any:
    """The estimator choice, from ``gradient_estimator`` or the older ``control_variate`` in ``kwargs``
    (popped, with a FutureWarning that names the new spelling)."""
    if "control_variate" in kwargs:
        old = kwargs.pop("control_variate")
        new = old if isinstance(old, dict) else _LEGACY.get(old, old)
        warnings.warn(f"control_variate={old!r} is now gradient_estimator={new!r}.", FutureWarning, stacklevel=3)
        value = new
    if not (isinstance(value, dict | SVRG) or value in NAMES):
        raise ValueError(f"gradient_estimator={value!r} is unknown; use one of {list(NAMES)}, SVRG(epoch_length), "
                         "or a point (dict of value-variable arrays, e.g. from pm.find_MAP(include_transformed=True)) "
                         "to centre a control variate at.")
    return SVRG() if value == "svrg" else value


class GradientEstimator:
    """A step's estimator choice and, per chain, the kernel's ``Estimator`` (its centre or table)."""

    def __init__(self, choice: Any, var_names: tuple[str, ...]) -> None:
        self.choice = choice
        self.user_centre = None if not isinstance(choice, dict) else self._flat_point(choice, var_names)
        self.reset()

    @staticmethod
    def _flat_point(point: dict, var_names: tuple[str, ...]) -> np.ndarray:
        missing = [name for name in var_names if name not in point]
        if missing:
            raise ValueError(f"gradient_estimator point lacks {missing}; give every value variable "
                             f"({list(var_names)}), e.g. pm.find_MAP(include_transformed=True).")
        return DictToArrayBijection.map({name: np.asarray(point[name]) for name in var_names}).data.astype(np.float64)

    @property
    def follows_chain(self) -> bool:
        """SVRG or SAGA: the estimator's reference points move with the chain."""
        return isinstance(self.choice, SVRG) or self.choice == "saga"

    def reset(self) -> None:
        """A new chain: its own warm-up picks its own centre; SVRG/SAGA start from the chain's state."""
        self.centre = self.user_centre
        self.noise_centre = self.user_centre  # where the warm-up measures this estimator's noise
        self._kernel_estimator: kernel_estimators.Estimator | None = None

    def remap(self, remap: Callable[[np.ndarray], np.ndarray]) -> None:
        """The chain moved to new coordinates (``remap``: old -> new): so do the centres; the kernel's estimator
        is made afresh (a centre's gradient, or SVRG's and SAGA's state from the chain's next state)."""
        self.centre = None if self.centre is None else remap(self.centre)
        self.noise_centre = None if self.noise_centre is None else remap(self.noise_centre)
        self._kernel_estimator = None

    @property
    def active(self) -> bool:
        """Whether a fixed control variate is in use (the ``control_variate`` stat)."""
        return self.centre is not None

    def choose(self, bulk: warmup.Bulk, auto_step_size: bool, minibatched: bool,
               tune: Callable[[np.ndarray | None], tuple[Any, float]], laplace_point: Callable[[], np.ndarray]) -> Any:
        """Tune the sampler (``tune(centre) -> (configuration, relaxation rate per update)``, with the
        noise of the estimator centred at ``centre`` or plain for None), choose the estimator, and
        return the chosen configuration. Without an automatic step size the choice alone decides.
        SVRG and SAGA are tuned with the noise of a centre at ``laplace_point()`` (see the module)."""
        if self.follows_chain:
            if self.noise_centre is None:
                self.noise_centre = laplace_point()
            return tune(self.noise_centre)[0] if auto_step_size else None
        may_centre = self.choice == "control_variate" or self.user_centre is not None or (
            self.choice == "auto" and auto_step_size and minibatched)
        candidate = self.user_centre if self.user_centre is not None else (self.centre if self.active else bulk.mode)
        configuration = None
        if auto_step_size:
            configuration, rate = tune(None)
            if may_centre:
                centred, centred_rate = tune(candidate)
                if self.choice != "auto" or CENTRED_COST / centred_rate < 1.0 / rate:
                    configuration = centred
                else:
                    may_centre = False
        if may_centre and not self.active:
            self.centre = self.noise_centre = candidate
            if bulk.gradient is not None and candidate is bulk.mode:
                self._kernel_estimator = kernel_estimators.control_variate(bulk.mode, bulk.gradient)
        elif not may_centre and self.choice == "auto":  # a metric refit may undo the choice
            self.centre = self.noise_centre = None
            self._kernel_estimator = None
        return configuration

    def for_kernel(self, est, w: np.ndarray, batch_size: int) -> kernel_estimators.Estimator:
        """The kernel's estimator. A fixed centre's full-data gradient is computed once per centre, or at
        every call when the estimator holds other blocks' values (a compound step: grad U(w*) depends on
        them, and a stale one would bias every update). SVRG and SAGA start at w (a full-data pass) and
        keep their state across draws; in a compound step they restart at every draw, for the same reason."""
        current = self._kernel_estimator
        if self.follows_chain:
            if current is None or est.held:
                current = self._chain_estimator(est, w, batch_size)
        elif self.centre is None:
            if current is None or len(current.centre):  # the plain estimate keeps no state: made once
                current = kernel_estimators.plain(len(w))
        elif current is None or current.centre is not self.centre or est.held:
            current = kernel_estimators.control_variate(self.centre, full_potential_and_grad(est, self.centre)[1])
        self._kernel_estimator = current
        return current

    def _chain_estimator(self, est, w: np.ndarray, batch_size: int) -> kernel_estimators.Estimator:
        if isinstance(self.choice, SVRG):
            every = self.choice.epoch_length or max(1, est.n_rows // batch_size)
            return kernel_estimators.svrg(w, full_potential_and_grad(est, w)[1], every)
        if est.n_rows * len(w) > SAGA_MAX_TABLE:
            raise ValueError(f"gradient_estimator='saga' keeps n x d = {est.n_rows} x {len(w)} gradients, more than "
                             f"{SAGA_MAX_TABLE:.0e} numbers; use gradient_estimator='svrg' (no table).")
        rows = np.arange(est.n_rows, dtype=np.int64)
        return kernel_estimators.saga(-per_example_loglik_grads(est.kernel, w, rows), batch_size)

    def cost(self, batch_size: int, n_rows: int) -> float:
        """Rows read per update, in units of B."""
        if isinstance(self.choice, SVRG) and self._kernel_estimator is not None:
            return CENTRED_COST + n_rows / (batch_size * self._kernel_estimator.refresh[0])
        if self.choice == "saga":
            return 1.0 + 1.0 / batch_size
        return CENTRED_COST if self.active else 1.0
