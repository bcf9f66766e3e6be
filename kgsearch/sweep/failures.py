"""A trial's failure, recorded under the experiment (`_train/failed-<trial id>.json`), so that no retry
or resume trains that trial again, and so that a resume knows which failures came from outside the
trial (whose values it runs again as new trials: kgsearch.sweep.searcher).

Tune keeps no such record: it retries any error, and Tune 2.60 even saves a trial whose actor died as
still RUNNING (TuneController._schedule_trial_stop returns before marking the trial for the next state
save), so a resume would restart it in place, outside the concurrency limit and unseen by the searcher.
Two writers, and the first record wins: the trial itself when its own code fails deterministically
(before Tune decides on a retry), and the driver's `FailureRecorder` when Tune gives a trial up.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pyarrow.fs

try:  # Tune is a hard dependency; the fallback only keeps this module importable without it
    from ray.tune import Callback
except ImportError:  # pragma: no cover
    Callback = object

DETERMINISTIC = ("TrainingDiverged", "KGSearchError", "ConfigError")  # a retry would only repeat them
# Raised by Train when a worker group cannot start or its workers die: from outside the trial's code.
TRANSIENT = ("WorkerGroupStartupTimeoutError", "WorkerGroupStartupFailedError", "WorkerHealthCheckFailedError",
             "ActorDiedError", "NodeDiedError", "WorkerCrashedError", "OutOfMemoryError")


def failed_from_outside(error: BaseException) -> bool:
    """Whether a trial's error (as Tune pickles it) came from outside the trial's own code: a dead actor
    or node, an OOM kill, a worker group that could not start."""
    from ray.exceptions import (NodeDiedError, ObjectLostError, OutOfMemoryError, RayActorError, RayTaskError,
                                WorkerCrashedError)

    outside = (RayActorError, NodeDiedError, WorkerCrashedError, OutOfMemoryError, ObjectLostError)
    if isinstance(error, outside):
        return True
    cause = error.cause if isinstance(error, RayTaskError) else None
    if cause is None or type(cause).__name__ in DETERMINISTIC:
        return False
    if isinstance(cause, outside):
        return True
    text = f"{type(cause).__name__}: {cause}"  # e.g. Train's TrainingFailedError, naming its workers' errors
    return any(name in text for name in TRANSIENT) and not any(name in text for name in DETERMINISTIC)


def _location(train_storage: str, trial_id: str | None = None) -> tuple[pyarrow.fs.FileSystem, str]:
    fs, base = pyarrow.fs.FileSystem.from_uri(train_storage)
    return fs, base if trial_id is None else f"{base}/failed-{trial_id}.json"


def record(train_storage: str, trial_id: str, kind: str, message: str, transient: bool,
           params: dict | None = None, trial: str = "") -> None:
    fs, path = _location(train_storage, trial_id)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        return  # the first failure is the one that counts
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    body = {"trial_id": trial_id, "trial": trial, "type": kind, "message": message, "transient": transient,
            "params": params or {}, "rerun": False}
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(body, default=str).encode())


def recorded(train_storage: str, trial_id: str) -> dict | None:
    fs, path = _location(train_storage, trial_id)
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.readall())
    except (FileNotFoundError, OSError, ValueError):
        return None


def all_recorded(train_storage: str) -> dict[str, dict]:
    """Trial id -> its failure record, for every failed trial of the experiment."""
    fs, base = _location(train_storage)
    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(base))
    except (FileNotFoundError, OSError):
        return {}
    out = {}
    for entry in entries:
        if entry.base_name.startswith("failed-") and entry.base_name.endswith(".json"):
            body = recorded(train_storage, entry.base_name[len("failed-"):-len(".json")])
            if body:
                out[body["trial_id"]] = body
    return out


def mark_rerun(train_storage: str, failure: dict) -> None:
    """A resume handed this failure's values to the searcher: the next resume does not again."""
    fs, path = _location(train_storage, failure["trial_id"])
    with fs.open_output_stream(path) as f:
        f.write(json.dumps({**failure, "rerun": True}, default=str).encode())


def describe(failure: dict) -> str:
    return f"{failure['type']}: {failure['message']}".strip()[:300]


class FailureRecorder(Callback):
    """Records each trial that Tune gives up on (after its retries), with whether its error came from
    outside it. Pickled into tuner.pkl by reference: a plain class here."""

    def __init__(self, train_storage: str):
        self.train_storage = train_storage

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = None
        pickled = getattr(trial, "pickled_error_file", None)
        if pickled and Path(pickled).exists():
            try:
                error = pickle.loads(Path(pickled).read_bytes())
            except Exception:  # an error that does not unpickle in the driver: record it as the trial's own
                error = None
        transient = error is not None and failed_from_outside(error)
        kind = type(error).__name__ if error is not None else "Error"
        if error is not None and getattr(error, "cause", None) is not None:
            kind = type(error.cause).__name__
        lines = str(error).strip().splitlines() if error is not None else []
        message = next((ln for ln in reversed(lines) if ln.startswith(f"{kind}:")), lines[0] if lines else "")
        message = message.split(f"{kind}:", 1)[-1].strip()
        record(self.train_storage, trial.trial_id, kind, message, transient, dict(trial.evaluated_params or {}),
               trial=str(trial).split("_")[0])  # t007 (Tune names trials by kgsearch.sweep.progress.trial_dirname)
