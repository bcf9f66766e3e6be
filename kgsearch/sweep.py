"""The sweep CLI: Ray Tune + Optuna (TPE) + ASHA over one search-space file.

    python -m kgsearch.sweep dans_umls                 # search_spaces/dans_umls.yaml, embedded Ray
    python -m kgsearch.sweep dans_umls --smoke         # tiny dims, 1-2 epochs: checks the wiring
    python -m kgsearch.sweep path/to/sweep.yaml --storage /shared/runs --name try2
    python -m kgsearch.sweep dans_umls --resume        # continue a killed sweep (finished trials kept)
    python -m kgsearch.sweep dans_umls --searcher random --no-asha --time-budget 18   # a baseline search
    python -m kgsearch.sweep dans_fb15k237 --data-root DATASETS --storage s3://bucket/kgsearch

With RAY_ADDRESS set (or inside `ray job submit`) it joins that cluster; otherwise it starts a local
Ray sized to this machine (no GPU -> CPU trials; too few CPUs -> smaller trials). Results go to
<storage>/<name>/ (default ./runs/<sweep name>; storage may be a path or an s3:// / gs:// URI):
trials.csv, best/config.yaml (re-runnable with `python -m kgsearch.train`), best/checkpoint.pt,
best/metrics.json, summary.txt, and TensorBoard event files (`tensorboard --logdir <storage>/<name>`).
Bad input (sweep file, flags, data root, --resume target) exits with code 2 before anything starts.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

from kgsearch.errors import KGSearchError, cli_entry
from kgsearch.spec import SweepSpec, load_spec, spec_from_dict
from kgsearch.sweep_report import (STATUS_FAILED, STATUS_UNFINISHED, ProgressPrinter, ProvenanceWriter, best_row,
                                   collect_trials, echo, json_text, summary_table, trial_dirname, trials_csv,
                                   unfinished_trials, yaml_text)
from kgsearch.sweep_storage import ExperimentStore

SPEC_FILE = "sweep.yaml"
TRAIN_RUNS = "_train"
# glibc hands freed memory back to the OS too eagerly for embedding training: RotatE epochs ran ~2x
# faster with these (RAY_NOTES "CPU speed"), a DANS trial ~1.3x (docs/benchmarks_sweep.md).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "17179869184",
              "MALLOC_TOP_PAD_": "1073741824"}
_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}
# Quiet driver: no Tune banner/tables (our ProgressPrinter shows trials), no Train preemption watcher,
# no warning for the experiment snapshot that each checkpoint forces (num_to_keep=1; measured cheap).
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_DEDUP_LOGS": "1",
             "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


@dataclasses.dataclass
class SweepOutcome:
    experiment: Path | str  # a local Path, or the bucket URI
    rows: list
    best: dict | None
    wall_s: float
    interrupted: bool = False


# ------------------------------------------------------------------------------------------------
# Environment


def allocator_env() -> dict[str, str]:
    """The glibc malloc settings for trial processes (and this one, via mallopt); empty if disabled."""
    if os.environ.get("KGSEARCH_NO_MALLOC_TUNING"):
        return {}
    env = {k: os.environ.get(k, v) for k, v in MALLOC_ENV.items()}
    try:  # this process is already running: apply the same settings through mallopt(3)
        libc = ctypes.CDLL("libc.so.6")
        for key, param in _MALLOPT.items():
            libc.mallopt(param, int(env[key]))
    except (OSError, AttributeError, ValueError):
        pass  # not glibc: the env vars are harmless
    return env


class _DropTrialTracebacks(logging.Filter):
    """Tune logs each failed trial's full remote traceback; ProgressPrinter already shows its one-line
    cause and the traceback stays in the trial's error.txt."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not text.startswith(("Trial task failed for trial", "Trials did not complete"))


def quiet_tune_logs() -> None:
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTrialTracebacks) for f in logger.filters):
            logger.addFilter(_DropTrialTracebacks())


