"""Minibatch estimators of the potential U and its gradient, built from a full-data PyMC model.

Conventions (DESIGN.md): the target is pi(w) ~ exp(-U(w)/T) in PyMC's unconstrained space,

    U(w)     = -log p(w) - sum_{i=1..n} log p(x_i | w)            (prior + Jacobian + potentials),
    U_hat(w) = -log p(w) - (n/B) sum_{i in batch} log p(x_i | w)  (unbiased for U).

`build_estimator` rewrites the model's logp graph so that every per-row data tensor (the
observed values and each constant or pm.Data whose leading axis has the observed length n)
becomes an explicit input sliced by an index vector, and compiles it in pytensor's NUMBA mode.
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
"""

from __future__ import annotations

import dataclasses
import hashlib
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc.distributions.shape_utils import change_dist_size
from pymc.pytensorf import join_nonshared_inputs
from pymc.variational.minibatch_rv import MinibatchRandomVariable
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable
from pytensor.graph.replace import clone_replace
from pytensor.graph.rewriting.utils import rewrite_graph
from pytensor.graph.traversal import ancestors
from pytensor.tensor.type import TensorType

__all__ = ["ModelEstimator", "build_estimator", "cached_estimator", "ModelSpecificationError"]


class ModelSpecificationError(ValueError):
    """The model cannot be minibatched as written; the message says how to fix it."""


@dataclass
class ModelEstimator:
    """Compiled minibatch estimator of one model, plus the arrays it slices.

    Attributes
    ----------
    fn : numba dispatcher ``fn(w, idx, *data) -> (log_prior, grad, log_lik_batch, grad)``.
    grad_fn : numba dispatcher ``grad_fn(w, idx, scale, *data) -> grad U_hat`` (scale 0-d).
    full_fn : numba dispatcher ``full_fn(w, *data)``, the parts of ``fn`` over all rows
        without gathering them (no copy of the data per call).
    data : per-row arrays in the order ``fn`` expects them (observed values first).
    data_names : their names, for messages and summaries.
    n_rows : number of rows n (the observed length; 1 for a model without observed data).
    dim : length of the flat unconstrained parameter vector w.
    held : value variables not in w (a compound step's other blocks); their current values are
        the last ``len(held)`` arrays of ``data``, updated in place by the step (``hold``).
    """

    def hold(self, point: dict[str, np.ndarray]) -> None:
        """Set the held variables to their values in ``point`` (in place: compiled loops keep the arrays)."""
        for name, array in zip(self.held, self.data[len(self.data) - len(self.held):]):
            np.copyto(array, point[name], casting="unsafe")

    fn: object
    grad_fn: object
    full_fn: object
    data: tuple[np.ndarray, ...]
    data_names: tuple[str, ...]
    n_rows: int | None
    dim: int
    held: tuple[str, ...] = ()


def _value_of(tensor: Variable) -> np.ndarray:
    """Current value of a data tensor: a shared variable, a constant, or an expression of them
    (e.g. observed=pm.Data(...)[1:])."""
    if isinstance(tensor, SharedVariable):
        return np.asarray(tensor.get_value(borrow=True))
    if isinstance(tensor, Constant):
        return np.asarray(tensor.data)
    return np.asarray(tensor.eval())


def _is_array_leaf(var: Variable) -> bool:
    return isinstance(var, SharedVariable | Constant) and isinstance(var.type, TensorType) and var.ndim >= 1


def _describe(var: Variable) -> str:
    return repr(var.name) if var.name else f"unnamed {var.type} constant"


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


def _observed_length(model: pm.Model) -> int:
    lengths = {}
    for rv in model.observed_RVs:
        value = _value_of(model.rvs_to_values[rv])
        batch_ndim = rv.ndim - rv.owner.op.ndim_supp
        if value.ndim == 0 or batch_ndim < 1:
            raise ModelSpecificationError(
                f"Observed variable {rv.name!r} ({type(rv.owner.op).__name__}) is one joint draw: its rows are "
                "coupled (a time series such as pm.AR or a random walk, or a multivariate distribution "
                "across rows), so its likelihood is not a sum over rows and cannot be minibatched. "
                "Use batch_size=None (full-batch gradients)."
            )
        lengths[rv.name] = value.shape[0]
    if len(set(lengths.values())) != 1:
        raise ModelSpecificationError(
            f"Observed variables have different numbers of rows {lengths}; one minibatch index "
            "cannot subsample them all. Use batch_size=None (full-batch gradients), or give them "
            "one leading axis."
        )
    return next(iter(lengths.values()))


def _resolve_user_data(model: pm.Model, data: Sequence[str | Variable], n: int) -> list[Variable]:
    named = {name: var for name, var in model.named_vars.items() if _is_array_leaf(var)}
    resolved = []
    for item in data:
        var = named.get(item) if isinstance(item, str) else item
        if var is None:
            raise ModelSpecificationError(
                f"data={item!r} is not a data tensor of this model. Known data tensors: "
                f"{sorted(named)}. Pass pm.Data names or the tensors themselves."
            )
        if not _is_array_leaf(var) or _value_of(var).shape[0] != n:
            raise ModelSpecificationError(
                f"data tensor {_describe(var)} must be an array whose leading axis has the "
                f"observed length n = {n}."
            )
        resolved.append(var)
    return resolved


