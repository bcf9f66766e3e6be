"""The Ray environment of a sweep: join a cluster or start a local Ray, quiet its logs, size trials to it."""

from __future__ import annotations

import ctypes
import logging
import math
import os

from kgsearch.sweep.spec import SweepSpec

# glibc hands freed memory back to the OS too eagerly for embedding training: RotatE epochs ran ~2x
# faster with these on an idle box, a DANS trial ~1.3x on a loaded one (docs/ray.md, docs/benchmarks_sweep.md).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "17179869184",
              "MALLOC_TOP_PAD_": "1073741824"}
_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}
# Quiet driver: no Tune banner/tables (our ProgressPrinter shows trials), no Train preemption watcher,
# no warning for the experiment snapshot that each checkpoint forces (num_to_keep=1; measured cheap).
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_DEDUP_LOGS": "1",
             "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


def in_ray_job() -> bool:
    """True inside `ray job submit` (the job supervisor sets this for the entrypoint)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


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
    # The dashboard stays on: with it off, a trial stopped by ASHA leaks its workers' CPUs (docs/ray.md).
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
        res = res.model_copy(update={"gpus_per_worker": 0.0})
    elif res.gpus_per_worker > 0 and gpus == 0:
        say("note: no GPU node is up yet; trials wait for the autoscaler to add one "
            "(pass --cpu to run them on CPU instead)")
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