def survive_killed_trials() -> None:
    """Let a trial killed by Ray's memory monitor fail alone instead of ending the sweep.

    On a shared machine the node can run low on memory because of someone else's job; Ray's memory
    monitor then kills a trial process. Tune 2.60 turns a dead trial actor (RayActorError) into a
    failed trial, but an OutOfMemoryError delivered for the actor's pending task escapes its actor
    manager as "Caught unexpected exception" and aborts Tuner.fit() (seen when a trial was killed
    during start-up). Re-delivering it as an actor error records that trial as failed with the OOM
    message and the sweep goes on.
    """
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.exceptions import NodeDiedError, OutOfMemoryError, RayActorError, WorkerCrashedError

    original = RayActorManager._actor_task_failed
    if getattr(original, "_kgsearch_patched", False):
        return

    def _actor_task_failed(self, tracked_actor_task, exception):
        if isinstance(exception, (OutOfMemoryError, WorkerCrashedError, NodeDiedError)):
            exception = RayActorError(error_msg=f"{type(exception).__name__}: {exception}")
        return original(self, tracked_actor_task, exception)

    _actor_task_failed._kgsearch_patched = True
    RayActorManager._actor_task_failed = _actor_task_failed


def start_ray(env: dict[str, str]) -> str:
    """Join the cluster (RAY_ADDRESS / `ray job submit`) or start a local Ray; return which."""
    import ray

    for key, value in {**QUIET_ENV, **env}.items():
        os.environ.setdefault(key, value)  # read by Tune in this process; inherited by a local raylet
    if ray.is_initialized():  # e.g. a test session's Ray
        return "existing"
    if os.environ.get("RAY_ADDRESS"):
        # Inside a job the driver must not pass num_cpus, nor a runtime_env that would replace the
        # job's (its working_dir carries this package). Train workers still get `env` (TrialContext).
        ray.init(logging_level=logging.WARNING, log_to_driver=False)
        return "cluster"
    # A loaded laptop can take over a minute to start a worker group (Train's default timeout: 60 s).
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "180")
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=True, dashboard_host="127.0.0.1",
             logging_level=logging.WARNING, log_to_driver=False, runtime_env={"env_vars": env})
    # The dashboard stays on: with it off, a trial stopped by ASHA leaks its workers' CPUs (RAY_NOTES).
    return "local"


def adapt_resources(spec: SweepSpec, mode: str, say, cpu_only: bool = False) -> SweepSpec:
    """Fit the spec's per-trial resources and concurrency to the Ray cluster actually there.

    A local Ray is what it is: no GPU -> CPU trials, too few CPUs -> smaller trials, one at a time.
    A cluster may autoscale (a GPU node appears once trials ask for it), so there the spec is trusted
    and only warned about; `cpu_only` (--cpu) forces CPU trials anywhere.
    """
    import ray

    total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    res, concurrency = spec.resources, spec.max_concurrent_trials
    fixed_size = mode != "cluster"
    if res.gpus_per_worker > 0 and (cpu_only or (gpus == 0 and fixed_size)):
        why = "--cpu" if cpu_only else "Ray has no GPU here"
        say(f"warning: {why}; trials run on CPU (gpus_per_worker {res.gpus_per_worker:g} -> 0)")
        res = dataclasses.replace(res, gpus_per_worker=0.0)
    elif res.gpus_per_worker > 0 and gpus == 0:
        say("note: no GPU node is up yet; trials wait for the autoscaler to add one "
            "(pass --cpu to run them on CPU instead)")
    per_trial_cpu = res.workers * res.cpus_per_worker
    if per_trial_cpu > cpus:
        if fixed_size:
            cpw = max(cpus / res.workers, 0.01)
            say(f"warning: a trial asks for {per_trial_cpu:g} CPUs but Ray has {cpus:g}; "
                f"cpus_per_worker {res.cpus_per_worker:g} -> {cpw:g}")
            res = dataclasses.replace(res, cpus_per_worker=cpw)
            per_trial_cpu = res.workers * cpw
        else:
            say(f"warning: a trial asks for {per_trial_cpu:g} CPUs, the cluster now has {cpus:g}")
    # Tune does not see a worker group's CPUs (their own placement group): cap the concurrency here,
    # or trials wait forever for workers (RAY_NOTES "Train V2 + Tune").
    fits = max(1, math.floor(cpus / per_trial_cpu + 1e-9))
    if res.gpus_per_worker > 0 and gpus > 0:
        fits = min(fits, max(1, math.floor(gpus / (res.workers * res.gpus_per_worker) + 1e-9)))
    if concurrency > fits:
        if fixed_size:
            say(f"note: {fits} trial(s) fit at once on this machine; max_concurrent_trials {concurrency} -> {fits}")
            concurrency = fits
        else:
            say(f"warning: {concurrency} concurrent trials need more than the cluster has now ({fits} fit)")
    return dataclasses.replace(spec, resources=res, max_concurrent_trials=concurrency)


