"""Reference models with exact answers.

Seed 000 ("SGD distribution versus posterior", seed 000, docs/pages/sources.md):

* the regular normal model p(x | a, sigma) = N(x | a, sigma^2) with flat priors, data from the
  legacy generator np.random.seed(42), n = 200, and its exact posterior on the seed's grid;
* the singular mixture p(x | a, b) = (1 - a) N(x | 0, 1) + a N(x | b, 1), data from
  np.random.seed(50), n = 200, its exact posterior on the seed's grid and the seed's
  gradient-descent "MLE".

Further test targets, each returned with its exact posterior: conjugate Gaussian models
(normal mean, linear regression), a hierarchical normal model, centred or non-centred (exact by
quadrature over its group scale), a latent Gaussian random walk with unknown step size (exact by
quadrature over it), a two-component mixture whose posterior is exactly
symmetric under label swap, and a 2-D Gaussian mixture with three well separated modes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
from numba import njit
from scipy import optimize
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from pymc_sgd import theory

SEED000_A_WINDOW = (0.01, 0.99)
"""Seed 000's grid range for the singular model's a, which is also its SGD clip range."""
SEED000_B_WINDOW = (-0.5, 1.0)
"""Seed 000's grid range for the singular model's b."""


def _normalise(log_weights: np.ndarray) -> np.ndarray:
    """exp(log_weights), scaled to sum to 1."""
    weights = np.exp(log_weights - log_weights.max())
    return weights / weights.sum()


def _grid_moments(grids: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, dict[str, float]]:
    """Mean and SD of each named coordinate grid under the normalised grid weights."""
    summary = {}
    for name, grid in grids.items():
        mean = float(np.sum(weights * grid))
        summary[name] = {"mean": mean, "sd": float(np.sqrt(np.sum(weights * (grid - mean) ** 2)))}
    return summary


# --- Seed 000, regular model -------------------------------------------------------------

def seed000_regular_data(n: int = 200) -> np.ndarray:
    """x_1..x_n ~ N(0, 1) from legacy np.random.seed(42), exactly as seed 000 generates them."""
    legacy = np.random.RandomState(42)
    return legacy.normal(0, 1, n)


def seed000_regular_model(x: np.ndarray | None = None) -> pm.Model:
    """a ~ Flat, sigma ~ HalfFlat, x_i ~ N(a, sigma^2); PyMC samples (a, log sigma)."""
    x = seed000_regular_data() if x is None else x
    with pm.Model() as model:
        a = pm.Flat("a")
        sigma = pm.HalfFlat("sigma")
        pm.Normal("x", a, sigma, observed=x)
    return model


def seed000_regular_grid(x: np.ndarray | None = None, size: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a grid, sigma grid, normalised posterior weights[sigma, a]) on seed 000's grid
    [-0.6, 0.6] x [0.5, 1.5], flat prior in (a, sigma)."""
    x = seed000_regular_data() if x is None else x
    a = np.linspace(-0.6, 0.6, size)
    sigma = np.linspace(0.5, 1.5, size)
    A, S = np.meshgrid(a, sigma)
    n, sum_x, sum_x2 = len(x), x.sum(), (x**2).sum()
    log_lik = -n * np.log(S) - (sum_x2 - 2 * A * sum_x + n * A**2) / (2 * S**2)
    return a, sigma, _normalise(log_lik)


def seed000_regular_grid_posterior(x: np.ndarray | None = None, size: int = 200) -> dict[str, dict[str, float]]:
    """Posterior means and SDs of a and sigma from `seed000_regular_grid`."""
    a, sigma, weights = seed000_regular_grid(x, size)
    A, S = np.meshgrid(a, sigma)
    return _grid_moments({"a": A, "sigma": S}, weights)


# --- Seed 000, singular model ------------------------------------------------------------

