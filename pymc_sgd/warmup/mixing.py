"""Measured mixing: how far the tuning draws fall short of the thinning's promise.

The thinning (``tuning.updates_per_draw``) promises an ESS per draw from the slowest relaxation rate of
a Gaussian fit to the bulk. Where the posterior is not that Gaussian (a scale and the vector it scales,
as in a latent random walk with unknown step size, or a funnel), the chain mixes far slower than the
fit predicts: on a 300-step random walk, 0.005-0.05 effective draws per draw against the promised 0.8,
and the draws were 0.27 posterior SD off with no sign but PyMC's low-ESS message.

So the tuning draws of each metric window are measured. A chain thinned to lag-one correlation rho has
ESS per draw e = (1 - rho) / (1 + rho) (AR(1)), i.e. rate r = -ln rho per draw, and r is proportional to
the updates per draw; the *shortfall* ln rho_promised / ln rho_measured is the factor by which the
updates per draw must grow to keep the promise. It is applied only where the measured ESS per draw is
below SLOW_MIXING, far below the promise: the 5% quantile over coordinates of 100-400 draws of a chain
that keeps it (AR(1) with e = 0.8, 2-300 coordinates) was 0.34-0.55 in the worst of 20 repeats (median
0.45-0.75), so a healthy chain is not thinned more.
"""

from __future__ import annotations

import numpy as np

SLOW_MIXING = 0.25  # measured ESS per draw below which the thinning grows
MIN_WINDOW = 100  # draws: shorter windows are too noisy to measure
QUANTILE = 0.05  # of the coordinates' ESS: robust to the noise of the smallest of many estimates


def ess_per_draw(draws: np.ndarray) -> np.ndarray:
    """ESS / n of each column of an n x d chain: Geyer's (1992) initial monotone sequence estimator on the
    FFT autocorrelations (as Stan's, for one chain and without rank normalisation). A column that never
    moved has ESS 0.

    Examples
    --------
    Each independent value repeated 4 times: an integrated autocorrelation time of 4.

    >>> chain = np.repeat(np.random.default_rng(0).standard_normal(2000), 4)[:, None]
    >>> float(np.round(ess_per_draw(chain) * 4, 1)[0])
    1.0
    """
    x = np.asarray(draws, dtype=float)
    n = len(x)
    centred = x - x.mean(axis=0)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    autocovariance = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[:n] / n
    variance = autocovariance[0]
    moved = variance > 0
    rho = autocovariance / np.where(moved, variance, 1.0)
    pairs = rho[: 2 * (n // 2)].reshape(n // 2, 2, -1).sum(axis=1)  # P_k = rho_2k + rho_2k+1
    positive = np.cumprod(pairs > 0, axis=0).astype(bool)  # the initial positive sequence
    monotone = np.minimum.accumulate(np.where(positive, pairs, 0.0), axis=0)
    tau = np.maximum(-1.0 + 2.0 * monotone.sum(axis=0), 1.0 / np.log10(max(n, 10)))
    return np.where(moved, 1.0 / tau, 0.0)


def shortfall(whitened_draws: np.ndarray, promised_ess_per_draw: float) -> float:
    """The factor (>= 1) by which the updates per draw must grow for the chain to keep its promised ESS per
    draw, from the draws' measured mixing (1 unless it is below SLOW_MIXING; see the module docstring)."""
    if len(whitened_draws) < MIN_WINDOW or not promised_ess_per_draw > SLOW_MIXING:
        return 1.0
    measured = float(np.quantile(ess_per_draw(whitened_draws), QUANTILE, method="lower"))
    if measured >= SLOW_MIXING:
        return 1.0

    def log_rho(e: float) -> float:
        return float(np.log((1.0 - e) / (1.0 + e)))

    return log_rho(min(promised_ess_per_draw, 0.99)) / log_rho(max(measured, 1e-3))
