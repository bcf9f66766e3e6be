"""What a sweep shows while it runs: one line per trial event (Tune callbacks), and each trial's provenance.

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

from kgsearch.sweep.results import short_error

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


class ProgressPrinter(Callback):
    """One compact line per trial event instead of Tune's tables and Ray's logs."""

    def __init__(self, metric: str, max_t: int, searched: tuple[str, ...], asha: bool = True,
                 time_budget_s: float | None = None):
        self.metric, self.max_t, self.searched = metric, max_t, searched
        self.asha, self.time_budget_s = asha, time_budget_s
        self.started = time.time()

    def _say(self, text: str) -> None:
        elapsed = int(time.time() - self.started)
        print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {text}", flush=True)

    def setup(self, **info) -> None:
        self.started = time.time()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        shown = " ".join(f"{k}={fmt(v)}" for k, v in trial.config.items() if k in self.searched)
        self._say(f"{trial_label(trial)} start   {shown}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        epoch = result.get("epochs_done", "?")
        parts = [f"{trial_label(trial)} epoch {epoch:>3}/{self.max_t}", f"loss {fmt(result.get('loss', math.nan))}"]
        if self.metric in result:
            parts.append(f"{self.metric} {fmt(result[self.metric])}")
            parts.append(f"best {fmt(result.get('best_' + self.metric, math.nan))}")
        parts.append(f"{result.get('epoch_time', 0.0):.1f}s")
        self._say("  ".join(parts))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        epochs = last.get("epochs_done", 0)
        best = fmt(last.get("best_" + self.metric, math.nan))
        how = "done   " if epochs >= self.max_t or last.get("converged") else "stopped"
        self._say(f"{trial_label(trial)} {how} after {epochs} epochs{self._why(last, epochs)}, best {self.metric} {best}")

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


class ProvenanceWriter(Callback):
    """Writes provenance.json (seed, config, package versions, git commit) into each trial folder."""

    def __init__(self, provenance: dict):
        self.provenance = provenance

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        fs, folder = trial.storage.storage_filesystem, trial.storage.trial_fs_path  # a bucket too
        target = f"{folder}/provenance.json"
        if fs.get_file_info(target).type != pyarrow.fs.FileType.NotFound:
            return  # a resumed trial keeps the record of its first start
        body = {"trial": trial_label(trial), "trial_id": trial.trial_id, "seed": trial.config.get("seed"),
                "config": trial.config, "scheduled_at": time.time(), **self.provenance}
        fs.create_dir(folder, recursive=True)
        with fs.open_output_stream(target) as f:
            f.write(json.dumps(body, indent=2, default=str).encode())


def trial_label(trial) -> str:
    """t007 (the counter of the trial's creation; its folder is t007_<trial id>)."""
    return f"t{trial_counter(trial):03d}"


def trial_counter(trial) -> int:
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default embeds every value): t007_ab12cd34."""
    return f"{trial_label(trial)}_{trial.trial_id}"