def seed000_singular_data(n: int = 200) -> np.ndarray:
    """x_i ~ 0.5 N(0, 1) + 0.5 N(0.3, 1), exactly as seed 000 draws them after np.random.seed(50):
    components = choice([0, 1], n, p=[.5, .5]), then normal(loc=0 or 0.3, scale=1). A private
    RandomState(50) leaves numpy's global generator untouched."""
    legacy = np.random.RandomState(50)
    components = legacy.choice([0, 1], size=n, p=[0.5, 0.5])
    return legacy.normal(loc=np.where(components == 0, 0.0, 0.3), scale=1.0)


def seed000_singular_loglik(a: np.ndarray | float, b: np.ndarray | float,
                            x: np.ndarray | None = None) -> np.ndarray:
    """sum_i log[(1 - a) N(x_i | 0, 1) + a N(x_i | b, 1)], elementwise over broadcast a and b.

    The seed adds 1e-15 inside the log; on its window every p(x_i | a, b) exceeds 8e-4, so
    leaving it out changes the sum by less than 3e-10 and keeps it equal to the PyMC model's
    log-likelihood.
    """
    x = seed000_singular_data() if x is None else x
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    loglik = np.zeros(np.broadcast_shapes(a.shape, b.shape))
    for xi in x:  # one data point at a time: memory stays that of one grid
        loglik += np.log((1 - a) * np.exp(-0.5 * xi**2) + a * np.exp(-0.5 * (xi - b) ** 2))
    return loglik - len(x) * 0.5 * np.log(2 * np.pi)


def seed000_singular_model(x: np.ndarray | None = None, a_bounds: tuple[float, float] = SEED000_A_WINDOW,
                           b_bounds: tuple[float, float] = SEED000_B_WINDOW) -> pm.Model:
    """a ~ U(a_bounds), b ~ U(b_bounds), x_i ~ (1 - a) N(0, 1) + a N(b, 1) (pm.NormalMixture).

    The defaults make the posterior exactly the one `seed000_singular_grid` tabulates (a flat
    prior on the seed's window). The seed's own statement, a in [0, 1] and a flat prior on b
    in R, has an improper posterior: at a = 0 the likelihood does not depend on b, so as
    ``|b| -> infinity`` the b-marginal tends to ``prod_i N(x_i | 0, 1) * int (1 - a)^n da > 0``
    (about 0.5% of its peak with the seed's data) and does not integrate; pm.Flat on b would
    let a sampler drift off to infinity. Truncating b to the grid window is therefore part of
    the model. a_bounds = (0, 1) gives the seed's stated prior on a (posterior mean of a
    0.3396 instead of 0.3437; `seed000_singular_grid` accepts the same bounds).
    """
    x = seed000_singular_data() if x is None else x
    with pm.Model() as model:
        a = pm.Uniform("a", *a_bounds)
        b = pm.Uniform("b", *b_bounds)
        pm.NormalMixture("x", w=pm.math.stack([1 - a, a]), mu=pm.math.stack([0.0, b]), sigma=1.0,
                         observed=x)
    return model