# ------------------------------------------------------------------------------------------------
# Per-dataset work, once per sweep


def prepare_data(spec: SweepSpec, data_root: str | None, say):
    """Load the dataset and run Recipe.prepare once, in the driver (trials fetch it from the object store)."""
    from kgsearch.config import config_from_dict
    from kgsearch.data import load
    from kgsearch.recipe import get_recipe
    from kgsearch.train import seed_everything

    recipe_cls = get_recipe(spec.model)
    config = config_from_dict(recipe_cls.Config, spec.fixed, source=f"{spec.source}: fixed")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load(spec.dataset, data_root=data_root)
    for w in caught:
        say(f"note: {w.message}")
    say(f"dataset {dataset.name}: {len(dataset.train)} train / {len(dataset.valid)} valid / "
        f"{len(dataset.test)} test ({time.perf_counter() - start:.1f}s)")
    start = time.perf_counter()
    seed_everything(config.seed)
    prepared = recipe_cls.prepare(config, dataset)
    say(f"prepared {spec.model} once for all trials ({time.perf_counter() - start:.1f}s)")
    return recipe_cls, dataset, prepared


# ------------------------------------------------------------------------------------------------
# The Tuner


def make_searcher(spec: SweepSpec):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if spec.searcher.type == "random":
        sampler = optuna.samplers.RandomSampler(seed=spec.searcher.seed)
    else:
        # TPE's default 10 random start-up trials would be most of a small sweep (RAY_NOTES).
        sampler = optuna.samplers.TPESampler(seed=spec.searcher.seed,
                                             n_startup_trials=spec.searcher.n_startup_trials)
    return OptunaSearch(space=spec.optuna_space(), metric=spec.metric, mode=spec.mode, sampler=sampler)


def make_scheduler(spec: SweepSpec):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = spec.scheduler
    if s.type == "fifo":
        return FIFOScheduler()
    # time_attr: our epoch counter; training_iteration restarts at 1 after a resume (RAY_NOTES).
    return ASHAScheduler(time_attr="epochs_done", max_t=s.max_t, grace_period=s.grace_period,
                         reduction_factor=s.reduction_factor)


def trainable_module(model: str):
    """trainables.<model> (imported by name: `trainables` may be a namespace package in an old editable install)."""
    import importlib

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
        # {"cpu": 0} alone is refused, so it reserves a little memory instead (RAY_NOTES).
        request = {"cpu": 0, "memory": 64 * 1024 * 1024}
    return tune.with_resources(fn, request)


def build_tuner(spec: SweepSpec, trainable, store: ExperimentStore, fail_fast: bool, provenance: dict,
                time_budget_s: float | None = None):
    from ray import tune

    searched = tuple(p.name for p in spec.space)
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


# ------------------------------------------------------------------------------------------------
# The sweep


