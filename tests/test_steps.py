"""Step-method plumbing: seeds, multiprocessing, stats, divergences, arviz, bad arguments."""

import multiprocessing
import warnings

import arviz as az
import cloudpickle
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import pymc_sgd
from pymc_sgd import models
from pymc_sgd.kernels import batching
from pymc_sgd.steps.threads import one_blas_thread_in_a_worker

SAMPLE = dict(draws=60, tune=20, chains=2, progressbar=False, compute_convergence_checks=False)


@pytest.fixture(scope="module")
def model():
    return models.seed000_regular_model()


def steps(model):
    return {
        "sgld": lambda: pymc_sgd.SGLD(batch_size=10, step_size=1e-4, steps_per_draw=20, model=model),
        "constant_sgd": lambda: pymc_sgd.ConstantSGD(batch_size=10, steps_per_draw=20, model=model),
        "epoch": lambda: pymc_sgd.SGLD(batch_size=10, step_size=1e-4, steps_per_draw=20, batching="epoch", model=model),
    }


@pytest.mark.parametrize("name", ["sgld", "constant_sgd", "epoch"])
def test_same_seed_same_trace_different_seed_different_trace(model, name):
    make = steps(model)[name]
    with model:
        first = pm.sample(step=make(), cores=1, random_seed=123, **SAMPLE)
        second = pm.sample(step=make(), cores=1, random_seed=123, **SAMPLE)
        other = pm.sample(step=make(), cores=1, random_seed=124, **SAMPLE)
    np.testing.assert_array_equal(first.posterior["a"].values, second.posterior["a"].values)
    assert not np.array_equal(first.posterior["a"].values, other.posterior["a"].values)
    assert not np.array_equal(first.posterior["a"].values[0], first.posterior["a"].values[1])  # chains differ


def test_multiprocess_sampling_matches_sequential(model):
    """cores=2 pickles the step, rebuilds the compiled estimator in each worker, and gives
    the same draws as sequential sampling with the same seed (each chain owns its generator)."""
    with model:
        parallel = pm.sample(step=steps(model)["constant_sgd"](), cores=2, random_seed=9, **SAMPLE)
        sequential = pm.sample(step=steps(model)["constant_sgd"](), cores=1, random_seed=9, **SAMPLE)
    np.testing.assert_array_equal(parallel.posterior["sigma"].values, sequential.posterior["sigma"].values)