def seed000_singular_grid(x: np.ndarray | None = None, size: int = 200,
                          a_bounds: tuple[float, float] = SEED000_A_WINDOW,
                          b_bounds: tuple[float, float] = SEED000_B_WINDOW,
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a grid, b grid, normalised posterior weights[b, a]) on seed 000's size x size grid.

    weights is proportional to prod_i p(x_i | a, b) at the nodes of linspace(a_bounds) x
    linspace(b_bounds), i.e. the posterior of `seed000_singular_model` with the same bounds;
    it sums to 1 (the seed divides by da db instead, a density with the same normalised
    shape).
    """
    a = np.linspace(*a_bounds, size)
    b = np.linspace(*b_bounds, size)
    A, B = np.meshgrid(a, b)
    return a, b, _normalise(seed000_singular_loglik(A, B, x))


def seed000_singular_grid_posterior(x: np.ndarray | None = None, size: int = 200,
                                    a_bounds: tuple[float, float] = SEED000_A_WINDOW,
                                    b_bounds: tuple[float, float] = SEED000_B_WINDOW,
                                    ) -> dict[str, dict[str, float]]:
    """Posterior means and SDs of a and b from `seed000_singular_grid` (seed 000 prints the
    means, a = 0.3423 and b = 0.2384).

    These are equal-weight sums over the grid nodes, as in the seed. The posterior density
    is large at the edge a = 0.01, where this rule over-weights the boundary nodes, so at
    size = 200 it is off the continuous posterior mean of the model (a = 0.3437,
    b = 0.2379) by -1.4e-3 in a; the error falls like 1 / size.
    """
    a, b, weights = seed000_singular_grid(x, size, a_bounds, b_bounds)
    A, B = np.meshgrid(a, b)
    return _grid_moments({"a": A, "b": B}, weights)


@njit(cache=True)
def _seed000_gradient_descent(x: np.ndarray, a: float, b: float, learning_rate: float, steps: int,
                              a_min: float, a_max: float) -> tuple[float, float]:
    phi0 = np.exp(-0.5 * x**2)  # the common 1/sqrt(2 pi) cancels in both gradients
    for _ in range(steps):
        phi_b = np.exp(-0.5 * (x - b) ** 2)
        px = (1 - a) * phi0 + a * phi_b
        grad_a = np.mean((phi0 - phi_b) / px)
        grad_b = np.mean(-a * (x - b) * phi_b / px)
        a = min(max(a - learning_rate * grad_a, a_min), a_max)
        b -= learning_rate * grad_b
    return a, b


def seed000_singular_mle(x: np.ndarray | None = None, learning_rate: float = 1e-3,
                         steps: int = 100_000) -> tuple[float, float]:
    """Seed 000's "MLE" (a*, b*) = (0.4852, 0.1440): its own gradient descent, step for step.

    Full-batch GD on the average loss L(a, b) = -(1/n) sum_i log p(x_i | a, b) from
    (a, b) = (0.5, 0.3), w <- w - learning_rate * grad L, a clipped to [0.01, 0.99] after
    each step (in docs/pages/design.md's units, a step h = learning_rate / n on U = n L). The loop is
    the seed's, compiled with numba (0.25 s instead of 2.6 s).

    It is not the maximum-likelihood point, and no optimiser run to convergence reproduces
    it: along the singular ridge a * b ~ mean(x) the log-likelihood is almost flat, and after
    100000 steps GD is still creeping along it (dL/da = -4.6e-4). On the clip window the
    likelihood is maximal at the corner a = 0.99, b = 0.0743 (on [0, 1]: a = 1, b = mean(x)),
    0.028 nats above the seed's point.
    """
    x = seed000_singular_data() if x is None else x
    a, b = _seed000_gradient_descent(np.asarray(x, dtype=float), 0.5, 0.3, learning_rate, steps,
                                     *SEED000_A_WINDOW)
    return float(a), float(b)


# --- Conjugate Gaussian models -----------------------------------------------------------

@dataclass(frozen=True)
class GaussianPosterior:
    """Exact Gaussian posterior of the model variable `name`: its mean (the variable's shape)
    and covariance (a variance for a scalar variable)."""

    name: str
    mean: np.ndarray
    cov: np.ndarray


def conjugate_normal_mean_model(n: int = 100, sigma: float = 1.0, prior_sd: float = 10.0,
                                seed: int = 0) -> tuple[pm.Model, GaussianPosterior]:
    """mu ~ N(0, prior_sd^2), x_i ~ N(mu, sigma^2) with sigma known, and its exact posterior
    (theory.normal_mean_posterior). The data come from the model itself: the true mu is drawn
    from the prior, then the x_i, with np.random.default_rng(seed)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(rng.normal(0.0, prior_sd), sigma, n)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, prior_sd)
        pm.Normal("x", mu, sigma, observed=x)
    mean, var = theory.normal_mean_posterior(x, sigma, 0.0, prior_sd)
    return model, GaussianPosterior("mu", np.array(mean), np.array(var))


@dataclass(frozen=True)
class Moments:
    """Exact posterior means and SDs of named coordinates (unconstrained, in the model's order)."""

    labels: tuple[str, ...]
    mean: np.ndarray
    sd: np.ndarray


def noncentred_hierarchical_model(groups: int = 12, n: int = 1000, sigma: float = 1.0, mu_sd: float = 5.0,
                                  tau_sd: float = 1.0, seed: int = 7,
                                  grid_size: int = 4001) -> tuple[pm.Model, Moments]:
    """y_i ~ N(mu + tau z_{g_i}, sigma^2), z_g ~ N(0, 1), mu ~ N(0, mu_sd^2), tau ~ HalfNormal(tau_sd), sigma
    known, and the exact posterior moments of (mu, log tau, z). Data: group g_i uniform on ``groups``,
    group means drawn from N(1, 0.5^2), with np.random.default_rng(seed).

    Data this informative make the non-centred parameterisation curved (z_g ~ (alpha_g - mu) / tau)
    and its per-example gradient noise vary over the posterior, which is what the model is for.
    Exact answer: ``hierarchical_normal_model``'s.
    """
    rng = np.random.default_rng(seed)
    g = rng.integers(groups, size=n)
    y = rng.normal(1.0, 0.5, groups)[g] + sigma * rng.normal(size=n)
    return hierarchical_normal_model(y, g, groups, "noncentred", sigma, mu_sd, tau_sd, grid_size)


def _mix_over_log_scale(conditional, bounds: tuple[float, float], grid_size: int) -> tuple[float, float, np.ndarray,
                                                                                         np.ndarray]:
    """(mean and SD of u, mean and SD of theta) of a model linear-Gaussian in theta given a log scale u:
    ``conditional(u)`` gives (log p(u | y) up to a constant, E[theta | u, y], Var[theta_j | u, y]). Quadrature
    on ``grid_size`` points over u +- 12 Laplace SDs about the mode of u within ``bounds``; theta's moments mix
    the conditional ones."""
    def log_density(u: float) -> float:
        return conditional(u)[0]

    centre = optimize.minimize_scalar(lambda u: -log_density(u), bounds=bounds, method="bounded").x
    curvature = -(log_density(centre + 1e-3) - 2 * log_density(centre) + log_density(centre - 1e-3)) / 1e-6
    u_grid = centre + np.linspace(-12.0, 12.0, grid_size) / np.sqrt(max(curvature, 1e-2))
    parts = [conditional(u) for u in u_grid]
    weights = _normalise(np.array([part[0] for part in parts]))
    means = np.array([part[1] for part in parts])
    theta_mean = weights @ means
    theta_sd = np.sqrt(weights @ (np.array([part[2] for part in parts]) + means**2) - theta_mean**2)
    u_mean = weights @ u_grid
    return float(u_mean), float(np.sqrt(weights @ (u_grid - u_mean) ** 2)), theta_mean, theta_sd


def hierarchical_normal_model(y: np.ndarray, g: np.ndarray, groups: int, parameterisation: str = "centred",
                              sigma: float = 1.0, mu_sd: float = 5.0, tau_sd: float = 1.0,
                              grid_size: int = 4001) -> tuple[pm.Model, Moments]:
    """Varying intercepts y_i ~ N(a_{g_i}, sigma^2) (sigma known), a_g ~ N(mu, tau^2), mu ~ N(0, mu_sd^2),
    tau ~ HalfNormal(tau_sd), written ``"centred"`` (free a) or ``"noncentred"`` (a = mu + tau z, free z),
    and the exact posterior moments of its free variables in PyMC's unconstrained space: (mu, log tau, a)
    or (mu, log tau, z).

    Exact answer: given tau the model is linear-Gaussian in theta = (mu, a) or (mu, z), so theta | tau, y ~
    N(P^-1 b, P^-1), with P the prior precision plus the data's (counts / sigma^2 on the group
    coordinates) and b the data's A^T y / sigma^2; then log p(y | tau) = b^T P^-1 b / 2 - log det P / 2
    (- G log tau for the centred prior's normaliser) + const. The posterior of u = log tau is that times the
    HalfNormal prior and the Jacobian tau, on a grid of ``grid_size`` points over u +- 12 (Laplace) SDs;
    theta's moments mix the conditional ones over it.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.repeat(np.arange(3), [2, 5, 40]); y = np.linspace(0, 2, len(g))
    >>> model, exact = hierarchical_normal_model(y, g, 3, "centred")
    >>> exact.labels[:3]
    ('mu', 'tau_log__', 'a[0]')
    """
    if parameterisation not in ("centred", "noncentred"):
        raise ValueError(f"parameterisation={parameterisation!r}: use 'centred' or 'noncentred'.")
    centred = parameterisation == "centred"
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, mu_sd)
        tau = pm.HalfNormal("tau", tau_sd)
        if centred:
            mean = pm.Normal("a", mu, tau, shape=groups)[g]
        else:
            mean = mu + tau * pm.Normal("z", 0.0, 1.0, shape=groups)[g]
        pm.Normal("y", mean, sigma, observed=y)
    counts = np.bincount(g, minlength=groups).astype(float)
    sums = np.bincount(g, weights=y, minlength=groups)

    ybar = sums / np.maximum(counts, 1.0)

    def conditional(u: float) -> tuple[float, np.ndarray, np.ndarray]:
        """(log p(y | tau) + log prior of u up to a constant, E[theta | tau, y], Var[theta_j | tau, y])."""
        tau = np.exp(u)
        informed = counts > 0
        s2 = tau**2 + sigma**2 / counts[informed]  # group means: ybar_g | mu, tau ~ N(mu, s2_g)
        v_mu = 1.0 / (1.0 / mu_sd**2 + np.sum(1.0 / s2))
        m_mu = v_mu * np.sum(ybar[informed] / s2)
        log_density = (-0.5 * np.sum(np.log(s2)) - 0.5 * np.sum(ybar[informed] ** 2 / s2)
                       + 0.5 * m_mu**2 / v_mu + 0.5 * np.log(v_mu) - tau**2 / (2.0 * tau_sd**2) + u)
        precision = counts / sigma**2 + 1.0 / tau**2  # of a_g given mu, tau, y
        weight = counts / sigma**2 / precision  # a_g | mu = weight ybar_g + (1 - weight) mu
        if centred:
            effect_mean = weight * ybar + (1.0 - weight) * m_mu
            effect_var = 1.0 / precision + (1.0 - weight) ** 2 * v_mu
        else:  # z_g = (a_g - mu) / tau = (weight (ybar_g - mu) + noise) / tau
            effect_mean = weight * (ybar - m_mu) / tau
            effect_var = (1.0 / precision + weight**2 * v_mu) / tau**2
        return log_density, np.concatenate([[m_mu], effect_mean]), np.concatenate([[v_mu], effect_var])

    u_mean, u_sd, theta_mean, theta_sd = _mix_over_log_scale(conditional, (-10.0, 5.0), grid_size)
    labels = ("mu", "tau_log__", *(f"{'a' if centred else 'z'}[{j}]" for j in range(groups)))
    return model, Moments(labels, np.concatenate([[theta_mean[0], u_mean], theta_mean[1:]]),
                          np.concatenate([[theta_sd[0], u_sd], theta_sd[1:]]))


