"""Minibatch estimators of the potential U and its gradient, built from a full-data PyMC model.

Conventions (docs/pages/design.md): the target is pi(w) ~ exp(-U(w)/T) in PyMC's unconstrained space,

    U(w)     = -log p(w) - sum_{i=1..n} log p(x_i | w)            (prior + Jacobian + potentials),
    U_hat(w) = -log p(w) - (n/B) sum_{i in batch} log p(x_i | w)  (unbiased for U).

`build_estimator` rewrites the model's logp graph so that every per-row data tensor (the
observed values and each constant or pm.Data whose leading axis has its observed variable's
length, see ``pymc_sgd.rows``) becomes an explicit input sliced by an index vector, and compiles
it in pytensor's NUMBA mode. Observed variables of different lengths share the index: n is the
longest one's length and the others are read through the weighted map of ``pymc_sgd.rows``.
The compiled function is an ordinary numba dispatcher, callable from inside ``@njit`` code as

    log_prior, grad_log_prior, log_lik_batch, grad_log_lik_batch = fn(w, idx, *data)

with the log-likelihood summed over the rows ``idx`` and NOT scaled; the kernels combine the
parts (``pymc_sgd.kernels.estimator``), so one compiled function serves minibatches, the full
batch (idx = all rows) and per-example gradients (idx of length one).

The samplers' inner loops call a second, leaner function that computes only what an update
needs, the gradient of U_hat with the scale n/B (a 0-d array) as an input:

    grad_U_hat = grad_fn(w, idx, scale, *data)

Leaving out the log-density values matters: on a logistic regression with B = 100 the
softplus terms of log p cost as much as the whole gradient (benchmarks/throughput.py).

When the per-row term and the prior have small static shapes and ops ``pymc_sgd.unrolled`` knows
(GLMs with a few coefficients, location-scale models), the inner-loop gradient is instead one
loop over the batch rows of straight-line scalar code with no allocation (``unrolled_gradient``),
checked against ``fn`` when built; grad_fn is then not compiled. Seed 000's model: 0.05 us a call
instead of 0.46.

Compiled kernels never see these functions directly: they call ``ModelEstimator.kernel``, one C
function of a fixed type (``pymc_sgd.model_cfunc``), so they are compiled once and cached on disk.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc.logprob.basic import conditional_logp
from pymc.distributions.shape_utils import change_dist_size
from pymc.pytensorf import join_nonshared_inputs
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Variable
from pytensor.graph.replace import clone_replace
from pytensor.graph.rewriting.utils import rewrite_graph
from pytensor.graph.traversal import ancestors
from pytensor.tensor.type import TensorType

from .hierarchy import Reparameterisation
from .kernels.model import gradient_into, parts_into
from .model_cfunc import build_evaluate, layout
from .rows import ModelSpecificationError, RowGroup, describe, observed_likelihoods, row_layout, row_tensors, value_of
from .unrolled import NotUnrollable, RowLoop, check_ops, row_loop

_log = logging.getLogger("pymc_sgd")
CHECKED_ROWS = 100_000  # rows _check_row_split evaluates (a prefix of larger data, which may be on disk)

__all__ = ["ModelEstimator", "build_estimator", "cached_estimator", "ModelSpecificationError"]


@dataclass
class ModelEstimator:
    """Compiled minibatch estimator of one model, plus the arrays it slices.

    Attributes
    ----------
    fn : numba dispatcher ``fn(w, idx, *data) -> (log_prior, grad, log_lik_batch, grad)``.
    grad_fn : numba dispatcher ``grad_fn(w, idx, scale, *data) -> grad U_hat`` (scale 0-d), or
        None when ``evaluate`` runs the unrolled row loop instead (``unrolled_gradient``).
    full_fn : numba dispatcher ``full_fn(w, *data)``, the parts of ``fn`` over all rows
        without gathering them (no copy of the data per call).
    evaluate : the three as one cfunc for the kernels (``kernel``, ``pymc_sgd.kernels.model``).
    data : per-row arrays in the order ``fn`` expects them (observed values first).
    data_names : their names, for messages and summaries.
    n_rows : number of rows n (the observed length; 1 for a model without observed data).
    dim : length of the flat unconstrained parameter vector w.
    held : value variables not in w (a compound step's other blocks); their current values are
        the ``len(held)`` arrays of ``data`` after the per-row ones, updated in place by the step (``hold``).
    coordinate_masks : names of the last arrays of ``data``, one per group effect of a ``Reparameterisation``:
        which groups the sampler runs centred, set in place (``set_coordinates``).
    full_function : the pytensor Function behind ``full_fn``, which pickles (its graph; another process
        recompiles it from pytensor's cache): what a Dask worker runs (``pymc_sgd.data.mapreduce``).
    """

    def hold(self, point: dict[str, np.ndarray]) -> None:
        """Set the held variables to their values in ``point`` (in place: compiled loops keep the arrays)."""
        for name, array in zip(self.held, self.held_arrays):
            np.copyto(array, point[name], casting="unsafe")

    def set_coordinates(self, reparameterisation: Reparameterisation) -> None:
        """Run the group effects in the coordinates ``reparameterisation`` chooses (in place, as ``hold``)."""
        for array, mask in zip(self.data[len(self.data) - len(self.coordinate_masks):], reparameterisation.masks()):
            np.copyto(array, mask)

    @property
    def row_arrays(self) -> tuple[np.ndarray, ...]:
        """The per-row arrays of ``data`` (the others are read whole)."""
        return self.data[:len(self.data) - len(self.held) - len(self.coordinate_masks)]

    @property
    def held_arrays(self) -> tuple[np.ndarray, ...]:
        start = len(self.row_arrays)
        return self.data[start:start + len(self.held)]

    fn: object
    grad_fn: object | None
    full_fn: object
    evaluate: object
    data: tuple[np.ndarray, ...]
    data_names: tuple[str, ...]
    n_rows: int | None
    dim: int
    held: tuple[str, ...] = ()
    full_function: object = None
    coordinate_masks: tuple[str, ...] = ()

    @functools.cached_property
    def kernel(self) -> tuple:
        """``(evaluate's address, addresses, shapes)`` of this estimator's data, the ``model`` argument of
        every kernel (``pymc_sgd.kernels.model``); the estimator keeps the cfunc and the arrays alive."""
        return (self.evaluate.address, *layout(self.data))


def _check_continuous(model: pm.Model, sampled: Sequence[Variable]) -> None:
    discrete = [v.name for v in model.discrete_value_vars if v in set(sampled)]
    if discrete:
        raise ModelSpecificationError(
            f"Stochastic-gradient samplers need gradients, but {discrete} are discrete. "
            "Give the continuous variables to this step and the discrete ones to another, e.g. "
            "step=[pymc_sgd.SGLD(vars=[...continuous...], batch_size=...), pm.Metropolis(vars=[...discrete...])], "
            "or marginalise them out (e.g. pm.NormalMixture instead of a Categorical indicator)."
        )


def sampled_value_vars(model: pm.Model, vars: Sequence[Variable] | None) -> list[Variable]:
    """The value variables a step samples, in the model's order: all by default, else those of
    ``vars`` (free random variables or their value variables, e.g. model.free_RVs or [sigma])."""
    if vars is None:
        return list(model.value_vars)
    wanted = set()
    for var in vars:
        value = model.rvs_to_values.get(var, var)
        if value not in set(model.value_vars):
            raise ModelSpecificationError(
                f"{var} is not a free variable of this model; give free random variables (e.g. model.free_RVs) "
                f"or their value variables {[v.name for v in model.value_vars]}.")
        wanted.add(value)
    return [v for v in model.value_vars if v in wanted]


def _ceil_div(a: Variable, b: Variable) -> Variable:
    return (a + b - 1) // b


def _rows_loglik(groups: Sequence[RowGroup], inputs: dict, idx: Variable | None, per_row: bool = False) -> Variable:
    """Sum of the "virtual rows" r_i over i in ``idx`` (``pymc_sgd.rows``), or with idx None the
    full log-likelihood, in terms of the value variables and the data ``inputs``; ``per_row``: the vector of
    the r_i instead (idx given), for weighting each.

    Each observed variable's full-data likelihood (``pymc_sgd.rows.Observed``) is resized to the
    batch's rows (PyMC's change_dist_size keeps mixtures and other symbolic distributions intact),
    its per-row tensors and latents are sliced, and its logp is evaluated at the sliced observed values.
    """
    n = inputs[groups[0].tensors[0]].shape[0]
    terms = []
    for group in groups:
        n_k = inputs[group.tensors[0]].shape[0]
        weights = None
        if idx is None:
            rows, replacements = n_k, {v: inputs[v] for v in group.tensors}
        else:
            rows, j = idx.shape[0], idx
            if group.length != groups[0].length:  # j = floor(i n_k / n), weight 1 / c_k(j)
                j = idx * n_k // n
                weights = 1.0 / (_ceil_div((j + 1) * n, n_k) - _ceil_div(j * n, n_k))
            replacements = {v: inputs.get(v, v)[j] for v in group.tensors + group.latents}
        for term in group.observed:
            rv = term.likelihood
            batch_shape = tuple(rv.shape)[: rv.ndim - rv.owner.op.ndim_supp]
            resized = change_dist_size(rv, (rows, *batch_shape[1:]))
            sliced = clone_replace(resized, replacements, rebuild_strict=False)
            value = replacements.get(term.value)  # else a cast of a sliced tensor (rows.row_source)
            if value is None:
                value = clone_replace(term.value, replacements, rebuild_strict=False)
            logp = pm.logp(sliced, value)
            if weights is not None or per_row:
                logp = logp.reshape((rows, -1)).sum(axis=1) * (1.0 if weights is None else weights)
            terms.append(logp if per_row else pt.sum(logp))
    # Shape graphs of symbolic distributions (e.g. mixtures) can still reference their random
    # generators; canonicalisation replaces those shapes and leaves a pure logp graph.
    (loglik,) = rewrite_graph([pt.add(*terms)], include=("canonicalize",))
    return loglik


def _check_row_split(estimator: ModelEstimator, model: pm.Model, sampled: Sequence[Variable],
                     groups: Sequence[RowGroup]) -> None:
    """The rows' terms summed over the two halves of a shuffled full batch must add up to the
    full-data log-likelihood (of the first CHECKED_ROWS rows, when there are more and one row group):
    a tensor or latent sliced that is not per row (e.g. a group effect
    indexed by a per-group index) misaligns them, and a tensor with n rows built inside the model
    (e.g. pt.zeros((n, 1))) that is not sliced makes a half-batch fail. Checked once at a random
    point near the initial one; tolerance 1e-7 of the largest part (fastmath rounding)."""
    point = model.initial_point()
    start = np.concatenate([np.ravel(point[v.name]) for v in sampled])
    w = start + np.random.default_rng(1).normal(0.0, 0.3, start.shape)
    data, rows = estimator.data, estimator.n_rows
    prefix = rows > CHECKED_ROWS and len({g.length for g in groups}) == 1 and not any(g.latents for g in groups)
    if prefix:
        rows, per_row = CHECKED_ROWS, len(estimator.row_arrays)
        data = tuple(a[:rows] for a in data[:per_row]) + data[per_row:]
    shuffled = np.random.default_rng(0).permutation(rows).astype(np.int64)
    sliced = [describe(v) for g in groups for v in g.tensors + g.latents]
    advice = ("Build per-row tensors from the data (e.g. pt.zeros_like(x) rather than pt.zeros((n, 1))), name "
              "the per-row data tensors with data=[...], or use batch_size=None (full-batch gradients).")
    try:
        halves = [estimator.fn(w, np.ascontiguousarray(half), *data)[2:] for half in np.array_split(shuffled, 2)]
        if prefix:  # the first rows are a subset too: a tensor with n rows the model builds fails here
            _, _, ll_full, grad_full = estimator.full_fn(w, *data)
    except (ValueError, IndexError, AssertionError) as error:  # AssertionError: pytensor's SpecifyShape of an n-row tensor
        raise ModelSpecificationError(
            f"The likelihood cannot be evaluated on a subset of rows when slicing {sliced}: {error}. {advice}"
        ) from error
    if not prefix:
        _, _, ll_full, grad_full = estimator.full_fn(w, *data)
    if not np.isfinite(ll_full.item()):
        return
    ll_rows = sum(ll.item() for ll, _ in halves)
    grad_rows = sum(grad for _, grad in halves)
    ll_scale = 1.0 + max(abs(ll_full.item()), *(abs(ll.item()) for ll, _ in halves))
    grad_scale = 1.0 + max(np.abs(g).max(initial=0.0) for g in [grad_full] + [grad for _, grad in halves])
    if abs(ll_rows - ll_full.item()) > 1e-7 * ll_scale or np.abs(grad_rows - grad_full).max(initial=0.0) > \
            1e-7 * grad_scale:
        raise ModelSpecificationError(
            f"The likelihood does not split into rows along the tensors detected as per row {sliced}: "
            f"summed over a shuffled full batch it is {ll_rows:.6g}, not {ll_full.item():.6g}. {advice}")


def _term_logp(term) -> Variable:
    """sum log p(value | likelihood) of one observed term. Through PyMC's conditional_logp, whose rewrites
    leave no random generator in the graph: pm.logp of a pm.NormalMixture kept its components' generator as
    an input, which the model's C function has no slot for (numba's TypingError on the full-batch path)."""
    return pt.add(*(pt.sum(x) for x in conditional_logp({term.likelihood: term.value}).values()))


def _freeze_shared(graphs: list[Variable]) -> list[Variable]:
    """Replace remaining shared variables (e.g. scalar pm.Data) by constants of their value."""
    shared = {v: pt.constant(v.get_value(), dtype=v.dtype) for v in ancestors(graphs)
              if isinstance(v, SharedVariable) and isinstance(v.type, TensorType)}
    return clone_replace(graphs, shared, rebuild_strict=False) if shared else graphs


def _flat_gradient(cost: Variable, value_vars: Sequence[Variable]) -> Variable:
    """Gradient w.r.t. each value variable, raveled and concatenated in join_nonshared_inputs' order.

    Differentiating after joining the inputs instead scatters each piece into a zero vector
    (one IncSubtensor per variable): about 10% slower per call on seed 000's model.
    """
    grads = pytensor.grad(cost, list(value_vars), disconnected_inputs="ignore")
    return pt.concatenate([g.ravel() for g in grads])


def build_estimator(model: pm.Model, data: Sequence[str | Variable] | None = None,
                    full_batch: bool = False, vars: Sequence[Variable] | None = None,
                    reparameterisation: Reparameterisation | None = None, weighted: bool = False) -> ModelEstimator:
    """Compile the minibatch estimator of a PyMC model (see module docstring).

    Parameters
    ----------
    model
        a PyMC model with continuous free variables. Without observed variables (a target
        written with priors or potentials) the likelihood part is zero: use full batch.
    data
        optional explicit list of per-row data tensors (pm.Data names or tensors). By
        default every constant or pm.Data with n rows that feeds the observed variables.
    full_batch
        compile the model's own likelihood unsliced, as a single "row" (n = 1, no
        data inputs): right for any model, including those whose rows are coupled (pm.AR,
        random walks, MvNormal across rows) or whose observed variables differ in length.
    vars
        the variables w stands for (default all free variables). The others are held at values
        passed after the data (``conditioning`` arrays, per-row ones sliced like data): the
        estimator is then of the conditional posterior, as a block of PyMC's compound step needs.
    reparameterisation
        the sampler's own coordinates for group effects (``pymc_sgd.hierarchy``), or None (the model's).
    weighted
        compile the inner-loop gradient with one likelihood weight per row (stratified batches,
        ``kernels.batching.STRATIFIED``) instead of one scale for all (pytensor's gradient, never unrolled).

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> with pm.Model() as model:
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=np.arange(5.0))
    >>> est = build_estimator(model)
    >>> lp, glp, ll, gll = est.fn(np.zeros(1), np.arange(5), *est.data)
    >>> round(float(gll[0]), 6)   # d/dmu sum_i log N(x_i | mu, 1) at mu = 0 is sum x_i
    10.0
    """
    sampled = sampled_value_vars(model, vars)
    _check_continuous(model, sampled)
    n, groups = row_layout(model, data, full_batch)
    if not (groups and n > 1):
        return _compile(model, sampled, n, groups, full_batch, reparameterisation, weighted)
    # Free variables with a group's length are sliced as per-row latents unless that breaks the
    # row split (e.g. group effects indexed by a per-group parent index): then they stay whole.
    attempts = [groups] + ([[dataclasses.replace(g, latents=()) for g in groups]]
                           if any(g.latents for g in groups) else [])
    for attempt in attempts[:-1]:
        estimator = _compile(model, sampled, n, attempt, full_batch, reparameterisation, weighted)
        try:
            _check_row_split(estimator, model, sampled, attempt)
            return estimator
        except ModelSpecificationError:
            pass
    estimator = _compile(model, sampled, n, attempts[-1], full_batch, reparameterisation, weighted)
    _check_row_split(estimator, model, sampled, attempts[-1])
    return estimator


def _compile(model: pm.Model, sampled: list[Variable], n: int, groups: Sequence[RowGroup],
             full_batch: bool, reparameterisation: Reparameterisation | None = None,
             weighted: bool = False) -> ModelEstimator:
    """Compile fn, full_fn and the inner-loop gradient (unrolled, else grad_fn); see build_estimator."""
    held = [v for v in model.value_vars if v not in set(sampled)]
    point = model.initial_point()
    prior = model.logp(vars=list(model.free_RVs) + list(model.potentials), jacobian=True)
    idx = pt.vector("idx", dtype="int64")
    tensors = row_tensors(groups)
    # any number of rows; trailing axes keep their static shape (x[:, None] must stay broadcastable)
    inputs = {v: pt.tensor(name=v.name or f"data_{i}", dtype=v.dtype, shape=(None, *v.type.shape[1:]))
              for i, v in enumerate(tensors)}
    held_inputs = {v: pt.tensor(name=v.name, dtype=v.dtype, shape=v.type.shape) for v in held}
    if full_batch and model.observed_RVs:
        loglik = full_loglik = pt.add(*(_term_logp(term) for term in observed_likelihoods(model)))
    elif groups:
        loglik = _rows_loglik(groups, inputs | held_inputs, idx)
        full_loglik = _rows_loglik(groups, inputs, None)
    else:
        loglik = full_loglik = pt.constant(0.0, dtype="float64")
    weighted = weighted and bool(groups) and not full_batch
    row_logliks = _rows_loglik(groups, inputs | held_inputs, idx, per_row=True) if weighted else loglik
    if held:  # everything else sees the held variables whole
        prior, loglik, full_loglik, row_logliks = clone_replace([prior, loglik, full_loglik, row_logliks],
                                                                held_inputs, rebuild_strict=False)

    model_sampled, masks = sampled, []
    if reparameterisation is not None:  # U in the sampler's coordinates: U(x(v)) - log J
        sampled, replacements, log_jacobian, masks = reparameterisation.substitution(sampled)
        prior, loglik, full_loglik, row_logliks = clone_replace([prior, loglik, full_loglik, row_logliks],
                                                                replacements, rebuild_strict=False)
        prior = prior + log_jacobian
    prior, loglik, full_loglik, row_logliks = _freeze_shared([prior, loglik, full_loglik, row_logliks])
    if weighted:  # one weight per row of the batch
        scale = pt.vector("scale", dtype="float64")
        grad_hat = _flat_gradient(-(prior + pt.dot(scale, row_logliks)), sampled)
    else:
        scale = pt.scalar("scale", dtype="float64")
        grad_hat = _flat_gradient(-(prior + scale * loglik), sampled)
    [prior, loglik, full_loglik, grad_hat], w = join_nonshared_inputs(
        point, [prior, loglik, full_loglik, grad_hat], sampled)
    grad_prior = pytensor.grad(prior, w, disconnected_inputs="ignore")  # all-Flat priors are constant
    parts = [prior, grad_prior, loglik, pytensor.grad(loglik, w, disconnected_inputs="ignore")]
    full_parts = [prior, grad_prior, full_loglik, pytensor.grad(full_loglik, w, disconnected_inputs="ignore")]
    inputs = list(inputs.values()) + list(held_inputs.values()) + masks  # held values and masks travel with the data
    compiled = pytensor.function([w, idx, *inputs], parts, mode="NUMBA", on_unused_input="ignore")
    compiled_full = pytensor.function([w, *inputs], full_parts, mode="NUMBA", on_unused_input="ignore")
    names = tuple(v.name or f"data_{i}" for i, v in enumerate(tensors)) + tuple(v.name for v in held)
    dim = int(sum(np.size(point[v.name]) for v in sampled))
    arrays = _current_arrays(tensors) + tuple(np.array(point[v.name], dtype=v.dtype) for v in held)
    mask_names = () if reparameterisation is None else reparameterisation.mask_names
    arrays += () if reparameterisation is None else reparameterisation.masks()
    estimator = ModelEstimator(compiled.vm.jit_fn, None, compiled_full.vm.jit_fn, None, arrays, names + mask_names,
                               n, dim, tuple(v.name for v in held), compiled_full, mask_names)
    loop = None if held or full_batch or reparameterisation or weighted else \
        unrolled_gradient(model, model_sampled, groups, point, arrays)
    if loop is not None:
        estimator.evaluate = build_evaluate(estimator.fn, None, estimator.full_fn, arrays, loop)
        matches = _unrolled_matches(estimator, point, sampled)
        if matches:
            return estimator
        if matches is False:
            _log.warning("pymc_sgd: the unrolled gradient of this model disagrees with pytensor's; using pytensor's "
                         "(slower on small models). Please report the model to the pymc_sgd maintainers.")
        estimator = dataclasses.replace(estimator)  # a fresh ``kernel``
    compiled_grad = pytensor.function([w, idx, scale, *inputs], grad_hat, mode="NUMBA", on_unused_input="ignore")
    estimator.grad_fn = compiled_grad.vm.jit_fn
    estimator.evaluate = build_evaluate(estimator.fn, estimator.grad_fn, estimator.full_fn, arrays, weighted=weighted)
    return estimator


def unrolled_gradient(model: pm.Model, sampled: Sequence[Variable], groups: Sequence[RowGroup],
                      point: dict[str, np.ndarray], arrays: Sequence[np.ndarray]) -> RowLoop | None:
    """grad U_hat as a loop over the batch rows of unrolled scalar code (``pymc_sgd.unrolled``), or
    None when the model's per-row term or prior is not small and static enough to unroll.

    In the loop, ``w[k]`` are the parameters (join_nonshared_inputs order) and ``d{k}[r, ...]`` row r
    of the k-th per-row tensor (``arrays[k]``, whose row shape is compiled in); per_row holds
    grad log p(x_r | w), once holds grad log p(w).
    Observed groups of different lengths (weighted rows) and per-row latents keep pytensor's code.
    """
    if any(g.latents for g in groups) or len({g.length for g in groups}) > 1 or \
            any(v.dtype != "float64" for v in sampled):
        return None
    params, elements, offset = {}, {}, 0
    for var in sampled:
        params[var] = pt.tensor(name=var.name, dtype=var.dtype, shape=np.shape(point[var.name]))
        size = int(np.size(point[var.name]))
        elements[params[var]] = [f"w[{offset + j}]" for j in range(size)]
        offset += size
    tensors = row_tensors(groups)
    rows = {}
    for k, (var, array) in enumerate(zip(tensors, arrays)):
        rows[var] = pt.tensor(name=var.name, dtype=var.dtype, shape=(1, *array.shape[1:]))
        elements[rows[var]] = [f"d{k}[{', '.join(map(str, ('r', *j)))}]" for j in np.ndindex(array.shape[1:])]
    try:
        loglik = _rows_loglik(groups, rows, None) if groups else pt.constant(0.0, dtype="float64")
        prior = model.logp(vars=list(model.free_RVs) + list(model.potentials), jacobian=True)
        prior, loglik = _freeze_shared(clone_replace([prior, loglik], params, rebuild_strict=False))
        wrt = list(params.values())
        gradients = [pt.as_tensor(g) for g in pytensor.grad(loglik, wrt, disconnected_inputs="ignore")
                     + pytensor.grad(prior, wrt, disconnected_inputs="ignore")]
        check_ops(list(elements), gradients)
        gradients = rewrite_graph(gradients, include=("canonicalize", "stabilize", "specialize"))
        return row_loop(elements, list(rows.values()), gradients[:len(wrt)], gradients[len(wrt):])
    except (NotUnrollable, NotImplementedError, TypeError, ValueError) as error:
        _log.debug("pymc_sgd: keeping pytensor's array gradient (%s)", error)
        return None


def _unrolled_matches(estimator: ModelEstimator, point: dict[str, np.ndarray],
                      sampled: Sequence[Variable]) -> bool | None:
    """Whether the unrolled gradient equals -(grad log p + scale grad log-lik) of pytensor's ``fn`` on
    a batch (to 1e-9 of the largest term: rounding only), at the first point of spreads 0.3, 0.03, 0
    around the initial one where pytensor's gradient is finite; None when it is finite at none of
    them (nothing to compare: the caller keeps pytensor's gradient rather than trust an unchecked one)."""
    start = np.concatenate([np.ravel(point[v.name]) for v in sampled])
    rows = np.random.default_rng(3).integers(0, max(estimator.n_rows, 1), size=min(estimator.n_rows, 16))
    scale = estimator.n_rows / len(rows)
    for spread in (0.3, 0.03, 0.0):
        w = start + np.random.default_rng(2).normal(0.0, spread, start.shape)
        parts = parts_into(estimator.kernel, w, rows, np.empty(2 * estimator.dim + 2))
        prior, loglik = parts[2:estimator.dim + 2], parts[estimator.dim + 2:]
        expected = -(prior + scale * loglik)
        if np.all(np.isfinite(expected)):
            unrolled = gradient_into(estimator.kernel, w, rows, np.full(1, scale), np.empty(estimator.dim))
            tolerance = 1e-9 * (1.0 + np.abs(prior).max() + scale * np.abs(loglik).max())
            return bool(np.all(np.abs(unrolled - expected) <= tolerance))
    _log.debug("pymc_sgd: pytensor's gradient is not finite near the initial point; not using the unrolled one")
    return None


def _current_arrays(tensors: Sequence[Variable]) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(value_of(v)) for v in tensors)


