"""Model coverage (issue 10): ordinary PyMC models get a right answer or a refusal whose advice works.

Each model in ZOO is sampled by SGLD on defaults (only ``batch_size``, None where the model
cannot be minibatched; on these small data sets the warm-up would take the full batch and its Metropolis
test instead, so the minibatches are kept: the ``minibatches_kept`` fixture) and by NUTS, on the same model, and every scalar coordinate is compared
on the unconstrained scale PyMC samples on (log of a positive variable), where posteriors are
closest to Gaussian and Monte Carlo error bars are reliable. A mean must agree within
Z = 4.5 combined standard errors sqrt(SE_sgld^2 + SE_nuts^2) (tests/mc.py); a variance within
4.5 combined SEs plus the warm-up's promised bias (1.03^2 - 1 = 6.1%). 2 x 1000 SGLD draws at
>= 1/2 effective draw each and 4 x 1000 NUTS draws give SE ~ 5% of a variance, so a sampler
that is stuck, unscaled or on stale data (errors of 100% and more before these fixes) fails.
"""

import warnings

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest

import pymc_sgd
from mc import Z, cov_and_se, mean_and_se
from pymc_sgd import warmup
from pymc_sgd.gradients import ModelSpecificationError
from pymc_sgd.steps.base import FROM_MINIBATCH

VARIANCE_BIAS = (1.0 + warmup.TARGET_ERROR) ** 2 - 1.0
RNG = np.random.default_rng(2024)
N = 300
X = RNG.normal(size=N)
Y = 1.0 + 2.0 * X + RNG.normal(size=N)


def flat_priors_only():
    """All priors Flat (the prior's gradient is disconnected: once a DisconnectedInputError)."""
    with pm.Model() as model:
        a, b = pm.Flat("a"), pm.Flat("b")
        pm.Normal("y", a + b * X, 1.0, observed=Y)
    return model, 30


def two_dimensional_observed():
    """A (n, 2) observed with a numpy covariate X[:, None] (once: 'Incompatible vectorized shapes')."""
    Y2 = np.column_stack([Y, 0.5 - X + RNG.normal(size=N)])
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 10.0, shape=2)
        b = pm.Normal("b", 0.0, 10.0)
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Normal("y", a + b * X[:, None], sigma, observed=Y2)
    return model, 30


def per_row_known_sigma():
    """Measurement error known per row (a constant vector with the observed's length, as in eight
    schools; once: 'Vectorized input 3 has an incompatible shape'), minibatched with the rows."""
    s = RNG.uniform(0.5, 2.0, N)
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 10.0)
        b = pm.Normal("b", 0.0, 10.0)
        pm.Normal("y", a + b * X, s, observed=1.0 + 2.0 * X + s * RNG.normal(size=N))
    return model, 30


def pm_data_slice_as_observed():
    """observed=pm.Data(...)[1:] (once: AttributeError 'TensorVariable' object has no attribute 'data')."""
    with pm.Model() as model:
        data = pm.Data("y_data", Y)
        mu = pm.Normal("mu", 0.0, 10.0)
        sigma = pm.HalfNormal("sigma", 5.0)
        pm.Normal("y", mu, sigma, observed=data[1:])
    return model, 30


def autoregressive():
    """pm.AR: rows coupled, so full batch (its minibatch refusal is tested below)."""
    series = np.zeros(150)
    for t in range(2, 150):
        series[t] = 0.6 * series[t - 1] - 0.2 * series[t - 2] + RNG.normal(scale=0.5)
    with pm.Model() as model:
        rho = pm.Normal("rho", 0.0, 0.5, shape=2)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.AR("y", rho, sigma=sigma, init_dist=pm.Normal.dist(0.0, 1.0), observed=series)
    return model, None


def random_walk():
    """pm.GaussianRandomWalk observed: rows coupled, full batch."""
    with pm.Model() as model:
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.GaussianRandomWalk("y", sigma=sigma, init_dist=pm.Normal.dist(0.0, 5.0),
                              observed=np.cumsum(RNG.normal(0.0, 0.5, 100)))
    return model, None


