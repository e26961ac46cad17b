"""The model as every kernel sees it: one C function with a fixed signature and its arrays' addresses.

    model = (evaluate, addresses, shapes)

``evaluate`` is the address (int64) of a numba ``cfunc`` made per model by ``pymc_sgd.model_cfunc``,
all of one C signature, called through a function pointer (``_call``): every kernel compiles once
and numba caches it on disk (``cache=True``), so a new model, or a new worker process, costs only
its own gradient. An address rather than the cfunc object: numba types a first-class function
argument afresh at every call (~100 us, as much as 1000 updates of a small model).
``addresses`` and ``shapes`` locate the per-row data and held values (int64 addresses; one row of
``shapes`` per array, zero-padded); the estimator that made them keeps the arrays alive.

    evaluate(what, w*, d, idx*, batch, scale*, addresses*, shapes*, out*)

- GRADIENT: out[:d] = grad U_hat(w) = -(grad log p(w) + scale grad sum_{i in idx} log p(x_i | w));
- WEIGHTED_GRADIENT: the same with one weight per row, -(grad log p(w) + sum_j scale_j grad log p(x_{idx_j} | w))
  (stratified batches, ``batching.STRATIFIED``; only a model compiled with weights takes it, any other leaves
  out NaN, which stops the chain as a divergence);
- PARTS: out = [log p(w), sum_{i in idx} log p(x_i | w), grad log p(w) (d), grad of the sum (d)];
- FULL_PARTS: PARTS over all rows, read in place (idx unused).
Every array passed must be C-contiguous (checked when a kernel is compiled).
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import intrinsic

GRADIENT = 0
PARTS = 1
FULL_PARTS = 2
WEIGHTED_GRADIENT = 3

EVALUATE_SIGNATURE = types.void(
    types.int64, types.CPointer(types.float64), types.int64, types.CPointer(types.int64), types.int64,
    types.CPointer(types.float64), types.CPointer(types.int64), types.CPointer(types.int64),
    types.CPointer(types.float64))


@intrinsic
def data_pointer(typingctx, array):
    """Pointer to the first element of a C-contiguous array."""
    if not isinstance(array, types.Array) or array.layout != "C":
        raise TypingError(f"data_pointer needs a C-contiguous array, got {array}")

    def codegen(context, builder, signature, args):
        return context.make_array(signature.args[0])(context, builder, args[0]).data

    return types.CPointer(array.dtype)(array), codegen


@intrinsic
def address_as_voidptr(typingctx, address):
    """An int64 address as a void pointer (for numba.carray)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return types.voidptr(types.int64), codegen


@intrinsic
def _call(typingctx, function, what, w, d, idx, batch, scale, addresses, shapes, out):
    """Call the C function at address ``function`` with EVALUATE_SIGNATURE's arguments."""
    def codegen(context, builder, signature, args):
        argument_types = [context.get_value_type(t) for t in EVALUATE_SIGNATURE.args]
        pointer = builder.inttoptr(args[0], ir.FunctionType(ir.VoidType(), argument_types).as_pointer())
        builder.call(pointer, args[1:])
        return context.get_dummy_value()

    return types.void(types.int64, *EVALUATE_SIGNATURE.args), codegen


@njit(cache=True, inline="always")
def _evaluate(model, what, w, idx, scale, out):
    evaluate, addresses, shapes = model
    _call(evaluate, what, data_pointer(w), w.shape[0], data_pointer(idx), idx.shape[0], data_pointer(scale),
          data_pointer(addresses), data_pointer(shapes), data_pointer(out))
    return out


@njit(cache=True, inline="always")
def gradient_into(model, w, idx, scale, out):
    """out = grad U_hat(w) on rows idx with likelihood scale ``scale``: a 1-element array (n / B), or one weight
    per row of idx (a stratified batch; one row: either)."""
    return _evaluate(model, WEIGHTED_GRADIENT if scale.shape[0] > 1 else GRADIENT, w, idx, scale, out)


@njit(cache=True)
def parts_into(model, w, idx, out):
    """out = [log p(w), sum_idx log p(x_i | w), grad log p(w), grad sum_idx log p(x_i | w)] (2 + 2d)."""
    return _evaluate(model, PARTS, w, idx, np.zeros(1), out)


@njit(cache=True)
def full_parts_into(model, w, out):
    """``parts_into`` over all rows, without gathering them."""
    return _evaluate(model, FULL_PARTS, w, np.zeros(0, dtype=np.int64), np.zeros(1), out)


@njit(cache=True, inline="always")
def full_potential_into(model, w, parts, no_rows, zero, grad):
    """U(w) over all rows, with grad U(w) into ``grad`` (FULL_PARTS, no allocation)."""
    d = w.shape[0]
    _evaluate(model, FULL_PARTS, w, no_rows, zero, parts)
    for i in range(d):
        grad[i] = -(parts[2 + i] + parts[d + 2 + i])
    return -(parts[0] + parts[1])
