"""Running one sweep end to end: validate input, prepare the data once, start Ray, run the Tuner (the search),
re-train its top-k configurations with several seeds (kgsearch.sweep.retrain), and finish with trials.csv,
the best configuration exported and tested, and a summary.

Layout of an experiment folder (`<storage>/<name>/`, a local/shared path or a bucket URI):

    sweep.yaml              the resolved spec the sweep ran with (what --resume reads)
    optuna_journal.log      the Optuna study (kgsearch.sweep.study; a bucket's is kept on the driver)
    t001_<id>/ ...          one Tune trial folder each: result.json, progress.csv, TensorBoard events,
                            provenance.json (seed, versions, git commit), checkpoint_*/ (direct trials)
    _train/<id>/            worker-group trials' Ray Train runs (their checkpoints)
    trials.csv              one row per trial: searched values, best validation metric, epochs, status
    retrain/                the re-training (a second Tune experiment): candidates.json (the top-k configurations,
                            seeds, epochs), t003-s1_<id>/ one run per configuration and seed, _train/ (none for
                            a seed whose run is the search trial itself: its row is that trial's best checkpoint)
    best/config.yaml        run file of the best configuration (best mean validation over the seeds), with the
                            seed whose validation was best (`python -m kgsearch.train best/config.yaml`,
                            `--set params.seed=S` for another seed's row); retrain.top_k 0: the best search trial
    best/checkpoint.pt      that seed's best-validation weights (`python -m kgsearch.train --eval ...`)
    best/metrics.json       per-seed rows (seed, val, test, best_epoch, trial path), <metric>_mean / _std for every
                            validation and test metric, seeds, and every candidate's means (`winners`)
    summary.txt             the table printed at the end
    report.html, report/    the figures, and one page embedding them (`python -m kgsearch.sweep.report`)
    timing.json             where the wall time went (`python -m kgsearch.sweep.report <folder>`)
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from pathlib import Path

from kgsearch.errors import KGSearchError
from kgsearch.allocator import tune_allocator
from kgsearch.progress import console
from kgsearch.sweep.export import export_best
from kgsearch.sweep.failures import all_recorded
from kgsearch.sweep.grash import prepare_rungs, refuse_resume, rung_spec, run_rungs, share_rungs
from kgsearch.sweep.progress import echo
from kgsearch.sweep.ray_env import adapt_resources, in_ray_job, quiet_tune_logs, start_ray, survive_killed_trials
from kgsearch.sweep.report import report_line, summary_table
from kgsearch.sweep.restore import (SPEC_FILE, SPEC_FORMAT, TRAIN_RUNS, grown_samples, plan, rerun_candidates,
                                    unfinished_trials)
from kgsearch.sweep.results import STATUS_FAILED, STATUS_UNFINISHED, best_row, collect_trials, trials_csv
from kgsearch.sweep.retrain import replay_threads, retrain_lines, run_retrain
from kgsearch.sweep.spec import SweepSpec
from kgsearch.sweep.stop import sigterm_stops_the_sweep
from kgsearch.sweep.storage import ExperimentStore
from kgsearch.sweep.tuner import build_tuner, make_trainable
from kgsearch.run.metrics import metric_key
from kgsearch.yamlio import yaml_text



@dataclasses.dataclass
class SweepOutcome:
    experiment: Path | str  # a local Path, or the bucket URI
    rows: list
    best: dict | None
    wall_s: float
    interrupted: bool = False  # trials left unfinished (Ctrl-C, SIGTERM): --resume continues them
    terminated: bool = False  # the sweep stopped on SIGTERM
    retrained: object = None  # kgsearch.sweep.retrain.Retrained, when the top-k were re-trained


def prepare_data(spec: SweepSpec, data_root: str | None, say):
    """Load the dataset and run Recipe.prepare once, in the driver (trials fetch it from the object store)."""
    from kgsearch.config import config_from_dict
    from kgsearch.data import load
    from kgsearch.recipe import get_recipe
    from kgsearch.run.loop import seed_everything

    recipe_cls = get_recipe(spec.model)
    config = config_from_dict(recipe_cls.Config, spec.fixed, source=f"{spec.source}: fixed")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load(spec.dataset, data_root=data_root)
    for w in caught:
        say(f"note: {w.message}")
    say(f"dataset {dataset.name}: {len(dataset.train)} train / {len(dataset.valid)} valid / "
        f"{len(dataset.test)} test ({time.perf_counter() - start:.1f}s)")
    start = time.perf_counter()
    seed_everything(config.seed)
    prepared = recipe_cls.prepare(config, dataset, progress=console)  # plain lines in a job log
    say(f"prepared {spec.model} once for all trials ({time.perf_counter() - start:.1f}s)")
    return recipe_cls, config, dataset, prepared


def experiment_store(spec: SweepSpec, storage: str | None, name: str | None) -> ExperimentStore:
    # Inside a job the working directory is a temporary copy that is deleted afterwards, so ./runs
    # would vanish with it: default to the home folder of the head node there.
    root = storage or spec.storage or (str(Path.home() / "kgsearch-runs") if in_ray_job() else "runs")
    return ExperimentStore(root, name or spec.name)


def check_data_root(data_root: str | None) -> None:
    if data_root is None:
        return
    path = Path(data_root).expanduser()
    if not path.is_dir():
        raise KGSearchError(f"--data-root {data_root}: no such folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise KGSearchError(f"--data-root {data_root}: folder is not readable")


def run_sweep(spec: SweepSpec, *, storage: str | None = None, name: str | None = None,
              data_root: str | None = None, resume: bool | str = False, fail_fast: bool = False,
              time_budget_s: float | None = None, cpu_only: bool = False, resume_samples: int | None = None,
              resume_add: bool = False, retrain: bool = True, say=echo) -> SweepOutcome:
    """Run (or resume) one sweep end to end; see the module docstring for what it writes.

    `resume`: False (start; refused where a sweep already ran), True (continue one), or "auto"
    (continue one if there is one, else start). A resumed sweep grows to `resume_samples` trials
    (`--resume --num-samples N`), or by that many with `resume_add` (`--num-samples +N`), finished or not.
    `retrain=False` (--no-retrain, also on a resume): no top-k re-training; best/ is the best search trial.
    """
    import yaml
    from ray import tune

    from kgsearch.provenance import provenance
    from kgsearch.recipe import prepared_values
    from kgsearch.sweep.faults import env_fault
    from kgsearch.sweep.trial import TrialContext

    started = time.time()
    store = experiment_store(spec, storage, name)
    exp = store.uri
    resuming = plan(store, resume) == "resume"
    stored = yaml.safe_load(store.read_text(SPEC_FILE)) if resuming else None
    planned = grown = 0
    if resuming:
        spec = SweepSpec.model_validate(stored["spec"])
        planned, grown = grown_samples(stored, resume_samples, resume_add)
        spec = spec.model_copy(update={"num_samples": grown})
        if spec.scheduler.type == "grash":
            refuse_resume(planned, grown, retrain)
        if not retrain:
            spec = spec.model_copy(update={"retrain": spec.retrain.model_copy(update={"top_k": 0})})
        data_root = data_root or stored.get("data_root")
        say(f"resuming sweep {spec.name} in {exp} (settings from its {SPEC_FILE})")
    data_root = data_root or spec.data_root
    check_data_root(data_root)
    fault = env_fault()
    if data_root is not None:
        data_root = str(Path(data_root).expanduser().resolve())

    # Everything that can fail on bad input happens before Ray starts and before `exp` is touched.
    recipe_cls, config, dataset, prepared = prepare_data(spec, data_root, say)
    rungs = prepare_rungs(spec, recipe_cls, config, dataset, prepared, say) if spec.scheduler.type == "grash" else None
    prepared_at = time.time()
    env = tune_allocator()
    mode = start_ray(env)
    ray_ready_at = time.time()
    import ray

    quiet_tune_logs()
    note = survive_killed_trials()
    if note:
        say(note)
    spec = adapt_resources(spec, mode, say, cpu_only)
    if spec.retries is None:  # a cluster loses nodes and OOM-kills trials; on a laptop a failure repeats
        spec = spec.model_copy(update={"retries": 1 if mode == "cluster" else 0})
    shared = ray.put((dataset, prepared))  # once per sweep; every trial reads it from the object store
    ctx = TrialContext(model=spec.model, dataset=spec.dataset, data_root=data_root, metric=spec.metric,
                       resources=spec.resources, train_storage=store.join(TRAIN_RUNS), shared=shared,
                       prepared_for=prepared_values(recipe_cls, config), fault=fault, worker_env=env,
                       checkpoints=spec.checkpoints)
    search_spec, search_ctx = spec, ctx  # grash: the search Tuner is rung 0, at its fidelity (kgsearch.sweep.grash)
    if rungs is not None:
        share_rungs(rungs, ray, dataset, shared)
        search_spec = rung_spec(spec, rungs[0].rung)
        search_ctx = dataclasses.replace(ctx, shared=rungs[0].shared)
    trainable = make_trainable(search_spec, search_ctx)
    prov = provenance(spec.fixed.get("seed"))
    if resuming:
        if stored.get("format") == SPEC_FORMAT:
            schedule_reruns(store, say)
        extend_on_resume(store, stored, planned, grown, say)
        tuner = tune.Tuner.restore(exp, trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        record = {"format": SPEC_FORMAT, "spec": spec.model_dump(), "data_root": data_root, "ray": mode, **prov}
        store.write_text(SPEC_FILE, yaml_text(record, header=f"# resolved sweep settings ({spec.source}); read by --resume"))
        tuner = build_tuner(search_spec, trainable, store, fail_fast, prov, time_budget_s)
    say(f"sweep {spec.name}: {spec.num_samples} trials x <= {spec.scheduler.max_t} epochs, "
        f"{spec.searcher.type}{' (feedback: last values)' if spec.searcher.feedback == 'last' else ''} + "
        f"{spec.scheduler.type}, {spec.max_concurrent_trials} at a time, "
        f"{spec.resources.workers} worker(s)/trial on {'GPU' if spec.resources.gpus_per_worker else 'CPU'}, "
        f"{spec.retries} retr{'y' if spec.retries == 1 else 'ies'} [{mode} Ray] -> {exp}")
    if spec.retrain.on:
        cadence = f", validating every {spec.retrain.eval_every} epochs" if spec.retrain.eval_every else ""
        say(f"then the top {spec.retrain.top_k} configuration(s) re-trained for {spec.scheduler.max_t} epochs with "
            f"seeds {', '.join(map(str, spec.retrain.seeds))}{cadence}: best/ is the best mean {spec.metric}")
    if not resuming:
        from kgsearch.sweep.plan import start_lines

        for line in start_lines(spec):
            say(line)
    timing = {"started_at": started, "prepared_s": prepared_at - started, "ray_start_s": ray_ready_at - prepared_at,
              "tune_started_at": time.time()}
    with sigterm_stops_the_sweep() as stop:
        try:
            results = tuner.fit()
        except tune.TuneError as exc:  # fail_fast stops the experiment by raising
            say(f"sweep stopped: {str(exc).splitlines()[0]}")
            results = tune.Tuner.restore(exp, trainable=trainable).get_results()
        search = None if rungs is None else run_rungs(spec, store, results, rungs, ctx, prov, say, stop, fail_fast,
                                                      time_budget_s, timing["tune_started_at"])
        if stop.received:
            say("SIGTERM: trials stopped and Tune's state saved; writing the results so far")
        timing["tune_finished_at"] = time.time()
        timing["max_concurrent_trials"] = spec.max_concurrent_trials
        searched_s = timing["tune_finished_at"] - timing["tune_started_at"]
        budget_ended = time_budget_s is not None and searched_s >= time_budget_s
        outcome = finish(spec, store, results, recipe_cls, dataset, prepared, data_root, started, say, timing,
                         ctx=ctx, provenance=prov, stop=stop, fail_fast=fail_fast, search=search,
                         budget_ended=budget_ended)
    outcome.terminated = stop.received
    return outcome


def schedule_reruns(store: ExperimentStore, say) -> None:
    """Hand the values of trials that failed from outside them to the searcher, to run again as new trials."""
    from kgsearch.sweep.failures import mark_rerun
    from kgsearch.sweep.searcher import SweepSearchGenerator

    again = rerun_candidates(store)
    SweepSearchGenerator.reruns_on_restore = [r["params"] for r in again]
    for failure in again:
        mark_rerun(store.join(TRAIN_RUNS), failure)
        say(f"{failure.get('trial') or failure['trial_id']} failed from outside it ({failure['type']}); "
            "its values run again as a new trial")


def extend_on_resume(store: ExperimentStore, stored: dict, planned: int, grown: int, say) -> None:
    """Tell the restored searcher where the study's journal is and how many trials to add; record them."""
    from kgsearch.sweep.searcher import on_restore
    from kgsearch.sweep.study import journal_path

    on_restore(more=grown - planned, journal=journal_path(store)[0])
    if grown > planned:
        record = {**stored, "spec": {**stored["spec"], "num_samples": grown}}
        store.write_text(SPEC_FILE, yaml_text(record, header="# resolved sweep settings; read by --resume"))
        say(f"adding {grown - planned} trial(s): num_samples {planned} -> {grown} (the study keeps every earlier one)")