def gaussian_process_marginal():
    """MvNormal across rows (a GP's marginal likelihood with a squared-exponential kernel): full batch."""
    inputs = np.linspace(0.0, 1.0, 30)
    kernel = np.exp(-0.5 * (inputs[:, None] - inputs[None, :]) ** 2 / 0.1**2) + 0.1 * np.eye(30)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        pm.MvNormal("y", mu * np.ones(30), cov=kernel, observed=np.sin(6.0 * inputs) + 1.0)
    return model, None


def observed_of_different_lengths():
    """A row-level (300 rows) and a group-level (40 rows) likelihood: one index, each minibatched
    with its own n (once refused, with advice that did not work)."""
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 10.0)
        pm.Normal("rows", mu, 1.0, observed=Y)
        pm.Normal("groups", mu, 2.0, observed=Y[:40])
    return model, 30


def group_level_likelihood():
    """Group effects with a row-level likelihood through a group index and a group-level likelihood
    on the effects themselves (measured group means), the effects' prior through a parent index."""
    rng = np.random.default_rng(5)
    groups, parent = rng.integers(0, 12, N), rng.integers(0, 3, 12)
    truth = rng.normal(0.0, 1.0, 12)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0, shape=3)
        a = pm.Normal("a", mu[parent], 1.0, shape=12)
        pm.Normal("rows", a[groups], 1.0, observed=truth[groups] + rng.normal(size=N))
        pm.Normal("group_means", a, 0.5, observed=truth + rng.normal(0.0, 0.5, 12))
    return model, 30


def per_row_latent():
    """Errors in variables: a latent true covariate per row (a free variable with n entries,
    sliced with the rows; once 'Vectorized input 1 has an incompatible shape')."""
    rng = np.random.default_rng(6)
    truth = rng.normal(size=60)
    with pm.Model() as model:
        x_true = pm.Normal("x_true", 0.0, 1.0, shape=60)
        b = pm.Normal("b", 0.0, 5.0)
        pm.Normal("x_obs", x_true, 0.5, observed=truth + rng.normal(0.0, 0.5, 60))
        pm.Normal("y", b * x_true, 0.5, observed=2.0 * truth + rng.normal(0.0, 0.5, 60))
    return model, 10


def pm_minibatch_with_total_size():
    """PyMC's own big-data idiom (pm.Minibatch + total_size, as for ADVI): the step reads the full
    arrays and the batch size from the Minibatch, so SGLD() needs no batch_size. NUTS samples the
    full-data twin (on the Minibatch model its logp would be random at every evaluation)."""
    models = []
    for x, y, total_size in ((*pm.Minibatch(X, Y, batch_size=30), N), (X, Y, None)):
        with pm.Model() as model:
            a = pm.Normal("a", 0.0, 10.0)
            b = pm.Normal("b", 0.0, 10.0)
            sigma = pm.HalfNormal("sigma", 2.0)
            pm.Normal("y", a + b * x, sigma, observed=y, total_size=total_size)
        models.append(model)
    return models[0], FROM_MINIBATCH, models[1]


def multivariate_rows():
    """Rows that are 2-vectors: MvNormal observed with an LKJ Cholesky covariance (one row = one draw)."""
    rng = np.random.default_rng(7)
    rows = rng.multivariate_normal([1.0, -1.0], [[1.0, 0.6], [0.6, 2.0]], size=N)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0, shape=2)
        chol, _, _ = pm.LKJCholeskyCov("chol", n=2, eta=2.0, sd_dist=pm.HalfNormal.dist(3.0), compute_corr=True)
        pm.MvNormal("y", mu, chol=chol, observed=rows)
    return model, 30


def censored_regression():
    """pm.Censored: a normal regression whose responses are clipped at 2.5."""
    rng = np.random.default_rng(8)
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 10.0)
        b = pm.Normal("b", 0.0, 10.0)
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Censored("y", pm.Normal.dist(a + b * X, sigma), lower=None, upper=2.5,
                    observed=np.minimum(1.0 + 2.0 * X + rng.normal(size=N), 2.5))
    return model, 30


