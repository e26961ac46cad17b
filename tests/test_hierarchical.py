"""Hierarchical models on defaults: a warm-up that needs no mode, exact answers by quadrature.

References: ``models.hierarchical_normal_model`` (varying intercepts with the residual SD known: given the
group scale tau the model is linear-Gaussian, so the posterior is exact by quadrature over log tau).
Tolerances (tests/mc.py): every mean within 4.5 Monte Carlo SE; every SD within 4.5 SE plus the
sampler's promised relative SD error (target_error = 3%) and the slack for its own SE of the SD.
"""

import warnings

import arviz as az
import numpy as np
import pymc as pm
import pytest

import pymc_sgd
from pymc_sgd import models, warmup
from pymc_sgd.gradients import cached_estimator
from pymc_sgd.hierarchy import Coordinates, Reparameterisation, find_group_effects, flat_slices, row_groups
from pymc_sgd.kernels import batching
from pymc_sgd.scales import find_scale_families, scale_moves
from pymc_sgd.kernels.model import gradient_into
from pymc_sgd.warmup.geometry import potential_on

from mc import assert_means_and_sds

SD_PROMISE = 0.03  # the warm-up's target_error: the largest predicted relative error of a posterior SD


def unequal_groups(groups: int = 40, seed: int = 3) -> tuple[np.ndarray, np.ndarray, int]:
    """Group sizes from 2 to several hundred rows (lognormal), intercepts N(1, 0.5^2), residual SD 1."""
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.lognormal(2.5, 1.3, groups).astype(int), 2, 3000)
    g = np.repeat(np.arange(groups), sizes)
    return rng.normal(1.0, 0.5, groups)[g] + rng.normal(size=len(g)), g, groups


def radon_like_centred() -> pm.Model:
    """The textbook centred varying-intercept model with an unknown residual SD (85 groups of 1 to ~100
    rows): its density grows without bound as tau -> 0 with every a_g = mu, so it has no mode."""
    rng = np.random.default_rng(1)
    sizes = np.clip(rng.lognormal(1.8, 1.1, 85).astype(int), 1, 120)
    g = np.repeat(np.arange(85), sizes)
    y = (1.3 + 0.3 * rng.normal(size=85))[g] + 0.75 * rng.normal(size=len(g))
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 10)
        tau = pm.HalfNormal("tau", 5)
        a = pm.Normal("a", mu, tau, shape=85)
        pm.Normal("y", a[g], pm.Exponential("sigma", 1), observed=y)
    return model


def test_a_centred_hierarchy_has_no_mode_and_the_warm_up_starts_from_draws(capfd):
    """Damped Newton walks down the funnel's neck (log tau to about -26 in 100 steps; it used to end in
    LinAlgError: Eigenvalues did not converge, after ~40 printed ParameterValueError tracebacks). The bulk
    then comes from an adaptive MALA run: its centre must be where the posterior is (tau near the 0.3 the
    data were drawn with, not at the neck), its curvature positive definite, and nothing printed."""
    model = radon_like_centred()
    est = cached_estimator(model)
    start = np.concatenate([np.ravel(v) for v in model.initial_point().values()])
    bulk = warmup.find_bulk(est, start, np.random.default_rng(0))
    assert "no mode" in bulk.message and bulk.converged, bulk.message
    assert np.linalg.eigvalsh(bulk.hessian).min() > 0
    log_tau = bulk.mode[1]
    assert np.log(0.15) < log_tau < np.log(0.6), np.exp(log_tau)
    captured = capfd.readouterr()
    assert "Exception ignored" not in captured.err and "Traceback" not in captured.err, captured.err[:2000]


