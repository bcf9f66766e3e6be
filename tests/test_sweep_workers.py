"""Multi-worker trials (Ray Train V2 worker group, DDP over gloo) report exactly the validation MRR
that one process computes for the same weights (slow: a worker group takes 10-25 s to start)."""

from __future__ import annotations

import json
import os

import pytest

from kgsearch.sweep.validate import parse_spec

SWEEP = """\
model: dans
dataset: umls
metric: val_mrr
num_samples: 1
max_concurrent_trials: 1
scheduler: {type: fifo, max_t: 2}
resources: {workers: 2, cpus_per_worker: 1, max_failures: 0}
retrain: {top_k: 0}
fixed: {seed: 0, eval_every: 1, dim: 16, negatives: 16, diffusion_steps: 20, pretrain_dim: 16,
        pretrain_epochs: 2, dam_epochs: 20, lr: 0.005}
"""


@pytest.mark.slow
def test_two_workers_report_the_single_process_metrics(ray_session, tmp_path):
    from kgsearch.run.checkpoint import load_checkpoint
    from kgsearch.config import config_from_dict
    from kgsearch.dans.recipe import DansRecipe
    from kgsearch.data import load
    from kgsearch.sweep.run import run_sweep
    from kgsearch.run.metrics import evaluate_split

    # ... and re-trained with seed 1 by a worker group too (its Train run under retrain/_train/)
    sweep = SWEEP.replace("retrain: {top_k: 0}", "retrain: {top_k: 1, seeds: [1]}")
    spec = parse_spec(sweep, source="two_workers.yaml", name="two_workers")
    outcome = run_sweep(spec, storage=str(tmp_path), say=lambda *_: None)
    (row,) = outcome.rows
    assert row.status == "completed", row.error
    best = json.loads((outcome.experiment / "best" / "metrics.json").read_text())
    (seed_row,) = best["per_seed"]
    assert seed_row["run"] == "t001-s1" and seed_row["status"] == "completed" and best["seed"] == 1
    assert load_checkpoint(outcome.experiment / "best" / "checkpoint.pt")["config"]["params"]["seed"] == 1
    (train_run,) = [p for p in (outcome.experiment / "retrain" / "_train").iterdir() if p.is_dir()]
    assert any(train_run.glob("checkpoint_*"))
    reports = [json.loads(line) for line in open(os.path.join(row.path, "result.json"))]
    assert [r["workers"] for r in reports] == [2, 2] and [r["epochs_done"] for r in reports] == [1, 2]
    assert (outcome.experiment / "_train" / row.trial_id).is_dir()  # the Train run is named after the trial

    # Rank 0's checkpoint of epoch 2 (Train keeps the best and the newest), evaluated by one process
    # over all validation queries:
    kept = {json.loads((d / "meta.json").read_text())["epoch"]: d
            for d in (outcome.experiment / "_train" / row.trial_id).glob("checkpoint_*") if d.is_dir()}
    assert 2 in kept and row.checkpoint.path.rsplit("/", 1)[-1] in {d.name for d in kept.values()}
    blob = load_checkpoint(kept[2] / "checkpoint.pt", model="dans")
    assert blob["state"]["fit"]["epoch"] == 2
    config = config_from_dict(DansRecipe.Config, blob["config"]["params"])
    dataset = load("umls")
    recipe = DansRecipe(config, dataset, DansRecipe.prepare(config, dataset))
    recipe.load_state_dict(blob["state"]["recipe"])
    alone = evaluate_split(recipe, "valid")
    assert reports[-1]["val_count"] == alone["val_count"]
    for key in ("val_mrr", "val_hits@1", "val_hits@3", "val_hits@10"):
        assert reports[-1][key] == pytest.approx(alone[key], abs=1e-9), key


def test_a_crashed_worker_group_restarts_from_its_last_checkpoint(ray_session, tmp_path, monkeypatch):
    """Both workers die at the start of epoch 2 (KGSEARCH_FAULT crash, once); Train's failure config
    (max_failures 1) restarts the group, which resumes from the epoch-1 checkpoint instead of epoch 0."""
    from kgsearch.sweep.run import run_sweep
    from kgsearch.sweep.faults import FAULT_ENV

    monkeypatch.setenv(FAULT_ENV, "1@2:crash")
    sweep = SWEEP.replace("max_failures: 0", "max_failures: 1").replace("max_t: 2", "max_t: 3")
    spec = parse_spec(sweep, source="crash.yaml", name="crash")
    outcome = run_sweep(spec, storage=str(tmp_path), say=lambda *_: None)
    (row,) = outcome.rows
    assert row.status == "completed", row.error
    markers = sorted(p.name for p in (outcome.experiment / "_train").glob(f"crashed-{row.trial}_*"))
    assert [m.rsplit("-", 1)[1] for m in markers] == ["rank0", "rank1"]  # both workers crashed, once
    reports = [json.loads(line) for line in open(os.path.join(row.path, "result.json"))]
    assert [r["epochs_done"] for r in reports] == [1, 2, 3]  # epoch 1 not trained twice
