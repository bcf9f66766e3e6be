"""The sweep's last stage: its top-k configurations re-trained at full length with several seeds.

After the search (the first Tuner's fit), `select` picks the `retrain.top_k` trials with the best
validation metric (distinct searched values; failed trials skipped). A second Tuner trains each of those
configurations with each of `retrain.seeds`: a grid over the (trial, seed) runs (kgsearch.sweep.retrain_plan
chooses them), FIFO (no early stopping), for the epochs the config states (`fixed.epochs` = max_t, not the
epochs an ASHA-stopped trial ran), with the same trainable, resources and concurrency as the search, in
`<experiment>/retrain/` (runs `t003-s1_<id>/`).
The seed is the config's `seed`, and `retrain.eval_every` (when set) its validation cadence; every other
field, `pretrain_seed` included, is the trial's, so the data prepared once per sweep fits every run
(kgsearch.sweep.trial checks it).

A search trial that already is one of these runs is not trained again (`plan_runs`): it ran all the epochs
(not stopped by ASHA), its seed is one of the seeds, and its config is that run's, eval_every included (a
`retrain.eval_every` other than the search's therefore turns this off). Training is deterministic on CPU for
a fixed seed and thread count (the search and the re-training use the same resources), so re-training it
would repeat it bit for bit; its row is its own best checkpoint, tested like the others, and says so
(`"source": "search trial t003"`). One that is such a run but was stopped early (by ASHA or the time budget)
is continued from its best checkpoint instead of trained from scratch (`continued_seeds` in candidates.json).

Each run's best-validation checkpoint is tested on valid and test (kgsearch.sweep.export). The configuration
with the best mean validation metric over its seeds (one with a failed seed ranks below the others) is
best/: config.yaml and checkpoint.pt are its seed with the best validation; metrics.json holds every seed's
row, the means and standard deviations of every metric, and the other candidates (`winners`, chosen first).

--resume: `retrain/candidates.json` names what the retrain trains; a resumed sweep whose top-k is the same
restores that Tuner (finished runs kept, unfinished ones continue from their checkpoints, failed ones run
again); one whose top-k changed (`--num-samples +N`) re-trains in retrain_2/ (then retrain_3/, ...).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from itertools import count

from kgsearch.config import config_from_dict, config_to_dict
from kgsearch.run.metrics import metric_key
from kgsearch.sweep.export import restore_and_test, write_best
from kgsearch.sweep.failures import all_recorded
from kgsearch.sweep.progress import (RETRAIN_KEY, RUN_KEY, ProgressPrinter, ProvenanceWriter, fmt, retrain_label,
                                     retrain_run, trial_dirname)
from kgsearch.sweep.restore import TRAIN_RUNS, unfinished_trials
from kgsearch.sweep.results import STATUS_FAILED, STATUS_UNFINISHED, TrialRow, collect_trials
from kgsearch.sweep.retrain_plan import RunPlan, plan_runs, retrain_record, retrain_space, run_configs, select
from kgsearch.sweep.spec import SweepSpec
from kgsearch.sweep.storage import ExperimentStore
from kgsearch.sweep.trackers import tracker_callbacks
from kgsearch.sweep.tuner import make_trainable

RETRAIN_DIR = "retrain"
CANDIDATES_FILE = "candidates.json"
RETRAINED = "re-trained"  # a seed row's source, when it is not a search trial


# ------------------------------------------------------------------------------------------------
# Choosing


@dataclass
class Candidate:
    """One re-trained configuration: its search trial and one row per seed run."""

    trial: str
    trial_id: str
    params: dict  # the searched values
    search_best: float  # its best validation metric in the search
    search_epochs: int  # the epochs it ran there
    rows: list[dict] = field(default_factory=list)  # per seed: seed, run, status, val, test, best_epoch, ...

    @property
    def done(self) -> list[dict]:
        return [r for r in self.rows if "val" in r]

    @property
    def failed(self) -> int:
        return len(self.rows) - len(self.done)

    def values(self, key: str) -> list[float]:
        out = []
        for r in self.done:
            v = {**r["val"], **r["test"]}.get(key)
            if isinstance(v, (int, float)) and math.isfinite(v):
                out.append(float(v))
        return out

    def mean(self, key: str) -> float:
        values = self.values(key)
        return sum(values) / len(values) if values else math.nan

    def std(self, key: str) -> float:
        """The sample standard deviation over seeds (0 for one seed)."""
        values = self.values(key)
        return statistics.stdev(values) if len(values) > 1 else (0.0 if values else math.nan)

    def keys(self) -> list[str]:
        """Every metric the runs report (val_* then test_*), counts left out."""
        found = []
        for r in self.done:
            for k, v in {**r["val"], **r["test"]}.items():
                if k not in found and isinstance(v, (int, float)) and not k.endswith("_count"):
                    found.append(k)
        return found

    def summary(self) -> dict:
        out = {f"{k}_{stat}": getattr(self, stat)(k) for k in self.keys() for stat in ("mean", "std")}
        return {"trial": self.trial, "trial_id": self.trial_id, "searched": self.params,
                "search_best": self.search_best, "search_epochs": self.search_epochs,
                "seeds": [r["seed"] for r in self.done], "failed_seeds": [r["seed"] for r in self.rows if "val" not in r],
                "reused_seeds": self.reused(), **out, "per_seed": self.rows}

    def reused(self) -> list[int]:
        """The seeds whose row is the search trial itself (not trained again)."""
        return [r["seed"] for r in self.rows if r.get("source", RETRAINED) != RETRAINED]


def rank(candidates: list[Candidate], metric: str, mode: str = "max") -> list[Candidate]:
    """Best first: by mean validation metric over the seeds; a candidate with failed seeds after those
    without, one with no finished seed last; ties keep the search's order."""
    def key(c: Candidate):
        mean = c.mean(metric)
        if not math.isfinite(mean):
            return 1, 0, 0.0
        return 0, c.failed, -mean if mode == "max" else mean

    return sorted(candidates, key=key)