def _detect_row_data(model: pm.Model, n: int) -> list[Variable]:
    """Constants and pm.Data with n rows that feed the observed variables' parameters."""
    observed_values = {model.rvs_to_values[rv] for rv in model.observed_RVs}
    feeds_likelihood = [
        v for v in ancestors(model.observed_RVs) if _is_array_leaf(v) and v not in observed_values
    ]
    candidates = [v for v in feeds_likelihood if _value_of(v).shape[0] == n]
    prior_graphs = list(model.free_RVs) + list(model.potentials)
    in_prior = set(ancestors(prior_graphs)) if prior_graphs else set()
    ambiguous = [v for v in candidates if v in in_prior]
    if ambiguous:
        raise ModelSpecificationError(
            f"Data tensor(s) {[_describe(v) for v in ambiguous]} have n = {n} rows and feed both "
            "the likelihood and the prior/potentials, so it is unclear whether to subsample them. "
            "Name the per-row tensors explicitly with data=[...] (pm.Data names or tensors)."
        )
    return candidates


def _minibatched_loglik(model: pm.Model, replacements: dict, n_rows: Variable) -> Variable:
    """Sum over the rows in ``replacements`` of the observed log-likelihood, in terms of the value variables.

    Each observed variable is resized to n_rows rows (PyMC's change_dist_size keeps
    mixtures and other symbolic distributions intact), its free random variables are
    replaced by value variables, its per-row parameters are sliced, and its logp is
    evaluated at the sliced observed values.
    """
    terms = []
    for rv in model.observed_RVs:
        batch_shape = tuple(rv.shape)[: rv.ndim - rv.owner.op.ndim_supp]
        resized = change_dist_size(rv, (n_rows, *batch_shape[1:]))
        (resized,) = model.replace_rvs_by_values([resized])  # free RVs -> value variables
        sliced = clone_replace(resized, replacements, rebuild_strict=False)
        value = replacements[model.rvs_to_values[rv]]
        terms.append(pt.sum(pm.logp(sliced, value)))
    # Shape graphs of symbolic distributions (e.g. mixtures) can still reference their random
    # generators; canonicalisation replaces those shapes and leaves a pure logp graph.
    (loglik,) = rewrite_graph([pt.add(*terms)], include=("canonicalize",))
    return loglik


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
                    full_batch: bool = False, vars: Sequence[Variable] | None = None) -> ModelEstimator:
    """Compile the minibatch estimator of a PyMC model (see module docstring).

    Parameters
    ----------
    model : a PyMC model with continuous free variables. Without observed variables (a target
        written with priors or potentials) the likelihood part is zero: use full batch.
    data : optional explicit list of per-row data tensors (pm.Data names or tensors). By
        default every constant or pm.Data with n rows that feeds the observed variables.
    full_batch : compile the model's own likelihood unsliced, as a single "row" (n = 1, no
        data inputs): right for any model, including those whose rows are coupled (pm.AR,
        random walks, MvNormal across rows) or whose observed variables differ in length.
    vars : the variables w stands for (default all free variables). The others are held at values
        passed after the data (``conditioning`` arrays, per-row ones sliced like data): the
        estimator is then of the conditional posterior, as a block of PyMC's compound step needs.

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
    held = [v for v in model.value_vars if v not in set(sampled)]
    point = model.initial_point()
    prior = model.logp(vars=list(model.free_RVs) + list(model.potentials), jacobian=True)
    idx = pt.vector("idx", dtype="int64")

    if any(isinstance(rv.owner.op, MinibatchRandomVariable) for rv in model.observed_RVs):
        # pm.Minibatch + total_size: the model already subsamples and scales itself.
        raise ModelSpecificationError(
            "This model was written with pm.Minibatch/total_size. pymc_sgd minibatches full-data "
            "models itself: pass the full arrays (no pm.Minibatch, no total_size) and set batch_size."
        )

    n, row_tensors = _row_layout(model, data, full_batch)
    # any number of rows; trailing axes keep their static shape (x[:, None] must stay broadcastable)
    inputs = [pt.tensor(name=v.name or f"data_{i}", dtype=v.dtype, shape=(None, *v.type.shape[1:]))
              for i, v in enumerate(row_tensors)]
    held_inputs = [pt.tensor(name=v.name, dtype=v.dtype, shape=v.type.shape) for v in held]
    held_rows = [v for v in held if n > 1 and v.ndim >= 1 and np.shape(point[v.name])[0] == n]  # per-row latents
    if full_batch and model.observed_RVs:
        loglik = full_loglik = model.logp(vars=model.observed_RVs)
    elif row_tensors:
        sliced = {v: inp[idx] for v, inp in zip(row_tensors + held, inputs + held_inputs)
                  if v in set(row_tensors) or v in set(held_rows)}
        loglik = _minibatched_loglik(model, sliced, idx.shape[0])
        full_loglik = _minibatched_loglik(model, dict(zip(row_tensors, inputs)), inputs[0].shape[0])
    else:
        loglik = full_loglik = pt.constant(0.0, dtype="float64")
    if held:  # everything else sees the held variables whole
        prior, loglik, full_loglik = clone_replace([prior, loglik, full_loglik], dict(zip(held, held_inputs)),
                                                   rebuild_strict=False)

    prior, loglik, full_loglik = _freeze_shared([prior, loglik, full_loglik])
    scale = pt.scalar("scale", dtype="float64")
    grad_hat = _flat_gradient(-(prior + scale * loglik), sampled)
    [prior, loglik, full_loglik, grad_hat], w = join_nonshared_inputs(
        point, [prior, loglik, full_loglik, grad_hat], sampled)
    grad_prior = pytensor.grad(prior, w, disconnected_inputs="ignore")  # all-Flat priors are constant
    parts = [prior, grad_prior, loglik, pytensor.grad(loglik, w, disconnected_inputs="ignore")]
    full_parts = [prior, grad_prior, full_loglik, pytensor.grad(full_loglik, w, disconnected_inputs="ignore")]
    inputs = inputs + held_inputs  # held values travel with the data (the kernels pass *data through)
    compiled = pytensor.function([w, idx, *inputs], parts, mode="NUMBA", on_unused_input="ignore")
    compiled_full = pytensor.function([w, *inputs], full_parts, mode="NUMBA", on_unused_input="ignore")
    compiled_grad = pytensor.function([w, idx, scale, *inputs], grad_hat, mode="NUMBA", on_unused_input="ignore")
    names = tuple(v.name or f"data_{i}" for i, v in enumerate(row_tensors)) + tuple(v.name for v in held)
    dim = int(sum(np.size(point[v.name]) for v in sampled))
    held_values = tuple(np.array(point[v.name], dtype=v.dtype) for v in held)
    return ModelEstimator(compiled.vm.jit_fn, compiled_grad.vm.jit_fn, compiled_full.vm.jit_fn,
                          _current_arrays(row_tensors) + held_values, names, n, dim, tuple(v.name for v in held))


def _row_layout(model: pm.Model, data: Sequence[str | Variable] | None,
                full_batch: bool = False) -> tuple[int, list[Variable]]:
    """(n, per-row tensors in the compiled functions' input order: observed values first)."""
    if full_batch or not model.observed_RVs:  # the likelihood (if any) is one "row", no data inputs
        return 1, []
    n = _observed_length(model)
    row_tensors = _resolve_user_data(model, data, n) if data is not None else _detect_row_data(model, n)
    observed_values = [model.rvs_to_values[rv] for rv in model.observed_RVs]
    return n, observed_values + [v for v in row_tensors if v not in observed_values]


def _current_arrays(row_tensors: Sequence[Variable]) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(_value_of(v)) for v in row_tensors)


