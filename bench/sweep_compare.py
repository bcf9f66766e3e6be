"""Search methods compared at equal wall time: one sweep file, each method x each searcher seed, one sweep
after the other, then a markdown table.

    python bench/sweep_compare.py dans_rotate_umls --seeds 0 1 2 --reference 0.9280
    python bench/sweep_compare.py dans_rotate_family --data-root ../shared/datasets --seeds 0 1 2 --reference VAL \
        --time-budget 30
    python bench/sweep_compare.py dans_rotate_umls --seeds 0 1 2 --reference 0.9280 --dry-run   # the commands only

(0.9280: the 3-seed validation MRR of configs/dans_rotate_umls.yaml, docs/benchmarks_sweep.md 5.1; the
ComplEx-N3 sweeps dans_umls / dans_family take their own run file's value.)

Methods, each a set of `python -m kgsearch.sweep` flags on the same sweep file:

* `default`: the sweep file as shipped (TPE + ASHA; a finished trial told its best value, an ASHA-stopped one
  PRUNED at its rung; the first trial is the shipped run file, `start_from: auto`).
* `legacy`: TPE + ASHA as before the honest feedback and the warm start: `--set searcher.feedback=last` (every
  trial COMPLETE with its last value, ASHA-stopped ones included, as Ray's OptunaSearch did) and
  `--set start_from=null` (the first trial sampled).
* `random`: Optuna's random sampler without early stopping (`--searcher random --no-asha`: FIFO, every trial to
  max_t), started from the same warm-start trial as `default`: docs/benchmarks_sweep.md section 5's baseline.

Every sweep gets `--time-budget` minutes of search and `--num-samples` large enough that the budget, not the
trial count, ends it: each method searches for the same wall time. The searcher seed is `--set searcher.seed=S`
(the training seed stays the sweep's `fixed.seed`). The re-training of the top-k with seeds (`retrain:`) comes
after the budget, the same for every method, so a sweep's test value is the mean over the seeds of the
configuration it chose (best/metrics.json).

Per sweep: when a search trial's validation value first reached reference + margin (seconds after the search
began, kgsearch.sweep.report.analyse; none: never), the best validation value of the search, the chosen
configuration's mean test value, the wall time. Each finished sweep's row is appended to --out at once, and a
rerun skips the sweeps already there, so the comparison can be run over several sittings (a sweep stopped half
way leaves a folder whose summary.txt does not say "finished": delete it to run that sweep again).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Same sweep file, different flags (kgsearch.sweep.cli).
METHODS = {
    "default": [],
    "legacy": ["--set", "searcher.feedback=last", "--set", "start_from=null"],
    "random": ["--searcher", "random", "--no-asha"],
}
INTERRUPTED = (130, 143)  # Ctrl-C, SIGTERM: stop the comparison too


def sweep_name(sweep: str, method: str, seed: int) -> str:
    return f"{Path(sweep).stem}-{method}-s{seed}"


def sweep_command(args, method: str, seed: int) -> list[str]:
    """The `python -m kgsearch.sweep` arguments of one sweep (without the interpreter)."""
    cmd = ["-m", "kgsearch.sweep", args.sweep, "--name", sweep_name(args.sweep, method, seed), *METHODS[method],
           "--set", f"searcher.seed={seed}", "--time-budget", str(args.time_budget),
           "--num-samples", str(args.num_samples)]
    for flag, value in (("--storage", args.storage), ("--data-root", args.data_root)):
        if value:
            cmd += [flag, value]
    return cmd + (["--smoke"] if args.smoke else [])


def check_command(cmd: list[str]):
    """Validate one sweep's flags as the sweep CLI would (a bad --set fails here, not hours later); its spec."""
    from kgsearch.sweep.cli import parse_args
    from kgsearch.sweep.validate import load_spec

    a = parse_args(cmd[2:])
    return load_spec(a.sweep, smoke=a.smoke, num_samples=a.num_samples, searcher=a.searcher,
                     asha=False if a.no_asha else None, data_root=a.data_root, sets=a.set,
                     set_origins=[f"--set {s}" for s in a.set])


def run_command(cmd: list[str]) -> int:
    """Run one sweep in this interpreter; its exit code. A Ctrl-C reaches the sweep too, which stops itself
    (Tune saves its state): wait for it rather than kill it."""
    proc = subprocess.Popen([sys.executable, *cmd])
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return proc.wait()


