"""Scale families in a PyMC graph: a scale and the values it scales, for the full-data samplers' scale moves.

A family (``kernels.scale_moves``) is a free scale s, sampled as w_s = log s (PyMC's log transform), and
members x_k = c_k + s e_k whose standardised part e_k has a law free of s. Two kinds are found:

- a ``GaussianRandomWalk`` with innovation SD s and a constant drift mu: x_t = x_0 + t mu + s (eps_1 + ...
  + eps_t), members x_1 .. x_{T-1}, centres x_0 + t mu;
- a group effect (``hierarchy.GroupEffect``) with scale s and a location that is a constant or another free
  scalar: its groups that the sampler runs centred (v_g = a_g = loc + s z_g), centre loc. Groups it runs
  non-centred (v_g = z_g) do not move with s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.distributions.timeseries import RandomWalkRV
from pymc.logprob.transforms import LogTransform
from pytensor.graph.basic import Variable
from pytensor.tensor.elemwise import DimShuffle
from pytensor.tensor.random.basic import NormalRV

from .hierarchy import GroupEffect, Reparameterisation, depends_on
from .kernels.scale_moves import ScaleMoves


@dataclass(frozen=True)
class ScaleFamily:
    """A scale s = exp(w[scale]) and the values it scales.

    Attributes
    ----------
    scale : the value variable of log s (e.g. ``"sigma_log__"``).
    values : the value variable holding the members.
    members : the members' positions in ``values``.
    centre : the value variable whose element ``centre_at`` each member's centre adds (None: none).
    centre_at : that element's position.
    offsets : the constant each member's centre adds (t mu of a walk, a constant location).
    effect : the group effect's index in the step's ``group_effects`` (None for a walk): only its groups
        that the sampler runs centred are members.
    """

    scale: str
    values: str
    members: np.ndarray
    centre: str | None
    centre_at: int
    offsets: np.ndarray
    effect: int | None = None


def _unwrapped(graph: Variable) -> Variable:
    """The graph under any dimension shuffles (PyMC's expand_dims of a scalar parameter, a squeeze)."""
    while graph.owner is not None and isinstance(graph.owner.op, DimShuffle):
        graph = graph.owner.inputs[0]
    return graph


def _log_scale(model: pm.Model, graph: Variable) -> str | None:
    """The value variable's name when ``graph`` is a free random variable with PyMC's log transform."""
    graph = _unwrapped(graph)
    if graph in model.free_RVs and isinstance(model.rvs_to_transforms.get(graph), LogTransform):
        return model.rvs_to_values[graph].name
    return None


def _constant(graph: Variable) -> float | None:
    try:
        return float(pt.get_underlying_scalar_constant_value(graph))
    except Exception:  # noqa: BLE001 (not a constant: pytensor raises NotScalarConstantError)
        return None


def _random_walk(model: pm.Model, rv: Variable, sampled: set[str]) -> ScaleFamily | None:
    """The family of a 1-D GaussianRandomWalk with a log-transformed innovation SD and a constant drift."""
    if rv.ndim != 1 or model.rvs_to_transforms.get(rv) is not None:
        return None
    init, innovations = rv.owner.inputs[:2]
    if not isinstance(getattr(innovations.owner, "op", None), NormalRV):
        return None
    drift, sd = (_unwrapped(p) for p in innovations.owner.op.dist_params(innovations.owner))
    scale, mu = _log_scale(model, sd), _constant(drift)
    if scale is None or scale not in sampled or mu is None or depends_on(init, {sd}):
        return None
    steps = int(model.initial_point()[model.rvs_to_values[rv].name].size)
    t = np.arange(1, steps)
    return ScaleFamily(scale, model.rvs_to_values[rv].name, t, model.rvs_to_values[rv].name, 0, mu * t)


def _scale_value(graph: Variable, sampled: dict[str, Variable]) -> str | None:
    """The name of the value variable w_s when a graph in value variables is exp(w_s) (a log-transformed scale)."""
    owner = _unwrapped(graph).owner
    if owner is None or getattr(getattr(owner.op, "scalar_op", None), "name", None) != "exp":
        return None
    inner = _unwrapped(owner.inputs[0])
    return inner.name if inner.name in sampled and sampled[inner.name] is inner else None


def _group_effect(effect: GroupEffect, index: int, sampled: dict[str, Variable]) -> ScaleFamily | None:
    """The family of a group effect whose scale is exp(w_s) and whose location is a constant or a free scalar."""
    scale = _scale_value(effect.scale, sampled)
    loc = _unwrapped(effect.loc)
    members = np.arange(effect.size)
    if scale is None or loc.ndim != 0:
        return None
    if loc.name in sampled and sampled[loc.name] is loc:
        return ScaleFamily(scale, effect.name, members, loc.name, 0, np.zeros(effect.size), index)
    value = _constant(loc)
    if value is None:
        return None
    return ScaleFamily(scale, effect.name, members, None, 0, np.full(effect.size, value), index)


def find_scale_families(model: pm.Model, sampled: Sequence[Variable],
                        effects: Sequence[GroupEffect]) -> list[ScaleFamily]:
    """The scale families among the ``sampled`` value variables (see the module docstring).

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model() as model:
    ...     sigma = pm.HalfNormal("sigma", 0.5)
    ...     x = pm.GaussianRandomWalk("x", sigma=sigma, init_dist=pm.Normal.dist(0, 2), steps=9)
    >>> [(f.scale, f.values, len(f.members)) for f in find_scale_families(model, model.value_vars, [])]
    [('sigma_log__', 'x', 9)]
    """
    names = {v.name: v for v in sampled}
    families = []
    for rv in model.free_RVs:
        if isinstance(rv.owner.op, RandomWalkRV) and model.rvs_to_values[rv].name in names:
            family = _random_walk(model, rv, set(names))
            if family is not None:
                families.append(family)
    for index, effect in enumerate(effects):
        family = _group_effect(effect, index, names)
        if family is not None:
            families.append(family)
    return families


def scale_moves(families: Sequence[ScaleFamily], slices: dict[str, slice], proposal_sd: np.ndarray, every: int,
                coordinates: Reparameterisation | None) -> ScaleMoves:
    """The kernels' ``ScaleMoves`` for these families in the flat vector (``slices``: each value variable's), with
    only the groups that ``coordinates`` (the sampler's, or the model's as written) runs centred as a group
    effect's members."""
    scale, first, members, centres, offsets = [], [0], [], [], []
    for family in families:
        keep = np.ones(len(family.members), dtype=bool)
        if family.effect is not None:
            keep = np.array(coordinates.centred[family.effect], dtype=bool)
        start = slices[family.values].start
        scale.append(slices[family.scale].start)
        members.append(start + family.members[keep])
        centre = -1 if family.centre is None else slices[family.centre].start + family.centre_at
        centres.append(np.full(int(keep.sum()), centre))
        offsets.append(family.offsets[keep])
        first.append(first[-1] + int(keep.sum()))
    as_int = (lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64))
    return ScaleMoves(np.array(scale, dtype=np.int64), np.array(first, dtype=np.int64), as_int(members),
                      as_int(centres), np.concatenate(offsets) if offsets else np.zeros(0),
                      np.asarray(proposal_sd, dtype=np.float64), int(every))
