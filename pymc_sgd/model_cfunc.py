"""Bind a model's compiled pytensor functions to the kernels' fixed-signature C function.

The kernels (``pymc_sgd.kernels``) call the model through ``evaluate`` of
``pymc_sgd.kernels.model``, a numba ``cfunc`` whose type does not depend on the model, so they are
compiled once and cached on disk. This module writes that cfunc for one model: it rebuilds each
data array from its address and shape (``numba.carray``, no copy) and calls the pytensor
functions, which pytensor compiles and caches itself (``pytensor.config.numba__cache``).

The cfunc is cached on disk too: its source is written to ``<pytensor base_compiledir>/pymc_sgd/``
under a name made from pytensor's cache keys of the three functions and the data layout, and
compiled with numba's ``cache=True``; another process with the same model loads it (about 0.1 s
instead of 1.5 s of linking). Functions pytensor does not cache get an uncached cfunc.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numba
import numpy as np
import pytensor
from numba import cfunc
from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

from .kernels.model import EVALUATE_SIGNATURE
from .unrolled import RowLoop

IMPORTS = """import math
import numpy as np
from numba import carray, cfunc
from pymc_sgd.kernels.model import EVALUATE_SIGNATURE, FULL_PARTS, GRADIENT, WEIGHTED_GRADIENT, address_as_voidptr
from pymc_sgd.kernels.scalar_math import digamma, log1mexp, sigmoid, softplus
"""
HEADER = IMPORTS + """from pymc_sgd.model_cfunc import BINDING

fn, grad_fn, full_fn = BINDING  # used only when numba compiles; a cache hit never reads them


@cfunc(EVALUATE_SIGNATURE, cache=True, error_model="numpy")
"""
BINDING: list = [None, None, None]  # the pytensor functions a generated module compiles against


def _prefetch_source(arrays: Sequence[np.ndarray]) -> list[str]:
    """A first pass reading one element per cache line of each batch row of the data: independent
    loads overlap, so the row loop finds its rows in cache (a 30-column logistic regression: ~1.7x)."""
    reads = [f"d{k}[r]" for k, a in enumerate(arrays) if a.ndim == 1] + [
        f"d{k}[r, {j}]" for k, a in enumerate(arrays) if a.ndim == 2 for j in range(0, a.shape[1], 8)]
    if not reads:
        return []
    return ["        touched = 0.0",
            "        for i in range(batch):",
            "            r = idx[i]",
            f"            touched += {' + '.join(reads)}",
            "        touched *= 0.0  # not 0 when a value is inf or NaN: the reads cannot be optimised away"]


def _gradient_source(data: str, loop: RowLoop | None, arrays: Sequence[np.ndarray], weighted: bool) -> list[str]:
    """The GRADIENT branch: pytensor's grad_fn (with one weight per row when ``weighted``: GRADIENT's one scale
    repeated, WEIGHTED_GRADIENT's weights), or the unrolled row loop (``pymc_sgd.unrolled``)."""
    if loop is None:
        scale = "carray(scale_ptr, ())"
        if weighted:
            scale = "weights"
            weights = ["        if what == WEIGHTED_GRADIENT:",
                       "            weights = carray(scale_ptr, (batch,))",
                       "        else:",
                       "            weights = np.full(batch, carray(scale_ptr, (1,))[0])"]
        return [*(weights if weighted else []),
                f"        grad = grad_fn(w, carray(idx_ptr, (batch,)), {scale}{data})[0]",
                "        for i in range(d):",
                "            out[i] = grad[i]"]
    d = len(loop.once)
    return [
        "        idx = carray(idx_ptr, (batch,))",
        *_prefetch_source(arrays),
        *(f"        {line}" for line in loop.hoisted),
        *(f"        acc{k} = 0.0" for k in range(d)),
        "        for i in range(batch):",
        "            r = idx[i]",
        *(f"            {line}" for line in loop.in_loop),
        *(f"            acc{k} += {element}" for k, element in enumerate(loop.per_row)),
        "        scale = carray(scale_ptr, (1,))[0]",
        *(f"        out[{k}] = -({element} + scale * acc{k})" for k, element in enumerate(loop.once)),
        *(["        out[0] += touched"] if _prefetch_source(arrays) else []),
    ]