def random_walk_model(y: np.ndarray, obs_sd: float = 0.5, sigma_sd: float = 0.5, init_sd: float = 2.0,
                      grid_size: int = 401) -> tuple[pm.Model, Moments]:
    """A latent Gaussian random walk with unknown step size, observed with noise, written as PyMC's
    ``GaussianRandomWalk``: x_0 ~ N(0, init_sd^2), x_t = x_{t-1} + sigma eps_t, y_t ~ N(x_t, obs_sd^2),
    sigma ~ HalfNormal(sigma_sd); and the exact posterior moments of (log sigma, x_0 .. x_{T-1}) in PyMC's
    unconstrained space.

    Its centred form (free x) ties the walk's roughness to sigma, a funnel in time: the sigma that the increments
    imply given x is far narrower than sigma's posterior (on 300 steps, SD 0.04 against 0.23 in log sigma).

    Exact answer: given sigma, x's prior precision is Q = D^T D with D's first row e_0 / init_sd and the others
    (e_t - e_{t-1}) / sigma, so x | sigma, y ~ N(P^-1 b, P^-1) with P = Q + I / obs_sd^2, b = y / obs_sd^2, and
    log p(y | sigma) = b^T P^-1 b / 2 - log det P / 2 - (T - 1) log sigma + const. The posterior of
    u = log sigma is that times the HalfNormal prior and the Jacobian sigma, on a grid of ``grid_size`` points
    over u +- 12 (Laplace) SDs; x's moments mix the conditional ones over it.

    Examples
    --------
    >>> import numpy as np
    >>> model, exact = random_walk_model(np.linspace(0.0, 1.0, 20))
    >>> exact.labels[:2], len(exact.mean)
    (('sigma_log__', 'x[0]'), 21)
    """
    y = np.asarray(y, dtype=float)
    T = len(y)
    with pm.Model() as model:
        sigma = pm.HalfNormal("sigma", sigma_sd)
        x = pm.GaussianRandomWalk("x", sigma=sigma, init_dist=pm.Normal.dist(0.0, init_sd), steps=T - 1)
        pm.Normal("y", x, obs_sd, observed=y)
    differences = np.eye(T) - np.eye(T, k=-1)  # row t: e_t - e_{t-1}; row 0: e_0
    b = y / obs_sd**2

    def conditional(u: float) -> tuple[float, np.ndarray, np.ndarray]:
        """(log p(y | sigma) + log prior of u up to a constant, E[x | sigma, y], Var[x_t | sigma, y])."""
        sigma = np.exp(u)
        scaled = differences / np.concatenate([[init_sd], np.full(T - 1, sigma)])[:, None]
        precision = scaled.T @ scaled + np.eye(T) / obs_sd**2
        factor = np.linalg.cholesky(precision)
        covariance = np.linalg.inv(precision)
        mean = covariance @ b
        log_density = (0.5 * b @ mean - np.sum(np.log(np.diag(factor))) - (T - 1) * u
                       - sigma**2 / (2.0 * sigma_sd**2) + u)
        return log_density, mean, np.diag(covariance)

    u_mean, u_sd, x_mean, x_sd = _mix_over_log_scale(conditional, (-10.0, 3.0), grid_size)
    labels = ("sigma_log__", *(f"x[{t}]" for t in range(T)))
    return model, Moments(labels, np.concatenate([[u_mean], x_mean]), np.concatenate([[u_sd], x_sd]))


