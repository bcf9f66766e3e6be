"""Reading a sweep: the summary table printed at its end, and where a finished sweep's time went.

    python -m kgsearch.sweep.report EXPERIMENT [--reach 0.95]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import yaml

from kgsearch.sweep.progress import echo, fmt
from kgsearch.sweep.results import STATUS_FAILED, TrialRow


def summary_table(rows: list[TrialRow], metric: str, searched: tuple[str, ...], top: int = 8) -> str:
    """The best `top` trials by validation metric, then a count of the rest."""
    ranked = sorted(rows, key=lambda r: (not math.isfinite(r.best), -r.best if math.isfinite(r.best) else 0))
    header = ["trial", "status", "epochs", f"best {metric}", *searched]
    body = [[r.trial, r.status, str(r.epochs), fmt(r.best) if math.isfinite(r.best) else "-",
             *[fmt(r.params[k]) if k in r.params else "-" for k in searched]] for r in ranked[:top]]
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

    parser = argparse.ArgumentParser(prog="python -m kgsearch.sweep.report",
                                     description="Where a finished sweep's time went (timing.json + result.json).")
    parser.add_argument("experiment", type=Path, help="experiment folder (<storage>/<name>)")
    parser.add_argument("--reach", type=float, help="also report when the metric first reached this value")
    args = parser.parse_args(argv)
    for key, value in analyse(args.experiment, reach=args.reach).items():
        echo(f"{key:<28} {fmt(value) if isinstance(value, float) else value}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