def multinomial_logistic(reference_logit=lambda column: pt.zeros_like(column)):
    """Categorical rows through a softmax of a linear predictor (3 classes, the first class's logit
    0 built from the data so that it is sliced with the rows)."""
    rng = np.random.default_rng(9)
    logits = np.column_stack([np.zeros(N), 0.5 + X, -0.5 - 1.5 * X])
    classes = np.array([rng.choice(3, p=np.exp(z) / np.exp(z).sum()) for z in logits])
    with pm.Model() as model:
        alpha = pm.Normal("alpha", 0.0, 5.0, shape=2)
        beta = pm.Normal("beta", 0.0, 5.0, shape=2)
        eta = pt.concatenate([reference_logit(X[:, None]), alpha + beta * X[:, None]], axis=1)
        pm.Categorical("y", p=pm.math.softmax(eta, axis=1), observed=classes)
    return model, 30


def negative_binomial_counts():
    """Overdispersed counts: NegativeBinomial with a log link and unknown dispersion."""
    rng = np.random.default_rng(10)
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 5.0)
        b = pm.Normal("b", 0.0, 5.0)
        alpha = pm.Gamma("alpha", 2.0, 0.5)
        pm.NegativeBinomial("y", mu=pm.math.exp(a + 0.5 * b * X), alpha=alpha,
                            observed=rng.negative_binomial(3, 3 / (3 + np.exp(1.0 + 0.4 * X))))
    return model, 30


def custom_dist_likelihood():
    """pm.CustomDist with a user logp (a Gumbel written by hand) and a HalfFlat scale prior."""
    rng = np.random.default_rng(11)

    def gumbel_logp(value, mu, beta):
        z = (value - mu) / beta
        return -z - pt.exp(-z) - pt.log(beta)

    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 10.0)
        beta = pm.HalfFlat("beta")
        pm.CustomDist("y", mu, beta, logp=gumbel_logp, observed=rng.gumbel(1.0, 2.0, N))
    return model, 30


def dirichlet_simplex_counts():
    """A Dirichlet prior (simplex transform) on category probabilities with Categorical rows."""
    rng = np.random.default_rng(12)
    with pm.Model() as model:
        p = pm.Dirichlet("p", a=np.ones(4))
        pm.Categorical("y", p=p, observed=rng.choice(4, size=N, p=[0.1, 0.2, 0.3, 0.4]))
    return model, 30


def global_potential():
    """A pm.Potential that is not per row (a soft constraint on a slope) next to a minibatched likelihood."""
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 10.0)
        b = pm.Normal("b", 0.0, 10.0)
        pm.Potential("soft_slope", -0.5 * ((b - 1.5) / 0.2) ** 2)
        pm.Normal("y", a + b * X, 1.0, observed=Y)
    return model, 30


def deterministic_and_math():
    """Parameters through pt.exp and a Deterministic, a Laplace likelihood."""
    with pm.Model() as model:
        log_scale = pm.Normal("log_scale", 0.0, 1.0)
        a = pm.Normal("a", 0.0, 10.0)
        scale = pm.Deterministic("scale", pt.exp(log_scale))
        pm.Laplace("y", a + 2.0 * X, scale, observed=Y)
    return model, 30


def logistic_glm():
    """Bernoulli with a logit link on two covariates."""
    X2 = RNG.normal(size=(N, 2))
    outcomes = RNG.random(N) < 1.0 / (1.0 + np.exp(-(0.3 + X2 @ [1.0, -0.5])))
    with pm.Model() as model:
        beta = pm.Normal("beta", 0.0, 5.0, shape=2)
        alpha = pm.Normal("alpha", 0.0, 5.0)
        pm.Bernoulli("y", logit_p=alpha + X2 @ beta, observed=outcomes)
    return model, 30


