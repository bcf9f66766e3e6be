"""The trial engine shared by every model family: one Tune trial = one `fit()` run of a recipe.

`trainables/<model>.py` binds a recipe to it. Two ways to run a trial, picked by the sweep's resources:

* one worker  -> `drive_trial` trains right here, inside the Tune function trial, and reports with
  `ray.tune.report` (a Ray Train worker group costs 9-22 s of start-up per trial, and Train's
  `num_workers=0` local mode does not work inside Tune);
* N workers   -> `drive_trial` runs a Train V2 `TorchTrainer` whose workers run `worker_loop`
  (DDP: gloo on CPU, NCCL on GPU); `TuneReportCallback` forwards rank 0's reports to Tune, and the
  Train run is named after the trial id so a retried or restored trial finds its last checkpoint.

Either way the epoch loop is `kgsearch.run.loop.fit()`, selecting checkpoints by the sweep's metric;
its hooks report once per epoch (loss, validation metrics, epoch time, `epochs_done`), with a
checkpoint when kgsearch.sweep.checkpoints says one is due. A deterministic failure (a NaN loss, a
bad config) is recorded under the experiment, so that a Tune retry of the trial fails again at once
instead of training again.
Per-dataset work (loading, filters, `Recipe.prepare`) was done once by the sweep driver; trials fetch
`(dataset, prepared)` from the object store, and `build_recipe` checks that the trial's config
agrees with the values it was prepared with (the recipe's `prepare_fields`).
"""

from __future__ import annotations

import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from kgsearch.allocator import tune_allocator
from kgsearch.config import config_from_dict, config_to_dict
from kgsearch.errors import KGSearchError
from kgsearch.recipe import prepared_values
from kgsearch.run.checkpoint import load_checkpoint, restore_run, save_run
from kgsearch.run.loop import FitHooks, FitState, TrainingDiverged, fit, seed_everything
from kgsearch.run.runfile import RunFile
from kgsearch.sweep.checkpoints import CHECKPOINT_FILE, CheckpointPolicy, keep_config, write_meta
from kgsearch.sweep.failures import describe, record, recorded
from kgsearch.sweep.faults import fault_hooks
from kgsearch.sweep.spec import CheckpointSpec, ResourcesSpec

