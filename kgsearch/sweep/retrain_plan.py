"""What the re-training (kgsearch.sweep.retrain) trains: the top-k search trials (`select`), the config each
one's runs train with (`run_configs`), the (trial, seed) runs left once the search trials that already are one
of them are taken as they are, and which of those continue a stopped search trial (`plan_runs`), and the
record of it all, retrain/candidates.json."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from kgsearch.sweep.progress import RUN_KEY, retrain_label
from kgsearch.sweep.results import STATUS_DONE, STATUS_FAILED, STATUS_STOPPED, STATUS_UNFINISHED, TrialRow
from kgsearch.sweep.spec import SweepSpec


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


def _same_run_seed(row: TrialRow, config: dict, seeds: list[int], same=None) -> int | None:
    """The trial's seed when the trial is the run `config` (its re-training config) with that seed and has a
    best checkpoint; else None."""
    seed = row.config.get("seed")
    if row.checkpoint is None or not isinstance(seed, int) or isinstance(seed, bool) or seed not in seeds:
        return None
    return seed if (same or (lambda a, b: a == b))({**config, "seed": seed}, row.config) else None


def own_seed(row: TrialRow, config: dict, seeds: list[int], epochs: int, same=None) -> int | None:
    """The seed whose re-training run the search trial `row` already is, else None: it ran all `epochs`
    (status completed: not stopped by ASHA, a time budget or its own patience, and not failed), has a best
    checkpoint, its seed is one of `seeds`, and its config equals the run's (`config`, the re-training's
    config of it, with that seed; `same` compares two configs, default ==)."""
    if row.status != STATUS_DONE or row.epochs != epochs:
        return None
    return _same_run_seed(row, config, seeds, same)


def continued_seed(row: TrialRow, config: dict, seeds: list[int], same=None) -> int | None:
    """The seed whose re-training run continues the search trial `row` from its best checkpoint, else None: the
    same run as in `own_seed`, but stopped before its last epoch (by ASHA, a time budget or its patience).
    Training is deterministic per epoch (each epoch's shuffling and noise are seeded by seed and epoch, and a
    checkpoint holds the optimiser and loop state), so the continued run is the run from scratch, bit for bit
    (tests/test_sweep_retrain.py), without its first `best_epoch` epochs."""
    if row.status != STATUS_STOPPED or row.fidelity:  # a GraSH rung trained on a subgraph
        return None
    return _same_run_seed(row, config, seeds, same)


@dataclass
class RunPlan:
    """What the re-training trains: `train`, the (search trial, seed) runs, seed-major (seed 0 of every
    candidate first); `reused`, the (search trial, seed) pairs whose run is that search trial itself;
    `continued`, those of `train` that start from their search trial's best checkpoint."""

    train: list[tuple[str, int]]
    reused: dict[tuple[str, int], TrialRow]
    continued: dict[tuple[str, int], TrialRow] = field(default_factory=dict)

    def labels(self) -> list[str]:
        return [retrain_label(trial, seed) for trial, seed in self.train]

    def starts(self) -> dict[str, object]:
        """{run label: the checkpoint it starts from} for the continued runs."""
        return {retrain_label(trial, seed): r.checkpoint for (trial, seed), r in self.continued.items()}


def plan_runs(picked: list[TrialRow], configs: dict[str, dict], seeds: list[int], epochs: int,
              same=None) -> RunPlan:
    """Every (candidate, seed) run, bar those a search trial already is (`own_seed`); the ones a stopped search
    trial began are continued from its checkpoint (`continued_seed`)."""
    reused, continued = {}, {}
    for r in picked:
        seed = own_seed(r, configs[r.trial], seeds, epochs, same)
        if seed is not None:
            reused[(r.trial, seed)] = r
        elif (seed := continued_seed(r, configs[r.trial], seeds, same)) is not None:
            continued[(r.trial, seed)] = r
    return RunPlan(train=[(r.trial, s) for s in seeds for r in picked if (r.trial, s) not in reused],
                   reused=reused, continued=continued)


def retrain_space(plan: RunPlan) -> dict:
    """The re-training Tuner's param_space: one grid value per run to train, its label t003-s1
    (kgsearch.sweep.progress.retrain_run reads the trial and seed back), in the plan's order (seed 0 of every
    candidate, then seed 1, ...); the runs a search trial already is are not in it, so a restored Tuner never
    trains them either."""
    from ray import tune

    return {RUN_KEY: tune.grid_search(plan.labels())}


def run_configs(spec: SweepSpec, picked: list[TrialRow], epochs: int) -> dict[str, dict]:
    """{trial: the config its runs train with}: the trial's config with `epochs` (the config's, whatever the
    trial ran), `retrain.eval_every` when set, and without its seed, which each run sets."""
    cadence = {} if spec.retrain.eval_every is None else {"eval_every": spec.retrain.eval_every}
    return {r.trial: {**{k: v for k, v in r.config.items() if k != "seed"}, "epochs": epochs, **cadence}
            for r in picked}


def retrain_record(spec: SweepSpec, picked: list[TrialRow], epochs: int, plan: RunPlan | None = None
                   ) -> tuple[dict, dict[str, dict]]:
    """(candidates.json, `run_configs`). A candidate whose seed run is its search trial (`plan.reused`) lists
    that seed under `reused_seeds` (absent when none is, as in the records written before reuse existed)."""
    configs = run_configs(spec, picked, epochs)
    reused = plan.reused if plan is not None else {}
    continued = plan.continued if plan is not None else {}
    record = {"seeds": list(spec.retrain.seeds), "epochs": epochs, "metric": spec.metric,
              "candidates": [{"trial": r.trial, "trial_id": r.trial_id, "params": r.params, "search_best": r.best,
                              "search_epochs": r.epochs, "config": configs[r.trial],
                              **({"reused_seeds": seeds} if (seeds := [s for t, s in reused if t == r.trial]) else {}),
                              **({"continued_seeds": seeds} if (seeds := [s for t, s in continued if t == r.trial])
                                 else {})}
                             for r in picked]}
    return json.loads(json.dumps(record, default=str)), configs  # as it reads back from candidates.json