def poisson_glm():
    """Poisson counts with a log link."""
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 3.0)
        b = pm.Normal("b", 0.0, 3.0)
        pm.Poisson("y", pt.exp(a + b * X), observed=RNG.poisson(np.exp(0.5 + 0.3 * X)))
    return model, 30


def student_t_regression():
    """Heavy-tailed likelihood with unknown degrees of freedom."""
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 10.0)
        b = pm.Normal("b", 0.0, 10.0)
        nu = pm.Gamma("nu", 2.0, 0.1)
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.StudentT("y", nu=nu, mu=a + b * X, sigma=sigma, observed=1.0 + 2.0 * X + RNG.standard_t(4, N))
    return model, 30


def centred_hierarchical_with_group_index():
    """Group intercepts indexed by a numpy group vector (subsampled with the rows), centred."""
    groups = RNG.integers(6, size=N)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfNormal("tau", 2.0)
        alpha = pm.Normal("alpha", mu, tau, shape=6)
        pm.Normal("y", alpha[groups], 1.0, observed=RNG.normal(1.0, 0.7, 6)[groups] + RNG.normal(size=N))
    return model, 30


def bounded_rate_binomial():
    """A Beta-distributed rate near a bound with binomial rows (logit-transformed)."""
    with pm.Model() as model:
        p = pm.Beta("p", 1.0, 1.0)
        pm.Binomial("k", n=20, p=p, observed=RNG.binomial(20, 0.04, N))
    return model, 30


def zero_inflated_counts():
    """ZeroInflatedPoisson: a mixture likelihood per row, two bounded parameters."""
    counts = np.where(RNG.random(N) < 0.3, 0, RNG.poisson(2.5, N))
    with pm.Model() as model:
        psi = pm.Beta("psi", 1.0, 1.0)
        rate = pm.Gamma("rate", 2.0, 1.0)
        pm.ZeroInflatedPoisson("y", psi=psi, mu=rate, observed=counts)
    return model, 30


ZOO = [flat_priors_only, two_dimensional_observed, per_row_known_sigma, pm_data_slice_as_observed, autoregressive,
       random_walk, gaussian_process_marginal, observed_of_different_lengths, global_potential, deterministic_and_math,
       logistic_glm, poisson_glm, student_t_regression, centred_hierarchical_with_group_index, bounded_rate_binomial,
       zero_inflated_counts, group_level_likelihood, per_row_latent, pm_minibatch_with_total_size, multivariate_rows,
       censored_regression, multinomial_logistic, negative_binomial_counts, custom_dist_likelihood,
       dirichlet_simplex_counts]


def unconstrained_columns(idata, model) -> dict[str, np.ndarray]:
    """(chain, draw) arrays of every scalar coordinate of the free variables, log for positive ones."""
    columns = {}
    for rv in model.free_RVs:
        draws = idata.posterior[rv.name].values
        transform = model.rvs_to_transforms.get(rv)
        if transform is not None and type(transform).__name__ == "LogTransform":
            draws = np.log(draws)
        flat = draws.reshape(draws.shape[0], draws.shape[1], -1)
        for j in range(flat.shape[-1]):
            columns[f"{rv.name}[{j}]"] = flat[..., j]
    return columns


def sample_quietly(model, step=None, **kwargs):
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return pm.sample(**{"progressbar": False, **kwargs}, compute_convergence_checks=False, step=step)


def assert_matches_nuts(model, step, reference_model=None, **sample_kwargs) -> None:
    """``reference_model``: the model NUTS samples (default ``model``), e.g. a pm.Minibatch model's full-data twin."""
    nuts = sample_quietly(reference_model or model, draws=1000, tune=1000, chains=4, cores=1, random_seed=1,
                          target_accept=0.9)
    sampled = sample_quietly(model, step, draws=1000, tune=500, chains=2, cores=1, random_seed=2, **sample_kwargs)
    assert not any(sampled.sample_stats[name].values.any() for name in sampled.sample_stats if "diverging" in name)
    reference = unconstrained_columns(nuts, model)
    for label, draws in unconstrained_columns(sampled, model).items():
        mean, se = mean_and_se(draws)
        ref_mean, ref_se = mean_and_se(reference[label])
        assert abs(mean - ref_mean) <= Z * np.hypot(se, ref_se), (label, mean, ref_mean, se, ref_se)
        var, var_se = cov_and_se(draws, draws)
        ref_var, ref_var_se = cov_and_se(reference[label], reference[label])
        assert abs(var - ref_var) <= Z * np.hypot(var_se, ref_var_se) + VARIANCE_BIAS * ref_var, (
            label, var, ref_var, var_se, ref_var_se)


