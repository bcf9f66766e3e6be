"""Tuner assembly: Optuna searcher, ASHA/FIFO scheduler (FIFO within each GraSH rung), the trainable with its
resources, run settings."""

from __future__ import annotations

import dataclasses
import importlib
import os

from kgsearch.errors import KGSearchError
from kgsearch.sweep.checkpoints import keep_config
from kgsearch.sweep.failures import FailureRecorder
from kgsearch.sweep.progress import (RUNG_KEY, ProgressPrinter, ProvenanceWriter, retrain_label, retrain_run,
                                     trial_dirname)
from kgsearch.sweep.ray_env import driver_resources
from kgsearch.sweep.restore import TRAIN_RUNS
from kgsearch.sweep.searcher import make_search_alg
from kgsearch.sweep.spec import SweepSpec
from kgsearch.sweep.storage import ExperimentStore
from kgsearch.sweep.study import journal_path
from kgsearch.sweep.trackers import tracker_callbacks


def make_scheduler(spec: SweepSpec):
    from ray.tune.schedulers import FIFOScheduler

    from kgsearch.sweep.asha import BestSoFarASHA

    s = spec.scheduler
    if s.type in ("fifo", "grash"):  # grash: each rung trains its configurations to the rung's epochs
        return FIFOScheduler()
    # time_attr: our epoch counter; training_iteration restarts at 1 after a resume.
    return BestSoFarASHA(metric=f"best_{spec.metric}", mode=spec.mode, time_attr="epochs_done", max_t=s.max_t,
                         grace_period=s.grace_period, reduction_factor=s.reduction_factor)


def trainable_module(model: str):
    """trainables.<model>, found by name: the library never imports the binders above it."""
    try:
        return importlib.import_module(f"trainables.{model}")
    except ModuleNotFoundError as exc:
        if exc.name in ("trainables", f"trainables.{model}"):
            raise KGSearchError(f"no trainable for model {model!r} (expected trainables/{model}.py)") from None
        raise


def retrain_driver_fn(config: dict, context, model: str, configs: dict[str, dict], starts: dict | None = None) -> None:
    """The re-training's Tune function trial: the search trial's config `configs[label]` with the run's seed,
    from the checkpoint `starts[label]` when it continues a stopped search trial (kgsearch.sweep.retrain_plan)."""
    trial, seed = retrain_run(config)
    params = {**configs[trial], "seed": seed}
    start = (starts or {}).get(retrain_label(trial, seed))
    if start is not None:
        context = dataclasses.replace(context, start_checkpoint=start)
    trainable_module(model).train_driver_fn(params, context=context)


def rung_driver_fn(config: dict, context, model: str, configs: dict[str, dict]) -> None:
    """A GraSH rung's Tune function trial (kgsearch.sweep.grash): the configuration its label names."""
    trainable_module(model).train_driver_fn(dict(configs[config[RUNG_KEY]]), context=context)


def make_trainable(spec: SweepSpec, ctx, retrain: dict[str, dict] | None = None, rung: dict[str, dict] | None = None,
                   starts: dict | None = None):
    """The model's `train_driver_fn` with the sweep's context and resources. `retrain` ({search trial: its
    config}): the re-training's trainable instead, whose Tune config names a trial and a seed
    (kgsearch.sweep.retrain), `starts` ({run label: checkpoint}) its runs that continue a search trial;
    `rung` ({label: config}): a GraSH rung's, whose Tune config is a label (kgsearch.sweep.grash); all with
    the same resources."""
    from ray import tune

    module = trainable_module(spec.model)
    if retrain is not None:
        fn = tune.with_parameters(retrain_driver_fn, context=ctx, model=spec.model, configs=retrain, starts=starts)
    elif rung is not None:
        fn = tune.with_parameters(rung_driver_fn, context=ctx, model=spec.model, configs=rung)
    else:
        fn = tune.with_parameters(module.train_driver_fn, context=ctx)
    res = spec.resources
    if res.direct:
        request = {"cpu": res.cpus_per_worker, "gpu": res.gpus_per_worker}
    else:
        # The trial itself only waits on its worker group (which has its own placement group);
        # {"cpu": 0} alone is refused, so it reserves a little memory instead, and it stays on a node
        # that is not reclaimed, where the cluster marks one (ray_env.DRIVER_RESOURCE).
        request = {"cpu": 0, "memory": 64 * 1024 * 1024, **driver_resources()}
    return tune.with_resources(fn, request)


def build_tuner(spec: SweepSpec, trainable, store: ExperimentStore, fail_fast: bool, provenance: dict,
                time_budget_s: float | None = None):
    from ray import tune

    journal, carry = journal_path(store)  # the Optuna study, kept in the experiment folder
    search_alg = make_search_alg(spec, journal=journal, study_name=store.name, carry_journal=carry)
    progress = ProgressPrinter(spec.metric, spec.scheduler.max_t, spec.space, asha=spec.scheduler.type == "asha",
                               time_budget_s=time_budget_s, mode=spec.mode,
                               concurrency=spec.max_concurrent_trials)
    run_config = tune.RunConfig(
        name=store.name, storage_path=store.root, verbose=0,
        callbacks=[progress, ProvenanceWriter(provenance), FailureRecorder(store.join(TRAIN_RUNS)),
                   *tracker_callbacks(spec.tracking, store.name)],
        # Tune restarts a failed trial from its newest checkpoint; a deterministic failure fails again at
        # once without training (kgsearch.sweep.trial). Tune refuses retries together with fail_fast.
        failure_config=tune.FailureConfig(max_failures=0 if fail_fast else (spec.retries or 0), fail_fast=fail_fast),
        checkpoint_config=tune.CheckpointConfig(**keep_config(spec.checkpoints, spec.metric)),
    )
    tune_config = tune.TuneConfig(
        # The concurrency limit is inside the search generator (kgsearch.sweep.searcher).
        metric=spec.metric, mode=spec.mode, search_alg=search_alg, scheduler=make_scheduler(spec),
        num_samples=spec.num_samples,
        trial_name_creator=trial_dirname, trial_dirname_creator=trial_dirname,
        # Reusing trial processes saves each trial a Python start and the torch/kgsearch imports
        # (about 8 s per trial on this 2-core machine; docs/benchmarks_sweep.md).
        reuse_actors=os.environ.get("KGSEARCH_REUSE_ACTORS", "1") == "1",
        time_budget_s=time_budget_s,
    )
    return tune.Tuner(trainable, param_space=dict(spec.fixed), tune_config=tune_config, run_config=run_config)