def finish(spec: SweepSpec, store: ExperimentStore, results, recipe_cls, dataset, prepared, data_root, started,
           say, timing: dict | None = None, ctx=None, provenance: dict | None = None, stop=None,
           fail_fast: bool = False, search=None, budget_ended: bool = False) -> SweepOutcome:
    """Write trials.csv; re-train the top-k with seeds (a search that ran to its end, or to its time budget,
    `ctx` given; not after a --fail-fast stop) and export the best mean to best/, else the best trial's best
    checkpoint; test it; print a summary. `search` (kgsearch.sweep.grash.GrashSearch): a GraSH sweep's rows of
    every rung, and the re-training's candidates. `budget_ended`: the time budget ended the search (a trial it
    stopped before its first result is stopped, not unfinished: kgsearch.sweep.results.collect_trials)."""
    searched = spec.searched
    rows = search.rows if search is not None else collect_trials(
        results, spec.metric, spec.scheduler.max_t, spec.space, unfinished_trials(store),
        train_runs=None if spec.resources.direct else f"{store.path}/{TRAIN_RUNS}",
        failures=all_recorded(store.join(TRAIN_RUNS)), budget_ended=budget_ended)
    store.write_text("trials.csv", trials_csv(rows, spec.metric, searched))
    best = best_row(rows, spec.mode)
    unfinished = sum(r.status == STATUS_UNFINISHED for r in rows)
    retrained = None
    signalled = bool(stop and stop.received)  # SIGTERM during the search, or between it and the re-training
    stopped = signalled or (fail_fast and any(r.status == STATUS_FAILED for r in rows))
    if spec.retrain.on and ctx is not None and not unfinished and not stopped:
        if timing is not None:
            timing["retrain_started_at"] = time.time()
        retrained = run_retrain(spec, store, rows, ctx, provenance or {}, recipe_cls, dataset, prepared, data_root, say,
                                picked=None if search is None else search.picked)
        if timing is not None:
            timing["retrain_finished_at"] = time.time()
    best_info = retrained.metrics if retrained is not None else None
    if best_info is None and best is not None:  # no re-training, or it was interrupted or failed throughout
        best_info = export_best(spec, store, best, recipe_cls, dataset, prepared, data_root)
    exp = store.local or store.uri  # what the user types: a plain path when it is on this machine
    wall = time.time() - started
    table = summary_table(rows, spec.metric, searched)
    skipped = spec.retrain.on and ctx is not None and signalled and not unfinished and retrained is None
    interrupted = bool(unfinished) or bool(retrained and retrained.interrupted) or skipped
    how = f"interrupted after {wall / 60:.1f} min ({unfinished} trial(s) unfinished; continue with --resume)" \
        if unfinished else f"interrupted after {wall / 60:.1f} min" if interrupted \
        else f"finished in {wall / 60:.1f} min"
    lines = [f"sweep {spec.name} {how} -> {exp}", table]
    test_key = metric_key("test", spec.metric)
    if retrained is not None:
        lines += retrain_lines(retrained, spec.metric, test_key)
    elif skipped:
        lines.append("re-training not started (stopped): --resume runs it; best/ holds the best search trial")
    if retrained is not None and retrained.metrics:
        m = retrained.metrics
        lines += [f"best configuration {m['trial']} (mean over {len(m['seeds'])} seed(s)): {spec.metric} "
                  f"{m[spec.metric + '_mean']:.4f} ± {m[spec.metric + '_std']:.4f}, test {test_key} "
                  f"{m[test_key + '_mean']:.4f} ± {m[test_key + '_std']:.4f}; best/ holds seed {m['seed']} "
                  "(its best validation)",
                  f"  replay:      python -m kgsearch.train {exp}/best/config.yaml --threads {replay_threads(spec)}"
                  "   (--set params.seed=S: seed S's row of best/metrics.json)",
                  f"  tensorboard: tensorboard --logdir {exp}"]
    elif best_info:
        if retrained is not None and not retrained.interrupted:
            lines.append("no re-trained run finished; best/ is the best search trial")
        lines += [f"best trial {best.trial}: {spec.metric} {best.best:.4f} (epoch {best.best_epoch}/"
                  f"{best.epochs}), test {best_info['test_key']} {best_info['test'][best_info['test_key']]:.4f}",
                  f"  replay:      python -m kgsearch.train {exp}/best/config.yaml",
                  f"  tensorboard: tensorboard --logdir {exp}"]
    else:
        lines.append("no trial produced a checkpoint; nothing exported to best/")
    text = "\n".join(lines)
    store.write_text("summary.txt", text + "\n")
    if timing is not None:
        store.write_json("timing.json", {**timing, "finished_at": time.time(), "wall_s": wall})
    say("")
    say(text)
    if store.local is not None:  # a bucket's experiment: copy it down and run kgsearch.sweep.report
        say(report_line(store.local))
    return SweepOutcome(experiment=store.local or exp, rows=rows, best=best_info, wall_s=wall,
                        interrupted=interrupted, retrained=retrained)