def _source(arrays: Sequence[np.ndarray], columns: int, loop: RowLoop | None, weighted: bool) -> str:
    unpack = []
    for k, array in enumerate(arrays):
        shape = "".join(f"shapes[{k * columns + j}], " for j in range(array.ndim))
        unpack.append(f"    d{k} = carray(address_as_voidptr(addresses[{k}]), ({shape}), np.{array.dtype})")
    data = "".join(f", d{k}" for k in range(len(arrays)))
    return "\n".join([
        "def evaluate(what, w_ptr, d, idx_ptr, batch, scale_ptr, addresses, shapes, out_ptr):",
        "    w = carray(w_ptr, (d,))",
        *unpack,
        "    out = carray(out_ptr, (2 * d + 2,))",  # GRADIENT writes out[:d] only; element loops, as a
        # slice assignment compiles a shape-error path (seconds of string formatting code)
        # NaN first: a cfunc cannot raise, so when the model raises (numba prints the exception) the
        # output stays NaN and the kernels' divergence guard stops the chain.
        "    for i in range(d if what == GRADIENT or what == WEIGHTED_GRADIENT else 2 * d + 2):",
        "        out[i] = np.nan",
        f"    if what == GRADIENT{' or what == WEIGHTED_GRADIENT' if weighted else ''}:",
        *_gradient_source(data, loop, arrays, weighted),
        "        return",
        "    if what == WEIGHTED_GRADIENT:  # a model compiled without weights: out stays NaN (a divergence)",
        "        return",
        "    if what == FULL_PARTS:",
        f"        log_prior, grad_prior, log_lik, grad_lik = full_fn(w{data})",
        "    else:",
        f"        log_prior, grad_prior, log_lik, grad_lik = fn(w, carray(idx_ptr, (batch,)){data})",
        "    out[0] = log_prior.item()",
        "    out[1] = log_lik.item()",
        "    for i in range(d):",
        "        out[2 + i] = grad_prior[i]",
        "        out[2 + d + i] = grad_lik[i]",
    ])


def layout(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(addresses, shapes) of C-contiguous arrays, as ``evaluate`` reads them."""
    columns = max([1] + [a.ndim for a in arrays])
    addresses = np.array([a.ctypes.data for a in arrays], dtype=np.int64)
    shapes = np.zeros((len(arrays), columns), dtype=np.int64)
    for k, array in enumerate(arrays):
        if not array.flags.c_contiguous:
            raise ValueError(f"array {k} of the model's data is not C-contiguous")
        shapes[k, :array.ndim] = array.shape
    return addresses, shapes


def _cache_key(source: str, fns: Sequence[object]) -> str | None:
    """Digest of everything the compiled cfunc depends on, or None when pytensor does not cache a function."""
    keys = [CACHED_SRC_FUNCTIONS.get(getattr(f, "py_func", None)) for f in fns if f is not None]
    if None in keys or not pytensor.config.numba__cache:
        return None
    kernels = Path(__file__).with_name("kernels")
    parts = [HEADER, source, *keys, str(EVALUATE_SIGNATURE), numba.__version__, pytensor.__version__,
             kernels.joinpath("model.py").read_text(), kernels.joinpath("scalar_math.py").read_text()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _import_cached(source: str, key: str) -> object:
    """Write the module once (atomically), import it: numba's cache=True finds the compiled cfunc."""
    directory = Path(pytensor.config.base_compiledir) / "pymc_sgd"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"evaluate_{key}.py"
    if not path.exists():
        handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(handle, "w") as file:
            file.write(HEADER + source + "\n")
        os.replace(temporary, path)
    name = f"pymc_sgd_evaluate_{key}"
    # The cached cfunc links pytensor's generated functions, whose numba environments name numba's
    # stand-in module for generated code; loading them imports it by that name.
    sys.modules.setdefault(numba.core.utils._dynamic_modname, numba.core.utils._dynamic_module)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name].evaluate


def build_evaluate(fn: object, grad_fn: object | None, full_fn: object, arrays: Sequence[np.ndarray],
                   loop: RowLoop | None = None, weighted: bool = False) -> object:
    """The ``evaluate`` cfunc for pytensor's numba functions ``fn(w, idx, *data)``,
    ``grad_fn(w, idx, scale, *data)`` and ``full_fn(w, *data)``, for data of these arrays' dtypes and ranks.
    With an unrolled gradient ``loop`` (``pymc_sgd.unrolled``) GRADIENT runs it instead of grad_fn (None);
    ``weighted``: grad_fn's scale is one weight per row (and the cfunc takes WEIGHTED_GRADIENT)."""
    source = _source(arrays, max([1] + [a.ndim for a in arrays]), loop, weighted)
    BINDING[:] = fn, grad_fn, full_fn
    key = _cache_key(source, BINDING)
    if key is not None:
        try:
            return _import_cached(source, key)
        except OSError:  # a read-only cache directory: compile in memory below
            pass
    namespace = {"fn": fn, "grad_fn": grad_fn, "full_fn": full_fn}
    exec(IMPORTS + source, namespace)  # noqa: S102 (generated from the model's graph and data layout only)
    return cfunc(EVALUATE_SIGNATURE, error_model="numpy")(namespace["evaluate"])
