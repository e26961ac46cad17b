"""Unroll a pytensor graph with small static shapes into straight-line scalar Python for numba.

A minibatch gradient of a small model (a few parameters, a row of a few numbers) costs more in
the generated array code's allocations than in its arithmetic: seed 000's 2-parameter model with
B = 10 spends ~0.5 us a call in pytensor's function against ~20 ns of floating point. When every
tensor of the per-row log-likelihood, its gradient and the prior's gradient has a small static
shape, each element can be one scalar statement instead (``t7 = t3 * d0[r]``), and the row sum
becomes one loop over the batch with no allocation (``pymc_sgd.model_cfunc``).

``Unroller.unroll(outputs)`` walks the graph in topological order keeping, for every variable,
its elements in C order as Python expressions (literals, input reads such as ``w[3]`` or
``d0[r, 1]``, or temporaries). It supports Elemwise of the scalar ops in ``SCALAR_OPS`` (and
Composites of them), DimShuffle, Sum/Prod/Max/Min, Alloc, MakeVector, (Inc)Subtensor with constant
indices, Reshape, Join, Dot, shape ops and parameter checks; anything else raises ``NotUnrollable``
and the caller keeps pytensor's array code. Each temporary records whether it depends on the row, so
statements that do not are hoisted out of the row loop.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytensor.scalar as ps
from pytensor.graph.basic import Constant, Variable
from pytensor.graph.traversal import io_toposort
from pytensor.raise_op import CheckAndRaise
from pytensor.scalar import math as psm
from pytensor.tensor.basic import Alloc, Join, MakeVector, ScalarFromTensor, TensorFromScalar
from pytensor.tensor.elemwise import CAReduce, DimShuffle, Elemwise
from pytensor.tensor.math import Dot
from pytensor.tensor.shape import Reshape, Shape, Shape_i, SpecifyShape
from pytensor.tensor.subtensor import IncSubtensor, Subtensor, indices_from_subtensor

MAX_ELEMENTS = 4096  # elements of all intermediate tensors; larger graphs stay array code


class NotUnrollable(Exception):
    """The graph has an op, a dynamic shape or a size the unroller does not handle."""


def _call(name: str) -> Callable[..., str]:
    return lambda *a: f"{name}({', '.join(a)})"


def _infix(symbol: str) -> Callable[..., str]:
    return lambda *a: "(" + f" {symbol} ".join(a) + ")"


# Scalar op -> Python expression of its operands' expressions (numba nopython, error_model="numpy").
SCALAR_OPS: dict[type, Callable[..., str]] = {
    ps.Add: _infix("+"), ps.Sub: _infix("-"), ps.Mul: _infix("*"), ps.TrueDiv: _infix("/"),
    ps.IntDiv: _infix("//"), ps.Pow: _infix("**"),
    ps.LT: _infix("<"), ps.GT: _infix(">"), ps.LE: _infix("<="), ps.GE: _infix(">="),
    ps.EQ: _infix("=="), ps.NEQ: _infix("!="), ps.AND: _infix("&"), ps.OR: _infix("|"),
    ps.Neg: lambda a: f"(-{a})", ps.Sqr: lambda a: f"({a} * {a})", ps.Reciprocal: lambda a: f"(1.0 / {a})",
    ps.Identity: lambda a: a, ps.Second: lambda a, b: b,
    ps.Switch: lambda c, a, b: f"({a} if {c} else {b})",
    ps.Exp: _call("np.exp"), ps.Log: _call("np.log"), ps.Log1p: _call("np.log1p"), ps.Expm1: _call("np.expm1"),
    ps.Sqrt: _call("np.sqrt"), ps.Abs: _call("np.abs"), ps.Sign: _call("np.sign"), ps.Floor: _call("np.floor"),
    ps.Ceil: _call("np.ceil"), ps.Tanh: _call("np.tanh"), ps.Sin: _call("np.sin"), ps.Cos: _call("np.cos"),
    ps.Log2: _call("np.log2"), ps.Log10: _call("np.log10"), ps.Exp2: _call("np.exp2"),
    ps.Maximum: _call("np.maximum"), ps.Minimum: _call("np.minimum"),
    psm.Erf: _call("math.erf"), psm.Erfc: _call("math.erfc"), psm.GammaLn: _call("math.lgamma"),
    psm.Sigmoid: _call("sigmoid"), psm.Softplus: _call("softplus"), psm.Log1mexp: _call("log1mexp"),
    psm.Psi: _call("digamma"),
}
REDUCTIONS = {ps.Add: "+", ps.Mul: "*"}


def _tree(symbol: str, operands: Sequence[str]) -> str:
    """a0 o a1 o ... as a balanced tree: depth log2(m) instead of a chain of m dependent operations
    (a 30-term dot product is then ~4x faster; rounding differs from a chain's by O(log m) ulp)."""
    if len(operands) == 1:
        return operands[0]
    half = len(operands) // 2
    return f"({_tree(symbol, operands[:half])} {symbol} {_tree(symbol, operands[half:])})"


def _literal(value: object) -> str:
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (bool, int)):
        return repr(value)
    value = float(value)
    if np.isnan(value):
        return "np.nan"
    if np.isinf(value):
        return "np.inf" if value > 0 else "(-np.inf)"
    return repr(value)


