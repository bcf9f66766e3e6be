"""Tuner assembly: Optuna searcher, ASHA/FIFO scheduler, the trainable with its resources, run settings."""

from __future__ import annotations

import importlib
import os

from kgsearch.errors import KGSearchError
from kgsearch.sweep.progress import ProgressPrinter, ProvenanceWriter, trial_dirname
from kgsearch.sweep.space import optuna_space
from kgsearch.sweep.spec import SweepSpec
from kgsearch.sweep.storage import ExperimentStore

def make_searcher(spec: SweepSpec):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if spec.searcher.type == "random":
        sampler = optuna.samplers.RandomSampler(seed=spec.searcher.seed)
    else:
        # TPE's default 10 random start-up trials would be most of a small sweep.
        sampler = optuna.samplers.TPESampler(seed=spec.searcher.seed,
                                             n_startup_trials=spec.searcher.n_startup_trials)
    return OptunaSearch(space=optuna_space(spec.space), metric=spec.metric, mode=spec.mode, sampler=sampler)


def make_scheduler(spec: SweepSpec):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = spec.scheduler
    if s.type == "fifo":
        return FIFOScheduler()
    # time_attr: our epoch counter; training_iteration restarts at 1 after a resume.
    return ASHAScheduler(time_attr="epochs_done", max_t=s.max_t, grace_period=s.grace_period,
                         reduction_factor=s.reduction_factor)


def trainable_module(model: str):
    """trainables.<model>, found by name: the library never imports the binders above it."""
    try:
        return importlib.import_module(f"trainables.{model}")
    except ModuleNotFoundError as exc:
        if exc.name in ("trainables", f"trainables.{model}"):
            raise KGSearchError(f"no trainable for model {model!r} (expected trainables/{model}.py)") from None
        raise


def make_trainable(spec: SweepSpec, ctx):
    from ray import tune

    module = trainable_module(spec.model)
    fn = tune.with_parameters(module.train_driver_fn, context=ctx)
    res = spec.resources
    if res.direct:
        request = {"cpu": res.cpus_per_worker, "gpu": res.gpus_per_worker}
    else:
        # The trial itself only waits on its worker group (which has its own placement group);
        # {"cpu": 0} alone is refused, so it reserves a little memory instead.
        request = {"cpu": 0, "memory": 64 * 1024 * 1024}
    return tune.with_resources(fn, request)


def build_tuner(spec: SweepSpec, trainable, store: ExperimentStore, fail_fast: bool, provenance: dict,
                time_budget_s: float | None = None):
    from ray import tune

    searched = spec.searched
    run_config = tune.RunConfig(
        name=store.name, storage_path=store.root, verbose=0,
        callbacks=[ProgressPrinter(spec.metric, spec.scheduler.max_t, searched), ProvenanceWriter(provenance)],
        failure_config=tune.FailureConfig(max_failures=0, fail_fast=fail_fast),
        # One checkpoint per trial suffices: it carries the best-validation weights as well.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    )
    tune_config = tune.TuneConfig(
        metric=spec.metric, mode=spec.mode, search_alg=make_searcher(spec), scheduler=make_scheduler(spec),
        num_samples=spec.num_samples, max_concurrent_trials=spec.max_concurrent_trials,
        trial_name_creator=trial_dirname, trial_dirname_creator=trial_dirname,
        # Reusing trial processes saves each trial a Python start and the torch/kgsearch imports
        # (about 8 s per trial on this 2-core machine; docs/benchmarks_sweep.md).
        reuse_actors=os.environ.get("KGSEARCH_REUSE_ACTORS", "1") == "1",
        time_budget_s=time_budget_s,
    )
    return tune.Tuner(trainable, param_space=dict(spec.fixed), tune_config=tune_config, run_config=run_config)