def best_seed_row(candidate: Candidate, metric: str, mode: str = "max") -> dict:
    """The chosen candidate's seed run with the best validation metric (the first seed of equal ones)."""
    pick = max if mode == "max" else min
    return pick(candidate.done, key=lambda r: r["val"].get(metric, -math.inf if mode == "max" else math.inf))


# ------------------------------------------------------------------------------------------------
# Running


@dataclass
class Retrained:
    folder: str  # retrain, or retrain_2, ... under the experiment
    candidates: list[Candidate]  # ranked, the chosen one first
    epochs: int
    seeds: list[int]
    interrupted: bool = False  # runs left unfinished (Ctrl-C, SIGTERM): --resume continues them
    metrics: dict | None = None  # best/metrics.json, once written


def retrain_folder(store: ExperimentStore, record: dict) -> tuple[str, bool]:
    """(folder, whether to restore it): the first retrain folder that holds this record, or holds none yet."""
    from ray import tune

    for i in count(1):
        name = RETRAIN_DIR if i == 1 else f"{RETRAIN_DIR}_{i}"
        if not store.is_file(f"{name}/{CANDIDATES_FILE}"):
            return name, False
        if json.loads(store.read_text(f"{name}/{CANDIDATES_FILE}")) == record:
            return name, tune.Tuner.can_restore(store.join(name))
    raise AssertionError("unreachable")


def build_retrain_tuner(spec: SweepSpec, trainable, store: ExperimentStore, folder: str, plan: RunPlan,
                        epochs: int, provenance: dict):
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from kgsearch.sweep.checkpoints import keep_config

    progress = ProgressPrinter(spec.metric, epochs, (), asha=False, mode=spec.mode,
                               concurrency=spec.max_concurrent_trials)
    run_config = tune.RunConfig(
        name=folder, storage_path=store.uri, verbose=0,
        callbacks=[progress, ProvenanceWriter(provenance), *tracker_callbacks(spec.tracking, f"{store.name}-retrain")],
        failure_config=tune.FailureConfig(max_failures=spec.retries or 0),
        checkpoint_config=tune.CheckpointConfig(**keep_config(spec.checkpoints, spec.metric)))
    tune_config = tune.TuneConfig(
        metric=spec.metric, mode=spec.mode, scheduler=FIFOScheduler(), num_samples=1,
        max_concurrent_trials=spec.max_concurrent_trials,
        trial_name_creator=trial_dirname, trial_dirname_creator=trial_dirname,
        reuse_actors=os.environ.get("KGSEARCH_REUSE_ACTORS", "1") == "1")
    return tune.Tuner(trainable, param_space=retrain_space(plan), tune_config=tune_config, run_config=run_config)


