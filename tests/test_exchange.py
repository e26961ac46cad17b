"""Replica exchange on the hard case: a bimodal (label-switching) mixture posterior.

Data: 0.5 N(-2, 1) + 0.5 N(3, 1), n = 100; model mu ~ N(0, 5^2) (shape 2, a proper prior:
docs/pages/sources.md on C.15), equal weights, unit sigma. Swapping mu[0] and mu[1] leaves prior and
likelihood unchanged, so the two labelled modes (mu[0] < mu[1] and mu[0] > mu[1]) carry
exactly half the posterior mass each. The barrier between them is hundreds of nats.
"""

import warnings

import numpy as np
import pymc as pm
import pytest

import pymc_sgd
from pymc_sgd import models
from pymc_sgd.warmup.ladder import equalised_ladder
from mc import Z, batch_means_se

X_MIX = np.concatenate([np.random.default_rng(21).normal(-2, 1, 50), np.random.default_rng(22).normal(3, 1, 50)])


@pytest.fixture(scope="module")
def mixture():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 5, shape=2, initval=np.array([-1.0, 1.0]))
        pm.NormalMixture("x", w=[0.5, 0.5], mu=mu, sigma=1.0, observed=X_MIX)
    return model


def sample(model, step, draws=1500):
    with model:
        return pm.sample(draws=draws, tune=100, chains=2, cores=1, step=step, random_seed=17,
                         progressbar=False, compute_convergence_checks=False)


def first_mode_indicator(idata) -> np.ndarray:
    mu = idata.posterior["mu"].values
    return (mu[..., 0] < mu[..., 1]).astype(float)


def test_single_temperature_sgld_stays_in_one_mode(mixture):
    step = pymc_sgd.SGLD(batch_size=20, step_size=1e-3, steps_per_draw=100, model=mixture)
    occupancy = first_mode_indicator(sample(mixture, step, draws=500)).mean(axis=1)
    assert np.all((occupancy < 0.01) | (occupancy > 0.99)), occupancy


@pytest.mark.parametrize("swap_energy", ["corrected", "full"])
def test_replica_exchange_visits_both_modes_equally(mixture, swap_energy):
    """K = 8, geometric ladder to T = 200 (neighbour ratio 2.1), swaps every 10 updates.
    Occupancy of the first labelled mode must be 0.5 within Z SE, where SE comes from 20
    batch means of 75 draws (the indicator switches every few draws; tests/mc.py); SE < 0.06
    is required so that a sampler stuck in one mode (occupancy 0 or 1) fails by > 8 SE.
    (Long runs, 4 x 3000 draws: occupancy 0.503 +- 0.014 with full-data swap energies,
    0.500 +- 0.016 corrected, 0.483 +- 0.015 naive.) Swap rates must be
    healthy (each pair between 0.1 and 0.99) and replicas must complete round trips."""
    step = pymc_sgd.ReplicaExchangeSGLD(batch_size=20, step_size=1e-3, n_replicas=8, max_temperature=200.0,
                                        swap_every=10, swap_energy=swap_energy, steps_per_draw=100, model=mixture)
    idata = sample(mixture, step)
    indicator = first_mode_indicator(idata)
    se = batch_means_se(indicator)
    assert se < 0.06, se
    assert abs(indicator.mean() - 0.5) <= Z * se, (indicator.mean(), se)
    stats = idata.sample_stats
    rates = [float(np.nanmean(stats[f"swap_rate_{k}"].values)) for k in range(7)]
    assert all(0.1 < r < 0.99 for r in rates), rates
    assert stats["round_trips"].values[:, -1].min() >= 5
    assert set(np.unique(stats["cold_replica"].values)) == set(range(8))
    # Within a mode the cold chain is a proper posterior draw: means near the data clusters.
    mu = np.sort(idata.posterior["mu"].values.reshape(-1, 2), axis=1).mean(axis=0)
    np.testing.assert_allclose(mu, [X_MIX[:50].mean(), X_MIX[50:].mean()], atol=0.15)


