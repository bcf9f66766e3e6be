"""The sweep's last stage: its top-k configurations re-trained at full length with several seeds.

After the search (the first Tuner's fit), `select` picks the `retrain.top_k` trials with the best
validation metric (distinct searched values; failed trials skipped). A second Tuner trains each of those
configurations with each of `retrain.seeds`: a grid over (trial, seed), FIFO (no early stopping), for the
epochs the config states (`fixed.epochs` = max_t, not the epochs an ASHA-stopped trial ran), with the same
trainable, resources and concurrency as the search, in `<experiment>/retrain/` (runs `t003-s1_<id>/`).
The seed is the config's `seed`; every other field, `pretrain_seed` included, is the trial's, so the
data prepared once per sweep fits every run (kgsearch.sweep.trial checks it).

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

from kgsearch.run.metrics import metric_key
from kgsearch.sweep.export import restore_and_test, write_best
from kgsearch.sweep.failures import all_recorded
from kgsearch.sweep.progress import RETRAIN_KEY, ProgressPrinter, ProvenanceWriter, fmt, trial_dirname
from kgsearch.sweep.restore import TRAIN_RUNS, unfinished_trials
from kgsearch.sweep.results import STATUS_FAILED, STATUS_UNFINISHED, TrialRow, collect_trials
from kgsearch.sweep.spec import SweepSpec
from kgsearch.sweep.storage import ExperimentStore
from kgsearch.sweep.trackers import tracker_callbacks
from kgsearch.sweep.tuner import make_trainable

RETRAIN_DIR = "retrain"
CANDIDATES_FILE = "candidates.json"


# ------------------------------------------------------------------------------------------------
# Choosing


def select(rows: list[TrialRow], top_k: int, mode: str = "max") -> list[TrialRow]:
    """The `top_k` trials with the best validation metric, one per distinct set of searched values (the
    better trial of equal ones), failed and unfinished trials left out; the earlier trial first on a tie."""
    if top_k < 1:
        return []
    usable = [r for r in rows if r.status not in (STATUS_FAILED, STATUS_UNFINISHED) and math.isfinite(r.best)]
    ranked = sorted(usable, key=lambda r: r.best, reverse=mode == "max")  # stable: ties keep creation order
    picked, seen = [], set()
    for r in ranked:
        key = json.dumps(r.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            picked.append(r)
            if len(picked) == top_k:
                break
    return picked


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
                **out, "per_seed": self.rows}


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


def retrain_record(spec: SweepSpec, picked: list[TrialRow], epochs: int) -> tuple[dict, dict[str, dict]]:
    """(candidates.json, {trial: the config its runs train with}): each trial's config with `epochs` (the
    config's, whatever the trial ran) and without its seed, which each run sets."""
    configs = {r.trial: {**{k: v for k, v in r.config.items() if k != "seed"}, "epochs": epochs} for r in picked}
    record = {"seeds": list(spec.retrain.seeds), "epochs": epochs, "metric": spec.metric,
              "candidates": [{"trial": r.trial, "trial_id": r.trial_id, "params": r.params, "search_best": r.best,
                              "search_epochs": r.epochs, "config": configs[r.trial]} for r in picked]}
    return json.loads(json.dumps(record, default=str)), configs  # as it reads back from candidates.json


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


def build_retrain_tuner(spec: SweepSpec, trainable, store: ExperimentStore, folder: str, labels: list[str],
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
    # Tune (BasicVariantGenerator) varies the first grid key fastest: seed 0 of every candidate, then seed 1, ...
    space = {RETRAIN_KEY: tune.grid_search(labels), "seed": tune.grid_search(list(spec.retrain.seeds))}
    return tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)


