"""The control variate of a step's gradient estimator: whether to centre, and where.

Centred estimator (Baker, Fearnhead, Fox & Nemeth 2019, Statistics and Computing 29, 599-615;
``kernels.estimator.centred_gradient``): grad U_hat(w) - grad U_hat(w*) + grad U(w*). Its noise
is O(n d / B) near the centre w* instead of O(n^2 / B), at twice the rows per update. Every
sampler whose kernel takes (centre, centre_grad) uses it through ``Centring``:

- "auto" (default): with the step size chosen by the warm-up and minibatches, the sampler is
  tuned with both estimators' measured noise and the one that reads fewer rows per effective
  draw wins (rows per update over the relaxation rate per update);
- "mode": centre at the mode the warm-up found (or, after a metric refit, the tuning draws' mean);
- None: the plain estimator;
- a point (dict of value-variable arrays, e.g. ``pm.find_MAP(include_transformed=True)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pymc.blocking import DictToArrayBijection

from .. import warmup
from ..kernels.langevin import NO_CENTRE
from ..warmup.geometry import full_potential_and_grad

CONTROL_VARIATES = ("auto", "mode", None)
CENTRED_COST = 2.0  # rows read per centred update, in units of a plain update's B


def check_control_variate(value: Any) -> Any:
    if not (isinstance(value, dict) or value in CONTROL_VARIATES):
        raise ValueError(f"control_variate={value!r} is unknown; use 'auto', 'mode', None or a point "
                         "(dict of value-variable arrays, e.g. from pm.find_MAP(include_transformed=True)).")
    return value


class Centring:
    """A step's control-variate choice and, per chain, its centre and the full-data gradient there."""

    def __init__(self, choice: Any, var_names: tuple[str, ...]) -> None:
        self.choice = check_control_variate(choice)
        self.user_centre = None if not isinstance(choice, dict) else self._flat_point(choice, var_names)
        self.reset()

    @staticmethod
    def _flat_point(point: dict, var_names: tuple[str, ...]) -> np.ndarray:
        missing = [name for name in var_names if name not in point]
        if missing:
            raise ValueError(f"control_variate point lacks {missing}; give every value variable "
                             f"({list(var_names)}), e.g. pm.find_MAP(include_transformed=True).")
        return DictToArrayBijection.map({name: np.asarray(point[name]) for name in var_names}).data.astype(np.float64)

    def reset(self) -> None:
        """A new chain: its own warm-up picks its own centre."""
        self.centre = self.user_centre
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def active(self) -> bool:
        return self.centre is not None

    def choose(self, bulk: warmup.Bulk, auto_step_size: bool, minibatched: bool,
               tune: Callable[[np.ndarray | None], tuple[Any, float]]) -> Any:
        """Tune the sampler (``tune(centre) -> (configuration, relaxation rate per update)``, with the
        noise of the estimator centred at ``centre`` or plain for None), choose the estimator, and
        return the chosen configuration. Without an automatic step size the choice alone decides."""
        may_centre = self.choice == "mode" or self.user_centre is not None or (
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
            self.centre = candidate
            if bulk.gradient is not None and candidate is bulk.mode:
                self._arrays = (bulk.mode, bulk.gradient)
        elif not may_centre and self.choice == "auto":  # a metric refit may undo the choice
            self.centre, self._arrays = None, None
        return configuration

    def arrays(self, est) -> tuple[np.ndarray, np.ndarray]:
        """(w*, grad U(w*)) for the kernel, the full-data gradient computed once per centre, or at
        every call when the estimator holds other blocks' values (a compound step: grad U(w*)
        depends on them, and a stale one would bias every update); empty arrays without a centre."""
        if self.centre is None:
            return NO_CENTRE, NO_CENTRE
        if self._arrays is None or self._arrays[0] is not self.centre or est.held:
            self._arrays = (self.centre, full_potential_and_grad(est, self.centre)[1])
        return self._arrays

    @property
    def cost(self) -> float:
        """Rows read per update, in units of B."""
        return CENTRED_COST if self.active else 1.0
