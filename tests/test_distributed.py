"""Chains on a dask.distributed LocalCluster (processes, 2 workers), merged into one InferenceData."""

import os

import dask
import numpy as np
import pymc as pm
import pytest
from distributed import Client, LocalCluster

import pymc_sgd
from pymc_sgd.distributed import current_chain, sample_distributed

SAMPLE = dict(draws=200, tune=100)


def regression_model() -> pm.Model:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 2))
    y = X @ np.array([1.0, -1.0]) + rng.normal(size=500)
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, 10, shape=2)
        pm.Normal("y", pm.math.dot(X, beta), 1.0, observed=y)
    return model


@pytest.fixture(scope="module")
def client():
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # a dead worker fails its task at once
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as client:
            yield client


def test_chains_on_dask_equal_pm_sample_bit_for_bit(client):
    """Each chain a task; merged, the draws and stats equal pm.sample(chains=3, cores=1) with the same seed."""
    def step():
        return pymc_sgd.SGLD(batch_size=50)

    idata = sample_distributed(regression_model, step, chains=3, client=client, random_seed=11, progressbar=False,
                               **SAMPLE)
    with regression_model():
        reference = pm.sample(chains=3, cores=1, random_seed=11, step=step(), progressbar=False, **SAMPLE)
    assert idata.posterior["beta"].shape == (3, 200, 2)
    assert list(idata.posterior.chain.values) == [0, 1, 2]
    np.testing.assert_array_equal(idata.posterior["beta"].values, reference.posterior["beta"].values)
    np.testing.assert_array_equal(idata.sample_stats["step_size"].values, reference.sample_stats["step_size"].values)


def test_a_dead_worker_is_reported_and_the_other_chains_kept(client):
    """Chain 1's worker process exits mid-task: a warning names chain 1, and chain 0's draws are returned as
    pm.sample would have made them."""
    def dying_model():
        if current_chain() == 1:
            os._exit(1)
        return regression_model()

    with pytest.warns(RuntimeWarning, match="chain 1: KilledWorker"):
        idata = sample_distributed(dying_model, lambda: pymc_sgd.SGLD(batch_size=50), chains=2, client=client,
                                   random_seed=5, **SAMPLE)
    with regression_model():
        reference = pm.sample(chains=2, cores=1, random_seed=5, step=pymc_sgd.SGLD(batch_size=50),
                              progressbar=False, **SAMPLE)
    assert list(idata.posterior.chain.values) == [0]
    np.testing.assert_array_equal(idata.posterior["beta"].values[0], reference.posterior["beta"].values[0])


def test_sample_distributed_refuses_what_it_sets(client):
    with pytest.raises(TypeError, match="pass chains= and random_seed="):
        sample_distributed(regression_model, chains=2, client=client, cores=2)


def test_full_data_pass_on_dask_equals_in_process(client, tmp_path):
    """The full-data U and grad U as pieces on the workers, which read the rows from the files, equal the
    in-process value to rounding; data in memory is refused with advice (the workers cannot read it)."""
    from pymc_sgd.data.mapreduce import full_data_parts
    from pymc_sgd.gradients import cached_estimator

    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 2))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", X @ np.array([1.0, -1.0]) + rng.normal(size=5000))
    with pm.Model() as model:
        Xd = pymc_sgd.Data("X", np.load(tmp_path / "X.npy", mmap_mode="r"))
        beta = pm.Normal("beta", 0, 10, shape=2)
        pm.Normal("obs", Xd @ beta, 1.0, observed=pymc_sgd.Data("y", np.load(tmp_path / "y.npy", mmap_mode="r")))
    est, w = cached_estimator(model), np.array([0.5, -0.2])
    local = full_data_parts(est, w)
    distributed = full_data_parts(est, w, client=client, piece_rows=1200)
    np.testing.assert_allclose(distributed, local, rtol=1e-9, atol=1e-9 * np.abs(local).max())
    with pytest.raises(ValueError, match="mmap_mode='r'"):
        full_data_parts(cached_estimator(regression_model()), np.zeros(2), client=client)


def test_chains_on_dask_read_on_disk_rows_and_equal_pm_sample(client, tmp_path):
    """A model on memory-mapped files: each worker maps the files itself and streams shuffled chunks; the
    merged draws equal pm.sample(cores=1)'s, and the InferenceData leaves the on-disk rows out."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 2))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", X @ np.array([1.0, -1.0]) + rng.normal(size=3000))

    def model():
        with pm.Model() as m:
            Xd = pymc_sgd.Data("X", np.load(tmp_path / "X.npy", mmap_mode="r"))
            beta = pm.Normal("beta", 0, 10, shape=2)
            pm.Normal("obs", Xd @ beta, 1.0, observed=pymc_sgd.Data("y", np.load(tmp_path / "y.npy", mmap_mode="r")))
        return m

    def step():
        return pymc_sgd.SGLD(batch_size=50, chunk_rows=200)

    idata = sample_distributed(model, step, chains=2, client=client, random_seed=3, **SAMPLE)
    with model():
        reference = pm.sample(chains=2, cores=1, random_seed=3, step=step(), progressbar=False, **SAMPLE)
    np.testing.assert_array_equal(idata.posterior["beta"].values, reference.posterior["beta"].values)
    assert "constant_data" not in idata and "observed_data" not in idata


def test_steps_full_data_passes_run_on_dask_inside_full_data_on(client, tmp_path):
    """Inside full_data_on(client) the warm-up's full-data passes of a model on disk are tasks on the
    workers (seen in the task stream), and, the pieces and their sum being the same, the draws equal those
    of the in-process passes bit for bit."""
    from distributed import get_task_stream

    from pymc_sgd.data import full_data_on

    rng = np.random.default_rng(2)
    X = rng.normal(size=(4000, 2))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", X @ np.array([0.5, 1.0]) + rng.normal(size=4000))
    with pm.Model():
        Xd = pymc_sgd.Data("X", np.load(tmp_path / "X.npy", mmap_mode="r"))
        beta = pm.Normal("beta", 0, 10, shape=2)
        pm.Normal("obs", Xd @ beta, 1.0, observed=pymc_sgd.Data("y", np.load(tmp_path / "y.npy", mmap_mode="r")))
        kwargs = dict(chains=1, cores=1, random_seed=4, progressbar=False, **SAMPLE)
        local = pm.sample(step=pymc_sgd.SGLD(batch_size=50), **kwargs)
        with full_data_on(client), get_task_stream(client) as stream:
            remote = pm.sample(step=pymc_sgd.SGLD(batch_size=50), **kwargs)
    assert any(task["key"].startswith("_piece_parts") for task in stream.data)
    np.testing.assert_array_equal(remote.posterior["beta"].values, local.posterior["beta"].values)