def _frozen_values_digest(model: pm.Model, row_tensors: Sequence[Variable]) -> str:
    """Digest of every shared variable the compiled graphs hold as a constant (``_freeze_shared``):
    a pm.set_data on one of them needs a new compilation."""
    graphs = list(model.free_RVs) + list(model.observed_RVs) + list(model.potentials)
    frozen = [v for v in ancestors(graphs) if isinstance(v, SharedVariable) and v not in set(row_tensors)]
    digest = hashlib.sha1()
    for var in frozen:
        value = np.ascontiguousarray(var.get_value(borrow=True))
        digest.update(f"{var.name}{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


_ESTIMATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached_estimator(model: pm.Model, data: Sequence[str | Variable] | None = None,
                     full_batch: bool = False, vars: Sequence[Variable] | None = None) -> ModelEstimator:
    """`build_estimator`, memoised per model, its variables, its per-row tensors and the values of
    the shared variables compiled in as constants; the per-row arrays (and n) are read afresh at
    every call, so data changed by pm.set_data (same or new length) is never stale.

    Steps on the same model share the compiled functions, so the numba loops specialised on
    them are compiled once per process rather than once per step object.
    """
    n, row_tensors = _row_layout(model, data, full_batch)
    sampled = tuple(v.name for v in sampled_value_vars(model, vars))
    key = (tuple(model.named_vars), None if data is None else tuple(map(str, data)), full_batch, sampled,
           tuple(row_tensors), _frozen_values_digest(model, row_tensors))
    per_model = _ESTIMATORS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = build_estimator(model, data, full_batch, vars)
    cached = per_model[key]
    held_values = tuple(array.copy() for array in cached.data[len(cached.data) - len(cached.held):])
    return dataclasses.replace(cached, data=_current_arrays(row_tensors) + held_values, n_rows=n)
