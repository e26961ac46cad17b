"""An InferenceData for a model whose rows are on disk, without copying them into memory.

``pm.sample`` ends by putting the model's observed and constant data into the InferenceData, each with
an integer coordinate per row that pandas copies once more: at 1e8 rows, gigabytes for data the model
reads from disk. ``to_inference_data`` is PyMC's conversion with the on-disk arrays left out (their
files are named in the ``posterior`` group's attributes instead):

    trace = pm.sample(step=..., return_inferencedata=False, compute_convergence_checks=False)
    idata = pymc_sgd.to_inference_data(trace, model)
    az.summary(idata)  # R-hat and ESS, which pm.sample's convergence checks would compute on its own copy

(``compute_convergence_checks=True`` makes pm.sample convert the trace with PyMC's converter anyway.)
"""

from __future__ import annotations

import warnings
from typing import Any

import arviz as az
import pymc as pm
from arviz.data.base import dict_to_dataset
from pymc.backends.arviz import InferenceDataConverter, find_constants
from pytensor.compile.sharedvalue import SharedVariable

from ..rows import row_source
from .ondisk import disk_array

__all__ = ["on_disk_data", "to_inference_data"]


def on_disk_data(model: pm.Model) -> dict[str, str]:
    """{name: file} of the model's data variables, and observed variables read from them, on disk."""
    files = {var.name: disk_array(var.get_value(borrow=True)) for var in model.data_vars
             if isinstance(var, SharedVariable)}
    files = {name: disk.filename for name, disk in files.items() if disk is not None}
    for rv in model.observed_RVs:
        source = row_source(model.rvs_to_values[rv])
        if source.name in files:
            files[rv.name] = files[source.name]
    return files


class _WithoutDiskData(InferenceDataConverter):
    """PyMC's converter, its observed_data and constant_data groups without the arrays on disk."""

    def __init__(self, *, on_disk: dict[str, str], model: pm.Model, **kwargs: Any) -> None:
        self.on_disk = on_disk
        # PyMC reads every observed variable's data (casting it: a full copy) while it initialises; hide the
        # on-disk ones from it meanwhile
        hidden = {rv: model.rvs_to_values.pop(rv) for rv in model.observed_RVs if rv.name in on_disk}
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="No data for observation")
                super().__init__(model=model, **kwargs)
        finally:
            model.rvs_to_values.update(hidden)

    def observed_data_to_xarray(self):
        return super().observed_data_to_xarray() if self.observations else None

    def constant_data_to_xarray(self):
        constants = {name: v for name, v in find_constants(self.model).items() if name not in self.on_disk}
        if not constants:
            return None
        return dict_to_dataset(constants, library=pm, coords=self.coords, dims=self.dims, default_dims=[])

    def posterior_to_xarray(self):
        posterior, warmup = super().posterior_to_xarray()
        posterior.attrs["on_disk_data"] = "; ".join(f"{name}: {file}" for name, file in self.on_disk.items())
        return posterior, warmup


def to_inference_data(trace: Any, model: pm.Model | None = None, **kwargs: Any) -> az.InferenceData:
    """``pm.to_inference_data(trace, model=model, **kwargs)`` without the model's on-disk arrays (see the module).

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "y.npy")
    >>> np.save(path, np.random.default_rng(0).normal(1.0, 1.0, size=1000))
    >>> with pm.Model() as model:
    ...     mu = pm.Normal("mu", 0, 10)
    ...     y = pm.Normal("y", mu, 1, observed=pymc_sgd.Data("y_rows", np.load(path, mmap_mode="r")))
    ...     trace = pm.sample(step=pymc_sgd.SGLD(batch_size=50), draws=100, tune=100, chains=1,
    ...                       return_inferencedata=False, progressbar=False, compute_convergence_checks=False)
    >>> idata = pymc_sgd.to_inference_data(trace, model)
    >>> sorted(idata.groups()), idata.posterior["mu"].shape
    (['posterior', 'sample_stats'], (1, 100))
    """
    model = pm.modelcontext(model)
    return _WithoutDiskData(on_disk=on_disk_data(model), trace=trace, model=model, **kwargs).to_inference_data()
