"""`scheduler: {type: grash}`: a GraSH-style multi-fidelity search (Kochsiek et al. 2022), successive halving
whose rungs train on seeded k-core subgraphs (kgsearch.data.subgraph) and/or for fewer epochs; the rung plan
(how many rungs, configurations and what fidelity) is kgsearch.sweep.rungs.

* Before Ray starts, `prepare_rungs` takes each rung's subgraph (seeded by `searcher.seed`) and runs
  `Recipe.prepare` on it (DANS's pre-training and DAM are cached by content), so that a subgraph without a
  validation triple is refused before anything runs.
* Rung 0 is the sweep's own search Tuner, in the experiment folder, with the Optuna searcher: `num_samples`
  trials of rung 0's epochs, reading rung 0's (sub)graph from the object store. Rung i >= 1 is one more Tuner
  in `<experiment>/rung<i>/`, FIFO, that trains the best ceil(n/eta) configurations of rung i-1 from scratch
  at its own fidelity: a grid over labels (`t003-r1`: rung 0's trial t003 at rung 1), as the re-training's
  (docs/ray.md), each label's config in `rung<i>/rung.json`.
* The Optuna study learns from rung 0 only (its trials are COMPLETE at rung 0's epochs): a value on another
  subgraph or after other epochs is not comparable with rung 0's, and a promotion is no new suggestion.
* Ranking: within a rung by best validation value (failed and unfinished trials left out, distinct searched
  values); across rungs the higher rung first. The re-training (kgsearch.sweep.retrain) takes its top-k from
  that order: the last rung's winners, then the runners-up of the rungs below.
* A subgraph trial's checkpoint holds the subgraph's ids, so its row carries none: the re-training never
  takes it for a seed's run, and it is never exported.
* `--resume`: rung 0 resumes as any sweep; a later rung whose rung.json matches is restored (finished runs
  kept, unfinished and failed ones run again), one whose promotions changed runs in rung<i>_2/.
  `--time-budget` bounds all the rungs together; rungs it leaves no time for do not run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from itertools import count
from typing import Any

from kgsearch.errors import KGSearchError
from kgsearch.sweep.checkpoints import keep_config
from kgsearch.sweep.failures import all_recorded
from kgsearch.sweep.progress import RUNG_KEY, ProgressPrinter, ProvenanceWriter, trial_dirname
from kgsearch.sweep.restore import TRAIN_RUNS, unfinished_trials
from kgsearch.sweep.results import STATUS_FAILED, STATUS_UNFINISHED, TrialRow, collect_trials, searched_params
from kgsearch.sweep.retrain_plan import select
from kgsearch.sweep.rungs import Rung, plan_rungs, rung_lines
from kgsearch.sweep.spec import SweepSpec
from kgsearch.sweep.storage import ExperimentStore
from kgsearch.sweep.trackers import tracker_callbacks
from kgsearch.sweep.tuner import make_trainable

RUNG_FILE = "rung.json"


@dataclass
class RungData:
    """What one rung trains on."""

    rung: Rung
    dataset: Any  # its subgraph (the dataset itself at graph share 1)
    prepared: dict  # Recipe.prepare on it
    share: float  # the share of the full graph's training triples it holds
    whole: bool = True  # the dataset itself (a subgraph with every training triple still drops entities)
    shared: Any = None  # the ObjectRef of (dataset, prepared), once Ray runs


@dataclass
class GrashSearch:
    rows: list[TrialRow]  # every rung's trials, rung by rung
    picked: list[TrialRow]  # the re-training's candidates, best first (kgsearch.sweep.retrain)


def plan_for(spec: SweepSpec) -> list[Rung]:
    s = spec.scheduler
    return plan_rungs(spec.num_samples, s.eta, s.budget, s.variant, s.max_t)


def rung_spec(spec: SweepSpec, rung: Rung) -> SweepSpec:
    """The spec a rung's Tuner runs with: the rung's epochs as `epochs` and max_t (FIFO to there)."""
    return spec.model_copy(update={"fixed": {**spec.fixed, "epochs": rung.epochs},
                                   "scheduler": spec.scheduler.model_copy(update={"max_t": rung.epochs})})


def prepare_rungs(spec: SweepSpec, recipe_cls, config, dataset, prepared: dict, say) -> list[RungData]:
    """Each rung's subgraph and its preparation (once per distinct graph share), in the driver."""
    from kgsearch.data.subgraph import kcore_subgraph, train_share
    from kgsearch.progress import console
    from kgsearch.run.loop import seed_everything

    s = spec.scheduler
    rungs = plan_for(spec)
    out, done = [], {}
    for rung in rungs:
        if rung.graph not in done:
            if rung.graph >= 1:
                done[rung.graph] = (dataset, prepared)
            else:
                start = time.perf_counter()
                sub = kcore_subgraph(dataset, rung.graph, seed=spec.searcher.seed)
                if len(sub.valid) == 0:
                    raise KGSearchError(f"scheduler.budget {s.budget:g}: rung {rung.index}'s subgraph ("
                                        f"{100 * train_share(sub, dataset):.1f}% of {dataset.name}'s training "
                                        "triples) holds no validation triple to rank its trials by; raise "
                                        "scheduler.budget, or use scheduler.variant: epoch")
                seed_everything(config.seed)
                done[rung.graph] = (sub, recipe_cls.prepare(config, sub, progress=console))
                say(f"rung {rung.index}'s subgraph: {sub} (prepared in {time.perf_counter() - start:.1f}s)")
        sub, prep = done[rung.graph]
        out.append(RungData(rung=rung, dataset=sub, prepared=prep, share=train_share(sub, dataset),
                            whole=sub is dataset))
    say(f"GraSH ({s.variant}, eta {s.eta}, budget {s.budget:g} full runs): {len(rungs)} rung(s), each trial "
        "trained from scratch, the best 1/eta go on to the next rung:")
    for line in rung_lines(rungs, s.max_t, [d.share for d in out]):
        say(line)
    return out