def in_ray_job() -> bool:
    """True inside `ray job submit` (the job supervisor sets this for the entrypoint)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def experiment_store(spec: SweepSpec, storage: str | None, name: str | None) -> ExperimentStore:
    # Inside a job the working directory is a temporary copy that is deleted afterwards (RAY_NOTES
    # "Jobs"), so ./runs would vanish with it: default to the home folder of the head node there.
    root = storage or spec.storage or (str(Path.home() / "kgsearch-runs") if in_ray_job() else "runs")
    return ExperimentStore(root, name or spec.name)


def check_data_root(data_root: str | None) -> None:
    if data_root is None:
        return
    path = Path(data_root).expanduser()
    if not path.is_dir():
        raise KGSearchError(f"--data-root {data_root}: no such folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise KGSearchError(f"--data-root {data_root}: folder is not readable")


def run_sweep(spec: SweepSpec, *, storage: str | None = None, name: str | None = None,
              data_root: str | None = None, resume: bool = False, fail_fast: bool = False,
              time_budget_s: float | None = None, cpu_only: bool = False, say=echo) -> SweepOutcome:
    """Run (or resume) one sweep end to end; see the module docstring for what it writes."""
    import yaml
    from ray import tune

    from kgsearch.provenance import provenance
    from trainables.common import TrialContext, env_fault

    started = time.time()
    store = experiment_store(spec, storage, name)
    exp = store.uri
    if resume:
        if not store.is_file(SPEC_FILE) or not tune.Tuner.can_restore(exp):
            raise KGSearchError(f"--resume: {exp} holds no sweep to resume (no {SPEC_FILE} / Tune state)")
        stored = yaml.safe_load(store.read_text(SPEC_FILE))
        spec = spec_from_dict(stored["spec"])
        data_root = data_root or stored.get("data_root")
        say(f"resuming sweep {spec.name} in {exp} (settings from its {SPEC_FILE})")
    elif store.exists(SPEC_FILE) or tune.Tuner.can_restore(exp):
        raise KGSearchError(f"{exp} already holds a sweep; pass --resume to continue it, or --name NEW "
                            "for a new experiment")
    data_root = data_root or spec.data_root
    check_data_root(data_root)
    fault = env_fault()
    if data_root is not None:
        data_root = str(Path(data_root).expanduser().resolve())

    # Everything that can fail on bad input happens before Ray starts and before `exp` is touched.
    recipe_cls, dataset, prepared = prepare_data(spec, data_root, say)
    prepared_at = time.time()
    env = allocator_env()
    mode = start_ray(env)
    ray_ready_at = time.time()
    import ray

    quiet_tune_logs()
    survive_killed_trials()
    spec = adapt_resources(spec, mode, say, cpu_only)
    shared = ray.put((dataset, prepared))  # once per sweep; every trial reads it from the object store
    ctx = TrialContext(model=spec.model, dataset=spec.dataset, data_root=data_root, metric=spec.metric,
                       resources=spec.resources, train_storage=store.join(TRAIN_RUNS), shared=shared,
                       fault=fault, worker_env=env)
    trainable = make_trainable(spec, ctx)
    prov = provenance(spec.fixed.get("seed"))
    if resume:
        tuner = tune.Tuner.restore(exp, trainable=trainable, resume_errored=True)
    else:
        store.write_text(SPEC_FILE, yaml_text({"spec": spec.to_dict(), "data_root": data_root, "ray": mode, **prov},
                                              header=f"# resolved sweep settings ({spec.source}); read by --resume"))
        tuner = build_tuner(spec, trainable, store, fail_fast, prov, time_budget_s)
    say(f"sweep {spec.name}: {spec.num_samples} trials x <= {spec.scheduler.max_t} epochs, "
        f"{spec.searcher.type} + {spec.scheduler.type}, {spec.max_concurrent_trials} at a time, "
        f"{spec.resources.workers} worker(s)/trial on {'GPU' if spec.resources.gpus_per_worker else 'CPU'} "
        f"[{mode} Ray] -> {exp}")
    timing = {"started_at": started, "prepared_s": prepared_at - started, "ray_start_s": ray_ready_at - prepared_at,
              "tune_started_at": time.time()}
    try:
        results = tuner.fit()
    except tune.TuneError as exc:  # fail_fast stops the experiment by raising
        say(f"sweep stopped: {str(exc).splitlines()[0]}")
        results = tune.Tuner.restore(exp, trainable=trainable).get_results()
    timing["tune_finished_at"] = time.time()
    timing["max_concurrent_trials"] = spec.max_concurrent_trials
    return finish(spec, store, results, recipe_cls, dataset, prepared, data_root, started, say, timing)


def finish(spec: SweepSpec, store: ExperimentStore, results, recipe_cls, dataset, prepared, data_root, started,
           say, timing: dict | None = None) -> SweepOutcome:
    """Write trials.csv, evaluate the best trial's best checkpoint on test, export best/, print a summary."""
    searched = tuple(p.name for p in spec.space)
    rows = collect_trials(results, spec.metric, spec.scheduler.max_t, searched, unfinished_trials(store))
    store.write_text("trials.csv", trials_csv(rows, spec.metric, searched))
    best = best_row(rows, spec.mode)
    best_info = None
    if best is not None:
        best_info = export_best(spec, store, best, recipe_cls, dataset, prepared, data_root)
    exp = store.local or store.uri  # what the user types: a plain path when it is on this machine
    wall = time.time() - started
    table = summary_table(rows, spec.metric, searched)
    unfinished = sum(r.status == STATUS_UNFINISHED for r in rows)
    how = f"interrupted after {wall / 60:.1f} min ({unfinished} trial(s) unfinished; continue with --resume)" \
        if unfinished else f"finished in {wall / 60:.1f} min"
    lines = [f"sweep {spec.name} {how} -> {exp}", table]
    if best_info:
        lines += [f"best trial {best.trial}: {spec.metric} {best.best:.4f} (epoch {best.best_epoch}/"
                  f"{best.epochs}), test {best_info['test_key']} {best_info['test'][best_info['test_key']]:.4f}",
                  f"  replay:      python -m kgsearch.train {exp}/best/config.yaml",
                  f"  tensorboard: tensorboard --logdir {exp}"]
    else:
        lines.append("no trial produced a checkpoint; nothing exported to best/")
    text = "\n".join(lines)
    store.write_text("summary.txt", text + "\n")
    if timing is not None:
        store.write_text("timing.json", json_text({**timing, "finished_at": time.time(), "wall_s": wall}))
    say("")
    say(text)
    return SweepOutcome(experiment=store.local or exp, rows=rows, best=best_info, wall_s=wall,
                        interrupted=bool(unfinished))