def test_every_chain_of_a_centred_hierarchy_thins_alike():
    """85 unequal groups, n = 919 (radon's size), centred, residual SD known, SGLD(batch_size=200) on defaults
    (it takes the full batch and MALA here). A centred hierarchy has no mode, so its Laplace scale comes from
    the warm-up's 400 MALA draws; with 88 parameters a dense covariance from them is off by a condition number
    of about 6 (Marchenko-Pastur), which the refits' diagonal correction cannot undo: two of four chains
    thinned 159 and 178 updates per draw against 15 in the others (each right, 10x slower). Chains of the same
    sampler on the same posterior should thin alike: the measured-mixing ratio from windows of 50-400 draws
    varies by well under 2x between chains (measured after the fix: 14-15 on two data sets)."""
    rng = np.random.default_rng(0)
    sizes = rng.lognormal(0.0, 1.5, 85)
    g = rng.permutation(np.repeat(np.arange(85), np.maximum(2, np.round(sizes * 919 / sizes.sum())).astype(int)))
    y = rng.normal(1.0, 0.5, 85)[g] + rng.normal(size=len(g))
    model, _ = models.hierarchical_normal_model(y, g, 85, "centred")
    with model:
        idata = pm.sample(draws=20, tune=1000, chains=4, cores=1, random_seed=1, progressbar=False,
                          compute_convergence_checks=False, step=pymc_sgd.SGLD(batch_size=200))
    thinning = idata.sample_stats.steps_per_draw.values[:, -1]
    assert thinning.max() <= 2 * thinning.min(), thinning


def test_the_warm_up_of_a_well_informed_centred_hierarchy_takes_the_laplace_bulk_without_mala():
    """200 groups of 50 rows, a logistic GLM written centred (alpha_g ~ N(mu, tau^2)), SGLD on defaults. The
    warm-up searches the non-centred mode, chooses each group's coordinates there (all centred: 50 rows
    inform a group), searches the mode in those coordinates from there and, as the Laplace approximation
    there passes its checks (log importance weights' SD 5.0 against 0.5 sqrt(204) = 7.1), takes it as the
    bulk: 480 full-data passes. Before, an adaptive MALA run of sum(WINDOWS) + FINAL_WINDOW = 1,150 gradients
    gave the bulk (1,542 passes; on 1,000 groups and 1e6 rows two minutes a chain), and before that a search
    of the model's centred coordinates from the initial point walked down the funnel's neck first (3,676
    passes). Bound: less than one MALA run. A second chain of the same step (pm.sample's cores=1) reuses
    both searches and reads a quarter of that or less (the Laplace checks and the choice)."""
    rng = np.random.default_rng(1)
    g = rng.integers(200, size=10_000)
    X = rng.normal(size=(10_000, 2))
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-(rng.normal(-0.5, 0.7, 200)[g] + X @ np.array([0.5, -0.3])))))
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 2.0)
        alpha = pm.Normal("alpha", mu, pm.HalfNormal("tau", 1.0), shape=200)
        pm.Bernoulli("y", logit_p=alpha[g] + pm.math.dot(X, pm.Normal("beta", 0.0, 1.0, shape=2)), observed=y)
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # tune=1: too few draws to check settling (not tested here)
        step = pymc_sgd.SGLD(batch_size=100)
        pm.sample(draws=1, tune=1, chains=1, step=step, progressbar=False, compute_convergence_checks=False,
                  random_seed=1)
        one_mala_run = sum(warmup.draws.WINDOWS) + warmup.draws.FINAL_WINDOW
        assert step.bulk.data_passes < one_mala_run and "Laplace" in step.bulk.message, step.bulk.message
        # the next chain of the same step starts at the same point: both searches are the first chain's
        first = step.bulk
        pm.sample(draws=1, tune=1, chains=2, cores=1, step=step, progressbar=False,
                  compute_convergence_checks=False, random_seed=1)
    assert "an earlier chain's" in step.bulk.message, step.bulk.message
    np.testing.assert_array_equal(step.bulk.mode, first.mode)
    assert step.bulk.data_passes < first.data_passes / 4, (step.bulk.data_passes, first.data_passes)