def run_retrain(spec: SweepSpec, store: ExperimentStore, rows: list[TrialRow], ctx, provenance: dict,
                recipe_cls, dataset, prepared, data_root, say, picked: list[TrialRow] | None = None) -> Retrained | None:
    """Re-train the top-k, test every run, choose by mean validation and write best/; None when no trial
    qualifies. An interrupted re-training writes nothing to best/ (`interrupted`). `picked`: the candidates
    (a GraSH sweep's, kgsearch.sweep.grash), instead of the top-k of `rows` by validation metric."""
    from ray import tune

    picked = select(rows, spec.retrain.top_k, spec.mode) if picked is None else picked[:spec.retrain.top_k]
    if not picked:
        return None
    epochs = int(spec.fixed["epochs"])
    seeds = list(spec.retrain.seeds)

    def full(config: dict) -> dict:  # every config field, defaults included: "the same config" field by field
        return config_to_dict(config_from_dict(recipe_cls.Config, config, source="re-training"))

    plan = plan_runs(picked, run_configs(spec, picked, epochs), seeds, epochs, same=lambda a, b: full(a) == full(b))
    record, configs = retrain_record(spec, picked, epochs, plan)
    folder, restore = retrain_folder(store, record)
    sub = ExperimentStore(store.root, f"{store.name}/{folder}")
    say("")
    say(f"re-training the top {len(picked)} configuration(s) ({', '.join(r.trial for r in picked)}) with seeds "
        f"{', '.join(map(str, seeds))} for {epochs} epochs each (FIFO"
        + (f", validating every {spec.retrain.eval_every} epochs" if spec.retrain.eval_every else "")
        + f") -> {sub.local or sub.uri}" + (" (continuing: finished runs kept)" if restore else ""))
    for (trial, seed), r in plan.reused.items():
        say(f"  {retrain_label(trial, seed)} is search trial {r.trial} itself (the same config, seed and {epochs} "
            "epochs): its best checkpoint is that row, not trained again")
    for (trial, seed), r in plan.continued.items():
        say(f"  {retrain_label(trial, seed)} continues search trial {r.trial} (the same config and seed, stopped after "
            f"epoch {r.epochs}) from its best checkpoint, epoch {r.best_epoch}: the same run as from scratch")
    if not restore:
        sub.write_json(CANDIDATES_FILE, record)
    runs: list[TrialRow] = []
    if plan.train:  # else every run is a search trial: no Tuner at all
        rctx = dataclasses.replace(ctx, train_storage=sub.join(TRAIN_RUNS))
        trainable = make_trainable(spec, rctx, retrain=configs, starts=plan.starts())
        if restore:
            tuner = tune.Tuner.restore(sub.uri, trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = build_retrain_tuner(spec, trainable, store, folder, plan, epochs, provenance)
        runs = collect_trials(tuner.fit(), spec.metric, epochs, (RUN_KEY, RETRAIN_KEY, "seed"), unfinished_trials(sub),
                              train_runs=None if spec.resources.direct else f"{sub.path}/{TRAIN_RUNS}",
                              failures=all_recorded(sub.join(TRAIN_RUNS)))
    out = Retrained(folder=folder, epochs=epochs, seeds=seeds, candidates=[
        Candidate(trial=r.trial, trial_id=r.trial_id, params=r.params, search_best=r.best, search_epochs=r.epochs)
        for r in picked])
    if any(run.status == STATUS_UNFINISHED for run in runs) or len(runs) < len(plan.train):
        out.interrupted = True
        return out
    by_trial = {c.trial: c for c in out.candidates}
    sources: dict[str, TrialRow] = {}  # a row's "run" -> the trial whose best checkpoint it is
    for (trial, seed), r in plan.reused.items():
        by_trial[trial].rows.append(seed_row(spec, seed, r, f"search trial {r.trial}", recipe_cls, dataset, prepared))
        sources[r.trial] = r
    for run in runs:
        trial, seed = retrain_run(run.config)
        by_trial[trial].rows.append(seed_row(spec, seed, run, RETRAINED, recipe_cls, dataset, prepared))
        if (start := plan.continued.get((trial, seed))) is not None:
            by_trial[trial].rows[-1]["continued_from"] = {"trial": start.trial, "epoch": start.best_epoch}
        sources[run.trial] = run
    for c in out.candidates:
        c.rows.sort(key=lambda row: row["seed"])
    out.candidates = rank(out.candidates, spec.metric, spec.mode)
    if out.candidates[0].done:
        out.metrics = export_chosen(spec, store, out, sources, recipe_cls, dataset, prepared, data_root)
    return out


def seed_row(spec: SweepSpec, seed: int, run: TrialRow, source: str, recipe_cls, dataset, prepared) -> dict:
    """One seed's row: `run`'s best checkpoint tested on valid and test (or its error)."""
    row = {"seed": seed, "run": run.trial, "source": source, "status": run.status, "epochs_run": run.epochs,
           "trial_path": run.path}
    if run.status == STATUS_FAILED or run.checkpoint is None:
        row["error"] = run.error or "no checkpoint"
    else:
        tested = restore_and_test(spec, run.checkpoint, run.trial, recipe_cls, dataset, prepared)
        row.update(best_epoch=tested.state.best_epoch, val=tested.val, test=tested.test)
    return row


def export_chosen(spec: SweepSpec, store: ExperimentStore, out: Retrained, sources: dict[str, TrialRow], recipe_cls,
                  dataset, prepared, data_root) -> dict:
    """best/ from the chosen candidate: its best-validation seed's run file and weights, every seed's row."""
    chosen = out.candidates[0]
    row = best_seed_row(chosen, spec.metric, spec.mode)
    run = sources[row["run"]]
    tested = restore_and_test(spec, run.checkpoint, run.trial, recipe_cls, dataset, prepared, evaluate=False)
    metric, test_key = spec.metric, metric_key("test", spec.metric)
    where = store.local or store.uri
    others = ", ".join(str(r["seed"]) for r in chosen.done if r["seed"] != row["seed"])
    threads = replay_threads(spec)
    header = (f"# best configuration of sweep {spec.name}: search trial {chosen.trial} ({chosen.trial_id}), re-trained "
              f"{out.epochs} epochs with seeds {', '.join(str(s) for s in out.seeds)}:\n"
              f"#   mean {metric} {chosen.mean(metric):.4f} +- {chosen.std(metric):.4f}, "
              f"mean {test_key} {chosen.mean(test_key):.4f} +- {chosen.std(test_key):.4f} (best/metrics.json)\n"
              f"# seed {row['seed']}: the seed whose validation was best; best/checkpoint.pt holds its weights\n"
              + "".join(f"# seed {s}: search trial {chosen.trial} itself (the same config, seed and epochs), not "
                        "trained again\n" for s in chosen.reused())
              + f"# replay: python -m kgsearch.train {where}/best/config.yaml --threads {threads}"
              + (f"   (another seed's row: --set params.seed=S, S in {others})" if others else "")
              + f"\n# (--threads {threads}: the trials' CPU threads, for the same numbers to the last digit)")
    write_best(spec, store, tested, dict(tested.run.params), data_root, header)
    info = {**chosen.summary(), "seed": row["seed"], "epochs": out.epochs, "epochs_run": row["epochs_run"],
            "best_epoch": row["best_epoch"],
            "val": row["val"], "test": row["test"], "test_key": test_key, "trial_path": row["trial_path"],
            "checkpoint_seed": row["seed"], "retrain": {"folder": out.folder, "top_k": spec.retrain.top_k,
                                                        "seeds": out.seeds, "epochs": out.epochs,
                                                        "eval_every": spec.retrain.eval_every},
            "winners": [{**c.summary(), "chosen": i == 0} for i, c in enumerate(out.candidates)]}
    store.write_json("best/metrics.json", info)
    return info


def replay_threads(spec: SweepSpec) -> int:
    """The torch threads a trial trained with (kgsearch.sweep.trial), which a replay needs for equal numbers."""
    return max(1, int(spec.resources.cpus_per_worker))


def seeds_cell(c: Candidate) -> str:
    """"3/3", "2/3 (failed: 2)", "3/3; seed 0 = search trial t003" (that seed's row is the search trial itself)."""
    failed = [str(r["seed"]) for r in c.rows if "val" not in r]
    reused = ", ".join(map(str, c.reused()))
    return (f"{len(c.done)}/{len(c.rows)}" + (f" (failed: {', '.join(failed)})" if failed else "")
            + (f"; seed {reused} = search trial {c.trial}" if reused else ""))


def retrain_lines(out: Retrained, metric: str, test_key: str) -> list[str]:
    """The candidates as a table, mean +- std over their seeds, the chosen one marked with *."""
    if out.interrupted:
        return [f"re-training interrupted ({out.folder}/): continue with --resume (finished runs are kept); "
                "best/ holds the best search trial meanwhile"]
    head = ["", "trial", f"search {metric}", f"{metric} (mean ± std)", f"{test_key} (mean ± std)", "seeds"]
    body = []
    for i, c in enumerate(out.candidates):
        body.append(["*" if i == 0 and c.done else "", c.trial, fmt(c.search_best),
                     f"{c.mean(metric):.4f} ± {c.std(metric):.4f}" if c.done else "-",
                     f"{c.mean(test_key):.4f} ± {c.std(test_key):.4f}" if c.done else "-",
                     seeds_cell(c)])
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    lines = [f"re-trained at full length ({out.epochs} epochs) with seeds {', '.join(map(str, out.seeds))}; "
             f"* = best mean {metric}:",
             "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    return lines