def conjugate_linear_regression_model(n: int = 200, d: int = 3, noise_sd: float = 1.0, prior_sd: float = 10.0,
                                      seed: int = 0, as_data: bool = False) -> tuple[pm.Model, GaussianPosterior]:
    """beta ~ N(0, prior_sd^2 I_d), y ~ N(X beta, noise_sd^2 I_n), and its exact posterior
    (theory.linear_regression_posterior).

    X has iid N(0, 1) entries; the true beta is drawn from the prior, then the noise, with
    np.random.default_rng(seed). With as_data=True the design and the response are pm.Data
    ("X" and "y_obs") instead of constants; the observed variable is "y" either way.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(0.0, prior_sd, d) + rng.normal(0.0, noise_sd, n)
    with pm.Model() as model:
        design, response = (pm.Data("X", X), pm.Data("y_obs", y)) if as_data else (X, y)
        beta = pm.Normal("beta", 0.0, prior_sd, shape=d)
        pm.Normal("y", design @ beta, noise_sd, observed=response)
    mean, cov = theory.linear_regression_posterior(X, y, noise_sd, prior_sd)
    return model, GaussianPosterior("beta", mean, cov)


# --- Two-component mixture: label switching ----------------------------------------------

_MIXTURE_MEANS = (-2.0, 3.0)
_MIXTURE_PRIOR_SD = 5.0


@dataclass(frozen=True)
class LabelSwitchingPosterior:
    """Exact posterior of the two means mu of `two_component_mixture_model` on a square grid.

    weights[i, j] is the normalised posterior mass at (mu[0], mu[1]) = (axis[i], axis[j]).
    Prior and likelihood are invariant under the label swap mu[0] <-> mu[1], and the grid is
    built so that weights == weights.T exactly: each labelled mode holds exactly half the
    mass. modes[0] is the mode with mu[0] < mu[1] (refined off the grid by optimisation),
    modes[1] its label swap.
    """

    name: str
    axis: np.ndarray
    weights: np.ndarray
    modes: np.ndarray

    def ordered_fraction(self) -> float:
        """Posterior mass with mu[0] < mu[1] (the diagonal split evenly): 0.5 by symmetry."""
        return float(np.triu(self.weights, 1).sum() + 0.5 * np.trace(self.weights))

    def ordered_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (2,) and covariance (2, 2) of (mu[0], mu[1]) given mu[0] < mu[1]; the mode
        with mu[0] > mu[1] has the swapped ones."""
        weights = np.triu(self.weights, 1)
        weights = weights / weights.sum()
        points = np.stack(np.meshgrid(self.axis, self.axis, indexing="ij"), axis=-1)  # [i, j] -> (mu0, mu1)
        mean = np.einsum("ij,ijk->k", weights, points)
        centred = points - mean
        return mean, np.einsum("ij,ijk,ijl->kl", weights, centred, centred)