def _cast(dtype: str) -> Callable[[str], str]:
    kind = np.dtype(dtype).kind
    if kind == "f":
        return _call("float")
    if kind in "iu":
        return _call("int")
    if kind == "b":
        return _call("bool")
    raise NotUnrollable(f"cast to {dtype}")


def _constant_index(entry: object) -> object:
    """A Subtensor index entry with constant bounds as a Python slice or int."""
    if isinstance(entry, slice):
        return slice(*(None if e is None else _constant_index(e) for e in (entry.start, entry.stop, entry.step)))
    if isinstance(entry, Constant):
        return int(entry.data)
    if isinstance(entry, (int, np.integer)):
        return int(entry)
    raise NotUnrollable("Subtensor index that is not a constant")


MOVES = (DimShuffle, Reshape, SpecifyShape, Alloc, ScalarFromTensor, TensorFromScalar)
STRUCTURAL = (*MOVES, Shape, Shape_i, MakeVector, CheckAndRaise, CAReduce, Subtensor, IncSubtensor, Join, Dot)


def _template(scalar_op) -> Callable[..., str]:
    if isinstance(scalar_op, ps.Cast):
        return _cast(scalar_op.o_type.dtype)
    if type(scalar_op) in SCALAR_OPS:
        return SCALAR_OPS[type(scalar_op)]
    raise NotUnrollable(f"scalar op {scalar_op}")


def _known_scalar(scalar_op) -> bool:
    if isinstance(scalar_op, ps.Composite):
        return all(_known_scalar(inner.op) for inner in scalar_op.fgraph.apply_nodes)
    return type(scalar_op) in SCALAR_OPS or isinstance(scalar_op, ps.Cast)


def check_ops(inputs: Sequence[Variable], outputs: Sequence[Variable]) -> None:
    """Raise NotUnrollable when the graph has an op the unroller does not know: called before
    pytensor's rewrites, which can take minutes on graphs that would not be unrolled anyway
    (e.g. a Categorical's softmax gradient)."""
    for node in io_toposort(list(inputs), list(outputs)):
        op = node.op
        known = isinstance(op, STRUCTURAL) or (isinstance(op, Elemwise) and _known_scalar(op.scalar_op))
        if not known:
            raise NotUnrollable(f"op {op}")