DETERMINISTIC_ERRORS = (TrainingDiverged, KGSearchError)  # a retry would only repeat these


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a sweep shares; reaches trials through `tune.with_parameters`."""

    model: str  # recipe name
    dataset: str  # dataset name or path, as in the sweep file (for the run file in checkpoints)
    data_root: str | None
    metric: str  # the Tune metric, e.g. val_mrr: it also selects each trial's best checkpoint
    resources: ResourcesSpec
    train_storage: str  # absolute folder where worker-group trials' Train runs keep their checkpoints
    shared: Any  # ObjectRef of (dataset, prepared), put once by the driver
    prepared_for: dict  # the prepare_fields values `prepared` was computed with
    fault: str | None = None  # $KGSEARCH_FAULT of the driver, if set (kgsearch.sweep.faults)
    worker_env: dict | None = None  # env vars for Train workers (the glibc malloc settings)
    checkpoints: CheckpointSpec = field(default_factory=CheckpointSpec)
    # A checkpoint to start from when Tune / Train hold none of the trial's own: a re-training run that
    # continues its stopped search trial (kgsearch.sweep.retrain_plan.continued_seed); set per run.
    start_checkpoint: Any = None


def run_file(ctx: TrialContext, params: dict) -> dict:
    """The run file of a trial (in its checkpoints; replayable with `python -m kgsearch.train`); `params`
    holds every config field, defaults included, so the file replays the same run under later defaults."""
    return RunFile(model=ctx.model, dataset=ctx.dataset, data_root=ctx.data_root, metric=ctx.metric,
                   params=params).to_dict()


def build_recipe(recipe_cls: type, params: dict, ctx: TrialContext, device: torch.device,
                 rank: int = 0, world_size: int = 1):
    import ray

    tune_allocator()  # also where the trial's runtime_env did not carry the settings
    config = config_from_dict(recipe_cls.Config, params, source=f"trial config ({ctx.model})")
    mine = prepared_values(recipe_cls, config)
    if mine != ctx.prepared_for:
        # The sweep validator refuses searching these fields; reaching here means a new code path let
        # one through, and the trial would silently train on data prepared for other values.
        diff = {k: (v, ctx.prepared_for.get(k)) for k, v in mine.items() if ctx.prepared_for.get(k) != v}
        raise KGSearchError(f"trial config differs from what {recipe_cls.__name__}.prepare() ran with "
                            f"(trial, prepared): {diff}")
    dataset, prepared = ray.get(ctx.shared)
    seed_everything(config.seed)  # the same initial weights as `python -m kgsearch.train`
    recipe = recipe_cls(config, dataset, prepared, device=device, rank=rank, world_size=world_size)
    return config, recipe


def _set_threads(resources: ResourcesSpec) -> None:
    torch.set_num_threads(max(1, int(resources.cpus_per_worker)))


def check_cuda(resources: ResourcesSpec) -> bool:
    """Whether the trial trains on CUDA; a trial that asked for a GPU on a node whose torch has no CUDA
    fails with the reason instead of training on the CPU unnoticed."""
    if resources.gpus_per_worker <= 0:
        return False
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no device visible"
        raise KGSearchError(f"the trial asks for {resources.gpus_per_worker:g} GPU per worker, but torch "
                            f"{torch.__version__} on {socket.gethostname()} has no CUDA ({build}): install the "
                            "CUDA build of torch on GPU nodes, or pass --cpu")
    return True


# ------------------------------------------------------------------------------------------------
# fit() hooks


class EpochReporter(FitHooks):
    """Turn each epoch record into one Tune/Train report, with a checkpoint when `write_checkpoint`."""

    def __init__(self, run: dict, recipe, send: Callable[[dict, str | None], None], write_checkpoint: bool,
                 policy: CheckpointPolicy, metric: str, workers: int = 1, started_at: float | None = None):
        self.run, self.recipe, self.send, self.write_checkpoint = run, recipe, send, write_checkpoint
        self.policy, self.metric, self.workers = policy, metric, workers
        self.started_at = started_at or time.time()  # when the Tune trial function began
        self.setup_s: float | None = None
        self.last_val: dict[str, float] = {}

    def after_epoch(self, record: dict, state: FitState, improved: bool) -> None:
        metrics = {k: float(v) for k, v in record.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}
        val = {k: v for k, v in metrics.items() if k.startswith("val_")}
        if val:
            self.last_val = {**val, "val_epoch": float(record["epoch"])}
        # Epochs without validation (eval_every > 1) carry the last validation forward so that every
        # report holds the sweep metric (Tune's strict metric check); `val_epoch` says when it was taken.
        metrics = {**self.last_val, **metrics}
        if self.setup_s is None:  # trial start -> first training step (worker group start-up included)
            first_step = time.time() - metrics.get("epoch_time", 0.0) - metrics.get("eval_time", 0.0)
            self.setup_s = max(0.0, first_step - self.started_at)
        if self.metric not in metrics:
            # Before the first validation there is no sweep metric to carry, and Tune refuses a result without
            # it: these epochs are not reported (no checkpoint is due before a validation either). Every rank
            # skips the same epochs.
            return
        metrics["setup_s"] = self.setup_s
        metrics["trial_started_at"] = self.started_at  # wall clock, for the overhead analysis
        metrics["best_epoch"] = int(state.best_epoch)
        metrics["workers"] = self.workers
        metrics["epochs_done"] = int(record["epoch"])  # ASHA's time_attr (training_iteration restarts on resume)
        metrics["timesteps_total"] = int(record["epoch"])  # TensorBoard's x axis = epoch
        # Every rank decides alike; only rank 0 writes (Train keeps rank 0's checkpoint).
        if not (self.policy.due(record, improved) and self.write_checkpoint):
            self.send(metrics, None)
            return
        with tempfile.TemporaryDirectory(prefix="kgsearch-ckpt-") as tmp:
            save_run(Path(tmp) / CHECKPOINT_FILE, self.run, self.recipe, state, "epoch")
            write_meta(tmp, state.epoch, record[self.metric])
            self.send(metrics, tmp)


class RankMean(FitHooks):
    """Average each epoch's loss parts over DDP ranks, so every rank sees the same loss: fit()'s NaN
    check then raises on all ranks together (no rank left waiting in a collective)."""

    def __init__(self, all_reduce_sum: Callable[[torch.Tensor], torch.Tensor], world: int):
        self.all_reduce_sum, self.world = all_reduce_sum, world

    def after_train(self, epoch: int, record: dict) -> dict:
        keys = sorted(k for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        summed = self.all_reduce_sum(torch.tensor([float(record[k]) for k in keys], dtype=torch.float64))
        return {**record, **{k: float(summed[i]) / self.world for i, k in enumerate(keys)}}


def restore_from(checkpoint, recipe, model: str) -> FitState | None:
    """Load a Ray checkpoint written by EpochReporter into `recipe`; return where the trial stood."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        blob = load_checkpoint(Path(folder) / CHECKPOINT_FILE, model=model)
    return restore_run(blob, recipe)


