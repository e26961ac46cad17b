"""Measured mixing (warmup.mixing): the ESS estimator and the thinning's shortfall.

Reference chains are AR(1), x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t, whose ESS per draw is exactly
(1 - rho) / (1 + rho). The relative SD of Geyer's estimate of the integrated autocorrelation time tau from
n draws is about sqrt(2 (2M + 1) / n) with M the truncation lag (Sokal 1997, eq. 3.19), a few tau.
"""

import numpy as np

from pymc_sgd.warmup import mixing


def ar1(rho: float, n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, d))
    x = np.empty((n, d))
    x[0] = noise[0]
    for t in range(1, n):
        x[t] = rho * x[t - 1] + np.sqrt(1.0 - rho**2) * noise[t]
    return x


def test_ess_per_draw_matches_an_ar1_chain():
    """rho = 0.5: ESS/draw 1/3, tau = 3, M about 10, so one column's relative SD is sqrt(42 / 20000) = 0.046
    and the mean of 40 columns' 0.0072: 4.5 SE is 3.3% (plus O(1/n) truncation bias, far below)."""
    estimates = mixing.ess_per_draw(ar1(0.5, 20_000, 40, seed=0))
    assert abs(estimates.mean() * 3.0 - 1.0) < 0.033, estimates.mean()


def test_a_chain_that_never_moved_has_no_effective_draws():
    chain = ar1(0.5, 200, 2, seed=1)
    chain[:, 1] = 3.0
    assert mixing.ess_per_draw(chain)[1] == 0.0


def test_a_chain_that_keeps_the_promise_is_not_thinned_more():
    """The thinning's promise, ESS/draw 0.8 (rho = 1/9), on 100-400 draws of 2-300 coordinates: the 5%
    quantile of the estimates stays above SLOW_MIXING (the module docstring's measurement)."""
    for seed, (n, d) in enumerate([(100, 2), (200, 20), (400, 300)]):
        assert mixing.shortfall(ar1(1.0 / 9.0, n, d, seed), 0.8) == 1.0


def test_the_shortfall_of_a_slow_chain_is_the_ratio_of_rates():
    """rho = 0.9 per draw where 0.8 ESS/draw (rho = 1/9) was promised: the updates per draw must grow by
    ln(1/9) / ln(0.9) = 20.9. One column of 20,000 draws: tau = 19, M about 60, relative SD of the estimate
    sqrt(242 / 20000) = 0.11, and the shortfall is about proportional to tau: 4.5 SE is 50%."""
    expected = np.log(1.0 / 9.0) / np.log(0.9)
    assert abs(mixing.shortfall(ar1(0.9, 20_000, 1, seed=2), 0.8) / expected - 1.0) < 0.5
