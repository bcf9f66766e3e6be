"""What a sweep shows while it runs: one line per trial event (Tune callbacks), and each trial's provenance.

Beside the per-epoch lines: a line whenever the sweep's best-so-far changes (`best_changes`), and a
status line "N of M trials, best X, elapsed, about T remaining" (`status_line`) at each trial's end and
every `STATUS_EVERY_S` seconds in between.

The callbacks are pickled into Tune's experiment state by reference: keep them plain classes here.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import pyarrow.fs

from kgsearch.sweep.results import searched_params, short_error

try:  # Tune is a hard dependency; the fallback only keeps this module importable without it
    from ray.tune import Callback
except ImportError:  # pragma: no cover
    Callback = object


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def echo(text: str = "", stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


STATUS_EVERY_S = 60.0


def improves(value: float, best: float | None, mode: str = "max") -> bool:
    """Whether `value` is a new best-so-far over `best` (None: nothing yet) under `mode` ("max"/"min")."""
    if value is None or not math.isfinite(value):
        return False
    if best is None or not math.isfinite(best):
        return True
    return value > best if mode == "max" else value < best


def best_changes(values, mode: str = "max") -> list[tuple[int, float]]:
    """(index, value) of each element of `values` that changes the best-so-far: strictly better only."""
    best, changes = None, []
    for i, value in enumerate(values):
        if improves(value, best, mode):
            best = value
            changes.append((i, value))
    return changes


def clock(seconds: float) -> str:
    """4:05, 1:02:03."""
    s = int(max(0.0, seconds) + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def estimate_remaining(total: int | None, done: int, durations: list[float], running: list[float],
                       concurrency: int, budget_left_s: float | None = None) -> float | None:
    """Seconds left, from the mean duration of completed trials: the work of the trials not done yet
    (less what the running ones have done), spread over `concurrency` slots, at most the time budget left.
    None while no trial has completed (or the number of trials is open-ended)."""
    if not durations or total is None or total < 0:
        return budget_left_s if durations and budget_left_s is not None else None
    mean = sum(durations) / len(durations)
    work = (total - done) * mean - sum(min(t, mean) for t in running)
    eta = max(0.0, work) / max(1, min(concurrency, max(1, total - done)))
    return eta if budget_left_s is None else min(eta, max(0.0, budget_left_s))


def status_line(done: int, total: int | None, metric: str, best: float | None, best_trial: str,
                elapsed_s: float, remaining_s: float | None) -> str:
    """'3 of 20 trials, best val_mrr 0.9123 (t002), elapsed 4:12, about 9:30 remaining'."""
    count = f"{done} of {total} trials" if total is not None and total >= 0 else f"{done} trials done"
    shown = f"best {metric} {fmt(best)} ({best_trial})" if best is not None else f"best {metric} -"
    left = "estimating remaining time..." if remaining_s is None else f"about {clock(remaining_s)} remaining"
    return f"{count}, {shown}, elapsed {clock(elapsed_s)}, {left}"


def brief(params: dict, searched: tuple[str, ...], most: int = 4) -> str:
    """The first `most` searched values, 'k=v k=v ... (+3 more)'."""
    shown = [f"{k}={fmt(params[k])}" for k in searched if k in params]
    more = f" (+{len(shown) - most} more)" if len(shown) > most else ""
    return " ".join(shown[:most]) + more


class ProgressPrinter(Callback):
    """One compact line per trial event instead of Tune's tables and Ray's logs."""

    # Class defaults: a printer pickled by an older version (--resume) lacks these attributes.
    mode, concurrency, total = "max", 1, None

    def __init__(self, metric: str, max_t: int, searched: tuple[str, ...] | dict, asha: bool = True,
                 time_budget_s: float | None = None, mode: str = "max", concurrency: int = 1):
        # searched: the sweep's space (its keys shown, read from the config fields they set) or config keys
        self.metric, self.max_t, self.searched = metric, max_t, searched
        self.asha, self.time_budget_s = asha, time_budget_s
        self.mode, self.concurrency = mode, concurrency
        self._fresh()

    def _fresh(self) -> None:
        self.started = time.time()
        self.best, self.best_trial = None, ""
        self.begun: dict[str, float] = {}  # trial id -> when this printer saw it start
        self.durations: dict[str, float] = {}  # trial id -> wall seconds, completed trials
        self.last_status = time.time()

    def _say(self, text: str) -> None:
        elapsed = int(time.time() - self.started)
        print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {text}", flush=True)

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        self._fresh()
        self.total = total_num_samples if total_num_samples is not None else num_samples

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.begun.setdefault(_key(trial), time.time())
        shown = " ".join(f"{k}={fmt(v)}" for k, v in searched_params(self.searched, trial.config).items())
        self._say(f"{trial_label(trial)} start   {shown}")

    def _note_best(self, trial, value) -> None:
        if isinstance(value, (int, float)) and improves(float(value), self.best, self.mode):
            self.best, self.best_trial = float(value), trial_label(trial)
            values = searched_params(self.searched, trial.config)
            self._say(f"new best {self.best_trial} {self.metric} {fmt(self.best)}  {brief(values, tuple(values))}")

    def _finished(self, trial, trials) -> None:
        """A trial ended (done, stopped or failed): record its duration and print the status line."""
        begun = self.begun.pop(_key(trial), None)
        last = trial.last_result or {}
        self.durations[_key(trial)] = (time.time() - begun) if begun else float(last.get("time_total_s", 0.0))
        self._status(trials)

    def _status(self, trials) -> None:
        now = time.time()
        self.last_status = now
        ended = set(self.durations)
        for t in trials or []:
            if str(t.status) in ("TERMINATED", "ERROR") and _key(t) not in ended:
                ended.add(_key(t))  # ended before a --resume: Tune's own time is the best we know
                seconds = float((t.last_result or {}).get("time_total_s", 0.0) or 0.0)
                value = (t.last_result or {}).get("best_" + self.metric)
                if isinstance(value, (int, float)) and improves(float(value), self.best, self.mode):
                    self.best, self.best_trial = float(value), trial_label(t)
                if seconds > 0:
                    self.durations[_key(t)] = seconds
        running = [now - self.begun[_key(t)] for t in trials or []
                   if str(t.status) == "RUNNING" and _key(t) in self.begun]
        budget = getattr(self, "time_budget_s", None)
        total = self.total if self.total is None or self.total < 0 else max(self.total, len(trials or []))
        left = estimate_remaining(total, len(ended), list(self.durations.values()), running,
                                  self.concurrency, budget - (now - self.started) if budget else None)
        self._say(status_line(len(ended), total, self.metric, self.best, self.best_trial,
                              now - self.started, left))

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.time() - getattr(self, "last_status", 0.0) >= STATUS_EVERY_S:
            self._status(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        epoch = result.get("epochs_done", "?")
        parts = [f"{trial_label(trial)} epoch {epoch:>3}/{self.max_t}", f"loss {fmt(result.get('loss', math.nan))}"]
        if self.metric in result:
            parts.append(f"{self.metric} {fmt(result[self.metric])}")
            parts.append(f"best {fmt(result.get('best_' + self.metric, math.nan))}")
        parts.append(f"{result.get('epoch_time', 0.0):.1f}s")
        self._say("  ".join(parts))
        self._note_best(trial, result.get("best_" + self.metric, result.get(self.metric)))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        epochs = last.get("epochs_done", 0)
        best = fmt(last.get("best_" + self.metric, math.nan))
        how = "done   " if epochs >= self.max_t or last.get("converged") else "stopped"
        self._say(f"{trial_label(trial)} {how} after {epochs} epochs{self._why(last, epochs)}, best {self.metric} {best}")
        self._finished(trial, trials)

    def _why(self, last: dict, epochs: int) -> str:
        if epochs >= self.max_t:
            return ""
        if last.get("converged"):
            return " (converged: no better validation within its patience)"
        budget = getattr(self, "time_budget_s", None)  # absent from printers pickled by older versions
        if budget and time.time() - self.started >= budget - 1:
            return " by the time budget"
        return " by ASHA" if getattr(self, "asha", True) else ""

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        text = None
        if trial.error_file and Path(trial.error_file).exists():
            text = Path(trial.error_file).read_text(errors="replace")
        epochs = (trial.last_result or {}).get("epochs_done", 0)
        self._say(f"{trial_label(trial)} FAILED after {epochs} epochs: {short_error(text) or 'see its error.txt'}")
        self._finished(trial, trials)


class ProvenanceWriter(Callback):
    """Writes provenance.json (seed, config, package versions, git commit) into each trial folder."""

    def __init__(self, provenance: dict):
        self.provenance = provenance

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        fs, folder = trial.storage.storage_filesystem, trial.storage.trial_fs_path  # a bucket too
        target = f"{folder}/provenance.json"
        if fs.get_file_info(target).type != pyarrow.fs.FileType.NotFound:
            return  # a resumed trial keeps the record of its first start
        run = retrain_run(trial.config)
        body = {"trial": trial_label(trial), "trial_id": trial.trial_id, "config": trial.config,
                "scheduled_at": time.time(), **self.provenance,  # a re-training run's own seed:
                "seed": run[1] if run else trial.config.get("seed", self.provenance.get("seed"))}
        fs.create_dir(folder, recursive=True)
        with fs.open_output_stream(target) as f:
            f.write(json.dumps(body, indent=2, default=str).encode())


def _key(trial) -> str:
    return str(getattr(trial, "trial_id", "") or trial_label(trial))


# A re-training run's Tune config (kgsearch.sweep.retrain): {RUN_KEY: "t003-s1"}, the search trial whose
# configuration it trains and its seed, one grid value per run; a re-training Tuner stored before some runs
# could be left out of its grid has {RETRAIN_KEY: "t003", "seed": 1} instead (a grid over both).
RUN_KEY = "retrain_run"
RETRAIN_KEY = "retrain_of"
# A GraSH rung's run (kgsearch.sweep.grash): {RUNG_KEY: "t003-r1"}, rung 0's trial t003 trained at rung 1.
RUNG_KEY = "rung_run"


def retrain_label(trial: str, seed: int) -> str:
    return f"{trial}-s{seed}"


def retrain_run(config: dict) -> tuple[str, int] | None:
    """(search trial, seed) of a re-training run's Tune config; None for a search trial's."""
    if RUN_KEY in config:
        trial, _, seed = str(config[RUN_KEY]).rpartition("-s")
        return trial, int(seed)
    if RETRAIN_KEY in config:
        return str(config[RETRAIN_KEY]), int(config["seed"])
    return None


def trial_label(trial) -> str:
    """t007 (the counter of the trial's creation; its folder is t007_<trial id>); a re-training run of
    t007's configuration with seed 1: t007-s1 (kgsearch.sweep.retrain); at GraSH's rung 2: t007-r2."""
    config = getattr(trial, "config", None) or {}
    run = retrain_run(config)
    if run is not None:
        return retrain_label(*run)
    if RUNG_KEY in config:
        return str(config[RUNG_KEY])
    return f"t{trial_counter(trial):03d}"


def trial_counter(trial) -> int:
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default embeds every value): t007_ab12cd34."""
    return f"{trial_label(trial)}_{trial.trial_id}"
