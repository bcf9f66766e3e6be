"""The Ray environment of a sweep: join a cluster or start a local Ray, quiet its logs, size trials to it."""

from __future__ import annotations

import inspect
import logging
import math
import os
from pathlib import Path

from kgsearch.errors import KGSearchError
from kgsearch.sweep.spec import SweepSpec

# Quiet driver: no Tune banner/tables (our ProgressPrinter shows trials), no Train preemption watcher,
# no warning for the experiment snapshot that each checkpoint forces (num_to_keep=1; measured cheap).
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_DEDUP_LOGS": "1",
             "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


# A custom resource that the cluster files give only to nodes that are never reclaimed (the head):
# worker-group trials' drivers ask for a little of it, so a spot reclaim takes no trial driver with it.
DRIVER_RESOURCE = "kgsearch_driver"
CGROUP_ROOT = "/sys/fs/cgroup"
# What survive_killed_trials patches, checked against Ray before patching.
PATCHED = ("ray.air.execution._internal.actor_manager", "RayActorManager", "_actor_task_failed",
           ["self", "tracked_actor_task", "exception"])


def in_ray_job() -> bool:
    """True inside `ray job submit` (the job supervisor sets this for the entrypoint)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


class _DropTrialTracebacks(logging.Filter):
    """Tune logs each failed trial's full remote traceback; ProgressPrinter already shows its one-line
    cause and the traceback stays in the trial's error.txt."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        # ...and the summary says how to resume an interrupted sweep, in kgsearch's own terms.
        return not text.startswith(("Trial task failed for trial", "Trials did not complete",
                                    "Experiment has been interrupted"))


def quiet_tune_logs() -> None:
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTrialTracebacks) for f in logger.filters):
            logger.addFilter(_DropTrialTracebacks())


def survive_killed_trials() -> str | None:
    """Let a trial killed by Ray's memory monitor fail alone instead of ending the sweep; None when
    patched, else why not (this Ray moved what it patches).

    On a shared machine the node can run low on memory because of someone else's job; Ray's memory
    monitor then kills a trial process. Tune 2.60 turns a dead trial actor (RayActorError) into a
    failed trial, but an OutOfMemoryError delivered for the actor's pending task escapes its actor
    manager as "Caught unexpected exception" and aborts Tuner.fit() (seen when a trial was killed
    during start-up). Re-delivering it as an actor error records that trial as failed with the OOM
    message and the sweep goes on. The one patch of Ray internals in kgsearch: pyproject pins Ray to the
    tested release, and a Ray that moved the method gets a clear note instead of a broken patch.
    """
    import importlib

    import ray
    from ray.exceptions import NodeDiedError, OutOfMemoryError, RayActorError, WorkerCrashedError

    module, cls, method, params = PATCHED
    try:
        manager = getattr(importlib.import_module(module), cls)
        original = getattr(manager, method)
        moved = list(inspect.signature(original).parameters) != params
    except (ImportError, AttributeError, TypeError, ValueError):
        moved = True
    if moved:
        return (f"note: Ray {ray.__version__} has no {module}.{cls}.{method}{tuple(params)} (kgsearch is tested "
                "with Ray 2.60, see pyproject.toml); a trial killed for memory may end the sweep instead of "
                "failing alone (kgsearch/sweep/ray_env.py, survive_killed_trials)")
    if getattr(original, "_kgsearch_patched", False):
        return None

    def _actor_task_failed(self, tracked_actor_task, exception):
        if isinstance(exception, (OutOfMemoryError, WorkerCrashedError, NodeDiedError)):
            exception = RayActorError(error_msg=f"{type(exception).__name__}: {exception}")
        return original(self, tracked_actor_task, exception)

    _actor_task_failed._kgsearch_patched = True
    setattr(manager, method, _actor_task_failed)
    return None


def available_cpus(cgroup: str | None = None) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota (containers, Kubernetes),
    which os.cpu_count() ignores."""
    cgroup = cgroup or CGROUP_ROOT
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = None
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        text = (Path(cgroup) / "cpu.max").read_text().split()
        if text[0] != "max":
            quota = int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        try:  # cgroup v1
            q = int((Path(cgroup) / "cpu" / "cpu.cfs_quota_us").read_text())
            if q > 0:
                quota = q / int((Path(cgroup) / "cpu" / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            pass
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def driver_resources() -> dict[str, float]:
    """What a worker-group trial's driver asks for on top of its memory: a little of DRIVER_RESOURCE where
    the cluster has it (the cluster files give it to the head), else nothing."""
    import ray

    return {DRIVER_RESOURCE: 0.01} if ray.cluster_resources().get(DRIVER_RESOURCE) else {}


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
    ray.init(num_cpus=available_cpus(), include_dashboard=True, dashboard_host="127.0.0.1",
             logging_level=logging.WARNING, log_to_driver=False, runtime_env={"env_vars": env})
    # The dashboard stays on: with it off, a trial stopped by ASHA leaks its workers' CPUs (docs/ray.md).
    return "local"


def adapt_resources(spec: SweepSpec, mode: str, say, cpu_only: bool = False) -> SweepSpec:
    """Fit the spec's per-trial resources and concurrency to the Ray cluster actually there.

    A local Ray is what it is: no GPU -> CPU trials, too few CPUs -> smaller trials, one at a time;
    some GPUs but fewer than one trial needs -> a KGSearchError (a trial would wait for ever). A
    cluster may autoscale (a GPU node appears once trials ask for it), so there the spec is trusted
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
        res = res.model_copy(update={"gpus_per_worker": 0.0})
    elif res.gpus_per_worker > 0 and gpus == 0:
        say("note: no GPU node is up yet; trials wait for the autoscaler to add one "
            "(pass --cpu to run them on CPU instead)")
    elif res.gpus_per_worker > 0 and fixed_size and res.workers * res.gpus_per_worker > gpus + 1e-9:
        raise KGSearchError(f"a trial asks for {res.workers * res.gpus_per_worker:g} GPUs ({res.workers} worker(s) x "
                            f"{res.gpus_per_worker:g}) but this machine's Ray has {gpus:g}: lower "
                            "resources.workers or resources.gpus_per_worker (--set resources.workers=1), or pass --cpu")
    per_trial_cpu = res.workers * res.cpus_per_worker
    if per_trial_cpu > cpus:
        if fixed_size:
            cpw = max(cpus / res.workers, 0.01)
            say(f"warning: a trial asks for {per_trial_cpu:g} CPUs but Ray has {cpus:g}; "
                f"cpus_per_worker {res.cpus_per_worker:g} -> {cpw:g}")
            res = res.model_copy(update={"cpus_per_worker": cpw})
            per_trial_cpu = res.workers * cpw
        else:
            say(f"warning: a trial asks for {per_trial_cpu:g} CPUs, the cluster now has {cpus:g}")
    # Tune does not see a worker group's CPUs (their own placement group): cap the concurrency here,
    # or trials wait forever for workers (docs/ray.md).
    fits = max(1, math.floor(cpus / per_trial_cpu + 1e-9))
    if res.gpus_per_worker > 0 and gpus > 0:
        fits = min(fits, max(1, math.floor(gpus / (res.workers * res.gpus_per_worker) + 1e-9)))
    if concurrency > fits:
        if fixed_size:
            say(f"note: {fits} trial(s) fit at once on this machine; max_concurrent_trials {concurrency} -> {fits}")
            concurrency = fits
        else:
            say(f"warning: {concurrency} concurrent trials need more than the cluster has now ({fits} fit)")
    return spec.model_copy(update={"resources": res, "max_concurrent_trials": concurrency})