# ------------------------------------------------------------------------------------------------
# The Tune function trial


def drive_trial(recipe_cls: type, worker_fn: Callable[[dict], None], config: dict, ctx: TrialContext) -> None:
    """`train_driver_fn`: the Tune function trial (direct training, or a Train V2 worker group)."""
    from ray import tune

    started = time.time()
    trial_id = tune.get_context().get_trial_id()
    failure = recorded(ctx.train_storage, trial_id)
    if failure is not None:  # a Tune retry of a NaN trial, or a failed trial that a resume restarted
        _fail_again(failure)
    try:
        if ctx.resources.direct:
            _train_here(recipe_cls, config, ctx, started)
        else:
            _train_with_workers(worker_fn, config, ctx, started)
    except DETERMINISTIC_ERRORS as exc:
        record(ctx.train_storage, trial_id, type(exc).__name__, str(exc), transient=False)
        raise


def _fail_again(failure: dict) -> None:
    """Fail at once, without training, as the trial did before (kgsearch.sweep.failures)."""
    if failure["transient"]:
        raise KGSearchError(f"failed before ({describe(failure)}); a resume runs its values again as a new trial")
    raise (TrainingDiverged if failure["type"] == TrainingDiverged.__name__ else KGSearchError)(failure["message"])


def _train_here(recipe_cls: type, params: dict, ctx: TrialContext, started: float) -> None:
    from ray import tune

    _set_threads(ctx.resources)
    device = torch.device("cuda" if check_cuda(ctx.resources) else "cpu")
    config, recipe = build_recipe(recipe_cls, params, ctx, device)
    state = restore_from(tune.get_checkpoint() or ctx.start_checkpoint, recipe, ctx.model)

    def send(metrics: dict, folder: str | None) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder) if folder else None)

    hooks = [*fault_hooks(ctx.fault, tune.get_context().get_trial_name(), ctx.train_storage),
             EpochReporter(run_file(ctx, config_to_dict(config)), recipe, send, write_checkpoint=True,
                           policy=CheckpointPolicy(ctx.checkpoints.every, config.epochs), metric=ctx.metric,
                           started_at=started)]
    fit(recipe, epochs=config.epochs, eval_every=config.eval_every, metric=ctx.metric, state=state,
        hooks=hooks, patience=getattr(config, "patience", 0), log=None)


