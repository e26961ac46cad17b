"""Where a model's rows live: in memory, or in memory-mapped ``.npy`` files read chunk by chunk.

- ``ondisk``: the file behind a memory-mapped array (``DiskArray``), reads of row ranges that release
  the GIL, and ``pymc_sgd.Data``, a ``pm.Data`` that keeps memory-mapped and zarr data on disk.
- ``chunks``: the shuffled-chunk minibatch sampler (a background reader fills a buffer of chunks).
- ``mapreduce``: full-data sums (U, grad U) in process, chunk by chunk from disk, or on Dask.
- ``inference``: the InferenceData of such a model, without copying its rows into memory.
"""

from .inference import on_disk_data, to_inference_data
from .mapreduce import full_data_on, full_data_parts
from .ondisk import Data, DiskArray

__all__ = ["Data", "DiskArray", "full_data_on", "full_data_parts", "on_disk_data", "to_inference_data"]