def finished(exp: Path) -> bool:
    """The sweep in `exp` ran to its end: its summary says "finished" (an interrupted one says "interrupted")."""
    summary = exp / "summary.txt"
    lines = summary.read_text().splitlines() if summary.exists() else []
    return bool(lines) and " finished in " in lines[0] and (exp / "timing.json").exists()


def experiment_folder(storage: str | None, spec) -> Path:
    root = storage or spec.storage or "runs"  # kgsearch.sweep.run.experiment_store, outside `ray job submit`
    if "://" in str(root):
        from kgsearch.errors import KGSearchError

        raise KGSearchError(f"storage {root}: this bench reads the experiment folders, so they must be local")
    return Path(root).expanduser()


def read_sweep(exp: Path, target: float) -> dict:
    """A finished experiment folder -> the numbers of its row."""
    from kgsearch.sweep.report import analyse

    metric = yaml_metric(exp)
    timing = analyse(exp, metric=metric, reach=target)
    metrics_file = exp / "best" / "metrics.json"
    best = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    test_key = best.get("test_key") or "test_" + metric.removeprefix("val_")
    if f"{test_key}_mean" in best:  # re-trained with seeds (kgsearch.sweep.retrain)
        test_mean, test_std, seeds = best[f"{test_key}_mean"], best.get(f"{test_key}_std"), len(best.get("seeds", []))
    else:  # no re-training: the best search trial, one seed
        test_mean, test_std, seeds = (best.get("test") or {}).get(test_key), None, 1 if best else 0
    value = timing.get(f"best_{metric}")
    return {"metric": metric, "target": target, "first_target_s": timing.get(f"first_{metric}>={target}_s"),
            "best_val": value if value is not None and math.isfinite(value) else None,
            "chosen_val_mean": best.get(f"{metric}_mean"), "test_key": test_key, "test_mean": test_mean,
            "test_std": test_std, "test_seeds": seeds, "trials": timing["trials"],
            "search_s": timing["tune_wall_s"], "wall_s": timing["wall_s"]}


def yaml_metric(exp: Path) -> str:
    import yaml

    return yaml.safe_load((exp / "sweep.yaml").read_text())["spec"]["metric"]


# ------------------------------------------------------------------------------------------------
# The table


