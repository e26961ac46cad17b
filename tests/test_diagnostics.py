"""pymc_sgd.diagnostics: the Stein kernel is its definition, the checks pass exact draws at their
stated false-alarm rate and fail biased ones, control-variate scores are unbiased, and the table
survives a round trip through netCDF."""

import collections

import arviz as az
import numpy as np
import pytest

import pymc_sgd
from mc import Z
from pymc_sgd.diagnostics import scores
from pymc_sgd.diagnostics.stein import stein_kernel_matrix, stein_kernel_pairs
from pymc_sgd.models import conjugate_linear_regression_model, two_component_mixture_model


def _imq(x, y):
    return (1.0 + np.sum((x - y) ** 2)) ** -0.5


def test_stein_kernel_is_its_definition():
    """u(x, y) = s_x.s_y k + s_x.grad_y k + s_y.grad_x k + tr(grad_x grad_y k), with the kernel's
    derivatives by central differences (error O(eps^2) ~ 1e-8)."""
    rng = np.random.default_rng(0)
    x, s = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    eps, d = 1e-4, 3
    unit = np.eye(d) * eps
    u = stein_kernel_matrix(x, s)
    for i in range(4):
        for j in range(4):
            a, b = x[i], x[j]
            grad_a = np.array([(_imq(a + e, b) - _imq(a - e, b)) / (2 * eps) for e in unit])
            grad_b = np.array([(_imq(a, b + e) - _imq(a, b - e)) / (2 * eps) for e in unit])
            trace = sum((_imq(a + e, b + e) - _imq(a + e, b - e) - _imq(a - e, b + e) + _imq(a - e, b - e))
                        / (4 * eps**2) for e in unit)
            expected = s[i] @ s[j] * _imq(a, b) + s[i] @ grad_b + s[j] @ grad_a + trace
            assert u[i, j] == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(stein_kernel_pairs(x, x[::-1], s, s[::-1]), np.diag(u[:, ::-1]), rtol=1e-12)


def _failures(model, exact, draws_per_chain, shrink, shift, replicates, max_ksd_draws, rng):
    """Replicates with at least one failing row, per check, for iid posterior draws scaled about
    the mean by ``shrink`` and moved by ``shift`` posterior SDs in the first coordinate."""
    sd = np.sqrt(np.diag(exact.cov))
    failures = collections.Counter()
    for r in range(replicates):
        draws = rng.multivariate_normal(exact.mean, exact.cov, size=(2, draws_per_chain))
        draws = exact.mean + shrink * (draws - exact.mean)
        draws[..., 0] += shift * sd[0]
        table = pymc_sgd.diagnostics.check(az.from_dict(posterior={"beta": draws}), model,
                                           max_ksd_draws=max_ksd_draws, random_seed=r)
        for name, rows in table.groupby("check"):
            failures[name] += int((rows["verdict"] == "fail").any())
    return failures


def test_false_alarms_at_the_stated_rate_and_detection_of_biased_draws():
    """Exact posterior draws of a 3-parameter conjugate regression (2 x 1000 iid draws): each
    check's family-wise false-alarm rate is alpha = 0.01, so out of 60 replicates at most 4 fail
    (P(Binomial(60, 0.01) >= 5) = 3e-4). Measured: 1-2 in 100 per check.

    Draws 10% too narrow: score_scale's terms have mean 1 - 0.9^2 = 0.19 and SE about
    sqrt(2) 0.81 / sqrt(2000) = 0.026, z = 7.4, so all 10 replicates fail. The KSD on 1000 draws
    detects it in 18 of 20 (measured), so at least 6 of 10 here (P(Binomial(10, 0.9) <= 5) = 2e-3);
    the linear-time KSD has little power (2% measured) and is not asserted. A shift by 0.2 SD:
    score_mean's z >= 0.2 sqrt(2000) = 8.9, all 10 fail."""
    model, exact = conjugate_linear_regression_model(n=50)
    rng = np.random.default_rng(1)
    null = _failures(model, exact, 1000, 1.0, 0.0, 60, 300, rng)
    assert all(null[name] <= 4 for name in ("score_mean", "score_scale", "ksd", "ksd_linear", "mode_coverage")), null
    narrow = _failures(model, exact, 1000, 0.9, 0.0, 10, 1000, rng)
    assert narrow["score_scale"] == 10 and narrow["ksd"] >= 6, narrow
    shifted = _failures(model, exact, 1000, 1.0, 0.2, 10, 300, rng)
    assert shifted["score_mean"] == 10, shifted


def test_control_variate_scores_are_unbiased():
    """With a row budget below m n the score is a control-variate minibatch estimate. Its mean over
    400 independent estimates at each of 5 draws must equal the exact score within Z = 4.5 SE
    (SE from the estimates' own spread), coordinate by coordinate; and it must not be exact
    (its spread is > 0), or the test would not be exercising the estimate."""
    model, exact = conjugate_linear_regression_model(n=400)
    rng = np.random.default_rng(2)
    draws = rng.multivariate_normal(exact.mean, exact.cov, size=5)
    truth, rows = scores(model, draws, rng)
    assert rows == 400
    estimates = np.array([scores(model, draws, rng, row_budget=5 * 20)[0] for _ in range(400)])
    spread = estimates.std(axis=0)
    assert np.all(spread > 0)
    assert np.all(np.abs(estimates.mean(axis=0) - truth) <= Z * spread / np.sqrt(400))