def _frozen_values_digest(model: pm.Model, tensors: Sequence[Variable]) -> str:
    """Digest of every shared variable the compiled graphs hold as a constant (``_freeze_shared``):
    a pm.set_data on one of them needs a new compilation."""
    graphs = list(model.free_RVs) + list(model.observed_RVs) + list(model.potentials)
    frozen = [v for v in ancestors(graphs) if isinstance(v, SharedVariable) and isinstance(v.type, TensorType)
              and v not in set(tensors)]
    digest = hashlib.sha1()
    for var in frozen:
        value = np.ascontiguousarray(var.get_value(borrow=True))
        digest.update(f"{var.name}{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


_ESTIMATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached_estimator(model: pm.Model, data: Sequence[str | Variable] | None = None,
                     full_batch: bool = False, vars: Sequence[Variable] | None = None,
                     reparameterisation: Reparameterisation | None = None, weighted: bool = False) -> ModelEstimator:
    """`build_estimator`, memoised per model, its variables, its per-row tensors and the values of
    the shared variables compiled in as constants; the per-row arrays (and n) are read afresh at
    every call, so data changed by pm.set_data (same or new length) is never stale.

    Steps on the same model share the compiled functions, so the numba loops specialised on
    them are compiled once per process rather than once per step object.
    """
    n, groups = row_layout(model, data, full_batch)
    tensors = row_tensors(groups)
    sampled = tuple(v.name for v in sampled_value_vars(model, vars))
    key = (tuple(model.named_vars), None if data is None else tuple(map(str, data)), full_batch, sampled,
           tuple(tensors), tuple(g.length == n for g in groups), _frozen_values_digest(model, tensors),
           tuple(a.shape[1:] for a in _current_arrays(tensors)),  # row shapes are compiled in (unrolled)
           None if reparameterisation is None else reparameterisation.key, weighted)
    per_model = _ESTIMATORS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = build_estimator(model, data, full_batch, vars, reparameterisation, weighted)
    cached = per_model[key]
    fixed = tuple(array.copy() for array in cached.data[len(cached.row_arrays):])  # this step's own
    estimator = dataclasses.replace(cached, data=_current_arrays(tensors) + fixed, n_rows=n)
    if reparameterisation is not None:
        estimator.set_coordinates(reparameterisation)
    return estimator