def _mean_std(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def aggregate(rows: list[dict], method: str) -> dict | None:
    """One method's repeats (rows with a result) -> the table's numbers; None when it has none."""
    runs = [r for r in rows if r["method"] == method]
    if not runs:
        return None
    reached = [r["first_target_s"] for r in runs if r.get("first_target_s") is not None]
    tests = [r["test_mean"] for r in runs if r.get("test_mean") is not None]
    return {"method": method, "repeats": len(runs), "seeds": sorted(r["seed"] for r in runs),
            "reached": len(reached), "time_to_target_s": reached,
            "best_val": [r["best_val"] for r in runs if r.get("best_val") is not None],
            "test": tests, "spread": max(tests) - min(tests) if tests else None,
            "trials": [r["trials"] for r in runs], "search_min": [r["search_s"] / 60 for r in runs]}


def table(rows: list[dict], methods: list[str]) -> str:
    """Per method, over its repeats (searcher seeds): mean ± std of the time to the target (over the repeats that
    reached it), the best validation value of the search, the chosen configuration's mean test value, and its
    spread (max - min) across the repeats."""
    test_key = next((r["test_key"] for r in rows if r.get("test_key")), "test_mrr")
    metric = next((r["metric"] for r in rows if r.get("metric")), "val_mrr")
    targets = sorted({r["target"] for r in rows})
    target = ", ".join(f"{t:.4f}" for t in targets) or "-"
    lines = [f"| method | repeats | first {metric} ≥ {target} (s) | reached | best {metric} (search) | "
             f"best mean {test_key} | {test_key} spread | trials | search min |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for method in methods:
        a = aggregate(rows, method)
        if a is None:
            continue
        spread = "-" if a["spread"] is None else f"{a['spread']:.4f}"
        lines.append(f"| {method} | {a['repeats']} | {_mean_std(a['time_to_target_s'], 0)} | "
                     f"{a['reached']}/{a['repeats']} | {_mean_std(a['best_val'], 4)} | {_mean_std(a['test'], 4)} | "
                     f"{spread} | {_mean_std(a['trials'], 0)} | {_mean_std(a['search_min'], 1)} |")
    if len(targets) > 1:
        lines.append(f"(rows measured against different targets: {target}; rerun with the same --reference)")
    return "\n".join(lines)


def row_line(row: dict) -> str:
    reached = "never" if row["first_target_s"] is None else f"after {row['first_target_s']:.0f} s"
    best = "-" if row["best_val"] is None else f"{row['best_val']:.4f}"
    test = "-" if row["test_mean"] is None else f"{row['test_mean']:.4f}" + (
        f" ± {row['test_std']:.4f}" if row.get("test_std") is not None else "")
    return (f"{row['target']:.4f} reached {reached}; best {row['metric']} {best}; "
            f"{row['test_key']} {test} ({row['trials']} trials, {(row['wall_s'] or 0) / 60:.1f} min)")


# ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="sweep name (search_spaces/NAME.yaml) or file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="searcher seeds (searcher.seed)")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS))
    parser.add_argument("--reference", type=float,
                        help="the shipped run file's mean validation value over seeds (required unless --dry-run)")
    parser.add_argument("--margin", type=float, default=0.005, help="target = reference + margin (default 0.005)")
    parser.add_argument("--time-budget", type=int, default=10, metavar="MINUTES",
                        help="search minutes per sweep, the same for every method (default 10; passed as "
                        "--time-budget)")
    parser.add_argument("--num-samples", type=int, default=200,
                        help="trials per sweep, enough that the time budget ends every search (default 200)")
    parser.add_argument("--storage", help="results folder of the sweeps (default: the sweep file's, else ./runs)")
    parser.add_argument("--data-root", help="folder holding datasets by name (passed to every sweep)")
    parser.add_argument("--out", type=Path, help="JSON of finished sweeps, appended and reused "
                        "(default: <storage>/sweep_compare_<sweep>.json)")
    parser.add_argument("--smoke", action="store_true", help="pass --smoke to every sweep (checks the wiring)")
    parser.add_argument("--dry-run", action="store_true", help="print the sweep commands only; run nothing")
    args = parser.parse_args(argv)
    if args.reference is None and not args.dry_run:
        parser.error("--reference is required: the shipped config's mean validation value (target = reference + "
                     "margin)")
    if args.time_budget < 1 or args.num_samples < 1:
        parser.error("--time-budget and --num-samples must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    from kgsearch.errors import KGSearchError

    args = parse_args(argv)
    plan = [(m, s, sweep_command(args, m, s)) for m in args.methods for s in args.seeds]
    if args.dry_run:
        for _, _, cmd in plan:
            print(" ".join(["python", *cmd]))
        return 0
    try:
        specs = {m: check_command(cmd) for m, _, cmd in plan}  # one per method: the seed changes nothing checked
        root = experiment_folder(args.storage, next(iter(specs.values())))
    except KGSearchError as exc:
        print(f"kgsearch: error: {exc}", file=sys.stderr)
        return 2
    out = args.out or root / f"sweep_compare_{Path(args.sweep).stem}.json"
    target = round(args.reference + args.margin, 6)
    done = json.loads(out.read_text()) if out.exists() else []
    failed = 0
    for i, (method, seed, cmd) in enumerate(plan, 1):
        name = sweep_name(args.sweep, method, seed)
        exp = root / name
        head = f"[{i}/{len(plan)}] {method} seed {seed}"
        old = next((r for r in done if r["command"] == cmd), None)
        if old is not None:
            if old["target"] != target and finished(exp):  # another --reference: re-read the folder
                old.update(read_sweep(exp, target))
                out.write_text(json.dumps(done, indent=1))
            print(f"{head}: already in {out}, skipped", flush=True)
            continue
        if exp.exists() and not finished(exp):
            print(f"{head}: {exp} exists but its sweep did not finish (summary.txt); delete it to run this sweep "
                  "again (a resumed sweep's wall time would not compare)", flush=True)
            failed += 1
            continue
        if exp.exists():
            print(f"{head}: {exp} finished earlier; reading it", flush=True)
        else:
            print(f"{head}: python {' '.join(cmd)}", flush=True)
            started = time.perf_counter()
            rc = run_command(cmd)
            if rc != 0 or not finished(exp):
                print(f"{head}: the sweep exited with {rc} after {(time.perf_counter() - started) / 60:.1f} min "
                      "without finishing; no row written", flush=True)
                if rc in INTERRUPTED:
                    return rc
                failed += 1
                continue
        row = {"sweep": Path(args.sweep).stem, "method": method, "seed": seed, "name": name, "command": cmd,
               "experiment": str(exp), **read_sweep(exp, target)}
        done.append(row)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(done, indent=1))
        print(f"{head}: {row_line(row)}", flush=True)
    planned = [cmd for _, _, cmd in plan]
    rows = [r for r in done if r["command"] in planned]  # not rows of another budget or sweep in the same file
    print()
    print(table(rows, args.methods))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