# The zoo's second half runs from test_model_zoo_second_half.py, so that pytest-xdist's
# --dist loadfile gives it to the other worker (the zoo is the suite's longest file).
FIRST_HALF = ZOO[:13]


@pytest.mark.usefixtures("minibatches_kept")
@pytest.mark.parametrize("build", FIRST_HALF, ids=[build.__name__ for build in FIRST_HALF])
def test_sgld_on_defaults_matches_nuts(build):
    model, batch_size, *reference_model = build()
    assert_matches_nuts(model, pymc_sgd.SGLD(batch_size=batch_size, model=model), *reference_model)


@pytest.mark.parametrize("gradient_estimator", ["auto", "control_variate", "svrg"])
def test_compound_step_with_another_sampler_matches_nuts(gradient_estimator):
    """step=[SGLD(vars=[a, b]), pm.Slice([sigma])]: SGLD samples the regression coefficients from
    their conditional posterior given the other block's current sigma (PyMC's compound step).
    With a control variate its full-data gradient at the centre must follow sigma (a cached one
    biases every update); "auto" centres here too. SVRG's centre and full-data gradient restart at every
    draw for the same reason."""
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 10.0)
        b = pm.Normal("b", 0.0, 10.0)
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Normal("y", a + b * X, sigma, observed=Y)
    step = pymc_sgd.SGLD([a, b], batch_size=30, gradient_estimator=gradient_estimator, model=model)
    assert_matches_nuts(model, [step, pm.Slice([sigma], model=model)])
    assert step.gradient_estimator.active or gradient_estimator == "svrg"