@pytest.mark.parametrize("sampler", ["SGLD", "SGHMC", "UnderdampedLangevin", "SGNHT"])
@pytest.mark.parametrize("parameterisation", ["centred", "noncentred"])
def test_samplers_on_defaults_are_right_on_either_parameterisation(parameterisation, sampler):
    """40 groups of 2 to 900 rows, n = 1813, 42 parameters; Sampler(batch_size=100) on defaults (stratified
    batches, group coordinates chosen per group), 2 chains x 1000 draws, against the exact posterior (every
    coordinate: mu, log tau, and the 40 group effects)."""
    y, g, groups = unequal_groups()
    model, exact = models.hierarchical_normal_model(y, g, groups, parameterisation)
    with model, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a warning here would be a false alarm
        step = getattr(pymc_sgd, sampler)(batch_size=100)
        assert step.batch_mode == batching.STRATIFIED  # 40 groups <= 100 / 2
        idata = pm.sample(draws=1000, tune=1000, chains=2, cores=1, random_seed=1, progressbar=False,
                          compute_convergence_checks=False, step=step)
    assert not idata.sample_stats["diverging"].values.any()
    assert 0 < idata.sample_stats["centred_groups"].values[:, -1].min() < groups  # a mix: groups of 2 to 900 rows
    post = idata.posterior
    effects = post["a" if parameterisation == "centred" else "z"].values
    draws = np.concatenate([post["mu"].values[..., None], np.log(post["tau"].values)[..., None], effects], axis=-1)
    assert_means_and_sds(draws, exact.mean, exact.sd, SD_PROMISE)


def test_group_effects_are_found_in_either_parameterisation():
    """Centred a ~ N(mu, tau) and non-centred mu + tau * z[g] are found with their scale; a regression's
    coefficients (scale a constant) and a model without groups are not group effects."""
    y, g, groups = unequal_groups(groups=5)
    for parameterisation, name in (("centred", "a"), ("noncentred", "z")):
        model, _ = models.hierarchical_normal_model(y, g, groups, parameterisation)
        effects = find_group_effects(model, model.value_vars)
        assert [(e.name, e.written_centred, e.size) for e in effects] == [(name, parameterisation == "centred", 5)]
        coordinates = Coordinates(model.value_vars, effects, model.initial_point())
        w = np.concatenate([[0.3, np.log(0.7)], np.linspace(-1, 1, 5)])
        loc, scale = coordinates.location_scale(w)[0]
        assert scale == pytest.approx(0.7) and np.allclose(loc, 0.3)  # non-centred: mu, added to tau * z[g]
    with pm.Model() as regression:
        beta = pm.Normal("beta", 0.0, 10.0, shape=3)
        pm.Normal("y", pm.math.dot(np.ones((4, 3)), beta), pm.HalfNormal("sigma"), observed=np.zeros(4))
    assert find_group_effects(regression, regression.value_vars) == []


def test_the_hessian_skips_differencing_between_groups_only_where_no_row_couples_them():
    """The cell Hessian (one pair of gradients per column of cells) equals the column-by-column one on a varying
    intercept (cells of one coordinate), on a varying intercept and slope indexed by the same group (cells of
    two: a_g with b_g) and on crossed effects a[g] + b[h], where one row couples a_g with b_h: there a's groups
    are the cells and b is differenced coordinate by coordinate (cells of both would drop the a-b entries, which
    here are as large, row by row, as the likelihood's part of the diagonal). Each effect's own groups are
    uncoupled in all three, so the warm-up chooses per group how to run them."""
    rng = np.random.default_rng(0)
    n, G, H = 2000, 30, 20
    g, h, x = rng.integers(G, size=n), rng.integers(H, size=n), rng.normal(1.0, 1.0, size=n)
    y = rng.normal(size=n) + 0.5 * rng.normal(size=G)[g] + 0.5 * rng.normal(size=H)[h]
    for second_effect, shapes in ((None, [(G, 1)]), ("slope", [(G, 2)]), ("crossed", [(G, 1)])):
        with pm.Model():
            mean = pm.Normal("mu", 0, 5) + pm.Normal("a", 0, pm.HalfNormal("sa", 1), shape=G)[g]
            if second_effect is not None:
                b = pm.Normal("b", 0, pm.HalfNormal("sb", 1), shape=H if second_effect == "crossed" else G)
                mean = mean + (b[h] if second_effect == "crossed" else b[g] * x)
            pm.Normal("y", mean, 1.0, observed=y)
            step = pymc_sgd.SGLD(batch_size=100)
        w = np.random.default_rng(1).normal(size=step.estimator.dim) * 0.3
        cells = step._group_cells(w)
        assert [family.shape for family in cells] == shapes and step.coordinates is not None
        potential, steps = potential_on(step.estimator, None), 1e-4 * (1.0 + np.abs(w))
        full = warmup.geometry.finite_difference_hessian(potential, w, steps)
        celled = warmup.geometry.finite_difference_hessian(potential, w, steps, cells)
        np.testing.assert_allclose(celled, full, atol=1e-6 * np.abs(full).max())