def test_replica_exchange_recovers_mode_weights_of_a_2d_mixture_target():
    """models.multimodal_2d_target: weights 0.5 / 0.3 / 0.2, modes 8 apart (observed-free
    model: full-batch gradients of the prior). The average responsibility of each component
    over the draws is an unbiased estimate of its weight; its SE comes from 20 batch means.
    Single-temperature SGLD gets stuck near its start (checked in a long run: 0.41 / 0.57 /
    0.02); REX with 4 replicas up to T = 8 must match all three weights within Z SE, with
    SE < 0.05 so that a stuck sampler fails."""
    model, exact = models.multimodal_2d_target()
    step = pymc_sgd.ReplicaExchangeSGLD(batch_size=None, step_size=0.05, n_replicas=4, max_temperature=8.0,
                                        swap_every=10, swap_energy="full", steps_per_draw=50, model=model)
    idata = sample(model, step)
    x = idata.posterior[exact.name].values
    resp = exact.responsibilities(x.reshape(-1, 2)).reshape(x.shape[0], x.shape[1], -1)
    for k, weight in enumerate(exact.weights):
        se = batch_means_se(resp[..., k])
        assert se < 0.05, (k, se)
        assert abs(resp[..., k].mean() - weight) <= Z * se, (k, resp[..., k].mean(), weight, se)



def test_equalised_ladder_equalises_a_known_barrier():
    """With exact rejection rates r_k = Lambda(beta_k) - Lambda(beta_{k+1}) of a known barrier
    (Lambda(beta) = log(1 + 50 (1 - beta)) / 4, steep near beta = 1 like a posterior that sharpens
    fast; rates up to 0.8), the relative spread max r / min r - 1 of the rejection rates must fall
    at least 5-fold per update (measured: 347, 3.6, 0.44, 0.02, 4e-4) to below 1e-3 after four,
    with the end points fixed."""
    def barrier(beta):
        return 0.25 * np.log1p(50.0 * (1.0 - beta))

    temperatures = pymc_sgd.steps.exchange.geometric_ladder(8, 100.0)
    spreads = []
    for _ in range(5):
        rejection = np.diff(barrier(1.0 / temperatures))
        spreads.append(rejection.max() / rejection.min() - 1.0)
        temperatures = equalised_ladder(temperatures, rejection)
    assert all(later < earlier / 5.0 for earlier, later in zip(spreads, spreads[1:])), spreads
    assert spreads[-1] < 1e-3, spreads
    assert temperatures[0] == 1.0 and temperatures[-1] == pytest.approx(100.0)


def test_default_ladder_adapts_during_tuning_only(mixture):
    """The default ladder moves at the refits (tuning draws 75, 175, 375) and is then fixed;
    an explicit ladder never moves."""
    with mixture, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        idata = pm.sample(draws=50, tune=400, chains=1, random_seed=3, progressbar=False, discard_tuned_samples=False,
                          compute_convergence_checks=False, step=pymc_sgd.ReplicaExchangeSGLD(batch_size=20))
    tuning = idata.warmup_sample_stats["temperature_3"].values[0]
    sampling = idata.sample_stats["temperature_3"].values[0]
    assert len(np.unique(tuning)) == 4  # the geometric start and three refits
    assert len(np.unique(sampling)) == 1 and sampling[0] == tuning[-1]
    np.testing.assert_allclose(idata.sample_stats["temperature_7"].values, 100.0)


def test_auto_swap_energy_is_exact_where_it_is_cheap(mixture):
    """n = 100 rows, B = 20, about 15 updates between swaps: a full-data energy pair costs less than
    the updates, so "auto" swaps exactly ("corrected" swaps ten times per draw moved a mean of seed
    000's n = 100 model by 0.23 posterior SD, measured); with n > B swap_every it is "corrected"."""
    step = pymc_sgd.ReplicaExchangeSGLD(batch_size=20, steps_per_draw=150, model=mixture)
    assert step._swap_energy() == "full"
    assert pymc_sgd.ReplicaExchangeSGLD(batch_size=2, steps_per_draw=20, model=mixture)._swap_energy() == "corrected"