def test_every_chain_of_a_compound_step_tunes():
    """pm.sample sets ``tune`` on a compound step, not on its methods: each chain's reset_tuning must turn SGLD's
    tuning back on, or the second chain samples with no tuning draws (no metric refit, no settling check: it
    warned "tune=100 leaves too few tuning draws ... ask for tune >= 41")."""
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 10.0)
        b = pm.Normal("b", 0.0, 10.0)
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Normal("y", a + b * X, sigma, observed=Y)
    step = pymc_sgd.SGLD([a, b], batch_size=30, model=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        sample_quietly(model, [step, pm.Slice([sigma], model=model)], draws=10, tune=100, chains=2, cores=1,
                       random_seed=1)
    assert not [w for w in caught if "too few tuning draws" in str(w.message)], [str(w.message) for w in caught]
    assert len(step._tuning_draws) == 100  # the second chain's


def test_discrete_variables_go_to_their_own_step():
    """A Bernoulli latent sampled by BinaryGibbsMetropolis, the continuous rest by SGLD, free
    random variables given as vars (not value variables: SGLD([p, mu]) with p's value logit-transformed);
    NUTS's compound run is the reference for p and mu, and both chains' k must agree in mean
    (4.5 SE)."""
    with pm.Model() as model:
        p = pm.Beta("p", 2.0, 2.0)
        mu = pm.Normal("mu", 0.0, 5.0)
        k = pm.Bernoulli("k", p)
        pm.Normal("obs", mu + k, 1.0, observed=RNG.normal(1.5, 1.0, 200))
    nuts = sample_quietly(model, draws=2000, tune=1000, chains=4, cores=1, random_seed=1)
    mixed = sample_quietly(model, [pymc_sgd.SGLD([p, mu], batch_size=20, model=model),
                                   pm.BinaryGibbsMetropolis([k], model=model)],
                           draws=1000, tune=500, chains=2, cores=1, random_seed=2)
    for name in ("mu", "k"):
        mean, se = mean_and_se(mixed.posterior[name].values.astype(float))
        ref_mean, ref_se = mean_and_se(nuts.posterior[name].values.astype(float))
        assert abs(mean - ref_mean) <= Z * np.hypot(se, ref_se) + 1e-9, (name, mean, ref_mean)
    logit = [np.log(idata.posterior["p"].values / (1.0 - idata.posterior["p"].values)) for idata in (mixed, nuts)]
    (mean, se), (ref_mean, ref_se) = mean_and_se(logit[0]), mean_and_se(logit[1])
    assert abs(mean - ref_mean) <= Z * np.hypot(se, ref_se), (mean, ref_mean)


@pytest.mark.parametrize("build", [autoregressive, random_walk, gaussian_process_marginal],
                         ids=["AR", "random_walk", "MvNormal_across_rows"])
def test_minibatch_refusal_names_the_fix_that_works(build):
    """Asking to minibatch a model that cannot be raises a ModelSpecificationError that says
    batch_size=None; test_sgld_on_defaults_matches_nuts runs that advice on the same models."""
    model, _ = build()
    with pytest.raises(ModelSpecificationError, match=r"Use batch_size=None"):
        pymc_sgd.SGLD(batch_size=20, model=model)


def test_a_fixed_size_tensor_in_the_likelihood_is_refused_with_advice_that_works():
    """pt.zeros((n, 1)) in the likelihood has n rows but is not data, so a batch cannot slice it;
    the refusal names the fix (build it from the data), which is the zoo's multinomial_logistic."""
    model, _ = multinomial_logistic(reference_logit=lambda column: pt.zeros((N, 1)))
    with pytest.raises(ModelSpecificationError, match=r"subset of rows.*pt.zeros_like\(x\)"):
        pymc_sgd.SGLD(batch_size=30, model=model)
    with pm.Model() as fixed_length:  # a mean of fixed length n: pytensor's SpecifyShape fails on a batch
        b = pm.Normal("b", 0.0, 5.0)
        pm.Normal("y", pt.zeros((N,)) + b * X, 1.0, observed=Y)
    with pytest.raises(ModelSpecificationError, match=r"subset of rows.*pt.zeros_like\(x\)"):
        pymc_sgd.SGLD(batch_size=30, model=fixed_length)
    with pm.Model() as from_the_data:  # the advice
        b = pm.Normal("b", 0.0, 5.0)
        pm.Normal("y", pt.zeros_like(X) + b * X, 1.0, observed=Y)
    assert pymc_sgd.SGLD(batch_size=30, model=from_the_data).batch_size == 30


def _posterior_mean(model, step) -> float:
    idata = sample_quietly(model, step, draws=200, tune=100, chains=1, random_seed=3)
    return float(idata.posterior["mu"].mean())


def test_data_set_by_pm_set_data_is_never_stale():
    """pm.set_data to data with another mean (same length, then a new length): new and existing steps
    sample the new data (the batch rescaled by the new n / B); fewer rows than the batch size are
    refused with advice that works. Posterior SD 1 / sqrt(n) <= 0.05; 200 draws put the mean within
    0.05 of the data mean (>15 SE of the 200-draw mean would be needed to exceed it), while stale
    data is 4 away (for n = 30, SD 0.18: within 0.3 is > 15 SE of a 200-draw mean too)."""
    first, second, longer = (RNG.normal(mean, 1.0, size) for mean, size in ((0.0, 400), (4.0, 400), (-4.0, 700)))
    with pm.Model() as model:
        data = pm.Data("x", first)
        mu = pm.Normal("mu", 0.0, 10.0)
        pm.Normal("obs", mu, 1.0, observed=data)
    step = pymc_sgd.SGLD(batch_size=40, model=model)
    assert abs(_posterior_mean(model, step) - first.mean()) < 0.05
    with model:
        pm.set_data({"x": second})
    assert abs(_posterior_mean(model, pymc_sgd.SGLD(batch_size=40, model=model)) - second.mean()) < 0.05
    assert abs(_posterior_mean(model, step) - second.mean()) < 0.05  # the existing step, same length
    with model:
        pm.set_data({"x": longer})
    assert abs(_posterior_mean(model, step) - longer.mean()) < 0.05  # the existing step, new length
    assert abs(_posterior_mean(model, pymc_sgd.SGLD(batch_size=40, model=model)) - longer.mean()) < 0.05
    with model:
        pm.set_data({"x": longer[:30]})
    with pytest.raises(ValueError, match=r"n = 30 rows .*fewer than .*batch_size = 40.*batch_size=<= 30"):
        _posterior_mean(model, step)
    assert abs(_posterior_mean(model, pymc_sgd.SGLD(batch_size=30, model=model)) - longer[:30].mean()) < 0.3


def test_warnings_from_worker_processes_reach_the_user(caplog):
    """Under cores=2 a chain's RuntimeWarnings are lost in its worker process; they must arrive
    in the parent as PyMC log records (the draw's "warning" stat, as NUTS's do): here the
    too-short-tuning warning of each of the two chains."""
    x = RNG.normal(1.0, 1.0, 500)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 10.0)
        pm.Normal("y", mu, 1.0, observed=x)
    with caplog.at_level("WARNING", logger="pymc"):
        sample_quietly(model, pymc_sgd.SGLD(batch_size=50, model=model), draws=20, tune=10, chains=2, cores=2,
                       random_seed=1)
    relayed = [record for record in caplog.records if "leaves too few tuning draws" in record.getMessage()]
    assert len(relayed) == 2, [record.getMessage() for record in caplog.records]


