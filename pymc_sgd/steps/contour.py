"""Contour SGLD as a PyMC step (Deng, Lin & Liang 2020), and the importance resampling its draws need."""

from __future__ import annotations

from typing import Any

import arviz as az
import numpy as np

from .. import warmup
from ..kernels import contour
from ..kernels.estimator import per_example_loglik
from ..warmup.geometry import full_potential_and_grad
from ..warmup.tuning import curvature_range
from .sgld import SGLD
from .validation import require_int, require_positive

ENERGY_SPAN = 50.0  # default width of the energy axis above the mode, plus 3 d


class ContourSGLD(SGLD):
    r"""Contour stochastic gradient Langevin dynamics: SGLD on an adaptively flattened energy landscape.

    .. math::
        w \leftarrow w - h \Big[1 + \zeta T \frac{\log\theta_J - \log\theta_{J-1}}{\Delta u}\Big] M \nabla\hat U(w)
        + \sqrt{2 h T} M^{1/2}\xi,\qquad
        \theta \leftarrow \theta + \omega_k \theta_J^\zeta (e_J - \theta)

    (Deng, Lin & Liang 2020, NeurIPS, Alg. 1; ``kernels.contour``), J = J(w) the partition of the energy axis
    [u_min, u_min + m du) that U_hat(w) falls in and theta the learnt mass of each partition. The chain
    samples exp(-U/T - zeta Psi(U)), Psi the piecewise-linear interpolation of log theta in energy: flat
    across the energy levels it has learnt, so it crosses barriers that trap SGLD. Posterior expectations
    weight each draw by exp(zeta Psi(U(w))) (Deng et al. use theta_J^zeta, which was 3 SE off on a mode's
    weight here; ``kernels.contour``), recorded as the ``importance_weight`` stat. **The posterior group
    holds the flattened chain**: :func:`importance_resample` turns the InferenceData into posterior draws
    (a warning says so at the end of tuning).

    Defaults: the warm-up chooses SGLD's step h and metric M at the mode it finds; u_min = U(mode) and
    m = 100 partitions of width du = (3 d + 50) / 100, covering energies up to 3d + 50 above the mode
    (``energy_range=(u_min, u_max)`` to set them); the landscape is not flattened below u_min + du or above
    u_max - du, and the metric is not refitted from the (flattened, far too wide) tuning draws; zeta = 0.75
    (Deng et al.); theta starts decreasing
    linearly (as BlackJAX's) and learns with the gain omega_k = 10 / (k^0.75 + 100); the gradient multiplier
    is clipped so that the multiplied step stays stable (``kernels.contour``). The gradient is the
    plain minibatch one (the energy needs U_hat); with minibatches U_hat's noise blurs the partitions, so
    the energy width du should exceed its SD.

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> import pytensor.tensor as pt
    >>> centres = np.array([[-4.0, 0.0], [4.0, 0.0]])  # two modes with weights 0.7 and 0.3, a barrier of 8
    >>> with pm.Model():
    ...     x = pm.Flat("x", shape=2)
    ...     mix = pm.Potential("mix", pm.math.logsumexp(pt.stack([np.log(0.7) - 0.5 * pt.sum((x - centres[0])**2),
    ...                                                     np.log(0.3) - 0.5 * pt.sum((x - centres[1])**2)])))
    ...     idata = pm.sample(draws=4000, tune=500, chains=1, random_seed=1, progressbar=False,
    ...                       step=pymc_sgd.ContourSGLD(batch_size=None))
    >>> posterior = pymc_sgd.importance_resample(idata, random_seed=0)
    >>> share = float((posterior.posterior["x"][..., 0] < 0).mean())  # 0.7 (one chain: +-0.05 or so)
    >>> bool(0.6 < share < 0.8), bool((idata.posterior["x"][..., 0] < 0).mean() < share)  # flattened: nearer 0.5
    (True, True)
    """

    name = "contour_sgld"
    refines_metric = False  # the flattened chain's draws are far wider than the posterior: no metric from them
    checks_settling = False  # its draws hop between the flattened density's modes: windows' means differ by design
    stats_dtypes_shapes = {**SGLD.stats_dtypes_shapes, "importance_weight": (np.float64, []),
                           "energy_partition": (np.int64, [])}

    def __init__(self, vars=None, *, zeta: float = 0.75, partitions: int = 100,
                 energy_range: tuple[float, float] | None = None, **kwargs: Any) -> None:
        self.zeta = require_positive("zeta", zeta, "It flattens the energy landscape (Deng et al. use 0.75).")
        self.partitions = require_int("partitions", partitions, 2, "It is the number m of energy partitions.")
        if energy_range is not None and not energy_range[0] < energy_range[1]:
            raise ValueError(f"energy_range={energy_range!r} must be (u_min, u_max) with u_min < u_max.")
        self.energy_range = energy_range
        if kwargs.get("gradient_estimator", "minibatch") != "minibatch" or "control_variate" in kwargs:
            raise ValueError("ContourSGLD needs U_hat itself for the energy partitions; it uses the plain "
                             "minibatch gradient (gradient_estimator='minibatch').")
        if kwargs.get("correction") is not None:
            raise ValueError("ContourSGLD has no finite-step correction (the flattened target is not SGLD's); "
                             "leave correction=None.")
        step_size = kwargs.get("step_size")
        if step_size is not None and not isinstance(step_size, int | float):
            raise ValueError(f"ContourSGLD takes a constant step_size or None, not {step_size!r}: its kernel runs a "
                             "constant step (the energy-level learning is the adaptive part).")
        if kwargs.get("metropolis"):
            raise ValueError("ContourSGLD has no Metropolis test (its flattened target changes as it learns the "
                             "energy levels); leave metropolis unset.")
        kwargs["gradient_estimator"], kwargs["metropolis"] = "minibatch", False
        super().__init__(vars, **kwargs)

    def _start_chain(self) -> None:
        super()._start_chain()
        m = self.partitions
        self.theta = np.arange(m, 0, -1, dtype=np.float64) / (m * (m + 1) / 2)
        self.updates = 0
        self.u_min, self.du, self.max_multiplier = np.nan, np.nan, 1.0

    def _tune_sampler(self, bulk: warmup.Bulk) -> None:
        super()._tune_sampler(bulk)
        if np.isnan(self.u_min):
            if self.energy_range is not None:
                low, high = self.energy_range
            else:
                # u_min at the mode, not below it: a partition below every state the chain reaches keeps
                # shrinking, and log theta_J - log theta_{J-1} at the lowest one grows until the step blows up
                # (measured). Lower energies (a deeper mode) share partition 0.
                low = full_potential_and_grad(self.estimator, bulk.mode)[0]
                high = low + 3.0 * len(bulk.mode) + ENERGY_SPAN
            self.u_min, self.du = float(low), float(high - low) / self.partitions
            self._warn_if_energy_noise_blurs(bulk.mode)
        # |multiplier| h k_max <= 1.9 keeps a multiplied step stable (SGLD's limit is h k_max < 2)
        self.max_multiplier = max(1.0, 1.9 / (self.schedule[0] * curvature_range(self.metric, bulk.hessian)[1]))

    def _warn_if_energy_noise_blurs(self, w: np.ndarray) -> None:
        """Say so when U_hat's minibatch noise, SD sqrt((n^2 / B) Var_i log p(x_i | w)) at the mode, exceeds the
        partition width: the partition a state is put in is then mostly noise."""
        est = self.estimator
        if self.full_batch:
            return
        rows = np.sort(self.rng.choice(est.n_rows, size=min(est.n_rows, self.noise_rows), replace=False))
        sd = est.n_rows / np.sqrt(self.batch_size) * float(np.std(per_example_loglik(est.kernel, w, rows)))
        if sd > self.du:
            self._warn(f"ContourSGLD: the minibatch estimate of U has SD {sd:.3g} at the mode, above the energy "
                       f"partitions' width {self.du:.3g}, so states are put in partitions mostly at random. Use a "
                       "larger batch_size (or batch_size=None), or a wider energy_range.")

    def stop_tuning(self) -> None:
        self._warn("ContourSGLD: its draws sample the flattened density; weight them by the importance_weight "
                   "stat, e.g. idata = pymc_sgd.importance_resample(idata), before reading them as the posterior.")
        super().stop_tuning()

    def _run_updates(self, w: np.ndarray) -> tuple[np.ndarray, dict]:
        h = self.schedule[0]
        state, info = contour.contour_updates(
            self.batch_model, self.batch, self._metric_preconditioner(), contour.State(w, self.theta, self.updates),
            contour.Params(h, self.temperature, self.divergence_bound, self.u_min, self.du, self.zeta,
                           self.max_multiplier), self.steps_per_draw, self.rng)
        self.updates = state.k
        partition, weight = info.extras
        return state.w, {**self._kernel_stats(info, h), "control_variate": False,
                         "predicted_sd_error": self.predicted_error, "importance_weight": weight,
                         "energy_partition": int(partition), "acceptance_rate": np.nan}


