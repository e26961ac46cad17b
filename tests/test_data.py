"""Rows on disk: shuffled-chunk batches, full-data passes in pieces, and models on memory-mapped and zarr data."""

import warnings

import numpy as np
import pymc as pm
import pytest
import zarr

import pymc_sgd
from pymc_sgd.data.chunks import ShuffledChunks
from pymc_sgd.data.mapreduce import full_data_parts, full_potential_and_grad
from pymc_sgd.data.ondisk import disk_array
from pymc_sgd.gradients import cached_estimator
from pymc_sgd.kernels import batching
from pymc_sgd.kernels.model import gradient_into

from mc import Z, assert_means_and_sds

N, SIGMA, PRIOR_SD = 20_000, 1.0, 10.0


def regression_data(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, X @ np.array([1.0, -0.5]) + SIGMA * rng.normal(size=n)


def regression(X, y, container=pymc_sgd.Data) -> pm.Model:
    with pm.Model() as model:
        Xd, yd = container("X", X), container("y", y)
        beta = pm.Normal("beta", 0.0, PRIOR_SD, shape=2)
        pm.Normal("obs", Xd @ beta, SIGMA, observed=yd)
    return model


def exact_posterior(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    precision = X.T @ X / SIGMA**2 + np.eye(2) / PRIOR_SD**2
    cov = np.linalg.inv(precision)
    return cov @ (X.T @ y) / SIGMA**2, cov


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    """The regression's X and y as .npy files (memory-mapped) and as a zarr store."""
    X, y = regression_data()
    folder = tmp_path_factory.mktemp("rows")
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    group = zarr.open_group(str(folder / "rows.zarr"), mode="w")
    group.create_array("X", data=X, chunks=(1000, 2))
    group.create_array("y", data=y, chunks=(1000,))
    return X, y, folder


def stream(chunks: ShuffledChunks, rng: np.random.Generator, draws: int, need_batches: int, batch: int):
    """Rows of every batch of ``draws`` draws (need_batches batches each), as the kernels draw them; checks
    that the buffer holds the rows it says it holds."""
    idx = np.empty(batch, dtype=np.int64)
    for _ in range(draws):
        _, perm, cursor = chunks.prepare(need_batches * batch)
        sampler = batching.Batch(batching.SHUFFLED_CHUNKS, perm, cursor, idx, np.ones(1))  # (its scale unused)
        for _ in range(need_batches):
            batching.next_batch(sampler, rng)
            yield chunks.rows[sampler.idx], chunks.buffers[0][0][sampler.idx]
        chunks.finish(cursor)


@pytest.mark.parametrize("n, chunk_rows, buffer_chunks, need_batches", [(1000, 64, 3, 7), (997, 100, 2, 40)])
def test_shuffled_chunks_use_every_row_once_per_epoch(n, chunk_rows, buffer_chunks, need_batches):
    """Every n consecutive rows of the stream are a permutation of the n rows (epochs never mix), and the
    buffer holds each row's data. A short last chunk (997 = 9 x 100 + 97) and draws needing more rows than
    the buffer's chunks (40 x 10 > 2 x 100) included."""
    data = np.arange(n, dtype=np.float64)
    chunks = ShuffledChunks([data], [], 0, np.random.default_rng(1), chunk_rows, buffer_chunks)
    rows, values = zip(*stream(chunks, np.random.default_rng(2), 150, need_batches, 10))
    rows, values = np.concatenate(rows), np.concatenate(values)
    np.testing.assert_array_equal(values, data[rows])
    epochs = len(rows) // n
    assert epochs >= 5
    for epoch in range(epochs):
        np.testing.assert_array_equal(np.sort(rows[epoch * n:(epoch + 1) * n]), np.arange(n))


def test_gradient_from_chunks_is_unbiased_on_sorted_rows(tmp_path):
    """(n/B) sum_batch grad + prior, at the first batch and at the 40th, over R = 400 independent chunk
    orders, has mean grad U: within Z SE (SE = sd over the R replications / sqrt(R)). The rows are stored
    sorted, the hard case: a batch comes from a few of 20 chunks, so its estimate varies far more than a
    uniform batch's, yet stays unbiased. Reading the chunks in file order fails this test (by 140 SE at the first batch)."""
    np.save(tmp_path / "y.npy", np.sort(np.random.default_rng(0).normal(1.0, 2.0, size=2000)))
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 10.0)
        pm.Normal("obs", mu, 2.0, observed=pymc_sgd.Data("y", np.load(tmp_path / "y.npy", mmap_mode="r")))
    est = cached_estimator(model)
    w, batch = np.zeros(1), 20
    exact = full_potential_and_grad(est, w)[1]
    estimates = {0: [], 39: []}
    for seed in range(400):
        chunks = ShuffledChunks(est.data, [], est.evaluate.address, np.random.default_rng(seed), 100, 2)
        rng = np.random.default_rng(10_000 + seed)
        _, perm, cursor = chunks.prepare(40 * batch)
        sampler = batching.new_batch(batching.SHUFFLED_CHUNKS, est.n_rows, batch)._replace(perm=perm, cursor=cursor)
        for t in range(40):
            batching.next_batch(sampler, rng)
            if t in estimates:
                estimates[t].append(gradient_into(chunks.model, w, sampler.idx, sampler.scale, np.empty(1)))
        chunks.finish(cursor)
    for t, values in estimates.items():
        values = np.array(values)
        se = values.std(axis=0) / np.sqrt(len(values))
        assert np.all(np.abs(values.mean(axis=0) - exact) <= Z * se), (t, values.mean(axis=0), exact, se)


def test_memmap_and_zarr_models_give_the_in_memory_draws_and_the_posterior(on_disk):
    """The same model on memory-mapped files (batching 'auto' streams shuffled chunks), on a zarr store, and
    in memory with batching='shuffled_chunks' gives the same draws bit for bit; they match the exact
    Gaussian posterior (means within Z SE from the ESS, SDs within Z SE plus SGLD's target_error 3%)."""
    X, y, folder = on_disk
    store = zarr.open_group(str(folder / "rows.zarr"), mode="r")
    models = {"memory": (regression(X, y), "shuffled_chunks"),
              "memmap": (regression(np.load(folder / "X.npy", mmap_mode="r"),
                                    np.load(folder / "y.npy", mmap_mode="r")), "auto"),
              "zarr": (regression(store["X"], store["y"]), "auto")}
    draws = {}
    for name, (model, mode) in models.items():
        with model:
            step = pymc_sgd.SGLD(batch_size=100, batching=mode)
            assert step.batch_mode == batching.SHUFFLED_CHUNKS
            if name != "memory":
                assert all(disk_array(a) for a in step.estimator.data)
            idata = pm.sample(draws=1000, tune=300, step=step, chains=2, cores=1, random_seed=5, progressbar=False,
                              compute_convergence_checks=False)
        draws[name] = idata.posterior["beta"].values
    np.testing.assert_array_equal(draws["memmap"], draws["memory"])
    np.testing.assert_array_equal(draws["zarr"], draws["memory"])
    mean, cov = exact_posterior(X, y)
    assert_means_and_sds(draws["memmap"], mean, np.sqrt(np.diag(cov)), sd_slack=0.03)


def test_full_data_pass_in_pieces_equals_one_call(on_disk):
    """U and grad U summed over pieces of rows (in memory, and read from the files) equal the one-call
    value to rounding (1e-9 relative)."""
    X, y, folder = on_disk
    w = np.array([0.3, -0.2])
    whole = full_data_parts(cached_estimator(regression(X, y, pm.Data)), w)
    for model in (regression(X, y), regression(np.load(folder / "X.npy", mmap_mode="r"),
                                               np.load(folder / "y.npy", mmap_mode="r"))):
        pieces = full_data_parts(cached_estimator(model), w, piece_rows=3001)
        np.testing.assert_allclose(pieces, whole, rtol=1e-9, atol=1e-9 * np.abs(whole).max())


def test_samplers_that_read_rows_outside_batches_refuse_shuffled_chunks(on_disk):
    X, y, folder = on_disk
    mapped = regression(np.load(folder / "X.npy", mmap_mode="r"), np.load(folder / "y.npy", mmap_mode="r"))
    with mapped:
        with pytest.raises(ValueError, match="Metropolis test reads all rows.*with_replacement"):
            pymc_sgd.AMAGOLD(batch_size=100, batching="shuffled_chunks")
        with pytest.warns(RuntimeWarning, match="at random rows"):
            step = pymc_sgd.AMAGOLD(batch_size=100)
        assert step.batch_mode == batching.WITH_REPLACEMENT
        with pytest.raises(ValueError, match="(?i)shuffled_chunks.*svrg"):
            pymc_sgd.SGLD(batch_size=100, gradient_estimator="svrg")


def test_observed_int_data_stays_on_disk_under_pymcs_cast(tmp_path):
    """Bernoulli casts its observed pm.Data; the rows are sliced before the cast, so y is read from its file
    (not cast whole into memory), and the estimator's likelihood equals PyMC's."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 2))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", (rng.random(3000) < 1 / (1 + np.exp(-X @ np.array([1.0, -1.0])))).astype(np.int64))
    with pm.Model() as model:
        Xd = pymc_sgd.Data("X", np.load(tmp_path / "X.npy", mmap_mode="r"))
        yd = pymc_sgd.Data("y", np.load(tmp_path / "y.npy", mmap_mode="r"))
        beta = pm.Normal("beta", 0.0, 2.0, shape=2)
        pm.Bernoulli("obs", logit_p=Xd @ beta, observed=yd)
    est = cached_estimator(model)
    assert all(disk_array(a) for a in est.data), est.data_names
    w = np.array([0.4, -0.7])
    point = {"beta": w}
    assert np.isclose(full_data_parts(est, w)[1], model.compile_logp(vars=model.observed_RVs)(point))


@pytest.mark.parametrize("order", ["random", "sorted"])
def test_rows_stored_sorted_are_reported(tmp_path, order):
    """Rows sorted by y make the buffer's chunk means of the gradient differ far more than random order does
    (data.chunks.chunk_heterogeneity: mean 1 in random order, threshold 2.7 here, a 4.5 SD excess of its
    chi-square with (8 - 1) x 2 degrees of freedom): the step warns for sorted rows and not for random ones."""
    X, y = regression_data()
    rows = np.argsort(y) if order == "sorted" else np.arange(N)
    np.save(tmp_path / "X.npy", X[rows])
    np.save(tmp_path / "y.npy", y[rows])
    with regression(np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pm.sample(draws=3, tune=2, step=pymc_sgd.SGLD(batch_size=100, chunk_rows=500), chains=1,
                      random_seed=3, progressbar=False, compute_convergence_checks=False)
    reported = any("look stored in an order" in str(w.message) for w in caught)
    assert reported == (order == "sorted")


def test_on_disk_rows_pickle_as_file_names_and_sample_alike_in_worker_processes(on_disk):
    """The data's value pickles as its file name (not its rows), so pm.sample(cores=2) sends no data to its
    workers, whose chains (their own chunk readers) equal cores=1's bit for bit; to_inference_data leaves the
    on-disk arrays out of the InferenceData (naming their files) and keeps the same draws."""
    import pickle

    X, y, folder = on_disk

    def model():
        return regression(np.load(folder / "X.npy", mmap_mode="r"), np.load(folder / "y.npy", mmap_mode="r"))

    with model() as m:
        assert len(pickle.dumps(m["X"].get_value())) < 1000
        kwargs = dict(draws=200, tune=100, chains=2, random_seed=7, progressbar=False, compute_convergence_checks=False)
        one = pm.sample(step=pymc_sgd.SGLD(batch_size=100), cores=1, **kwargs)
        two = pm.sample(step=pymc_sgd.SGLD(batch_size=100), cores=2, return_inferencedata=False, **kwargs)
        converted = pymc_sgd.to_inference_data(two, m)
    np.testing.assert_array_equal(converted.posterior["beta"].values, one.posterior["beta"].values)
    assert "observed_data" not in converted and "constant_data" not in converted
    assert str(folder / "X.npy") in converted.posterior.attrs["on_disk_data"]


def test_per_row_data_copied_into_memory_beside_data_on_disk_is_reported(on_disk, monkeypatch):
    """observed= a memmap is copied by PyMC while X stays on disk: the step names y and says how to keep it on
    disk (the size threshold lowered to 0 bytes for this small file)."""
    from pymc_sgd.steps import batches

    monkeypatch.setattr(batches, "IN_MEMORY_ROWS", 0)
    X, y, folder = on_disk
    with pm.Model():
        Xd = pymc_sgd.Data("X", np.load(folder / "X.npy", mmap_mode="r"))
        beta = pm.Normal("beta", 0.0, PRIOR_SD, shape=2)
        pm.Normal("obs", Xd @ beta, SIGMA, observed=np.load(folder / "y.npy", mmap_mode="r"))
        with pytest.warns(RuntimeWarning, match=r"\['obs'\] is in memory.*pymc_sgd.Data"):
            pymc_sgd.SGLD(batch_size=100)


def test_data_takes_dims_as_pm_data_does(on_disk):
    """A dimension without coordinates gets the data's length, as with pm.Data; the value stays on disk."""
    X, y, folder = on_disk
    with pm.Model(coords={"column": ["a", "b"]}) as model:
        Xd = pymc_sgd.Data("X", np.load(folder / "X.npy", mmap_mode="r"), dims=("row", "column"))
    assert int(model.dim_lengths["row"].eval()) == N and disk_array(Xd.get_value(borrow=True)) is not None


def test_sorted_rows_statistic_has_mean_one_for_rows_in_random_order(tmp_path):
    """chunk_heterogeneity's T over 40 independent chunk orders of rows in random order: mean 1 within Z SE
    (SE from the 40 values). With d = 60 and m = 64 rows of 8 chunks (nu = 504) the estimated covariance
    inflates the uncorrected statistic by nu / (nu - d - 1) = 1.14: leaving out the correction (mean 1.17, 10 SE)
    fails this test."""
    from pymc_sgd.data.chunks import chunk_heterogeneity

    rng = np.random.default_rng(5)
    X = rng.normal(size=(4000, 60))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", X @ rng.normal(size=60) + rng.normal(size=4000))
    with pm.Model() as model:
        Xd = pymc_sgd.Data("X", np.load(tmp_path / "X.npy", mmap_mode="r"))
        beta = pm.Normal("beta", 0.0, 10.0, shape=60)
        pm.Normal("obs", Xd @ beta, 1.0, observed=pymc_sgd.Data("y", np.load(tmp_path / "y.npy", mmap_mode="r")))
    est = cached_estimator(model)
    values = []
    for seed in range(40):
        chunks = ShuffledChunks(est.data, [], est.evaluate.address, np.random.default_rng(seed), 64, 8)
        chunks.prepare(64)
        values.append(chunk_heterogeneity(chunks, np.zeros(60), np.random.default_rng(100 + seed), 64)[0])
    values = np.array(values)
    assert abs(values.mean() - 1.0) <= Z * values.std() / np.sqrt(len(values)), values.mean()


def test_a_diverging_chain_on_shuffled_chunks_halts_cleanly(on_disk):
    """A step size far too large for the data on disk: the loop stops early, short of the rows it was given;
    the chain halts with the divergence recorded (not an error about the buffer), every draw finite."""
    X, y, folder = on_disk
    with regression(np.load(folder / "X.npy", mmap_mode="r"), np.load(folder / "y.npy", mmap_mode="r")):
        with pytest.warns(RuntimeWarning, match="chain is halted"):
            idata = pm.sample(draws=20, tune=0, step=pymc_sgd.SGLD(batch_size=100, step_size=1.0, steps_per_draw=50),
                              chains=1, random_seed=1, progressbar=False, compute_convergence_checks=False)
    assert bool(idata.sample_stats["diverging"].values.any())
    assert np.isfinite(idata.posterior["beta"].values).all()
