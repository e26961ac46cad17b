"""Contour SGLD (Deng, Lin & Liang 2020): every mode of a 3-mode target, with the right weights."""

import warnings

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from mc import Z, batch_means_se

import pymc_sgd

MEANS = np.array([[0.0, 0.0], [9.0, 0.0], [4.5, 7.8]])  # 9 apart: a barrier of ~10 in U between modes
WEIGHTS = np.array([0.5, 0.3, 0.2])


def three_modes() -> pm.Model:
    with pm.Model() as model:
        x = pm.Flat("x", shape=2)
        terms = [np.log(w) - 0.5 * pt.sum((x - mu) ** 2) for w, mu in zip(WEIGHTS, MEANS)]
        pm.Potential("mixture", pm.math.logsumexp(pt.stack(terms)))
    return model


@pytest.fixture(scope="module")
def contour_run():
    model = three_modes()
    step = pymc_sgd.ContourSGLD(batch_size=None, model=model)
    with model, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no halted chain
        warnings.filterwarnings("ignore", message="ContourSGLD: its draws sample the flattened density")
        idata = pm.sample(draws=8000, tune=1000, chains=2, cores=1, random_seed=3, progressbar=False, step=step,
                          compute_convergence_checks=False)
    return idata


def nearest_mode(x: np.ndarray) -> np.ndarray:
    return np.argmin(((x[..., None, :] - MEANS) ** 2).sum(-1), axis=-1)


def test_contour_sgld_visits_every_mode_with_the_right_weights(contour_run):
    """Every chain spends >= 10% of its (flattened) draws in every mode. The importance-weighted share of
    each mode, sum w 1{mode} / sum w over both chains, is within Z SE of its mixture weight; the SE is the
    ratio estimator's by the delta method, batch means of w (1{mode} - share) over 10 batches per chain
    (much longer than the mode-switching time) over the mean weight. A chain that never crossed a barrier, or
    unweighted draws (the flattened law puts 0.42 / 0.31 / 0.26 on the modes), fails."""
    labels = nearest_mode(contour_run.posterior["x"].values)
    weights = contour_run.sample_stats["importance_weight"].values
    for chain in labels:
        assert np.bincount(chain, minlength=3).min() >= 0.1 * len(chain)
    for k in range(3):
        inside = (labels == k).astype(float)
        share = float((weights * inside).sum() / weights.sum())
        se = batch_means_se(weights * (inside - share)) / float(weights.mean())
        assert abs(share - WEIGHTS[k]) <= Z * se, f"mode {k}: weighted share {share:.3f} vs {WEIGHTS[k]} (SE {se:.3f})"


def test_importance_resample_gives_posterior_draws(contour_run):
    """After resampling by the weights, the plain share of draws near each mode is within 0.05 of the
    mixture weight (the resampling adds multinomial noise of SE <= 0.004 on top of the weighted estimate's)."""
    labels = nearest_mode(pymc_sgd.importance_resample(contour_run, random_seed=0).posterior["x"].values)
    np.testing.assert_allclose(np.bincount(labels.ravel(), minlength=3) / labels.size, WEIGHTS, atol=0.05)


def test_contour_sgld_warns_when_minibatch_noise_blurs_the_partitions():
    """n = 5000 rows, B = 50: U_hat's SD at the mode is ~ n / sqrt(B) * sd(log p(x_i)) ~ 500, far above the
    partitions' width ~0.5, so the energy index is noise: the warm-up must say so and what to do."""
    x = np.random.default_rng(0).normal(1.0, 1.0, size=5000)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 10)
        pm.Normal("y", mu, 1, observed=x)
    with model, pytest.warns(RuntimeWarning, match="larger batch_size"):
        pm.sample(draws=20, tune=10, chains=1, random_seed=1, progressbar=False, compute_convergence_checks=False,
                  step=pymc_sgd.ContourSGLD(batch_size=50, model=model))
