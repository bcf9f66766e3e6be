"""Reading a sweep: the summary table printed at its end, where a finished sweep's time went, and the
report with figures (kgsearch.sweep.figures) that the sweep writes at its end.

    python -m kgsearch.sweep.report EXPERIMENT [--reach 0.95] [--reference 0.93]

writes EXPERIMENT/report.html (one self-contained page: the trials table and every figure, embedded)
and the figures as PNG files in EXPERIMENT/report/.
"""

from __future__ import annotations

import base64
import csv
import html
import importlib
import json
import math
import sys
from pathlib import Path

import yaml

from kgsearch.sweep.progress import echo, fmt
from kgsearch.sweep.results import FIDELITY_COLUMNS, STATUS_FAILED, TrialRow


def summary_table(rows: list[TrialRow], metric: str, searched: tuple[str, ...], top: int = 8) -> str:
    """The best `top` trials by validation metric, then a count of the rest. A GraSH sweep's (kgsearch.sweep.grash)
    rank by rung first, the highest first: values on different subgraphs and epochs do not compare."""
    rungs = any(r.fidelity for r in rows)
    ranked = sorted(rows, key=lambda r: (-int(r.fidelity.get("rung", 0)), not math.isfinite(r.best),
                                         -r.best if math.isfinite(r.best) else 0))
    header = ["trial", *(["rung"] if rungs else []), "status", "epochs", f"best {metric}", *searched]
    body = [[r.trial, *([str(r.fidelity.get("rung", "-"))] if rungs else []), r.status, str(r.epochs),
             fmt(r.best) if math.isfinite(r.best) else "-",
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


def trial_folders(exp: Path) -> list[Path]:
    """The search's trial folders: t003_<id>/, and a GraSH sweep's later rungs' rung1/t003-r1_<id>/ (of each
    rung the newest folder, rung1_2/ when a resume changed the promotions, kgsearch.sweep.grash)."""
    newest: dict[str, Path] = {}
    for folder in sorted(exp.glob("rung[0-9]*"), key=lambda p: int(p.name.partition("_")[2] or 1)):
        newest[folder.name.partition("_")[0]] = folder
    return sorted([*exp.glob("t[0-9]*_*"), *(f for rung in newest.values() for f in rung.glob("t[0-9]*_*"))])


def subgraph_trials(exp: Path) -> set[str]:
    """Labels of the trials that trained on a subgraph (a GraSH sweep's low rungs, trials.csv): their values do
    not compare with the whole graph's."""
    if not (exp / "trials.csv").exists():
        return set()
    with open(exp / "trials.csv", newline="") as f:
        return {row["trial"] for row in csv.DictReader(f) if row.get("graph_share") and float(row["graph_share"]) < 1}


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
    trials, partial = 0, subgraph_trials(exp)
    for folder in trial_folders(exp):
        rows = read_results(folder)
        trials += 1
        if not rows:
            continue
        work += sum(r.get("epoch_time", 0.0) + r.get("eval_time", 0.0) for r in rows)
        setups.append(rows[0].get("setup_s", math.nan))
        prov = folder / "provenance.json"
        if prov.exists() and "trial_started_at" in rows[0]:
            starts.append(rows[0]["trial_started_at"] - json.loads(prov.read_text())["scheduled_at"])
        if reach is not None and folder.name.split("_")[0] not in partial:
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
    if "retrain_started_at" in timing and "retrain_finished_at" in timing:  # kgsearch.sweep.retrain
        out["retrain_s"] = timing["retrain_finished_at"] - timing["retrain_started_at"]
    out["best_" + metric] = max((max((r.get(metric, -math.inf) for r in read_results(f)), default=-math.inf)
                                 for f in trial_folders(exp) if f.name.split("_")[0] not in partial),
                                default=math.nan)  # whole-graph values only (subgraph_trials)
    if reach is not None:
        out[f"first_{metric}>={reach}_s"] = first_reach
    return out


REPORT_HTML, FIGURES_DIR = "report.html", "report"
CAPTIONS = {"best_so_far": "Best validation value so far against wall time; each marker is a trial's end.",
            "curves": "Every trial's validation curve; grey dashed: stopped early.",
            "params": "Searched values of every trial, coloured by its best validation value.",
            "slices": "Best validation value against each searched value.",
            "seeds": "The winners re-trained with several seeds.",
            "importances": "Parameter importances from the study."}


def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text if text != "" else None


def _flat(row: dict) -> dict:
    """{'seed': 0, 'val': {'val_mrr': ..}, 'test': {...}} -> one flat dict."""
    out = {}
    for key, value in row.items():
        out.update(value if isinstance(value, dict) else {key: value})
    return out


def _seed_rows(record: dict) -> list[dict]:
    for key in ("per_seed", "seed_rows", "rows", "runs", "seeds"):
        found = record.get(key)
        if isinstance(found, dict):
            found = [{"seed": k, **v} for k, v in found.items() if isinstance(v, dict)]
        if isinstance(found, list) and found and all(isinstance(r, dict) for r in found):
            return [_flat(r) for r in found]
    return []


def winners(metrics: dict) -> list[tuple[str, list[dict]]]:
    """best/metrics.json -> (name, per-seed rows) of each re-trained winner, the chosen one first; [] if none."""
    listed = metrics.get("winners") or metrics.get("candidates")
    out = []
    if isinstance(listed, list):
        for i, w in enumerate(w for w in listed if isinstance(w, dict)):
            rows = _seed_rows(w)
            if rows:
                out.append((str(w.get("trial") or w.get("name") or f"#{i + 1}"), rows))
    if not out and _seed_rows(metrics):
        out = [(str(metrics.get("trial", "best")), _seed_rows(metrics))]
    return out


def study_importances(exp: Path) -> tuple[dict | None, str]:
    """Parameter importances from the experiment's Optuna journal (kgsearch.sweep.study), and a note
    where there are none to draw: from the COMPLETE trials, else from every trial at the epoch most
    trials reported at (ASHA stops most trials)."""
    try:
        study = importlib.import_module("kgsearch.sweep.study")
    except ImportError:
        return None, ""
    journal = study.find_journal(exp) if hasattr(study, "find_journal") else None
    if journal is None or not hasattr(study, "importances"):
        return None, ""
    try:
        found = study.importances(journal)
        if not found and hasattr(study, "most_reported_step"):
            step = study.most_reported_step(study.load_study(journal))
            found = study.importances(journal, step=step) if step is not None else {}
    except Exception as exc:  # noqa: BLE001 - a study that cannot say leaves the chart out, and says why
        return None, f"parameter importances unavailable: {type(exc).__name__}: {exc}"[:200]
    if not found:
        return None, "parameter importances: fewer than 2 trials to compare"
    return {str(k): float(v) for k, v in dict(found).items()}, ""


def load_experiment(exp: Path, reference: float | None = None, importances: dict | None = None):
    """A local experiment folder -> kgsearch.sweep.figures.SweepData (trials.csv, each trial's result.json,
    sweep.yaml, timing.json, best/metrics.json; any of them may be missing except sweep.yaml)."""
    from kgsearch.sweep.figures import FAILED, STOPPED, SweepData, TrialCurve

    exp = Path(exp)
    spec = yaml.safe_load((exp / "sweep.yaml").read_text())["spec"]
    metric, mode, space = spec["metric"], spec.get("mode", "max"), dict(spec.get("space") or {})
    max_t = int((spec.get("scheduler") or {}).get("max_t", 0) or 0)
    table = {}
    if (exp / "trials.csv").exists():
        with open(exp / "trials.csv", newline="") as f:
            table = {row["trial"]: row for row in csv.DictReader(f)}
    folders = {f.name.split("_")[0]: f for f in trial_folders(exp) if f.is_dir()}
    results = {label: read_results(folder) for label, folder in folders.items()}
    timing = json.loads((exp / "timing.json").read_text()) if (exp / "timing.json").exists() else {}
    starts = [r[0].get("trial_started_at", r[0].get("timestamp", math.inf)) for r in results.values() if r]
    began = timing.get("tune_started_at", min(starts, default=0.0))
    pick = max if mode == "max" else min
    read_back = _searched_of(space)
    trials = []
    for label in sorted(set(table) | set(folders)):
        rows, row = results.get(label, []), table.get(label, {})
        curve, seen = TrialCurve(label=label, status=row.get("status", ""), best=math.nan, params={}), set()
        for r in rows:
            if metric not in r:
                continue
            epoch = r.get("val_epoch", r.get("epochs_done", len(curve.epochs) + 1))
            if epoch not in seen:  # epochs without validation repeat the last one (its val_epoch)
                seen.add(epoch)
                curve.epochs.append(epoch)
                curve.values.append(float(r[metric]))
            if "timestamp" in r:
                curve.report_s.append(r["timestamp"] - began)
                curve.report_best.append(float(r.get("best_" + metric, r[metric])))
        curve.finished_s = curve.report_s[-1] if curve.report_s else None
        best = _number(row.get(f"best_{metric}", ""))
        curve.best = best if isinstance(best, float) else (pick(curve.values) if curve.values else math.nan)
        config = (rows[0].get("config") or {}) if rows else {}
        from_config = read_back(config)  # a trial trials.csv lacks: its config fields, read as keys
        curve.params = {k: _number(row[k]) if row.get(k, "") != "" else from_config[k] for k in space
                        if row.get(k, "") != "" or k in from_config}
        curve.fidelity = {k: row[k] for k in FIDELITY_COLUMNS if row.get(k, "") != ""}
        if not curve.status:
            done = rows[-1].get("epochs_done", 0) if rows else 0
            curve.status = "completed" if done >= max_t else STOPPED if rows else FAILED
        trials.append(curve)
    best_file = exp / "best" / "metrics.json"
    metrics = json.loads(best_file.read_text()) if best_file.exists() else {}
    start_from = spec.get("start_from")
    return SweepData(name=spec.get("name", exp.name), metric=metric, mode=mode, space=space, trials=trials,
                     warm_start=trials[0].label if start_from and trials else None, start_from=start_from,
                     reference=reference, winners=winners(metrics), importances=importances)


def _searched_of(space: dict):
    """A function from a trial's config to its searched values by space key (entries may set another field
    than their key: `param:`); `space` as sweep.yaml stores it."""
    from pydantic import TypeAdapter, ValidationError

    from kgsearch.sweep.space import searched_values
    from kgsearch.sweep.spec import Param

    try:
        adapter = TypeAdapter(Param)
        params = {k: adapter.validate_python(v) for k, v in space.items()}
    except ValidationError:  # a space this kgsearch cannot read: the keys as config fields
        return lambda config: {k: config[k] for k in space if k in config}
    return lambda config: searched_values(params, config)


def _html_table(data) -> str:
    names = list(data.space)
    rungs = [k for k in FIDELITY_COLUMNS if any(k in t.fidelity for t in data.trials)]  # a GraSH sweep's
    ranked = sorted(data.trials, key=lambda t: (-int(t.fidelity.get("rung", 0)), not math.isfinite(t.best),
                                                -t.best if data.mode == "max" else t.best))
    head = "".join(f"<th>{html.escape(h)}</th>"
                   for h in ["trial", *rungs, "status", "epochs", f"best {data.metric}", *names])
    body = []
    for t in ranked:
        cells = [t.label + (" (warm start)" if t.label == data.warm_start else ""),
                 *[t.fidelity.get(k, "") for k in rungs], t.status,
                 str(int(max(t.epochs))) if t.epochs else "-", fmt(t.best) if math.isfinite(t.best) else "-",
                 *[fmt(t.params[n]) if t.params.get(n) is not None else "-" for n in names]]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _candidate_line(w: dict, metric: str) -> str:
    """One re-trained candidate of best/metrics.json's `winners`: its means over the seeds."""
    test = "test_" + metric.removeprefix("val_")
    shown = [f"{k} {fmt(float(w[k + '_mean']))} ± {fmt(float(w.get(k + '_std', math.nan)))}"
             for k in (metric, test) if isinstance(w.get(k + "_mean"), (int, float))]
    search, reused = w.get("search_best"), w.get("reused_seeds") or []
    return (f"re-trained {w.get('trial', '?')}{' (chosen)' if w.get('chosen') else ''}: " + ", ".join(shown or ["-"])
            + f" over {len(w.get('seeds') or [])} seed(s)" + (f"; in the search {fmt(float(search))}"
                                                               if isinstance(search, (int, float)) else "")
            + (f"; seed {', '.join(map(str, reused))} = the search trial itself" if reused else ""))


def render_html(exp: Path, data, figures: list[Path], notes: list[str]) -> str:
    best = data.best_trial()
    lines = [f"{len(data.trials)} trials, metric {data.metric} ({data.mode})"]
    if best is not None:
        lines.append(f"best trial {best.label}: validation {data.metric} {fmt(best.best)}")
    metrics_path = Path(exp) / "best" / "metrics.json"
    if metrics_path.exists():
        m = json.loads(metrics_path.read_text())
        means = {k[:-len("_mean")]: v for k, v in m.items() if k.startswith("test_") and k.endswith("_mean")
                 and not k.endswith("_count_mean") and isinstance(v, (int, float))}
        if means:  # re-trained with seeds (kgsearch.sweep.retrain)
            seeds = ", ".join(str(s) for s in m.get("seeds", []))
            lines.append(f"best/: {m.get('trial', '?')} re-trained with seeds {seeds}, mean ± std: " + ", ".join(
                f"{k} {fmt(float(v))} ± {fmt(float(m.get(k + '_std', math.nan)))}"
                for k, v in sorted(means.items(), key=lambda kv: (kv[0] != m.get("test_key"), kv[0]))))
            lines += [_candidate_line(w, data.metric) for w in m.get("winners") or [] if isinstance(w, dict)]
        else:
            test = {k: v for k, v in {**m, **(m.get("test") or {})}.items()
                    if k.startswith("test_") and not k.endswith("_count") and isinstance(v, (int, float))}
            lines.append("exported best/: " + ", ".join(f"{k} {fmt(float(v))}" for k, v in sorted(test.items())))
    if data.start_from:
        lines.append(f"warm start: {data.warm_start} has the searched values of {data.start_from}")
    try:
        timing = analyse(exp, metric=data.metric)
        lines.append(f"wall {fmt(timing['wall_s'] or math.nan)} s, search {fmt(timing['tune_wall_s'])} s, "
                     f"{timing['concurrency']} at a time, busy {fmt(100 * timing['busy_share'])}%")
    except (OSError, KeyError, TypeError, ValueError):
        pass
    figs = "".join(
        f"<figure><img alt='{p.stem}' src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>"
        f"<figcaption>{html.escape(CAPTIONS.get(p.stem, p.stem))} ({FIGURES_DIR}/{p.name})</figcaption></figure>"
        for p in figures)
    style = ("body{font-family:sans-serif;max-width:1300px;margin:1em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
             "td{text-align:right}img{max-width:100%}figure{margin:1.5em 0}figcaption{color:#555}")
    items = "".join(f"<li>{html.escape(x)}</li>" for x in lines + notes)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>sweep {html.escape(data.name)}</title>"
            f"<style>{style}</style></head><body><h1>Sweep {html.escape(data.name)}</h1><ul>{items}</ul>"
            f"{figs}<h2>Trials</h2>{_html_table(data)}</body></html>\n")


def write_report(exp: Path, reference: float | None = None, importances: dict | None = None) -> Path:
    """Figures into EXPERIMENT/report/ and the page EXPERIMENT/report.html (which embeds them).

    `importances` (parameter -> share): given, or read from the experiment's study where there is one."""
    from kgsearch.sweep.figures import write_figures

    exp = Path(exp)
    notes = []
    if importances is None:
        importances, note = study_importances(exp)
        notes += [note] if note else []
    data = load_experiment(exp, reference=reference, importances=importances)
    figures = write_figures(data, exp / FIGURES_DIR)
    target = exp / REPORT_HTML
    target.write_text(render_html(exp, data, figures, notes), encoding="utf-8")
    return target


def report_line(exp: Path) -> str:
    """Write the report at a sweep's end; one line saying where it is, or why it is missing (a figure
    that fails must not fail a sweep whose trials are done)."""
    try:
        return f"  report:      {write_report(exp)} (again: python -m kgsearch.sweep.report {exp})"
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        return f"  report:      not written ({type(exc).__name__}: {str(exc)[:160]}); " \
               f"try python -m kgsearch.sweep.report {exp}"


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kgsearch.sweep.report",
                                     description="Where a finished sweep's time went (timing.json + result.json), "
                                                 "and its report: report.html and report/*.png in the folder.")
    parser.add_argument("experiment", type=Path, help="experiment folder (<storage>/<name>)")
    parser.add_argument("--reach", type=float, help="also report when the metric first reached this value")
    parser.add_argument("--reference", type=float,
                        help="the shipped run file's validation value, drawn as a line in best_so_far.png")
    parser.add_argument("--no-figures", action="store_true", help="print the timing only")
    args = parser.parse_args(argv)
    for key, value in analyse(args.experiment, reach=args.reach).items():
        echo(f"{key:<28} {fmt(value) if isinstance(value, float) else value}")
    importances, _ = study_importances(args.experiment)
    for name, share in (importances or {}).items():
        echo(f"importance {name:<17} {share:.3f}")
    if not args.no_figures:
        echo(f"report: {write_report(args.experiment, reference=args.reference, importances=importances)}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