def _mixture_log_posterior(mu0: np.ndarray | float, mu1: np.ndarray | float, x: np.ndarray) -> np.ndarray:
    """log p(mu | x) + const for x_i ~ 0.5 N(mu0, 1) + 0.5 N(mu1, 1), mu_k ~ N(0, 5^2).

    Every operation is symmetric in (mu0, mu1) bit for bit (logaddexp and + commute), so the
    value at (u, v) equals the value at (v, u) exactly."""
    mu0, mu1 = np.asarray(mu0, dtype=float), np.asarray(mu1, dtype=float)
    log_post = -0.5 * (mu0**2 + mu1**2) / _MIXTURE_PRIOR_SD**2
    for xi in x:  # one data point at a time: memory stays that of one grid
        log_post = log_post + np.logaddexp(-0.5 * (xi - mu0) ** 2, -0.5 * (xi - mu1) ** 2)
    return log_post


def _ordered_mode(x: np.ndarray, axis: np.ndarray, log_post: np.ndarray) -> np.ndarray:
    """The mode with mu[0] < mu[1], from the best grid node above the diagonal, refined."""
    above = np.where(np.triu(np.ones(log_post.shape, dtype=bool), 1), log_post, -np.inf)
    i, j = np.unravel_index(np.argmax(above), above.shape)
    result = optimize.minimize(lambda mu: -_mixture_log_posterior(mu[0], mu[1], x),
                               x0=[axis[i], axis[j]], method="BFGS", options={"gtol": 1e-10})
    return result.x