def _train_with_workers(worker_fn: Callable[[dict], None], params: dict, ctx: TrialContext, started: float) -> None:
    import ray.train
    from ray import tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    res = ctx.resources
    use_gpu = res.gpus_per_worker > 0
    per_worker = {"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if use_gpu else {})}
    trial = tune.get_context()
    trainer = TorchTrainer(
        worker_fn,
        train_loop_config={"params": params, "context": ctx, "trial_name": trial.get_trial_name(),
                           "started_at": started},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=res.workers, use_gpu=use_gpu,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=trial.get_trial_id(),  # stable across restore/retry: Train finds its last checkpoint
            storage_path=ctx.train_storage,
            failure_config=ray.train.FailureConfig(
                max_failures=res.max_failures,
                # a worker group that cannot be placed would otherwise be retried forever (docs/ray.md)
                controller_failure_limit=max(1, res.max_failures)),
            checkpoint_config=ray.train.CheckpointConfig(**keep_config(ctx.checkpoints, ctx.metric)),
            callbacks=[TuneReportCallback()],
            worker_runtime_env={"env_vars": dict(ctx.worker_env)} if ctx.worker_env else None,
        ),
    )
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as exc:
        # Surface the workers' own deterministic error (e.g. TrainingDiverged) as the trial's error.
        failures = getattr(exc, "worker_failures", None) or {}
        cause = next(iter(failures.values()), None)
        for kind in DETERMINISTIC_ERRORS:
            if cause is not None and kind.__name__ in repr(cause):
                raise kind(_first_line(str(cause), kind.__name__)) from None
        raise


def _first_line(text: str, name: str) -> str:
    lines = text.strip().splitlines()
    for line in reversed(lines):  # Ray wraps the remote traceback; the last line is the cause
        if f"{name}:" in line:
            return line.split(f"{name}:", 1)[-1].strip()
    return lines[-1] if lines else name


# ------------------------------------------------------------------------------------------------
# Ray Train workers


def worker_loop(recipe_cls: type, loop_config: dict) -> None:
    """`train_fn_per_worker`: one DDP rank of a worker-group trial."""
    import ray.train
    import ray.train.torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    ctx: TrialContext = loop_config["context"]
    _set_threads(ctx.resources)
    train_ctx = ray.train.get_context()
    rank, world = train_ctx.get_world_rank(), train_ctx.get_world_size()
    device = ray.train.torch.get_device() if check_cuda(ctx.resources) else torch.device("cpu")
    config, recipe = build_recipe(recipe_cls, loop_config["params"], ctx, device, rank, world)
    # every rank loads the same state
    state = restore_from(ray.train.get_checkpoint() or ctx.start_checkpoint, recipe, ctx.model)
    # find_unused_parameters: ablation switches (w/o CCD, -GRU, -S, ...) leave parts of a model out of
    # the loss; for these model sizes the extra graph walk per step is negligible.
    recipe.forward_model = DistributedDataParallel(
        recipe.model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)

    def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
        x = t.to(device)
        dist.all_reduce(x)
        return x.cpu()

    def send(metrics: dict, folder: str | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder else None
        ray.train.report(metrics, checkpoint=checkpoint)

    hooks = [*fault_hooks(ctx.fault, loop_config["trial_name"], ctx.train_storage, rank),
             RankMean(all_reduce_sum, world),
             EpochReporter(run_file(ctx, config_to_dict(config)), recipe, send, write_checkpoint=rank == 0,
                           policy=CheckpointPolicy(ctx.checkpoints.every, config.epochs), metric=ctx.metric,
                           workers=world, started_at=loop_config.get("started_at"))]
    # Validation ranks are all-reduced (sums of reciprocal ranks and hits), so 1 and N workers report
    # exactly the same metrics for the same weights.
    fit(recipe, epochs=config.epochs, eval_every=config.eval_every, metric=ctx.metric, state=state,
        hooks=hooks, reduce=all_reduce_sum, patience=getattr(config, "patience", 0), log=None)