@pytest.mark.parametrize("name", ["SGLD", "SGHMC", "UnderdampedLangevin"])
def test_energy_and_lp_stats_serve_arviz(name):
    """PyMC/ArviZ parity: ``energy`` (U_hat, plus the kinetic energy of momentum samplers) and
    ``lp`` = -U_hat per draw, so az.bfmi / az.plot_energy work; lp must be the log density of
    the model at the draw up to the minibatch's error: U_hat's SD is sqrt(n^2 / B Var_i log p(x_i))
    = sqrt(300^2 / 30 * 0.5) = 39 for unit-variance residuals (Var of r^2 / 2 is 1/2), so 200 is
    5 SDs, while a missing or mis-signed lp is off by 2 |log p| ~ 900."""
    model, batch_size = global_potential()
    idata = sample_quietly(model, getattr(pymc_sgd, name)(batch_size=batch_size, model=model), draws=100, tune=60,
                           chains=2, cores=1, random_seed=4)
    stats = idata.sample_stats
    assert np.all(np.isfinite(az.bfmi(idata)))
    logp = model.compile_logp()
    for chain, draw in ((0, 10), (1, 99)):
        point = {"a": idata.posterior["a"].values[chain, draw], "b": idata.posterior["b"].values[chain, draw]}
        assert abs(float(stats["lp"].values[chain, draw]) - float(logp(point))) < 200.0


def test_progress_bar_shows_divergences_and_step_size():
    """The progress bar's columns, as NUTS's: divergences (1 once the chain halted) and the step size,
    and pm.sample(progressbar=True) runs with them, alone and in a compound step."""
    model, batch_size = global_potential()
    step = pymc_sgd.SGLD(batch_size=batch_size, model=model)
    (update,) = step._make_progressbar_update_functions()
    assert update({"diverging": True, "step_size": 0.01234}) == {"divergences": 1, "step_size": "0.0123",
                                                                  "failing": True}
    with model:
        slice_b = pm.Slice([model["b"]])
    sample_quietly(model, [pymc_sgd.SGLD([model["a"]], batch_size=batch_size, model=model), slice_b], draws=10,
                   tune=10, chains=1, progressbar=True)