def two_component_mixture_model(n: int = 100, seed: int = 0,
                                grid_size: int = 401) -> tuple[pm.Model, LabelSwitchingPosterior]:
    """mu_k ~ N(0, 5^2) (k = 0, 1), x_i ~ 0.5 N(mu_0, 1) + 0.5 N(mu_1, 1) (pm.NormalMixture),
    and its exact posterior on a grid_size^2 grid.

    The data are x_i ~ 0.5 N(-2, 1) + 0.5 N(3, 1) from np.random.default_rng(seed). The
    posterior has two labelled modes, mu[0] < mu[1] and its mirror image, with exactly half
    the mass each (a label-switching test: a sampler that mixes visits both equally). The
    grid spans [min x - 1, max x + 1] on both axes; with n = 100 the posterior SD of each
    mean is about 0.14, about five grid steps at the default size.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(np.where(rng.random(n) < 0.5, *_MIXTURE_MEANS), 1.0)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, _MIXTURE_PRIOR_SD, shape=2)
        pm.NormalMixture("x", w=[0.5, 0.5], mu=mu, sigma=1.0, observed=x)
    axis = np.linspace(x.min() - 1.0, x.max() + 1.0, grid_size)
    log_post = _mixture_log_posterior(axis[:, None], axis[None, :], x)
    mode = _ordered_mode(x, axis, log_post)
    exact = LabelSwitchingPosterior("mu", axis, _normalise(log_post), np.stack([mode, mode[::-1]]))
    return model, exact


# --- Multimodal 2-D target ---------------------------------------------------------------

@dataclass(frozen=True)
class GaussianMixture:
    """The exact target sum_k weights[k] N(means[k], covs[k]) of the model variable `name`."""

    name: str
    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """sum_k w_k m_k."""
        return self.weights @ self.means

    @property
    def cov(self) -> np.ndarray:
        """sum_k w_k (C_k + m_k m_k^T) - mean mean^T."""
        second_moment = np.einsum("k,kij->ij", self.weights,
                                  self.covs + np.einsum("ki,kj->kij", self.means, self.means))
        return second_moment - np.outer(self.mean, self.mean)

    def _weighted_component_logpdfs(self, points: np.ndarray) -> np.ndarray:
        """(m, K): log w_k + log N(point | m_k, C_k)."""
        return np.column_stack([np.log(w) + multivariate_normal(m, c).logpdf(points)
                                for w, m, c in zip(self.weights, self.means, self.covs)])

    def logpdf(self, points: np.ndarray) -> np.ndarray:
        """Log density at each row of points (m, d)."""
        return logsumexp(self._weighted_component_logpdfs(np.atleast_2d(points)), axis=1)

    def responsibilities(self, points: np.ndarray) -> np.ndarray:
        """(m, K): P(component k | point). Their expectation under the target is exactly
        `weights`, so averaging them over draws estimates the mode weights without bias
        (a smoother statistic than counting draws by nearest mode)."""
        log_parts = self._weighted_component_logpdfs(np.atleast_2d(points))
        return np.exp(log_parts - logsumexp(log_parts, axis=1, keepdims=True))


_MULTIMODAL_2D = GaussianMixture(
    name="x",
    weights=np.array([0.5, 0.3, 0.2]),
    means=np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 7.0]]),
    covs=np.array([[[1.0, 0.6], [0.6, 1.0]], [[1.0, -0.3], [-0.3, 0.5]], [[0.6, 0.0], [0.0, 0.6]]]),
)


def multimodal_2d_target() -> tuple[pm.Model, GaussianMixture]:
    """x ~ 0.5 N((-4, 0), C_0) + 0.3 N((4, 0), C_1) + 0.2 N((0, 7), C_2) as an observed-free
    PyMC model (pm.Mixture of pm.MvNormal components), and the exact mixture.

    The modes are 8 apart with unit-scale covariances (correlation +0.6, -0.42 and 0): on
    the lowest path between any two modes the log density falls 7.2 to 7.9 below them, so
    local samplers rarely cross and tempering or replica exchange is needed to get the
    weights right. The model has no data: gradients are exact (full batch).
    """
    target = _MULTIMODAL_2D
    with pm.Model() as model:
        pm.Mixture(target.name, w=target.weights,
                   comp_dists=[pm.MvNormal.dist(mu=m, cov=c) for m, c in zip(target.means, target.covs)])
    return model, target
