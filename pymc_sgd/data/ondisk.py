"""Per-row data in memory-mapped files, and reads of row ranges from them.

A model's per-row tensor whose value is (a C-contiguous view of) an ``np.memmap`` (``np.load(path,
mmap_mode="r")`` or ``np.lib.format.open_memmap``) lives on disk: the steps read its rows chunk by chunk
(``pymc_sgd.data.chunks``) and the full-data passes stream it (``pymc_sgd.data.mapreduce``) instead of
touching every page through the mapping. ``DiskArray`` names the file, byte offset, dtype and shape,
so a worker process opens the same file: nothing large is pickled.

PyMC's own ``pm.Data`` copies its value into memory; ``Data`` below is the same container without
the copy, and turns a zarr array (compressed chunks, which compiled code cannot address row by row)
into a memory-mapped ``.npy`` file first, one zarr chunk at a time.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pymc as pm
import pytensor

__all__ = ["Data", "DiskArray", "disk_array"]


@dataclass(frozen=True)
class DiskArray:
    """A C-ordered array stored at byte ``offset`` of ``filename`` (rows along the first axis)."""

    filename: str
    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read_into(self, start: int, out: np.ndarray, descriptor: int | None = None) -> np.ndarray:
        """Rows start .. start + len(out) into ``out`` (C-contiguous, this dtype) with ``os.preadv``,
        which releases the GIL: a reader thread runs beside a compiled sampling loop."""
        view = memoryview(out.reshape(-1).view(np.uint8))
        own = descriptor is None
        descriptor = os.open(self.filename, os.O_RDONLY) if own else descriptor
        try:
            done, position = 0, self.offset + start * self.row_bytes
            while done < len(view):
                count = os.preadv(descriptor, [view[done:]], position + done)
                if count == 0:
                    raise OSError(f"{self.filename} ended before row {start + len(out)}")
                done += count
        finally:
            if own:
                os.close(descriptor)
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows start .. stop as a new in-memory array."""
        return self.read_into(start, np.empty((stop - start, *self.shape[1:]), dtype=self.dtype))


def disk_array(value: np.ndarray) -> DiskArray | None:
    """The file behind ``value`` when it is a C-contiguous view of an ``np.memmap``, else None."""
    if not isinstance(value, np.ndarray) or not value.flags.c_contiguous or value.ndim == 0:
        return None
    base = value
    while base is not None and not isinstance(base, np.memmap):
        base = base.base if isinstance(base.base, np.ndarray) else None
    if base is None or getattr(base, "filename", None) is None:
        return None
    start = value.ctypes.data - base.ctypes.data
    return DiskArray(str(base.filename), int(base.offset) + start, value.dtype, value.shape)


_SPILLED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _zarr_to_npy(array: Any, directory: str | os.PathLike | None) -> np.memmap:
    """A zarr array copied, one chunk of rows at a time, into a new ``.npy`` file, mapped read-only.
    Without a directory the file is temporary (removed when the mapping is collected)."""
    folder = Path(directory) if directory is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=folder, prefix="pymc_sgd_rows_", suffix=".npy")
    os.close(handle)
    target = np.lib.format.open_memmap(name, mode="w+", dtype=array.dtype, shape=array.shape)
    step = int(array.chunks[0]) if array.ndim else 1
    for start in range(0, array.shape[0], step):
        target[start:start + step] = array[start:start + step]
    target.flush()
    del target
    mapped = np.load(name, mmap_mode="r")
    if directory is None:
        weakref.finalize(mapped, os.remove, name)
    return mapped


def Data(name: str, value: Any, *, dims: Any = None, spill_directory: str | os.PathLike | None = None,
         model: pm.Model | None = None) -> pytensor.tensor.TensorVariable:
    """``pm.Data`` that leaves per-row data on disk.

    Parameters
    ----------
    name
        the variable's name in the model, as for ``pm.Data``.
    value
        an in-memory array, an ``np.memmap`` (kept as it is: no copy), or a zarr array, streamed
        chunk by chunk into a memory-mapped ``.npy`` file (never whole in memory).
    dims
        as for ``pm.Data``.
    spill_directory
        where a zarr array's ``.npy`` file goes (kept); by default a temporary file, removed when the
        model is collected.
    model
        the model (default: the one in context).

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(6.0))
    >>> with pm.Model():
    ...     x = pymc_sgd.Data("x", np.load(path, mmap_mode="r"))
    >>> pymc_sgd.data.DiskArray is type(pymc_sgd.data.ondisk.disk_array(x.get_value(borrow=True)))
    True
    """
    model = pm.modelcontext(model)
    if not isinstance(value, np.ndarray) and hasattr(value, "chunks") and hasattr(value, "shape"):
        value = _zarr_to_npy(value, spill_directory)
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    shared = pytensor.shared(array, name=name, borrow=True)
    model.register_data_var(shared, dims=dims)
    return shared
