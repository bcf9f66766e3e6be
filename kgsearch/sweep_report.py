"""What a sweep leaves behind: progress lines while it runs, and trials.csv, best/ and a summary table.

Layout of an experiment folder (`<storage>/<name>/`, a local/shared path or a bucket URI):

    sweep.yaml              the resolved spec the sweep ran with (what --resume reads)
    t001_<id>/ ...          one Tune trial folder each: result.json, progress.csv, TensorBoard events,
                            provenance.json (seed, versions, git commit), checkpoint_*/ (direct trials)
    _train/<id>/            worker-group trials' Ray Train runs (their checkpoints)
    trials.csv              one row per trial: searched values, best validation metric, epochs, status
    best/config.yaml        run file of the best trial (`python -m kgsearch.train best/config.yaml`)
    best/checkpoint.pt      its best-validation weights (`python -m kgsearch.train --eval ...`)
    best/metrics.json       its validation and test metrics
    summary.txt             the table printed at the end
    timing.json             where the wall time went (`python -m kgsearch.sweep_report <folder>`)
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pyarrow.fs
import yaml

try:  # the progress printer and provenance writer are Tune callbacks; Tune is imported lazily elsewhere
    from ray.tune import Callback
except ImportError:  # pragma: no cover - ray is a hard dependency; keeps `import kgsearch` light
    Callback = object

STATUS_DONE, STATUS_STOPPED, STATUS_FAILED, STATUS_UNFINISHED = "completed", "stopped_early", "failed", "unfinished"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def short_error(text: str | None) -> str:
    """The one line of a (remote) traceback that says what went wrong, e.g. 'TrainingDiverged: loss ...'."""
    if not text:
        return ""
    pattern = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Diverged|Interrupt|Failure)\w*)(?::\s*(.*))?$")
    found = ""
    for line in str(text).splitlines():
        m = pattern.match(line.strip())
        if m and not m.group(1).startswith(("RayTaskError", "TuneError")):
            found = f"{m.group(1)}: {m.group(2)}" if m.group(2) else m.group(1)
    if not found:
        lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
        found = lines[-1] if lines else ""
    return found[:300]


# ------------------------------------------------------------------------------------------------
# Tune callbacks (pickled into the experiment state by reference: keep them plain)


class ProgressPrinter(Callback):
    """One compact line per trial event instead of Tune's tables and Ray's logs."""

    def __init__(self, metric: str, max_t: int, searched: tuple[str, ...]):
        self.metric, self.max_t, self.searched = metric, max_t, searched
        self.started = time.time()

    def _say(self, text: str) -> None:
        elapsed = int(time.time() - self.started)
        print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {text}", flush=True)

    def setup(self, **info) -> None:
        self.started = time.time()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in trial.config.items() if k in self.searched)
        self._say(f"{trial_label(trial)} start   {shown}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        epoch = result.get("epochs_done", "?")
        parts = [f"{trial_label(trial)} epoch {epoch:>3}/{self.max_t}", f"loss {_fmt(result.get('loss', math.nan))}"]
        if self.metric in result:
            parts.append(f"{self.metric} {_fmt(result[self.metric])}")
            parts.append(f"best {_fmt(result.get('best_' + self.metric, math.nan))}")
        parts.append(f"{result.get('epoch_time', 0.0):.1f}s")
        self._say("  ".join(parts))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        epochs = last.get("epochs_done", 0)
        best = _fmt(last.get("best_" + self.metric, math.nan))
        how = "done   " if epochs >= self.max_t else "stopped"
        why = "" if epochs >= self.max_t else " by ASHA"
        self._say(f"{trial_label(trial)} {how} after {epochs} epochs{why}, best {self.metric} {best}")

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


# ------------------------------------------------------------------------------------------------
# Results


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


def unfinished_trials(store) -> set[str]:
    """Ids of trials that `--resume` would continue: RUNNING/PENDING/PAUSED in Tune's saved experiment
    state (after Ctrl-C, Tune's in-memory trials read TERMINATED but the saved state says RUNNING)."""
    try:
        listing = store.fs.get_file_info(pyarrow.fs.FileSelector(store.path))
        states = sorted(i.path for i in listing if i.base_name.startswith("experiment_state-"))
        if not states:
            return set()
        with store.fs.open_input_stream(states[-1]) as f:
            data = json.loads(f.readall())
        trials = [json.loads(entry[0]) for entry in data.get("trial_data", [])]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return set()  # an unknown state format: report every trial as Tune's results say
    return {t["trial_id"] for t in trials if t.get("status") not in ("TERMINATED", "ERROR")}


def collect_trials(results, metric: str, max_t: int, searched: tuple[str, ...],
                   unfinished: set[str] = frozenset()) -> list[TrialRow]:
    """ResultGrid -> one TrialRow per trial, in creation order (`unfinished`: ids left to --resume)."""
    rows = []
    for result in results:
        metrics = dict(result.metrics or {})
        path = str(result.path)
        name = Path(path).name.split("_")[0]
        trial_id = metrics.get("trial_id") or Path(path).name.partition("_")[2]
        epochs = int(metrics.get("epochs_done", 0) or 0)
        if result.error is not None:
            status, error = STATUS_FAILED, short_error(_error_text(result))
        elif str(trial_id) in unfinished:
            status, error = STATUS_UNFINISHED, ""
        elif epochs >= max_t:
            status, error = STATUS_DONE, ""
        elif epochs > 0:
            status, error = STATUS_STOPPED, ""
        else:
            status, error = STATUS_UNFINISHED, ""
        checkpoint = result.checkpoint
        if checkpoint is None and metrics.get("checkpoint_path"):
            # worker-group trials: Train's checkpoint, reported by TuneReportCallback
            from ray.tune import Checkpoint

            checkpoint = Checkpoint(metrics["checkpoint_path"], filesystem=result.filesystem)
        config = dict(result.config or {})
        rows.append(TrialRow(
            trial=name, trial_id=str(trial_id), status=status, epochs=epochs,
            best=float(metrics.get("best_" + metric, math.nan)), best_epoch=int(metrics.get("best_epoch", 0) or 0),
            params={k: config[k] for k in searched if k in config}, config=config, path=path,
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
    """trials.csv: one row per trial (searched values, best validation metric, epochs, status, error)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trial", "trial_id", "status", "epochs", f"best_{metric}", "best_epoch", "time_s",
                     *searched, "error"])
    for r in rows:
        writer.writerow([r.trial, r.trial_id, r.status, r.epochs, _csv_num(r.best), r.best_epoch,
                         f"{r.time_s:.1f}", *[r.params.get(k, "") for k in searched], r.error])
    return out.getvalue()


def _csv_num(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6f}"


def summary_table(rows: list[TrialRow], metric: str, searched: tuple[str, ...], top: int = 8) -> str:
    """The best `top` trials by validation metric, then a count of the rest."""
    ranked = sorted(rows, key=lambda r: (not math.isfinite(r.best), -r.best if math.isfinite(r.best) else 0))
    header = ["trial", "status", "epochs", f"best {metric}", *searched]
    body = [[r.trial, r.status, str(r.epochs), _fmt(r.best) if math.isfinite(r.best) else "-",
             *[_fmt(r.params[k]) if k in r.params else "-" for k in searched]] for r in ranked[:top]]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    more = f" (top {top} shown)" if len(rows) > top else ""
    lines.append(f"{len(rows)} trials{more}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    failed = [r for r in rows if r.status == STATUS_FAILED]
    for r in failed[:5]:
        lines.append(f"  {r.trial} failed: {r.error}")
    return "\n".join(lines)


def yaml_text(data: dict, header: str = "") -> str:
    return (header + "\n" if header else "") + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def json_text(data: dict) -> str:
    return json.dumps(data, indent=2, default=float) + "\n"


def echo(text: str = "", stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


# ------------------------------------------------------------------------------------------------
# Analysis of a finished experiment: `python -m kgsearch.sweep_report EXP [--reach 0.95]`


def read_results(trial_folder: Path) -> list[dict]:
    path = trial_folder / "result.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def analyse(exp: Path, metric: str | None = None, reach: float | None = None) -> dict:
    """Where a sweep's wall time went, and when (seconds after the search began) it first reached `reach`.

    Reads a local experiment folder (copy a bucket's down first).
    """
    exp = Path(exp)
    timing = json.loads((exp / "timing.json").read_text())
    if metric is None:
        metric = yaml.safe_load((exp / "sweep.yaml").read_text())["spec"]["metric"]
    tune_wall = timing["tune_finished_at"] - timing["tune_started_at"]
    work, setups, starts, first_reach = 0.0, [], [], None
    trials = 0
    for folder in sorted(exp.glob("t[0-9]*_*")):
        rows = read_results(folder)
        trials += 1
        if not rows:
            continue
        work += sum(r.get("epoch_time", 0.0) + r.get("eval_time", 0.0) for r in rows)
        setups.append(rows[0].get("setup_s", math.nan))
        prov = folder / "provenance.json"
        if prov.exists() and "trial_started_at" in rows[0]:
            starts.append(rows[0]["trial_started_at"] - json.loads(prov.read_text())["scheduled_at"])
        if reach is not None:
            for r in rows:
                if r.get(metric, -math.inf) >= reach:
                    # result.json's timestamp is whole seconds: good enough at the scale of minutes
                    at = r["timestamp"] - timing["tune_started_at"]  # search time: after prepare + Ray start
                    first_reach = at if first_reach is None else min(first_reach, at)
                    break
    slots = timing.get("max_concurrent_trials", 1)
    out = {"trials": trials, "wall_s": timing.get("wall_s"), "prepare_s": timing.get("prepared_s"),
           "ray_start_s": timing.get("ray_start_s"), "export_s": timing.get("finished_at", 0) - timing["tune_finished_at"],
           "tune_wall_s": tune_wall, "train_eval_s": work, "concurrency": slots,
           "busy_share": work / (slots * tune_wall) if tune_wall > 0 else math.nan,
           "setup_s_mean": sum(setups) / len(setups) if setups else math.nan,
           "setup_s_max": max(setups) if setups else math.nan,
           "actor_start_s_mean": sum(starts) / len(starts) if starts else math.nan}
    out["overhead_share"] = 1 - out["busy_share"]
    out["best_" + metric] = max((max((r.get(metric, -math.inf) for r in read_results(f)), default=-math.inf)
                                 for f in exp.glob("t[0-9]*_*")), default=math.nan)
    if reach is not None:
        out[f"first_{metric}>={reach}_s"] = first_reach
    return out


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kgsearch.sweep_report",
                                     description="Where a finished sweep's time went (timing.json + result.json).")
    parser.add_argument("experiment", type=Path, help="experiment folder (<storage>/<name>)")
    parser.add_argument("--reach", type=float, help="also report when the metric first reached this value")
    args = parser.parse_args(argv)
    for key, value in analyse(args.experiment, reach=args.reach).items():
        echo(f"{key:<28} {_fmt(value) if isinstance(value, float) else value}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
