"""Per-row data in memory-mapped files, and reads of row ranges from them.

A model's per-row tensor whose value is (a C-contiguous view of) an ``np.memmap`` (``np.load(path,
mmap_mode="r")`` or ``np.lib.format.open_memmap``) lives on disk: the steps read its rows chunk by chunk
(``pymc_sgd.data.chunks``) and the full-data passes stream it (``pymc_sgd.data.mapreduce``) instead of
touching every page through the mapping. ``DiskArray`` names the file, byte offset, dtype and shape,
so a worker process opens the same file: nothing large is pickled.

PyMC's own ``pm.Data`` copies its value into memory; ``Data`` below is the same container without
the copy (its value is ``DiskRows``, which also keeps PyMC's InferenceData conversion and pickling from
copying it), and turns a zarr array (compressed chunks, which compiled code cannot address row by row)
into a memory-mapped ``.npy`` file first, one zarr chunk at a time.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pymc as pm
import pytensor

__all__ = ["Data", "DiskArray", "DiskRows", "disk_array"]


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

    def read_into(self, start: int, out: np.ndarray) -> np.ndarray:
        """Rows start .. start + len(out) into ``out`` (C-contiguous, this dtype) with ``os.preadv``,
        which releases the GIL: a reader thread runs beside a compiled sampling loop."""
        view = memoryview(out.reshape(-1).view(np.uint8))
        descriptor = os.open(self.filename, os.O_RDONLY)
        try:
            done, position = 0, self.offset + start * self.row_bytes
            while done < len(view):
                count = os.preadv(descriptor, [view[done:]], position + done)
                if count == 0:
                    raise OSError(f"{self.filename} ended before row {start + len(out)}")
                done += count
        finally:
            os.close(descriptor)
        return out

    def will_need(self, start: int, stop: int) -> None:
        """Ask the kernel to start reading rows start .. stop into its page cache now (asynchronously), so that a
        later ``read_into`` finds them there: the reads ahead then overlap, not one chunk at a time."""
        descriptor = os.open(self.filename, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, self.offset + start * self.row_bytes, (stop - start) * self.row_bytes,
                             os.POSIX_FADV_WILLNEED)
        finally:
            os.close(descriptor)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows start .. stop as a new in-memory array."""
        return self.read_into(start, np.empty((stop - start, *self.shape[1:]), dtype=self.dtype))


def disk_array(value: np.ndarray) -> DiskArray | None:
    """The file behind ``value`` when it is a C-contiguous view of an ``np.memmap``, else None.

    A view's position in the file is measured from the start of the mapping it shares (numpy gives every
    view of a memmap its parent's ``offset``, so that attribute alone would misplace a slice such as x[10:])."""
    if not isinstance(value, np.ndarray) or not value.flags.c_contiguous or value.ndim == 0:
        return None
    base = value
    while base is not None and getattr(base, "_mmap", None) is None:
        base = base.base if isinstance(base.base, np.ndarray) else None
    if base is None or getattr(base, "filename", None) is None or base.mode == "c":
        return None  # not a file, or copy-on-write (mmap_mode="c"): edits in memory the file does not have
    mapped_from = base.offset - base.offset % mmap.ALLOCATIONGRANULARITY  # np.memmap maps from a page boundary
    mapping_address = np.frombuffer(base._mmap, dtype=np.uint8).ctypes.data
    return DiskArray(str(base.filename), mapped_from + value.ctypes.data - mapping_address, value.dtype, value.shape)


class DiskRows(np.memmap):
    """A read-only memory-mapped array that never copies itself whole into memory.

    It pickles as its file name and position (a worker process maps the same file), ``copy.deepcopy``
    returns it unchanged (it cannot be written, and pytensor's ``get_value()``, which PyMC calls when it
    puts the model's data into the InferenceData, deep-copies), and ``astype`` to another dtype (PyMC
    casts observed integer data) writes the cast rows to a new temporary file, chunk by chunk.
    """

    @classmethod
    def open(cls, disk: DiskArray) -> DiskRows:
        """Map the rows read-only, for random access: the kernel's read-ahead around each page fault (128 KiB
        by default) would read 32 pages for every row the warm-up's random subsamples touch. Sequential
        reads go through ``DiskArray.read_into`` instead."""
        rows = cls(disk.filename, dtype=disk.dtype, mode="r", offset=disk.offset, shape=disk.shape)
        if rows._mmap is not None and hasattr(mmap, "MADV_RANDOM"):
            rows._mmap.madvise(mmap.MADV_RANDOM)
        return rows

    def __reduce__(self):
        disk = disk_array(self)
        return (DiskRows.open, (disk,)) if disk is not None else np.asarray(self).__reduce__()

    def __deepcopy__(self, memo: dict) -> DiskRows:
        return self

    def __copy__(self) -> DiskRows:
        return self

    def astype(self, dtype: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        if np.dtype(dtype) == self.dtype:
            return self
        handle, name = tempfile.mkstemp(prefix="pymc_sgd_cast_", suffix=".npy")
        os.close(handle)
        target = np.lib.format.open_memmap(name, mode="w+", dtype=dtype, shape=self.shape)
        step = max(1, (64 << 20) // max(1, self[:1].nbytes))
        for start in range(0, len(self), step):
            target[start:start + step] = np.asarray(self[start:start + step]).astype(dtype, *args, **kwargs)
        target.flush()
        del target
        return _temporary_rows(name)


def _temporary_rows(name: str) -> DiskRows:
    """The .npy file ``name`` as DiskRows, the file removed when they are collected."""
    rows = DiskRows.open(disk_array(np.load(name, mmap_mode="r")))
    weakref.finalize(rows, os.remove, name)
    return rows


def _zarr_to_npy(array: Any, directory: str | os.PathLike | None) -> DiskRows:
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
    if directory is None:
        return _temporary_rows(name)
    return DiskRows.open(disk_array(np.load(name, mmap_mode="r")))


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
    disk = disk_array(value) if isinstance(value, np.ndarray) and not isinstance(value, DiskRows) else None
    if disk is None and isinstance(value, np.memmap) and not isinstance(value, DiskRows):
        warnings.warn(f"pymc_sgd.Data({name!r}): this memory-mapped array is not a C-ordered block of its file (Fortran "
                      "order, a column slice, or mmap_mode='c'), so it is used as an in-memory array (read at random "
                      "and copied to worker processes). Write the file C-ordered and open it with mmap_mode='r'.",
                      RuntimeWarning, stacklevel=2)
    array = value if isinstance(value, DiskRows) else DiskRows.open(disk) if disk is not None else np.asarray(value)
    if dims is not None:  # as pm.Data: a dimension without coordinates gets the data's length
        dims = (dims,) if isinstance(dims, str) else tuple(dims)
        for dim, length in zip(dims, array.shape):
            if dim is not None and dim not in model.coords:
                model.add_coord(dim, length=length)
    shared = pytensor.shared(array, name=name, borrow=True)
    shared.container.storage[0] = array  # the DiskRows themselves: pytensor's filter keeps a plain view
    model.register_data_var(shared, dims=dims)
    return shared