def share_rungs(rungs: list[RungData], ray, dataset, full_shared) -> None:
    """Put each rung's (subgraph, prepared) into the object store once; the whole graph (`dataset`) is there."""
    refs = {id(dataset): full_shared}
    for data in rungs:
        if id(data.dataset) not in refs:
            refs[id(data.dataset)] = ray.put((data.dataset, data.prepared))
        data.shared = refs[id(data.dataset)]


def refuse_resume(planned: int, grown: int, retrain: bool) -> None:
    """What a resumed GraSH sweep cannot change."""
    if grown != planned:
        raise KGSearchError(f"--resume --num-samples: a grash sweep cannot grow (num_samples {planned} sets its "
                            "rungs and their fidelities); start a new experiment with --name NEW")
    if not retrain:
        raise KGSearchError("--no-retrain: a grash sweep ends with the re-training of its winners (its rungs "
                            "train on subgraphs or for fewer epochs, so no search trial is a full run to export)")


# ------------------------------------------------------------------------------------------------
# Running the rungs


def annotate(rows: list[TrialRow], data: RungData, promoted: set[str] = frozenset()) -> list[TrialRow]:
    """The rung's columns of trials.csv; a subgraph trial's checkpoint dropped (module docstring)."""
    return [dataclasses.replace(
        r, checkpoint=r.checkpoint if data.whole else None,
        # < 1 marks a subgraph wherever it is read (report, figures), also one that kept every training triple
        fidelity={"rung": data.rung.index, "graph_share": "1" if data.whole else f"{min(data.share, 0.9999):.4f}",
                  "rung_epochs": data.rung.epochs,
                  "promoted": "yes" if r.trial in promoted else ""}) for r in rows]