class Unroller:
    """Straight-line scalar code for graphs of small static shapes (see module docstring).

    ``elements`` maps each known variable to its elements (C order); ``row_dependent`` holds the
    expressions that depend on the current row; ``statements`` is the code so far, as
    (depends on the row, line) pairs in dependency order.
    """

    def __init__(self, inputs: dict[Variable, Sequence[str]], row_inputs: Sequence[Variable] = ()):
        self.elements: dict[Variable, list[str]] = {v: list(e) for v, e in inputs.items()}
        self.row_dependent: set[str] = {e for v in row_inputs for e in inputs[v]}
        self.statements: list[tuple[bool, str]] = []
        self._names = itertools.count()
        self._size = 0

    def unroll(self, outputs: Sequence[Variable]) -> list[list[str]]:
        """Emit the statements computing ``outputs``; return each one's elements (C order)."""
        for node in io_toposort(list(self.elements), list(outputs)):
            for var, elements in zip(node.outputs, self._node(node)):
                self.elements[var] = elements
        return [self._get(v) for v in outputs]

    def _get(self, var: Variable) -> list[str]:
        if var not in self.elements:
            if not isinstance(var, Constant):
                raise NotUnrollable(f"input {var} is not given")
            self.elements[var] = [_literal(x) for x in np.asarray(var.data).ravel()]
        return self.elements[var]

    def _shape(self, var: Variable) -> tuple[int, ...]:
        shape = getattr(var.type, "shape", ())
        if any(s is None for s in shape):
            raise NotUnrollable(f"{var} has no static shape")
        return tuple(shape)

    def _emit(self, expression: str, operands: Sequence[str]) -> str:
        """A temporary for ``expression``, in the row loop if any operand is."""
        self._size += 1
        if self._size > MAX_ELEMENTS:
            raise NotUnrollable("graph too large to unroll")
        name = f"t{next(self._names)}"
        row = any(o in self.row_dependent for o in operands)
        if row:
            self.row_dependent.add(name)
        self.statements.append((row, f"{name} = {expression}"))
        return name

    def _node(self, node) -> list[list[str]]:
        op = node.op
        inputs = [self._get(v) for v in node.inputs] if not isinstance(op, (Shape, Shape_i)) else []
        if isinstance(op, Elemwise):
            return self._elemwise(node, inputs)
        if isinstance(op, MOVES):
            positions = self._positions(node)
            return [[inputs[0][k] for k in positions]]
        if isinstance(op, (Shape, Shape_i)):
            shape = self._shape(node.inputs[0])
            return [[_literal(s) for s in (shape if isinstance(op, Shape) else [shape[op.i]])]]
        if isinstance(op, MakeVector):
            return [[e[0] for e in inputs]]
        if isinstance(op, CheckAndRaise):
            conditions = [c for condition in inputs[1:] for c in condition]
            test = " and ".join(conditions) or "True"
            return [[self._emit(f"({v} if {test} else np.nan)", [v, *conditions]) for v in inputs[0]]]
        if isinstance(op, CAReduce):
            return [self._reduce(node, inputs[0])]
        if isinstance(op, (Subtensor, IncSubtensor)):
            return [self._subtensor(node, inputs)]
        if isinstance(op, Join):
            return [self._join(node, inputs)]
        if isinstance(op, Dot):
            return [self._dot(node, inputs)]
        raise NotUnrollable(f"op {op}")

    def _positions(self, node) -> np.ndarray:
        """For ops that only move elements: which input element each output element is."""
        in_shape, out_shape = self._shape(node.inputs[0]), self._shape(node.outputs[0])
        source = np.arange(int(np.prod(in_shape))).reshape(in_shape)
        if isinstance(node.op, DimShuffle):
            source = source.transpose(node.op.transposition)  # kept axes in order, dropped (length 1) last
        if isinstance(node.op, Alloc):
            return np.broadcast_to(source, out_shape).ravel()
        return source.reshape(out_shape).ravel()

    def _elemwise(self, node, inputs: list[list[str]]) -> list[list[str]]:
        out_shape = self._shape(node.outputs[0])
        positions = [np.broadcast_to(np.arange(len(e)).reshape(self._shape(v)), out_shape).ravel()
                     for v, e in zip(node.inputs, inputs)]
        outputs = [[] for _ in node.outputs]
        for k in range(int(np.prod(out_shape))):
            operands = [e[p[k]] for e, p in zip(inputs, positions)]
            for out, element in zip(outputs, self._scalar(node.op.scalar_op, operands)):
                out.append(element)
        return outputs

    def _scalar(self, scalar_op, operands: list[str]) -> list[str]:
        """The outputs of one scalar op (a Composite: its inner graph, op by op) on operand expressions."""
        if isinstance(scalar_op, ps.Composite):
            values = dict(zip(scalar_op.fgraph.inputs, operands))
            for inner in scalar_op.fgraph.toposort():
                inner_operands = [values[v] if v in values else _literal(v.data) for v in inner.inputs]
                values.update(zip(inner.outputs, self._scalar(inner.op, inner_operands)))
            return [values[v] if v in values else _literal(v.data) for v in scalar_op.fgraph.outputs]
        return [self._emit(_template(scalar_op)(*operands), operands)]

    def _reduce(self, node, elements: list[str]) -> list[str]:
        scalar_op = node.op.scalar_op
        shape = self._shape(node.inputs[0])
        axes = tuple(range(len(shape))) if node.op.axis is None else tuple(node.op.axis)
        index = np.moveaxis(np.arange(len(elements)).reshape(shape), axes, range(-len(axes), 0))
        groups = index.reshape(-1, int(np.prod([shape[a] for a in axes])))
        out = []
        for group in groups:
            operands = [elements[k] for k in group]
            if type(scalar_op) in REDUCTIONS:
                identity = "0.0" if type(scalar_op) is ps.Add else "1.0"
                expression = _tree(REDUCTIONS[type(scalar_op)], operands) if operands else identity
            elif type(scalar_op) in (ps.Maximum, ps.Minimum) and operands:
                expression = functools.reduce(SCALAR_OPS[type(scalar_op)], operands)
            else:
                raise NotUnrollable(f"reduction {scalar_op}")
            out.append(self._emit(expression, operands))
        return out

    def _subtensor(self, node, inputs: list[list[str]]) -> list[str]:
        op = node.op
        shape = self._shape(node.inputs[0])
        index_inputs = node.inputs[1:] if isinstance(op, Subtensor) else node.inputs[2:]
        index = tuple(_constant_index(e) for e in indices_from_subtensor(index_inputs, op.idx_list))
        positions = np.arange(len(inputs[0])).reshape(shape)[index]
        if isinstance(op, Subtensor):
            return [inputs[0][k] for k in np.ravel(positions)]
        out = list(inputs[0])
        updates = np.broadcast_to(np.arange(len(inputs[1])).reshape(self._shape(node.inputs[1])),
                                  np.shape(positions)).ravel()
        for k, u in zip(np.ravel(positions), updates):
            value = inputs[1][u]
            out[k] = value if op.set_instead_of_inc else self._emit(f"({out[k]} + {value})", [out[k], value])
        return out

    def _join(self, node, inputs: list[list[str]]) -> list[str]:
        axis = _constant_index(node.inputs[0])
        pieces, offset = [], 0
        for var, elements in zip(node.inputs[1:], inputs[1:]):
            pieces.append(np.arange(offset, offset + len(elements)).reshape(self._shape(var)))
            offset += len(elements)
        flat = [e for elements in inputs[1:] for e in elements]
        return [flat[k] for k in np.concatenate(pieces, axis=axis).ravel()]

    def _dot(self, node, inputs: list[list[str]]) -> list[str]:
        a_shape, b_shape = (self._shape(v) for v in node.inputs)
        a = np.arange(len(inputs[0])).reshape(a_shape if len(a_shape) == 2 else (1, *a_shape))
        b = np.arange(len(inputs[1])).reshape(b_shape if len(b_shape) == 2 else (*b_shape, 1))
        out = []
        for i in range(a.shape[0]):
            for j in range(b.shape[1]):
                products = [self._emit(f"({inputs[0][a[i, k]]} * {inputs[1][b[k, j]]})",
                                       [inputs[0][a[i, k]], inputs[1][b[k, j]]]) for k in range(a.shape[1])]
                out.append(self._emit(_tree("+", products), products))
        return out


@dataclass(frozen=True)
class RowLoop:
    """Unrolled code of ``once + sum over rows r of per_row``: ``hoisted`` statements run once,
    ``in_loop`` ones for every row, then ``per_row`` elements are summed and ``once`` ones added."""

    hoisted: tuple[str, ...]
    in_loop: tuple[str, ...]
    per_row: tuple[str, ...]
    once: tuple[str, ...]


def row_loop(inputs: dict[Variable, Sequence[str]], row_inputs: Sequence[Variable],
             per_row: Sequence[Variable], once: Sequence[Variable]) -> RowLoop:
    """Unroll ``per_row`` (graphs of the row inputs and the others) and ``once`` (of the others);
    raises NotUnrollable. Element lists of the outputs are flattened in order."""
    unroller = Unroller(inputs, row_inputs)
    once_elements = [e for elements in unroller.unroll(once) for e in elements]
    row_elements = [e for elements in unroller.unroll(per_row) for e in elements]
    if any(e in unroller.row_dependent for e in once_elements):
        raise NotUnrollable("a once-only output depends on the row")
    return RowLoop(tuple(line for row, line in unroller.statements if not row),
                   tuple(line for row, line in unroller.statements if row),
                   tuple(row_elements), tuple(once_elements))