def importance_resample(idata: az.InferenceData, random_seed: int | None = None) -> az.InferenceData:
    """Posterior draws from a weighted chain: each chain's draws resampled (multinomially, as many as it has)
    with probabilities proportional to sample_stats ``importance_weight`` (ContourSGLD). The sample_stats
    keep the original order; duplicates make ArviZ's ESS an overestimate, so read the weighted chain's
    effective size as (sum w)^2 / sum w^2 per chain.

    >>> import numpy as np, arviz as az, pymc_sgd
    >>> idata = az.from_dict(posterior={"x": np.array([[0.0, 1.0, 2.0]])},
    ...                      sample_stats={"importance_weight": np.array([[0.0, 0.0, 1.0]])})
    >>> pymc_sgd.importance_resample(idata, random_seed=0).posterior["x"].values.tolist()
    [[2.0, 2.0, 2.0]]
    """
    if "importance_weight" not in idata.sample_stats:
        raise ValueError("importance_resample needs the importance_weight stat of a weighted sampler (ContourSGLD).")
    rng = np.random.default_rng(random_seed)
    weights = np.asarray(idata.sample_stats["importance_weight"].values, dtype=float)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or np.any(weights.sum(axis=1) <= 0):
        raise ValueError("importance_weight holds non-finite, negative or all-zero weights in a chain: a halted "
                         "chain (see the diverging stat) cannot be resampled.")
    picks = [np.sort(rng.choice(weights.shape[1], size=weights.shape[1], p=row / row.sum())) for row in weights]
    posterior = idata.posterior.copy(deep=True)
    for name in posterior.data_vars:
        values = posterior[name].values
        posterior[name].values = np.stack([values[c][pick] for c, pick in enumerate(picks)])
    resampled = idata.copy()
    resampled.posterior = posterior
    return resampled
