"""Monte Carlo error bars for statistical tests.

A chain of N correlated draws estimates a mean with standard error sd / sqrt(ESS), where
ESS is ArviZ's bulk effective sample size (it accounts for autocorrelation and for
several chains). A variance is the mean of the squared deviations (x - mean)^2, so its
standard error is sd((x - mean)^2) / sqrt(ESS of (x - mean)^2), and the same for a
covariance with (x - mean_x)(y - mean_y). Tests assert |estimate - exact| <= Z * SE with
Z = 4.5: a correct sampler fails one such check with probability about 7e-6, while the
checks are sized (draws, step) so that the errors they guard against are many SE large.
For a rarely switching quantity (which mode a multimodal sampler is in) ArviZ's ESS from a
short run overestimates the information; ``batch_means_se`` instead splits every chain into
batches much longer than the switching time and uses the spread of the batch means.
"""

import arviz as az
import numpy as np

Z = 4.5


def _se_of_mean(values: np.ndarray) -> float:
    """values: (chain, draw). Standard error of their overall mean."""
    ess = float(az.ess(np.asarray(values, dtype=float)))
    return float(np.std(values) / np.sqrt(ess))


def mean_and_se(draws: np.ndarray) -> tuple[float, float]:
    return float(np.mean(draws)), _se_of_mean(draws)


def cov_and_se(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Covariance of two (chain, draw) arrays and its standard error."""
    products = (x - x.mean()) * (y - y.mean())
    return float(products.mean()), _se_of_mean(products)


def assert_close(estimate: float, se: float, exact: float, what: str, slack: float = 0.0) -> None:
    """|estimate - exact| <= Z SE + slack, where slack is a stated model error (default none)."""
    bound = Z * se + slack
    assert abs(estimate - exact) <= bound, (
        f"{what}: estimate {estimate:.6g} vs exact {exact:.6g}, |diff| = {abs(estimate - exact):.3g} "
        f"> {Z} SE + slack = {bound:.3g} (SE {se:.3g})")


def posterior_draws(idata, name: str) -> np.ndarray:
    """(chain, draw, ...) numpy array of a posterior variable."""
    return idata.posterior[name].values


def batch_means_se(values: np.ndarray, batches_per_chain: int = 10) -> float:
    """SE of the overall mean of (chain, draw) values from the variance of batch means."""
    chains, draws = values.shape
    size = draws // batches_per_chain
    means = values[:, : size * batches_per_chain].reshape(chains * batches_per_chain, size).mean(axis=1)
    return float(np.std(means, ddof=1) / np.sqrt(len(means)))


def assert_means_and_sds(draws: np.ndarray, mean: np.ndarray, sd: np.ndarray, sd_slack: float) -> None:
    """draws (chain, draw, k): every mean within Z SE of ``mean``, every SD within Z SE plus
    ``sd_slack`` * sd (a sampler's promised relative SD error) of ``sd``. The SD's SE is the variance's
    (``mean_and_se`` of the squared deviations) over 2 SD (delta method)."""
    for k in range(draws.shape[-1]):
        assert_close(*mean_and_se(draws[..., k]), mean[k], f"mean of coordinate {k}")
        variance, se = mean_and_se((draws[..., k] - draws[..., k].mean()) ** 2)
        assert_close(np.sqrt(variance), se / (2 * np.sqrt(variance)), sd[k], f"SD of coordinate {k}",
                     slack=sd_slack * sd[k])


def assert_matches_prediction_and_posterior(draws: np.ndarray, mean: np.ndarray, predicted: np.ndarray,
                                            posterior_cov: np.ndarray, posterior_slack: float) -> None:
    """draws (chain, draw, k): every mean within Z SE of ``mean``; every covariance entry within Z SE of the
    sampler's exact ``predicted`` covariance, and of ``posterior_cov`` with a slack of ``posterior_slack``
    times the two SDs' product (the sampler's known distance from the posterior)."""
    for i in range(draws.shape[-1]):
        assert_close(*mean_and_se(draws[..., i]), mean[i], f"mean of coordinate {i}")
        for j in range(i, draws.shape[-1]):
            estimate, se = cov_and_se(draws[..., i], draws[..., j])
            assert_close(estimate, se, predicted[i, j], f"cov[{i},{j}] against the sampler's exact covariance")
            assert_close(estimate, se, posterior_cov[i, j], f"cov[{i},{j}] against the posterior",
                         slack=posterior_slack * np.sqrt(posterior_cov[i, i] * posterior_cov[j, j]))