@pytest.mark.parametrize("parameterisation", ["centred", "noncentred"])
def test_the_sampler_coordinates_carry_the_jacobian_and_the_choice_follows_the_data(parameterisation):
    """In the sampler's coordinates v the estimator's U is U(x(v)) - log J, with log J = (number of groups run
    non-centred) log tau for a model written centred and -(number run centred) log tau for one written
    non-centred (hierarchy's docstring), to rounding; v -> x -> v is the identity; and the choice at a
    point is kappa_g = tau^2 n_g / sigma^2 >= 1 exactly (Normal likelihood, sigma = 1)."""
    y, g, groups = unequal_groups(groups=8)
    model, _ = models.hierarchical_normal_model(y, g, groups, parameterisation)
    effects = find_group_effects(model, model.value_vars)
    coordinates = Coordinates(model.value_vars, effects, model.initial_point())
    est = cached_estimator(model)
    tau = 0.2
    w = np.concatenate([[1.0, np.log(tau)], np.random.default_rng(0).normal(1.0, 0.5, groups)])
    coordinates.choose(potential_on(est, None), w)
    counts = np.bincount(g, minlength=groups)
    assert coordinates.reparameterisation.centred == (tuple(bool(k) for k in tau**2 * counts >= 1.0),)
    assert 0 < coordinates.centred_groups < groups  # mixed: the data have groups of both kinds
    v = coordinates.to_sampler(w)
    np.testing.assert_allclose(coordinates.to_model(v), w, rtol=1e-12, atol=1e-12)
    sampler_est = cached_estimator(model, reparameterisation=coordinates.reparameterisation)
    chosen = coordinates.reparameterisation
    flipped = Reparameterisation(chosen.effects, tuple(tuple(not c for c in cs) for cs in chosen.centred))
    for choice in (chosen, flipped):  # the choice is the estimator's data: set in place, no new compilation
        sampler_est.set_coordinates(choice)
        coordinates.reparameterisation = choice
        centred = coordinates.centred_groups
        per_log_tau = (groups - centred) if parameterisation == "centred" else -centred  # log J / log tau
        for shift in (0.0, 0.4):
            point = coordinates.to_sampler(w) + shift  # point[1] is log tau
            U_v = potential_on(sampler_est, None)(point)[0]
            U_x = potential_on(est, None)(coordinates.to_model(point))[0]
            assert U_v == pytest.approx(U_x - per_log_tau * point[1], rel=1e-10, abs=1e-8)


def test_stratified_batches_weigh_every_row_once_on_average_and_the_gradient_weighs_each_row():
    """Stratified batches (kernels.batching.STRATIFIED) over the groups ``row_groups`` reads from the graph:
    b_g >= 1 distinct rows of each group g, sum b_g = B, each weighted n_g / b_g, so a row's weight times its
    count in a batch has mean 1 (Horvitz-Thompson). Per batch that is (n_g / b_g) Bernoulli(b_g / n_g), of
    variance n_g / b_g - 1, so over m batches its mean has SE sqrt((n_g / b_g - 1) / m): each row within 5 SE
    (the plain scale n / B instead would put a row of a 2-row group off by n / B * b_g / n_g - 1, about 60 SE).
    The weighted gradient is the weighted sum of the rows' own gradients, to rounding."""
    y, g, groups = unequal_groups(groups=8)
    model, _ = models.hierarchical_normal_model(y, g, groups, "noncentred")
    labels = row_groups(model, find_group_effects(model, model.value_vars), len(y))
    np.testing.assert_array_equal(labels, g)
    batch = batching.new_stratified_batch(labels, 16)
    sizes, taken = batching.stratum_sizes(labels, 16)
    assert taken.sum() == 16 and taken.min() >= 1 and np.all(taken <= sizes)
    rng, m = np.random.default_rng(0), 20_000
    weighted_counts = np.zeros(len(y))
    for _ in range(m):
        batching.next_batch(batch, rng)
        assert len(np.unique(batch.idx)) == 16 and np.array_equal(np.bincount(labels[batch.idx]), taken)
        np.add.at(weighted_counts, batch.idx, batch.scale)
    se = np.sqrt(np.maximum(sizes / taken - 1.0, 1e-12) / m)[labels]
    assert np.all(np.abs(weighted_counts / m - 1.0) <= 5 * se + 1e-12)

    weighted, plain = cached_estimator(model, weighted=True), cached_estimator(model)
    w = np.random.default_rng(1).normal(size=weighted.dim)
    out, prior, row = np.empty(weighted.dim), np.empty(weighted.dim), np.empty(weighted.dim)
    gradient_into(weighted.kernel, w, batch.idx, batch.scale, out)
    gradient_into(plain.kernel, w, batch.idx[:1], np.zeros(1), prior)  # the prior's part alone
    expected = prior.copy()
    for i, weight in zip(batch.idx, batch.scale):
        expected += gradient_into(plain.kernel, w, np.array([i]), np.array([weight]), row) - prior
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)
    assert np.isnan(gradient_into(plain.kernel, w, batch.idx, batch.scale, row)).all()  # unweighted model: halts


