"""What a kernel call reports besides the chain's new state: one ``Info`` shape for every family.

Every ``*_updates`` returns (state, info), its ``State`` holding what the step keeps across draws.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .estimator import minibatch_potential, norm


class Info(NamedTuple):
    """The record of one kernel call.

    - step_size: h of the call's last update (a schedule's value there);
    - grad_norm: |grad U_hat| of the last update (inf when the call diverged);
    - potential: U_hat at the returned state on the last update's rows (U over all rows for MALA and
      AMAGOLD; NaN when the call diverged);
    - diverged: the call stopped at a non-finite or out-of-bounds state, or the potential is not finite;
    - extras: the family's own numbers, in the order its ``*_updates`` lists them (most have none).
    """

    step_size: float
    grad_norm: float
    potential: float
    diverged: bool
    extras: np.ndarray


@njit(cache=True)
def minibatch_info(model, w, grad, batch, h, diverged, extras):
    """``Info`` for a call that returns w with ``grad`` its last gradient: U_hat at w on the batch's last rows."""
    grad_norm, potential = np.inf, np.nan
    if not diverged:
        grad_norm, potential = norm(grad), minibatch_potential(model, w, batch.idx, batch.scale)
    return Info(h, grad_norm, potential, diverged or not np.isfinite(potential), extras)
