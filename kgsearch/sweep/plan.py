"""A sweep before it runs: `--dry-run` (the resolved sweep, where its first trial comes from, what it costs) and
`--list` (the shipped sweeps, with the run file each one's first trial comes from).
Nothing here starts Ray or touches storage."""

from __future__ import annotations

import math

import yaml

from kgsearch.sweep.rungs import plan_rungs, rung_lines
from kgsearch.sweep.spec import SweepSpec
from kgsearch.sweep.validate import available_sweeps, resolve_sweep
from kgsearch.sweep.warmstart import differences, display, is_study, listed
from kgsearch.yamlio import plain


def asha_epochs(n: int, grace: int, eta: int, max_t: int) -> float:
    """Epochs ASHA runs in total, ideally (docs/cluster.md, "What a sweep costs"): about n / eta^i
    trials go on from rung i-1 to rung i, rungs at grace * eta^i below max_t, the last stretch to max_t."""
    rungs = []
    while grace * eta ** len(rungs) < max_t:
        rungs.append(grace * eta ** len(rungs))
    rungs.append(max_t)
    return sum(n / eta ** i * (r - (rungs[i - 1] if i else 0)) for i, r in enumerate(rungs))


def search_value(spec: SweepSpec, key: str):
    """What the search trials use for a config field that is not searched: `fixed`, else the config's default."""
    from kgsearch.recipe import get_recipe

    return spec.fixed[key] if key in spec.fixed else getattr(get_recipe(spec.model).Config(), key, None)


def cost_lines(spec: SweepSpec) -> list[str]:
    s, res = spec.scheduler, spec.resources
    fifo = spec.num_samples * s.max_t
    lines = [f"trials: {spec.num_samples} x <= {s.max_t} epochs = {fifo} trial-epochs at most (every trial to max_t)"
             if s.type != "grash" else f"trials: {spec.num_samples} configurations at rung 0, max_t {s.max_t} epochs"]
    if s.type == "asha":
        est = asha_epochs(spec.num_samples, s.grace_period, s.reduction_factor, s.max_t)
        lines.append(f"ASHA (grace {s.grace_period}, reduction {s.reduction_factor}): about {math.ceil(est)} "
                     f"trial-epochs; budget ~1.5x that ({math.ceil(1.5 * est)}), as measured on dans_rotate_umls")
        epochs = 1.5 * est
    elif s.type == "grash":
        rungs = plan_rungs(spec.num_samples, s.eta, s.budget, s.variant, s.max_t)
        full = sum(r.cost(s.max_t) for r in rungs)
        lines.append(f"GraSH ({s.variant}, eta {s.eta}, budget {s.budget:g}): {len(rungs)} rung(s), {full:.2f} full runs "
                     f"= {math.ceil(full * s.max_t)} whole-graph epochs (subgraph shares as asked for; the sweep "
                     "prints the ones it gets):")
        lines += rung_lines(rungs, s.max_t)
        epochs = full * s.max_t
    else:
        epochs = fifo
    if spec.time_budget_minutes:
        lines.append(f"time budget: the search stops after {spec.time_budget_minutes:g} minutes, whatever trials "
                     "remain (the re-training comes after it)")
    r = spec.retrain
    if r.on:
        extra = r.runs() * s.max_t
        cadence = f", validating every {r.eval_every} epochs" if r.eval_every else ""
        lines.append(f"re-training: the top {r.top_k} configuration(s) x {len(r.seeds)} seed(s) "
                     f"({', '.join(map(str, r.seeds))}) x {s.max_t} epochs = {extra} trial-epochs (full length, "
                     f"FIFO{cadence}); best/ is the best mean validation")
        seed, every = search_value(spec, "seed"), search_value(spec, "eval_every")
        if seed in r.seeds and r.eval_every in (None, every) and s.type != "grash":
            lines.append(f"  up to {r.top_k} x {s.max_t} = {r.top_k * s.max_t} of them not run: a top-{r.top_k} trial "
                         f"that ran all {s.max_t} epochs (seed {seed}) is its own seed-{seed} run, reused as it is; one "
                         "stopped early continues from its best checkpoint")
        epochs += extra
    else:
        lines.append("re-training: off (best/ is the best search trial, one seed)")
    per_trial = f"{res.workers} worker(s) x ({res.cpus_per_worker:g} CPU, {res.gpus_per_worker:g} GPU)"
    gpus = res.workers * res.gpus_per_worker
    cpus = res.workers * res.cpus_per_worker
    use = f"~{math.ceil(epochs * gpus)} GPU-epochs" if gpus else f"~{math.ceil(epochs * cpus)} CPU-epochs"
    lines.append(f"per trial: {per_trial}; {spec.max_concurrent_trials} at a time; {use} in all "
                 "(x seconds per epoch on the target hardware = the sweep's device time)")
    retries = "1 on a cluster, 0 on a local Ray" if spec.retries is None else spec.retries
    lines.append(f"retries of a failed trial: {retries}; checkpoints kept per trial: the newest + "
                 f"{spec.checkpoints.keep} best")
    return lines


def start_lines(spec: SweepSpec) -> list[str]:
    """Where the first trial comes from (kgsearch.sweep.warmstart), and where it is not that run file."""
    if spec.start_from is None:
        return ["first trial: sampled (no start_from run file)"]
    if is_study(spec.start_from):
        return [f"first trial: the best COMPLETE trial of the study in {display(spec.start_from)} (start_from)"]
    lines = [f"first trial: the searched values of {display(spec.start_from)} (start_from)"]
    diff = differences(spec)
    if diff:
        shown = ", ".join(f"{k} {a!r} (run file: {b!r})" for k, (a, b) in diff.items())
        lines.append(f"  the sweep's fixed values differ from it in: {shown}")
    return lines


def dry_run_text(spec: SweepSpec, experiment: str) -> str:
    data = plain(spec.model_dump())
    for param in data["space"].values():
        if not param["when"]:
            del param["when"]
        if param.get("param") is None:
            param.pop("param", None)
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)  # one line per section
    return "\n".join([f"# resolved sweep {spec.name} ({spec.source})", body.rstrip(), "",
                      f"experiment folder: {experiment}", *start_lines(spec), *cost_lines(spec),
                      "dry run: nothing started, nothing written"])


def list_text() -> str:
    rows = [("sweep", "model", "dataset", "first trial", "description")]
    for name in available_sweeps():
        path = resolve_sweep(name)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            data = {}
        data = data if isinstance(data, dict) else {}
        rows.append((name, str(data.get("model", "?")), str(data.get("dataset", "?")), listed(name, str(path), data),
                     str(data.get("description") or "")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r[:4], widths)), r[4]]).rstrip() for r in rows)