def export_best(spec: SweepSpec, store: ExperimentStore, best, recipe_cls, dataset, prepared, data_root) -> dict:
    """Evaluate the best trial's best-validation weights on test; write best/{config.yaml,checkpoint.pt,metrics.json}."""
    from kgsearch.checkpoint import load_checkpoint
    from kgsearch.config import config_from_dict
    from kgsearch.train import _restore, _save, evaluate_split, resolve_device, seed_everything

    with best.checkpoint.as_directory() as folder:  # a local path, or a download from the bucket
        blob = load_checkpoint(Path(folder) / "checkpoint.pt", model=spec.model)
    run = dict(blob["config"])
    config = config_from_dict(recipe_cls.Config, run["params"], source=f"{best.trial} checkpoint")
    seed_everything(config.seed)
    recipe = recipe_cls(config, dataset, prepared, device=resolve_device("auto"))
    state = _restore(blob)
    recipe.load_state_dict(state.best_state if state.best_state is not None else blob["state"]["recipe"])
    val = evaluate_split(recipe, "valid", "val_")
    test = evaluate_split(recipe, "test", "test_")
    # The run file replays the trial: same params and seed, trained for the epochs the trial ran.
    params = {**run["params"], "epochs": best.epochs}
    store.write_text("best/config.yaml", yaml_text(
        {"model": spec.model, "dataset": spec.dataset, "data_root": data_root, "params": params},
        header=f"# best trial {best.trial} ({best.trial_id}) of sweep {spec.name}: "
               f"{spec.metric} {best.best:.4f} at epoch {best.best_epoch}\n"
               f"# replay: python -m kgsearch.train {store.local or store.uri}/best/config.yaml"))
    store.write_file("best/checkpoint.pt", lambda path: _save(path, {**run, "params": params}, recipe, state, "best"))
    test_key = "test_" + spec.metric[len("val_"):]
    info = {"trial": best.trial, "trial_id": best.trial_id, "best_epoch": state.best_epoch,
            "epochs_run": best.epochs, "searched": best.params, "val": val, "test": test, "test_key": test_key,
            "trial_path": best.path}
    store.write_text("best/metrics.json", json_text(info))
    return info


