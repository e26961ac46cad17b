"""Chains as tasks on a Dask cluster, merged into one InferenceData (the optional ``distributed`` extra).

``sample_distributed(model_factory, step_factory, chains=..., client=...)`` runs each chain of ``pm.sample``
as one task on a ``dask.distributed`` cluster. Only the two factories travel to the workers (pickled by
Dask); each worker builds the model itself, so a model whose data a factory reads from a file that every
worker can reach (a memory-mapped ``.npy``, a shared file system) never sends the data over the network.

Seeding follows PyMC's own: ``pm.sample(chains=C, random_seed=s)`` gives chain c the Generator
``default_rng(s).spawn(C)[c]``; a task runs ``pm.sample(chains=1)`` with a Generator whose seed sequence has
already spawned c children, so its one spawned child is that same stream, and chain c's draws equal
``pm.sample(chains=C, cores=1, random_seed=s)``'s chain c bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import arviz as az
import numpy as np
import pymc as pm

from .data.inference import on_disk_data, to_inference_data

_current_chain: int | None = None


def current_chain() -> int | None:
    """The chain number of the ``sample_distributed`` task running in this process (None outside one):
    lets a model factory choose, e.g., a chain-specific data shard."""
    return _current_chain


def chain_seed(random_seed: Any, chain: int) -> np.random.SeedSequence:
    """The seed sequence whose first spawned child is chain ``chain``'s stream in
    ``pm.sample(random_seed=random_seed)`` (see the module docstring)."""
    root = pm.util.get_random_generator(random_seed).bit_generator.seed_seq
    return np.random.SeedSequence(root.entropy, spawn_key=root.spawn_key, pool_size=root.pool_size,
                                  n_children_spawned=root.n_children_spawned + chain)


def _run_chain(model_factory: Callable[[], pm.Model], step_factory: Callable[[], Any] | None, chain: int,
               seed: np.random.SeedSequence, sample_kwargs: dict) -> az.InferenceData:
    """One chain, in a worker: build the model and the step there, sample, label the draws with the chain."""
    global _current_chain
    _current_chain = chain
    try:
        model = model_factory()
        with model:
            step = None if step_factory is None else step_factory()
            kwargs = {"progressbar": False, **sample_kwargs}
            if on_disk_data(model):  # the draws come back, not the rows (data.inference)
                idata_kwargs = {"save_warmup": not kwargs.get("discard_tuned_samples", True),
                                **kwargs.pop("idata_kwargs", {})}
                kwargs.update(return_inferencedata=False, compute_convergence_checks=False)
                trace = pm.sample(chains=1, cores=1, random_seed=np.random.default_rng(seed), step=step, **kwargs)
                idata = to_inference_data(trace, model, **idata_kwargs)
            else:
                idata = pm.sample(chains=1, cores=1, random_seed=np.random.default_rng(seed), step=step, **kwargs)
    finally:
        _current_chain = None
    for group in idata.groups():
        dataset = getattr(idata, group)
        if "chain" in dataset.dims:
            setattr(idata, group, dataset.assign_coords(chain=[chain]))
    return idata


def sample_distributed(model_factory: Callable[[], pm.Model], step_factory: Callable[[], Any] | None = None, *,
                       chains: int = 4, client: Any = None, random_seed: Any = None,
                       **sample_kwargs: Any) -> az.InferenceData:
    """Run ``chains`` chains of ``pm.sample`` as tasks on a ``dask.distributed`` cluster; one InferenceData.

    Parameters
    ----------
    model_factory
        builds the ``pm.Model`` (called in each worker, so the data it reads never travels).
    step_factory
        builds the step inside the model's context, e.g. ``lambda: pymc_sgd.SGLD(batch_size=100)``;
        None lets PyMC choose (NUTS).
    chains
        number of chains, one task each.
    client
        a ``distributed.Client``; default the current one (``distributed.default_client()``).
    random_seed
        as ``pm.sample``'s: the draws equal ``pm.sample(chains=chains, cores=1, random_seed=...)``'s.
    **sample_kwargs
        passed to ``pm.sample`` (draws, tune, ...), except chains, cores, random_seed, step.

    A chain whose task fails (an error in the model, or a worker that died) is reported by a RuntimeWarning
    naming its chain number and the error; the other chains' draws are returned. If every chain fails the
    first error is raised.

    Examples
    --------
    >>> import numpy as np, pymc as pm, pymc_sgd
    >>> from distributed import Client, LocalCluster
    >>> def model():
    ...     x = np.random.default_rng(0).normal(1.0, 1.0, size=1000)  # or np.load(path, mmap_mode="r")
    ...     with pm.Model() as m:
    ...         mu = pm.Normal("mu", 0, 10)
    ...         pm.Normal("y", mu, 1, observed=x)
    ...     return m
    >>> with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
    ...     idata = pymc_sgd.sample_distributed(model, lambda: pymc_sgd.SGLD(batch_size=50), chains=2,
    ...                                         client=client, random_seed=1, draws=200, tune=100)
    >>> idata.posterior["mu"].shape
    (2, 200)
    """
    try:
        from distributed import as_completed, default_client
    except ImportError as error:
        raise ImportError("sample_distributed needs dask.distributed: pip install 'pymc_sgd[distributed]'.") from error
    for name in ("chains", "cores", "random_seed", "step"):
        if name in sample_kwargs:
            raise TypeError(f"sample_distributed sets pm.sample's {name!r} itself; pass chains= and random_seed= "
                            "to sample_distributed, and the step as step_factory.")
    client = default_client() if client is None else client
    if random_seed is None:
        random_seed = np.random.SeedSequence()  # fresh entropy, shared by every chain's seed
    futures = {client.submit(_run_chain, model_factory, step_factory, chain, chain_seed(random_seed, chain),
                             sample_kwargs, pure=False): chain for chain in range(chains)}
    results, failures = {}, {}
    for future in as_completed(futures):
        chain = futures[future]
        try:
            results[chain] = future.result()
        except Exception as error:  # the task's own error, or distributed's KilledWorker
            failures[chain] = error
    if not results:
        raise failures[min(failures)]
    if failures:
        described = "; ".join(f"chain {chain}: {type(error).__name__}: {error}"
                              for chain, error in sorted(failures.items()))
        warnings.warn(f"sample_distributed: {len(failures)} of {chains} chains failed ({described}); returning the "
                      f"draws of chains {sorted(results)}.", RuntimeWarning, stacklevel=2)
    return az.concat([results[chain] for chain in sorted(results)], dim="chain", reset_dim=False)  # keep chain numbers