def test_the_stratified_noise_formula_matches_the_batches():
    """``warmup.stratified_gradient_noise`` (Cochran's V = sum_s n_s^2 (1 - b_s / n_s) S_s^2 / b_s, with S_s^2 read
    from every row here) against the covariance of the weighted gradient over m = 4000 stratified batches. The
    sample variance of m draws has relative SE about sqrt(2 / m) = 2.2% (Gaussian; the per-row terms here are
    close to it), so each diagonal entry must agree within 5 SE = 11%; the plain with-replacement formula,
    which ignores the strata, is off by a factor of 10-100 on the group coordinates."""
    y, g, groups = unequal_groups(groups=8)
    model, _ = models.hierarchical_normal_model(y, g, groups, "noncentred")
    est = cached_estimator(model, weighted=True)
    labels = row_groups(model, find_group_effects(model, model.value_vars), len(y))
    sizes, taken = batching.stratum_sizes(labels, 16)
    w = np.random.default_rng(1).normal(0.5, 0.3, est.dim)
    (V,) = warmup.stratified_gradient_noise(est, w[None], np.random.default_rng(2), labels, taken, rows=len(y))
    batch, rng, m = batching.new_stratified_batch(labels, 16), np.random.default_rng(3), 4000
    draws = np.empty((m, est.dim))
    for k in range(m):
        batching.next_batch(batch, rng)
        gradient_into(est.kernel, w, batch.idx, batch.scale, draws[k])
    empirical = np.var(draws, axis=0, ddof=1)
    assert np.all(np.abs(empirical / np.diag(V) - 1.0) <= 5 * np.sqrt(2.0 / m))


def test_scale_families_are_found_in_a_random_walk_and_in_group_effects():
    """A GaussianRandomWalk's innovation SD scales x_1 .. x_{T-1} about x_0; a group scale scales the groups the
    sampler runs centred about the location mu (a model written non-centred and run so: none of them)."""
    model, _ = models.random_walk_model(np.linspace(0.0, 1.0, 6))
    family, = find_scale_families(model, model.value_vars, [])
    slices = flat_slices(model.value_vars, model.initial_point())
    moves = scale_moves([family], slices, np.array([0.3]), 4, None)
    assert moves.scale.tolist() == [slices["sigma_log__"].start]
    assert moves.members.tolist() == list(range(slices["x"].start + 1, slices["x"].stop))
    assert set(moves.centres.tolist()) == {slices["x"].start}
    y, g, groups = unequal_groups(groups=5)
    for parameterisation, members in (("centred", 5), ("noncentred", 0)):
        model, _ = models.hierarchical_normal_model(y, g, groups, parameterisation)
        effects = find_group_effects(model, model.value_vars)
        family, = find_scale_families(model, model.value_vars, effects)
        assert (family.scale, family.centre) == ("tau_log__", "mu")
        moves = scale_moves([family], flat_slices(model.value_vars, model.initial_point()), np.array([0.3]), 4,
                            Reparameterisation.as_written(effects))
        assert len(moves.members) == members