def test_table_is_kept_in_the_inferencedata_through_netcdf(tmp_path):
    model, exact = conjugate_linear_regression_model(n=50)
    draws = np.random.default_rng(3).multivariate_normal(exact.mean, exact.cov, size=(2, 200))
    idata = az.from_dict(posterior={"beta": draws})
    table = pymc_sgd.diagnostics.check(idata, model, store=True)
    idata.to_netcdf(tmp_path / "run.nc")
    stored = az.from_netcdf(tmp_path / "run.nc")["sgd_diagnostics"].to_dataframe()
    assert list(stored["check"]) == list(table["check"])
    np.testing.assert_allclose(stored["value"], table["value"])
    assert set(table["coordinate"]) - {"beta[0]", "beta[1]", "beta[2]", "all"} == {
        table.query("check == 'mode_coverage'")["coordinate"].item()}  # one mode, named by its location


def test_sd_error_against_the_samplers_prediction():
    """A sampler that predicts SD errors within 3% (the sample_stats of SGLD and friends).
    Exact draws: a fail needs |implied error| > 0.03 + 2.7 SE (alpha / d = 0.0033 one-sided, SE ~
    0.016 by the delta method on score_scale's 0.026), i.e. 4.6 SE from 0: none in 5. Draws 10%
    too narrow: the implied error is -0.10, (0.10 - 0.03) / 0.016 = 4.4 SE beyond the prediction,
    so each coordinate fails with probability 0.95 and a replicate (any of 3) ~0.999: all 5 fail.
    The implied error itself must be within 4.5 SE of -0.10."""
    model, exact = conjugate_linear_regression_model(n=50)
    rng = np.random.default_rng(4)
    verdicts = {1.0: [], 0.9: []}
    for shrink in verdicts:
        for r in range(5):
            draws = exact.mean + shrink * (rng.multivariate_normal(exact.mean, exact.cov, size=(2, 1000)) - exact.mean)
            idata = az.from_dict(posterior={"beta": draws}, sample_stats={"predicted_sd_error": np.full((2, 1000), 0.03)})
            rows = pymc_sgd.diagnostics.check(idata, model, max_ksd_draws=100, random_seed=r).query(
                "check == 'sd_error_vs_prediction'")
            assert len(rows) == 3 and (rows["predicted"] == 0.03).all()
            verdicts[shrink].append((rows["verdict"] == "fail").any())
            if shrink == 0.9:
                assert np.all(np.abs(rows["value"] + 0.1) < Z * rows["se"]), rows
    assert not any(verdicts[1.0]) and all(verdicts[0.9]), verdicts


def test_a_missing_mode_is_flagged_and_a_visited_one_is_not():
    """The label-switching mixture: two modes of mass 1/2 each (exactly, by symmetry). Draws from
    one labelled mode only (its exact conditional mean and covariance, 2 x 500 iid) must fail
    mode_coverage: no draw visits the other mode, p = P(Binomial(m_eff, 1/4) = 0) = 0.75^m_eff, below
    1e-60 at m_eff ~ 1000, while the score checks cannot see it (that is the point of this check).
    Draws that pick either mode with probability 1/2 must pass: about half visit each mode and
    P(Binomial(m_eff, 1/4) <= m_eff / 2) ~ 1. Five replicates each, all must go the right way."""
    model, exact = two_component_mixture_model()
    mean, cov = exact.ordered_moments()
    rng = np.random.default_rng(5)
    for r in range(5):
        one = rng.multivariate_normal(mean, cov, size=(2, 500))
        both = np.where(rng.random((2, 500, 1)) < 0.5, one, one[..., ::-1])
        verdicts = {}
        for name, draws in (("one", one), ("both", both)):
            table = pymc_sgd.diagnostics.check(az.from_dict(posterior={"mu": draws}), model, max_ksd_draws=100,
                                               random_seed=r).query("check == 'mode_coverage'")
            assert len(table) == 2 and np.allclose(table["predicted"], 0.5, atol=0.01), table
            verdicts[name] = set(table["verdict"])
        assert verdicts == {"one": {"pass", "fail"}, "both": {"pass"}}, verdicts


def test_no_verdict_from_a_nan_and_a_readable_error_on_too_few_draws():
    """Draws whose scores are not finite (here one draw is NaN, as where the model raises) give NaN
    statistics: the moment rows were "fail" read off a NaN standard error and ksd "pass" with p = 1 from
    a bootstrap of NaN; every row is "undetermined" now. Three draws were a ValueError about converting NaN
    to an integer; now the error says how many draws check needs."""
    model, exact = conjugate_linear_regression_model()
    draws = np.random.default_rng(0).multivariate_normal(exact.mean, exact.cov, size=(2, 500))
    draws[0, 7] = np.nan
    table = pymc_sgd.diagnostics.check(az.from_dict(posterior={"beta": draws}), model, mode_starts=0)
    assert set(table["verdict"]) == {"undetermined"}, table
    with pytest.raises(ValueError, match="at least 20 draws"):
        pymc_sgd.diagnostics.check(az.from_dict(posterior={"beta": draws[:1, :3]}), model, mode_starts=0)