def _blas_threads_after_the_limit(results) -> None:
    one_blas_thread_in_a_worker()
    results.put([info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"])


def _blas_threads_in_a_process(name: str) -> list[int]:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    process = context.Process(target=_blas_threads_after_the_limit, args=(results,), name=name)
    process.start()
    threads = results.get(timeout=60)
    process.join()
    return threads


def test_a_chain_in_a_forked_worker_runs_blas_on_one_thread():
    """pm.sample(cores=2) forks a worker per chain (named worker_chain_<c>); each would start OpenBLAS's one thread
    per core, 4 spinning threads on 2 cores (steps/threads.py: a 1e6-row warm-up took 3x longer). Another
    library's child process and the parent keep their threads."""
    with threadpool_limits(limits=2, user_api="blas"):
        in_worker = _blas_threads_in_a_process("worker_chain_0")
        elsewhere = _blas_threads_in_a_process("ForkPoolWorker-1")
        one_blas_thread_in_a_worker()  # the main process: cores=1, nothing else runs
        in_parent = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    assert in_worker and set(in_worker) == {1}, in_worker
    assert set(elsewhere) == {2}, elsewhere
    assert set(in_parent) == {2}, in_parent


def test_pickled_step_rebuilds_and_reproduces(model):
    """What a spawn/forkserver worker does: unpickle the step (compiled functions are not
    pickled), rebuild the estimator lazily, and sample exactly as the original would."""
    original = steps(model)["constant_sgd"]()
    clone = cloudpickle.loads(cloudpickle.dumps(original))
    assert clone._estimator is None
    with model:
        expected = pm.sample(step=original, cores=1, random_seed=5, **SAMPLE)
    with clone.model:
        rebuilt = pm.sample(step=clone, cores=1, random_seed=5, **SAMPLE)
    np.testing.assert_array_equal(expected.posterior["a"].values, rebuilt.posterior["a"].values)


def test_inferencedata_works_with_arviz_and_has_stats(model):
    with model:
        idata = pm.sample(step=steps(model)["constant_sgd"](), cores=1, random_seed=1,
                          discard_tuned_samples=False, **SAMPLE)
    stats = idata.sample_stats
    for name in ("step_size", "temperature", "grad_norm", "minibatch_potential", "diverging", "learning_rate"):
        assert stats[name].shape == (2, 60), name
    assert idata.warmup_posterior["a"].shape == (2, 20)
    assert not stats["diverging"].values.any()
    assert np.all(np.isfinite(stats["grad_norm"].values))
    summary = az.summary(idata)
    assert list(summary.index) == ["a", "sigma"] and np.all(summary["ess_bulk"] > 10)
    assert np.all(az.ess(idata)["a"].values > 10)


def test_blow_up_is_a_divergence_that_halts_the_chain(model):
    """h = 1 on a curvature of ~n/sigma^2 = 230 explodes within a few updates: the trace must
    stay finite (last finite state repeated), every later draw is flagged, PyMC's sampler
    warning machinery sees the divergences."""
    with model, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = pm.sample(step=pymc_sgd.SGLD(batch_size=10, step_size=1.0, steps_per_draw=20),
                          cores=1, random_seed=1, draws=10, tune=0, chains=1, progressbar=False,
                          compute_convergence_checks=False)
    a = idata.posterior["a"].values
    assert np.all(np.isfinite(a)) and np.all(np.abs(a) < 1e8)
    assert idata.sample_stats["diverging"].values.all()
    assert np.all(a == a[0, -1])  # halted at the last finite state
    assert any("chain is halted" in str(w.message) for w in caught)


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0, step_size=1e-3), r"batch_size must be an integer in \[1, n\] with n = 200"),
    (dict(batch_size=201, step_size=1e-3), r"batch_size must be .* n = 200 rows, got 201.*batch_size=None"),
    (dict(batch_size=10, step_size=0.0), r"step_size must be a positive number, got 0.0"),
    (dict(batch_size=10, step_size=-1.0), r"step_size must be a positive number"),
    (dict(batch_size=10, step_size=1e-3, temperature=0), r"temperature must be a positive number"),
    (dict(batch_size=10, step_size=1e-3, steps_per_draw=0), r"steps_per_draw must be an integer >= 1"),
    (dict(batch_size=10, step_size=1e-3, batching="random"), r"batching='random' is unknown; use one of"),
    (dict(batch_size=10, step_size=1e-3, data=["nope"]), r"data='nope' is not a data tensor"),
])
def test_sgld_refuses_bad_arguments(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pymc_sgd.SGLD(model=model, **kwargs)


def test_schedule_and_constant_sgd_refuse_bad_arguments(model):
    with pytest.raises(ValueError, match=r"0 < gamma <= 1"):
        pymc_sgd.PolynomialDecay(a=1e-3, gamma=1.5)
    with pytest.raises(ValueError, match=r"needs minibatch noise"):
        pymc_sgd.ConstantSGD(batch_size=None, model=model)
    with pytest.raises(ValueError, match=r"learning_rate .* or step_size .*not both"):
        pymc_sgd.ConstantSGD(batch_size=10, learning_rate=0.1, step_size=1e-3, model=model)
    with pytest.raises(ValueError, match=r"preconditioner='inverse' is unknown"):
        pymc_sgd.ConstantSGD(batch_size=10, preconditioner="inverse", model=model)
    with pytest.raises(ValueError, match=r"learning_rate must be a positive number"):
        pymc_sgd.ConstantSGD(batch_size=10, learning_rate=-0.1, model=model)
    with pytest.raises(ValueError, match=r"target_error must be a positive number, got '0.03'"):
        pymc_sgd.SGLD(batch_size=10, target_error="0.03", model=model)
    with pytest.raises(ValueError, match=r"step_size must be a positive number, got True"):
        pymc_sgd.SGHMC(batch_size=10, step_size=True, model=model)
    with pytest.raises(ValueError, match=r"is not a free variable of this model; give free random variables"):
        pymc_sgd.SGLD(vars=[pt.scalar("elsewhere")], batch_size=10, step_size=1e-3, model=model)


def test_never_auto_assigned(model):
    with model:
        assigned = pm.sample(draws=5, tune=5, chains=1, progressbar=False, compute_convergence_checks=False,
                             random_seed=0)
    assert "diverging" in assigned.sample_stats and "minibatch_potential" not in assigned.sample_stats
    assert pymc_sgd.SGLD.competence(model["a"], True) == pm.step_methods.compound.Competence.INCOMPATIBLE


def test_a_batch_of_every_row_is_the_full_data(model):
    """batch_size = n on "auto" batching reads every row once per update (no noise: the warm-up measures none),
    not n rows drawn with replacement; asked for explicitly, with replacement stays."""
    n = model.rvs_to_values[model.observed_RVs[0]].data.shape[0]
    assert pymc_sgd.SGLD(batch_size=n, model=model).batch_mode == batching.FULL
    assert pymc_sgd.SGLD(batch_size=n, batching="with_replacement", model=model).batch_mode == batching.WITH_REPLACEMENT
    assert pymc_sgd.SGLD(batch_size=n - 1, model=model).batch_mode == batching.WITH_REPLACEMENT