def test_a_latent_random_walk_is_right_on_defaults():
    """The centred walk (``models.random_walk_model``, 30 steps, unknown innovation SD: log sigma's posterior SD
    1.2, a funnel in time) with UnderdampedLangevin(batch_size=None) on defaults: generalised HMC with scale moves,
    thinned by the measured mixing (SGLD's MALA is right too, at 10,000 updates per draw: too slow for the suite). Every coordinate within the tolerances of tests/mc.py of the exact posterior, and at least 0.25
    effective draws per draw in every coordinate (a chain that wanders passes a bare mean test with a huge SE)."""
    rng = np.random.default_rng(42)
    model, exact = models.random_walk_model(np.cumsum(rng.normal(0, 0.1, 30)) + rng.normal(0, 0.5, 30))
    with model:
        idata = pm.sample(draws=1000, tune=1000, chains=2, cores=1, random_seed=1, progressbar=False,
                          compute_convergence_checks=False, step=pymc_sgd.UnderdampedLangevin(batch_size=None))
    assert not idata.sample_stats["diverging"].values.any()
    post = idata.posterior
    draws = np.concatenate([np.log(post["sigma"].values)[..., None], post["x"].values], axis=-1)
    assert min(float(az.ess(draws[..., j])) for j in range(draws.shape[-1])) >= 0.25 * 2000
    assert_means_and_sds(draws, exact.mean, exact.sd, 0.0)


def test_the_still_drifting_warning_of_a_minibatched_step_offers_the_full_batch():
    """A minibatched step that can run the Metropolis test names batch_size=None and what a full-data gradient
    costs in batches (its advice is right on the random walk: the test above); a full batch or a step without
    the test adds nothing."""
    rng = np.random.default_rng(42)
    model, _ = models.random_walk_model(np.cumsum(rng.normal(0, 0.1, 300)) + rng.normal(0, 0.5, 300))
    with model:
        advice = pymc_sgd.SGLD(batch_size=50)._full_batch_advice()
        assert "batch_size=None" in advice and "costs 6 batches" in advice
        assert pymc_sgd.UnderdampedLangevin(batch_size=None)._full_batch_advice() == ""
        assert pymc_sgd.ConstantSGD(batch_size=50)._full_batch_advice() == ""


def test_mala_with_scale_moves_keeps_the_exact_posterior_of_a_short_walk():
    """The MALA kernel with scale moves interleaved (kernels.scale_moves; every 4 updates), on a 10-step walk
    (log sigma's posterior SD above 1: the funnel is deep) against the exact posterior, with a fixed 200 updates
    per draw so the test is about the kernel's law, not the thinning. Tolerances: tests/mc.py (4.5 Monte Carlo SE
    of every mean and SD); the scale moves must have been used (the step's families and acceptances)."""
    rng = np.random.default_rng(7)
    model, exact = models.random_walk_model(np.cumsum(rng.normal(0, 0.1, 10)) + rng.normal(0, 0.5, 10))
    with model:
        step = pymc_sgd.MALA(steps_per_draw=200)
        idata = pm.sample(draws=2000, tune=1000, chains=2, cores=1, random_seed=3, progressbar=False,
                          compute_convergence_checks=False, step=step)
    assert len(step.scale_families) == 1 and step.scale_move_sd is not None
    post = idata.posterior
    draws = np.concatenate([np.log(post["sigma"].values)[..., None], post["x"].values], axis=-1)
    assert_means_and_sds(draws, exact.mean, exact.sd, 0.0)


@pytest.mark.parametrize("parameterisation", ["auto", "model"])
def test_a_slow_mixing_warning_on_group_effects_says_how_they_were_run(parameterisation):
    """Issue 25, item 5: where a warning about mixing fires on a hierarchical model it says how the group effects
    were run and, when the warm-up did not choose per group, the option that lets it (forced here by capping the
    thinning at 2 updates per draw, far below what half an effective draw per draw needs)."""
    y, g, groups = unequal_groups()
    model, _ = models.hierarchical_normal_model(y, g, groups, "centred")
    with model, pytest.warns(RuntimeWarning, match="max_steps_per_draw") as caught:
        pm.sample(draws=20, tune=100, chains=1, cores=1, random_seed=1, progressbar=False,
                  compute_convergence_checks=False,
                  step=pymc_sgd.SGLD(batch_size=50, max_steps_per_draw=2, parameterisation=parameterisation))
    message = next(str(w.message) for w in caught if "max_steps_per_draw" in str(w.message))
    assert f"{groups} group effects (a)" in message, message
    expected = "centred and the rest non-centred" if parameterisation == "auto" else "parameterisation='auto' lets"
    assert expected in message, message