# ------------------------------------------------------------------------------------------------
# CLI


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kgsearch.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="sweep name (search_spaces/NAME.yaml) or path to a sweep file")
    parser.add_argument("--num-samples", type=_positive, help="number of trials (overrides num_samples)")
    parser.add_argument("--max-epochs", type=_positive, help="epochs per trial (overrides scheduler.max_t)")
    parser.add_argument("--max-concurrent", type=_positive, help="trials at once (overrides max_concurrent_trials)")
    parser.add_argument("--storage", help="results folder (default: the file's `storage`, else ./runs; "
                        "~/kgsearch-runs inside `ray job submit`)")
    parser.add_argument("--name", help="experiment name, a folder under storage (default: the sweep name)")
    parser.add_argument("--data-root", help="folder holding datasets by name (default: $KGSEARCH_DATA_ROOT)")
    parser.add_argument("--resume", action="store_true", help="continue the sweep in <storage>/<name>")
    parser.add_argument("--smoke", action="store_true", help="apply the file's `smoke:` block (tiny, 1-2 epochs)")
    parser.add_argument("--fail-fast", action="store_true", help="stop the sweep at the first failed trial")
    parser.add_argument("--searcher", choices=("tpe", "random"), help="Optuna sampler (overrides searcher.type)")
    parser.add_argument("--no-asha", action="store_true", help="no early stopping: every trial runs max_t epochs")
    parser.add_argument("--cpu", action="store_true", help="run trials on CPU even where the sweep asks for GPUs")
    parser.add_argument("--time-budget", type=_positive, metavar="MINUTES",
                        help="stop the search after this many minutes (running trials are stopped too)")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = load_spec(args.sweep, smoke=args.smoke, num_samples=args.num_samples, max_epochs=args.max_epochs,
                     searcher=args.searcher, asha=False if args.no_asha else None,
                     max_concurrent_trials=args.max_concurrent, data_root=args.data_root)
    if args.resume and any([args.num_samples, args.max_epochs, args.searcher, args.no_asha, args.smoke,
                            args.max_concurrent, args.time_budget]):
        echo("note: --resume continues with the settings the sweep started with; other flags are ignored")
    outcome = run_sweep(spec, storage=args.storage, name=args.name, data_root=args.data_root,
                        resume=args.resume, fail_fast=args.fail_fast,
                        time_budget_s=args.time_budget * 60 if args.time_budget else None, cpu_only=args.cpu)
    if args.fail_fast and any(r.status == STATUS_FAILED for r in outcome.rows):
        return 1  # checked first: a fail-fast stop also leaves unstarted trials for --resume
    if outcome.interrupted:
        return 130  # Ctrl-C: Tune saved the state; the summary says how to resume
    return 0


if __name__ == "__main__":
    sys.exit(main())
