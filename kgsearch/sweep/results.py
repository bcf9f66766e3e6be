"""A sweep's results: one `TrialRow` per trial from Tune's ResultGrid, the best one, and trials.csv."""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgsearch.sweep.checkpoints import best_checkpoint
from kgsearch.sweep.failures import describe

STATUS_DONE, STATUS_STOPPED, STATUS_FAILED, STATUS_UNFINISHED = "completed", "stopped_early", "failed", "unfinished"


ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Diverged|Interrupt|Failure)\w*)(?::\s*(.*))?$")


def short_error(text: str | None) -> str:
    """The one line of a (remote) traceback that says what went wrong, e.g. 'TrainingDiverged: loss ...'."""
    if not text:
        return ""
    found = ""
    for line in str(text).splitlines():
        m = ERROR_LINE.match(line.strip())
        if m and not m.group(1).startswith(("RayTaskError", "TuneError")):
            found = f"{m.group(1)}: {m.group(2)}" if m.group(2) else m.group(1)
    if not found:
        lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
        found = lines[-1] if lines else ""
    return found[:300]


@dataclass
class TrialRow:
    trial: str
    trial_id: str
    status: str
    epochs: int
    best: float
    best_epoch: int
    params: dict
    config: dict
    path: str
    checkpoint: Any  # ray.tune.Checkpoint (a folder holding checkpoint.pt) or None
    time_s: float
    error: str = ""
    last: dict = field(default_factory=dict)
    # A GraSH trial's rung (kgsearch.sweep.grash): FIDELITY_COLUMNS; {} for any other trial
    fidelity: dict = field(default_factory=dict)


# trials.csv's columns for a GraSH sweep: the rung, the share of the training triples its subgraph holds,
# the epochs it trains, and whether the trial's configuration went on to the next rung.
FIDELITY_COLUMNS = ("rung", "graph_share", "rung_epochs", "promoted")


def searched_params(searched: tuple[str, ...] | dict, config: dict) -> dict:
    """A trial's searched values by key: `searched` the sweep's space (a dict: entries may set another field
    than their key, kgsearch.sweep.space.searched_values) or plain config keys (a tuple)."""
    if isinstance(searched, dict):
        from kgsearch.sweep.space import searched_values

        return searched_values(searched, config)
    return {k: config[k] for k in searched if k in config}


def collect_trials(results, metric: str, max_t: int, searched: tuple[str, ...] | dict,
                   unfinished: set[str] = frozenset(), train_runs: str | None = None,
                   failures: dict[str, dict] | None = None, budget_ended: bool = False) -> list[TrialRow]:
    """ResultGrid -> one TrialRow per trial, in creation order (`unfinished`: ids left to --resume;
    `failures`: the failure records of kgsearch.sweep.failures, whose first error a failed trial shows;
    `searched`: the sweep's space, or the config keys to show, as for `searched_params`).
    `budget_ended`: the time budget ended the search, so a trial Tune ended before its first result (and that
    is not in `unfinished`) was stopped by it, not left to a resume (which would block the re-training).

    Each row's checkpoint is the trial's best kept one (kgsearch.sweep.checkpoints): in its own folder,
    or for worker-group trials in `train_runs`/<trial id> (their Train run, on the same filesystem).
    """
    from ray.tune import Checkpoint

    rows = []
    for result in results:
        metrics = dict(result.metrics or {})
        path = str(result.path)
        name = Path(path).name.split("_")[0]
        trial_id = metrics.get("trial_id") or Path(path).name.partition("_")[2]
        epochs = int(metrics.get("epochs_done", 0) or 0)
        failure = (failures or {}).get(str(trial_id))
        if failure is not None:
            status, error = STATUS_FAILED, describe(failure)
        elif result.error is not None:
            status, error = STATUS_FAILED, short_error(_error_text(result))
            if not ERROR_LINE.match(error):  # e.g. a dead actor, whose message names no exception
                first = str(result.error).strip().splitlines()
                error = f"{type(result.error).__name__}: {first[0] if first else ''}"[:300]
        elif str(trial_id) in unfinished:
            status, error = STATUS_UNFINISHED, ""
        elif epochs >= max_t:
            status, error = STATUS_DONE, ""
        elif epochs > 0 or budget_ended:
            status, error = STATUS_STOPPED, ""
        else:
            status, error = STATUS_UNFINISHED, ""
        folder = f"{train_runs}/{trial_id}" if train_runs else path
        best = best_checkpoint(result.filesystem, folder)
        checkpoint = Checkpoint(best, filesystem=result.filesystem) if best else None
        config = dict(result.config or {})
        rows.append(TrialRow(
            trial=name, trial_id=str(trial_id), status=status, epochs=epochs,
            best=float(metrics.get("best_" + metric, math.nan)), best_epoch=int(metrics.get("best_epoch", 0) or 0),
            params=searched_params(searched, config), config=config, path=path,
            checkpoint=checkpoint, time_s=float(metrics.get("time_total_s", 0.0) or 0.0), error=error,
            last=metrics))
    rows.sort(key=lambda r: r.trial)
    return rows


def _error_text(result) -> str:
    try:
        with result.filesystem.open_input_stream(f"{result.path}/error.txt") as f:
            return f.readall().decode("utf-8", errors="replace")
    except (OSError, FileNotFoundError):
        return str(result.error)


def best_row(rows: list[TrialRow], mode: str = "max") -> TrialRow | None:
    usable = [r for r in rows if math.isfinite(r.best) and r.checkpoint is not None]
    if not usable:
        return None
    return (max if mode == "max" else min)(usable, key=lambda r: r.best)


def trials_csv(rows: list[TrialRow], metric: str, searched: tuple[str, ...]) -> str:
    """trials.csv: one row per trial (searched values, best validation metric, epochs, status, error; a GraSH
    sweep's trials their rung and fidelity too)."""
    out = io.StringIO()
    writer = csv.writer(out)
    fidelity = FIDELITY_COLUMNS if any(r.fidelity for r in rows) else ()
    writer.writerow(["trial", "trial_id", *fidelity, "status", "epochs", f"best_{metric}", "best_epoch", "time_s",
                     *searched, "error"])
    for r in rows:
        writer.writerow([r.trial, r.trial_id, *[r.fidelity.get(k, "") for k in fidelity], r.status, r.epochs,
                         _csv_num(r.best), r.best_epoch, f"{r.time_s:.1f}", *[r.params.get(k, "") for k in searched],
                         r.error])
    return out.getvalue()


def _csv_num(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6f}"
