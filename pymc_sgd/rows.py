"""Which tensors of a PyMC model are per row, and how observed variables of different lengths
share one minibatch index.

A minibatched likelihood is a sum over rows. Observed variables are grouped by their number of
rows n_k (the length of their leading batch axis); each group slices its observed values, the
constants and pm.Data with n_k rows that feed it, and the free variables with n_k entries that
feed it (per-row latents: their gradient outside the batch is the prior's alone, still unbiased).

One index i, uniform over the n = max_k n_k rows of the longest group, serves every group: group
k reads its row j = floor(i n_k / n), which c_k(j) = ceil((j + 1) n / n_k) - ceil(j n / n_k) of the
n indices map to, and weights it 1 / c_k(j). The likelihood is then a sum over n "virtual rows",

    sum_k sum_{j < n_k} log p_k(x_kj | w) = sum_{i < n} r_i(w),    r_i = sum_k log p_k(x_k,j_k(i)) / c_k(j_k(i)),

so the usual (n / B) sum_{i in batch} r_i is unbiased under every batching mode (each i is drawn
with probability B / n), and an epoch of n rows visits each x_kj exactly c_k(j) times, i.e. in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pymc as pm
from pymc.data import MinibatchOp
from pymc.logprob.utils import replace_rvs_by_values
from pymc.variational.minibatch_rv import MinibatchRandomVariable
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable
from pytensor.graph.replace import clone_replace
from pytensor.graph.traversal import ancestors, applys_between
from pytensor.scalar import Cast
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.type import TensorType

__all__ = ["ModelSpecificationError", "Observed", "RowGroup", "minibatch_size", "observed_likelihoods",
           "row_layout", "value_of"]


class ModelSpecificationError(ValueError):
    """The model cannot be minibatched as written; the message says how to fix it."""


@dataclass(frozen=True)
class Observed:
    """An observed variable as a full-data likelihood term.

    likelihood: its distribution with free random variables replaced by value variables and any
        pm.Minibatch replaced by the full arrays it draws from (the model's own total_size scaling
        dropped: the estimators scale by n / B themselves).
    value: its full observed data.
    """

    name: str
    likelihood: Variable
    value: Variable


@dataclass(frozen=True)
class RowGroup:
    """Observed variables with ``length`` rows and what is sliced with them.

    tensors: their observed values, then the data tensors with ``length`` rows feeding them.
    latents: value variables with ``length`` entries feeding them (sliced too).
    """

    observed: tuple[Observed, ...]
    length: int
    tensors: tuple[Variable, ...]
    latents: tuple[Variable, ...]


def value_of(tensor: Variable) -> np.ndarray:
    """Current value of a data tensor: a shared variable, a constant, or an expression of them
    (e.g. observed=pm.Data(...)[1:])."""
    if isinstance(tensor, SharedVariable):
        return np.asarray(tensor.get_value(borrow=True))
    if isinstance(tensor, Constant):
        return np.asarray(tensor.data)
    return np.asarray(tensor.eval())


def _is_array_leaf(var: Variable) -> bool:
    return isinstance(var, SharedVariable | Constant) and isinstance(var.type, TensorType) and var.ndim >= 1


def row_source(value: Variable) -> Variable:
    """The array an observed value is read from: the value itself, or the pm.Data or constant under the casts
    PyMC puts on it (observed int data of another dtype, e.g. Bernoulli's), so that rows are sliced before the
    cast and data on disk is never cast whole into memory."""
    var = value
    while var.owner is not None and isinstance(var.owner.op, Elemwise) and isinstance(var.owner.op.scalar_op, Cast):
        var = var.owner.inputs[0]
    return var if _is_array_leaf(var) else value


def describe(var: Variable) -> str:
    return repr(var.name) if var.name else f"unnamed {var.type} constant"


def _minibatch_nodes(graphs: Sequence[Variable]) -> list:
    return [node for node in applys_between([], graphs) if isinstance(node.op, MinibatchOp)]


def minibatch_size(model: pm.Model) -> int | None:
    """The batch size of the pm.Minibatch the model's likelihood reads, None without one."""
    sizes = {int(node.outputs[0].type.shape[0] or node.outputs[0].shape[0].eval())
             for node in _minibatch_nodes(model.observed_RVs + [model.rvs_to_values[rv] for rv in model.observed_RVs])}
    if len(sizes) > 1:
        raise ModelSpecificationError(f"The model's pm.Minibatch calls use different batch sizes {sorted(sizes)}; "
                                      "give this step batch_size=... (rows per update) explicitly.")
    return sizes.pop() if sizes else None


def observed_likelihoods(model: pm.Model) -> list[Observed]:
    """Every observed variable as a full-data term (see Observed), in the model's order."""
    observed = []
    for rv in model.observed_RVs:
        value = model.rvs_to_values[rv]
        base = rv
        if isinstance(rv.owner.op, MinibatchRandomVariable):
            base, *total_size = rv.owner.inputs
        (likelihood,) = replace_rvs_by_values(  # free RVs only: the observed one stays a distribution
            [base], rvs_to_values={v: model.rvs_to_values[v] for v in model.free_RVs},
            rvs_to_transforms=model.rvs_to_transforms)
        full_data = {out: inp for node in _minibatch_nodes([likelihood, value])
                     for out, inp in zip(node.outputs[:-1], node.inputs[:-1])}
        if full_data and base is rv:
            raise ModelSpecificationError(
                f"Observed variable {rv.name!r} reads a pm.Minibatch but has no total_size, so PyMC's own "
                "likelihood is that of one batch. Add total_size=<number of rows> to it, or pass the "
                "full arrays (no pm.Minibatch) and set batch_size on the step.")
        if full_data:
            likelihood, value = clone_replace([likelihood, value], full_data, rebuild_strict=False)
        if base is not rv:  # total_size given: it must be the rows the likelihood reads (no tempering)
            n = int(value_of(value).shape[0])
            given = total_size[0].data if isinstance(total_size[0], Constant) else None
            if given is None or int(given) != n:
                raise ModelSpecificationError(
                    f"Observed variable {rv.name!r}: total_size={given} but its data has {n} rows. Set "
                    f"total_size={n}, or leave it out with full data (pymc_sgd scales each batch by "
                    "n / batch_size itself).")
        observed.append(Observed(rv.name, likelihood, value))
    return observed


def _observed_lengths(observed: Sequence[Observed]) -> dict[str, int]:
    lengths = {}
    for term in observed:
        value = value_of(row_source(term.value))
        batch_ndim = term.likelihood.ndim - term.likelihood.owner.op.ndim_supp
        if value.ndim == 0 or batch_ndim < 1:
            raise ModelSpecificationError(
                f"Observed variable {term.name!r} ({type(term.likelihood.owner.op).__name__}) is one joint draw: "
                "its rows are coupled (a time series such as pm.AR or a random walk, or a multivariate distribution "
                "across rows), so its likelihood is not a sum over rows and cannot be minibatched. "
                "Use batch_size=None (full-batch gradients)."
            )
        lengths[term.name] = value.shape[0]
    return lengths


def _resolve_user_data(model: pm.Model, data: Sequence[str | Variable], lengths: set[int]) -> list[Variable]:
    named = {name: var for name, var in model.named_vars.items() if _is_array_leaf(var)}
    resolved = []
    for item in data:
        var = named.get(item) if isinstance(item, str) else item
        if var is None:
            raise ModelSpecificationError(
                f"data={item!r} is not a data tensor of this model. Known data tensors: "
                f"{sorted(named)}. Pass pm.Data names or the tensors themselves."
            )
        if not _is_array_leaf(var) or value_of(var).shape[0] not in lengths:
            raise ModelSpecificationError(
                f"data tensor {describe(var)} must be an array whose leading axis has the length of an "
                f"observed variable, one of {sorted(lengths)}."
            )
        resolved.append(var)
    return resolved


def _detect_row_data(model: pm.Model, observed: Sequence[Observed], length: int) -> list[Variable]:
    """Constants and pm.Data with ``length`` rows that feed ``observed``'s parameters."""
    values = {row_source(term.value) for term in observed}
    candidates = [v for v in ancestors([term.likelihood for term in observed]) if _is_array_leaf(v)
                  and v not in values and value_of(v).shape[0] == length]
    prior_graphs = list(model.free_RVs) + list(model.potentials)
    in_prior = set(ancestors(prior_graphs)) if prior_graphs else set()
    ambiguous = [v for v in candidates if v in in_prior]
    if ambiguous:
        raise ModelSpecificationError(
            f"Data tensor(s) {[describe(v) for v in ambiguous]} have n = {length} rows and feed both "
            "the likelihood and the prior/potentials, so it is unclear whether to subsample them. "
            "Name the per-row tensors explicitly with data=[...] (pm.Data names or tensors)."
        )
    return candidates


def _row_latents(model: pm.Model, observed: Sequence[Observed], length: int) -> list[Variable]:
    """Value variables with ``length`` entries along their first axis that feed ``observed``
    (static shapes where pytensor knows them; the initial point, which compiles a function, otherwise)."""
    feeding = set(ancestors([term.likelihood for term in observed]))
    candidates = [v for v in model.value_vars if v in feeding and v.type.ndim >= 1]
    if any(v.type.shape[0] is None for v in candidates):
        point = model.initial_point()
        return [v for v in candidates if np.shape(point[v.name])[0] == length]
    return [v for v in candidates if v.type.shape[0] == length]


def row_layout(model: pm.Model, data: Sequence[str | Variable] | None = None,
               full_batch: bool = False) -> tuple[int, list[RowGroup]]:
    """(n, row groups): n rows of the longest group, groups longest first (see module docstring).

    Full batch, or a model without observed variables, has one "row" (the whole likelihood) and no groups.
    """
    if full_batch or not model.observed_RVs:
        return 1, []
    terms = observed_likelihoods(model)
    lengths = _observed_lengths(terms)
    user = _resolve_user_data(model, data, set(lengths.values())) if data is not None else None
    groups = []
    for length in sorted(set(lengths.values()), reverse=True):
        observed = [term for term in terms if lengths[term.name] == length]
        values = [row_source(term.value) for term in observed]
        if user is None:
            tensors = _detect_row_data(model, observed, length)
        else:
            tensors = [v for v in user if value_of(v).shape[0] == length]
        groups.append(RowGroup(tuple(observed), length, tuple(values + [t for t in tensors if t not in values]),
                               tuple(_row_latents(model, observed, length))))
    return groups[0].length, groups


def row_tensors(groups: Sequence[RowGroup]) -> list[Variable]:
    """Every group's data tensors once, in the compiled functions' input order."""
    seen: list[Variable] = []
    for group in groups:
        seen.extend(t for t in group.tensors if t not in seen)
    return seen
