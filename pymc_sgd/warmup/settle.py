"""Did the chain settle during tuning? A drift test on the last two windows of tuning draws.

The tuning draws after the warm-up, whitened with the Laplace factor (z = L^{-1}(w - mode)), are
split into quarters; the last two are compared coordinate by coordinate,
    z_j = (mean_4 - mean_3) / sqrt((var_3 + var_4) / m_eff),  m_eff = (window length) / 2,
which is about N(0, 1) for a stationary chain with at least half an effective draw per draw (what
the thinning aims at). The chain is reported as drifting when max_j |z_j| > 4.5 (false-alarm
rate about 7e-6 per coordinate).
"""

from __future__ import annotations

import numpy as np

DRIFT_Z = 4.5
MIN_TUNING_DRAWS = 40


def drift_statistic(whitened_draws: np.ndarray) -> tuple[float, int]:
    """(max_j |z_j|, coordinate j) between the last two quarters of the draws (rows)."""
    m = len(whitened_draws) // 4
    third, fourth = whitened_draws[-2 * m:-m], whitened_draws[-m:]
    se = np.sqrt((third.var(axis=0) + fourth.var(axis=0)) / (m / 2.0))
    z = np.abs(fourth.mean(axis=0) - third.mean(axis=0)) / np.where(se > 0, se, np.inf)
    return float(z.max()), int(z.argmax())


def settling_message(whitened_draws: np.ndarray, tune: int, names: list[str]) -> str | None:
    """A warning text when tuning was too short to tell, or the chain was still drifting; else None."""
    if len(whitened_draws) < MIN_TUNING_DRAWS:
        return (f"tune={tune} leaves too few tuning draws after the warm-up to check that the chain "
                f"settled; ask for tune >= {MIN_TUNING_DRAWS + 1}.")
    z, j = drift_statistic(np.asarray(whitened_draws))
    if z > DRIFT_Z:
        return (f"the chain was still drifting at the end of tuning (coordinate {names[j]} moved by {z:.1f} "
                f"standard errors between the last two tuning windows); ask for tune={2 * tune}.")
    return None