def ranked(rungs_rows: list[list[TrialRow]], mode: str) -> list[TrialRow]:
    """Every usable configuration once, the higher rung first, by best validation value within a rung."""
    out, seen = [], set()
    for rows in reversed(rungs_rows):
        for r in select(rows, len(rows), mode):
            key = json.dumps(r.params, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                out.append(r)
    return out


def rung_label(trial: str, rung: int) -> str:
    """t003 (or t003-r1) at rung 2: t003-r2."""
    return f"{trial.partition('-r')[0]}-r{rung}"


def run_rungs(spec: SweepSpec, store: ExperimentStore, results, rungs: list[RungData], ctx, provenance: dict, say,
              stop=None, fail_fast: bool = False, time_budget_s: float | None = None,
              started: float | None = None) -> GrashSearch:
    """Rung 0's rows from the search Tuner's `results`, then rungs 1.. (while nothing is unfinished, stopped or
    out of time); the rows of all and the re-training's candidates."""
    first = rungs[0]
    rows = collect_trials(results, spec.metric, first.rung.epochs, spec.space, unfinished_trials(store),
                          train_runs=None if spec.resources.direct else f"{store.path}/{TRAIN_RUNS}",
                          failures=all_recorded(store.join(TRAIN_RUNS)))
    by_rung, promoted = [rows], []
    for data in rungs[1:]:
        previous = by_rung[-1]
        left = None if time_budget_s is None else time_budget_s - (time.time() - (started or time.time()))
        why = ("stopped" if stop is not None and stop.received
               else "trials unfinished" if any(r.status == STATUS_UNFINISHED for r in previous)
               else "a trial failed (--fail-fast)" if fail_fast and any(r.status == STATUS_FAILED for r in previous)
               else "the time budget is spent" if left is not None and left <= 0 else None)
        winners = select(previous, data.rung.configs, spec.mode)
        if why or not winners:
            say(f"rung {data.rung.index} not run: {why or 'no trial of the rung below finished'}")
            break
        promoted.append({r.trial for r in winners})
        configs = {rung_label(r.trial, data.rung.index): {**r.config, "epochs": data.rung.epochs} for r in winners}
        by_rung.append(run_rung(spec, store, data, configs, ctx, provenance, say, fail_fast, left))
    promoted.append(set())
    annotated = [annotate(rows, data, up) for rows, data, up in zip(by_rung, rungs, promoted)]
    return GrashSearch(rows=[r for rows in annotated for r in rows],
                       picked=ranked(annotated, spec.mode)[:spec.retrain.top_k])


def rung_folder(store: ExperimentStore, index: int, record: dict) -> tuple[str, bool]:
    """(folder, whether to restore it): the first rung<i> folder that holds this record, or holds none yet."""
    from ray import tune

    for i in count(1):
        name = f"rung{index}" if i == 1 else f"rung{index}_{i}"
        if not store.is_file(f"{name}/{RUNG_FILE}"):
            return name, False
        if json.loads(store.read_text(f"{name}/{RUNG_FILE}")) == record:
            return name, tune.Tuner.can_restore(store.join(name))
    raise AssertionError("unreachable")


def run_rung(spec: SweepSpec, store: ExperimentStore, data: RungData, configs: dict[str, dict], ctx,
             provenance: dict, say, fail_fast: bool, time_budget_s: float | None) -> list[TrialRow]:
    """Train `configs` ({label: config}) at `data`'s fidelity; their rows, with their configs and values."""
    from ray import tune

    rung = data.rung
    record = json.loads(json.dumps({"rung": rung.index, "epochs": rung.epochs, "graph_share": data.share,
                                    "configs": configs}, default=str))
    folder, restore = rung_folder(store, rung.index, record)
    sub = ExperimentStore(store.root, f"{store.name}/{folder}")
    say("")
    say(f"rung {rung.index}: {', '.join(configs)} for {rung.epochs} epochs on "
        + ("the whole graph" if data.whole else f"{100 * data.share:.1f}% of the training triples")
        + f" -> {sub.local or sub.uri}" + (" (continuing: finished runs kept)" if restore else ""))
    if not restore:
        sub.write_json(RUNG_FILE, record)
    rctx = dataclasses.replace(ctx, shared=data.shared, train_storage=sub.join(TRAIN_RUNS))
    trainable = make_trainable(spec, rctx, rung=configs)
    if restore:
        tuner = tune.Tuner.restore(sub.uri, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = build_rung_tuner(spec, trainable, store, folder, list(configs), rung.epochs, provenance, fail_fast,
                                 time_budget_s)
    try:
        results = tuner.fit()
    except tune.TuneError as exc:  # fail_fast stops the rung by raising
        say(f"rung {rung.index} stopped: {str(exc).splitlines()[0]}")
        results = tune.Tuner.restore(sub.uri, trainable=trainable).get_results()
    rows = collect_trials(results, spec.metric, rung.epochs, (RUNG_KEY,), unfinished_trials(sub),
                          train_runs=None if spec.resources.direct else f"{sub.path}/{TRAIN_RUNS}",
                          failures=all_recorded(sub.join(TRAIN_RUNS)))
    out = []
    for r in rows:
        config = configs.get(r.config.get(RUNG_KEY, r.trial), {})
        out.append(dataclasses.replace(r, config=config, params=searched_params(spec.space, config)))
    return out


def build_rung_tuner(spec: SweepSpec, trainable, store: ExperimentStore, folder: str, labels: list[str],
                     epochs: int, provenance: dict, fail_fast: bool, time_budget_s: float | None):
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    progress = ProgressPrinter(spec.metric, epochs, (), asha=False, time_budget_s=time_budget_s, mode=spec.mode,
                               concurrency=spec.max_concurrent_trials)
    run_config = tune.RunConfig(
        name=folder, storage_path=store.uri, verbose=0,
        callbacks=[progress, ProvenanceWriter(provenance), *tracker_callbacks(spec.tracking, f"{store.name}-{folder}")],
        # No FailureRecorder: there is no searcher to hand a failed run's values to; a resume restores the
        # rung with resume_errored instead (a NaN run is recorded by the trial engine and fails again at once).
        failure_config=tune.FailureConfig(max_failures=0 if fail_fast else (spec.retries or 0), fail_fast=fail_fast),
        checkpoint_config=tune.CheckpointConfig(**keep_config(spec.checkpoints, spec.metric)))
    tune_config = tune.TuneConfig(
        metric=spec.metric, mode=spec.mode, scheduler=FIFOScheduler(), num_samples=1,
        max_concurrent_trials=spec.max_concurrent_trials, time_budget_s=time_budget_s,
        trial_name_creator=trial_dirname, trial_dirname_creator=trial_dirname,
        reuse_actors=os.environ.get("KGSEARCH_REUSE_ACTORS", "1") == "1")
    return tune.Tuner(trainable, param_space={RUNG_KEY: tune.grid_search(labels)}, tune_config=tune_config,
                      run_config=run_config)


__all__ = ["GrashSearch", "RungData", "plan_for", "prepare_rungs", "refuse_resume", "run_rungs", "rung_spec",
           "share_rungs"]