def run_retrain(spec: SweepSpec, store: ExperimentStore, rows: list[TrialRow], ctx, provenance: dict,
                recipe_cls, dataset, prepared, data_root, say) -> Retrained | None:
    """Re-train the top-k, test every run, choose by mean validation and write best/; None when no trial
    qualifies. An interrupted re-training writes nothing to best/ (`interrupted`)."""
    from ray import tune

    picked = select(rows, spec.retrain.top_k, spec.mode)
    if not picked:
        return None
    epochs = int(spec.fixed["epochs"])
    record, configs = retrain_record(spec, picked, epochs)
    folder, restore = retrain_folder(store, record)
    sub = ExperimentStore(store.root, f"{store.name}/{folder}")
    rctx = dataclasses.replace(ctx, train_storage=sub.join(TRAIN_RUNS))
    trainable = make_trainable(spec, rctx, retrain=configs)
    seeds = list(spec.retrain.seeds)
    say("")
    say(f"re-training the top {len(picked)} configuration(s) ({', '.join(r.trial for r in picked)}) with seeds "
        f"{', '.join(map(str, seeds))} for {epochs} epochs each (FIFO) -> {sub.local or sub.uri}"
        + (" (continuing: finished runs kept)" if restore else ""))
    if restore:
        tuner = tune.Tuner.restore(sub.uri, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        sub.write_json(CANDIDATES_FILE, record)
        tuner = build_retrain_tuner(spec, trainable, store, folder, [r.trial for r in picked], epochs, provenance)
    results = tuner.fit()
    runs = collect_trials(results, spec.metric, epochs, (RETRAIN_KEY, "seed"), unfinished_trials(sub),
                          train_runs=None if spec.resources.direct else f"{sub.path}/{TRAIN_RUNS}",
                          failures=all_recorded(sub.join(TRAIN_RUNS)))
    out = Retrained(folder=folder, epochs=epochs, seeds=seeds, candidates=[
        Candidate(trial=r.trial, trial_id=r.trial_id, params=r.params, search_best=r.best, search_epochs=r.epochs)
        for r in picked])
    if any(run.status == STATUS_UNFINISHED for run in runs) or len(runs) < len(picked) * len(seeds):
        out.interrupted = True
        return out
    by_trial = {c.trial: c for c in out.candidates}
    for run in sorted(runs, key=lambda run: (run.params.get(RETRAIN_KEY, ""), int(run.params.get("seed", 0)))):
        row = {"seed": int(run.params["seed"]), "run": run.trial, "status": run.status, "epochs_run": run.epochs,
               "trial_path": run.path}
        if run.status == STATUS_FAILED or run.checkpoint is None:
            row["error"] = run.error or "no checkpoint"
        else:
            tested = restore_and_test(spec, run.checkpoint, run.trial, recipe_cls, dataset, prepared)
            row.update(best_epoch=tested.state.best_epoch, val=tested.val, test=tested.test)
        by_trial[run.params[RETRAIN_KEY]].rows.append(row)
    out.candidates = rank(out.candidates, spec.metric, spec.mode)
    if out.candidates[0].done:
        out.metrics = export_chosen(spec, store, out, runs, recipe_cls, dataset, prepared, data_root)
    return out


def export_chosen(spec: SweepSpec, store: ExperimentStore, out: Retrained, runs: list[TrialRow], recipe_cls,
                  dataset, prepared, data_root) -> dict:
    """best/ from the chosen candidate: its best-validation seed's run file and weights, every seed's row."""
    chosen = out.candidates[0]
    row = best_seed_row(chosen, spec.metric, spec.mode)
    run = next(r for r in runs if r.trial == row["run"])
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
              f"# replay: python -m kgsearch.train {where}/best/config.yaml --threads {threads}"
              + (f"   (another seed's row: --set params.seed=S, S in {others})" if others else "")
              + f"\n# (--threads {threads}: the trials' CPU threads, for the same numbers to the last digit)")
    write_best(spec, store, tested, dict(tested.run.params), data_root, header)
    info = {**chosen.summary(), "seed": row["seed"], "epochs": out.epochs, "epochs_run": row["epochs_run"],
            "best_epoch": row["best_epoch"],
            "val": row["val"], "test": row["test"], "test_key": test_key, "trial_path": row["trial_path"],
            "checkpoint_seed": row["seed"], "retrain": {"folder": out.folder, "top_k": spec.retrain.top_k,
                                                        "seeds": out.seeds, "epochs": out.epochs},
            "winners": [{**c.summary(), "chosen": i == 0} for i, c in enumerate(out.candidates)]}
    store.write_json("best/metrics.json", info)
    return info


def replay_threads(spec: SweepSpec) -> int:
    """The torch threads a trial trained with (kgsearch.sweep.trial), which a replay needs for equal numbers."""
    return max(1, int(spec.resources.cpus_per_worker))


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
                     f"{len(c.done)}/{len(c.rows)}" + (" (failed: " + ", ".join(str(r["seed"]) for r in c.rows
                                                                               if "val" not in r) + ")" if c.failed else "")])
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    lines = [f"re-trained at full length ({out.epochs} epochs) with seeds {', '.join(map(str, out.seeds))}; "
             f"* = best mean {metric}:",
             "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    return lines
