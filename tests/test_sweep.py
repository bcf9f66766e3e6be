"""End-to-end smoke sweep on a real (embedded) Ray, plus the pieces of the trial loop that need no Ray.

One 4-trial x 2-epoch `dans_umls --smoke` sweep (module fixture, ~30-50 s), whose best configuration is
re-trained with seeds 0 and 1 (its smoke `retrain:`), is checked from several angles: result files, the
failed trials (through the KGSEARCH_FAULT hook in kgsearch/sweep/faults.py, trial 2's loss turns NaN at
epoch 1 and trial 4 raises), once-per-sweep preparation, provenance, TensorBoard curves and HParams, the
re-training and best/metrics.json, and best/config.yaml replaying each seed's row exactly.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
import yaml

from kgsearch.config import config_from_dict
from kgsearch.sweep.validate import load_spec

@pytest.fixture(scope="module")
def smoke(ray_session, tmp_path_factory):
    """Run the smoke sweep once; count Recipe.prepare calls in this (driver) process."""
    from kgsearch.dans.recipe import DansRecipe
    from kgsearch.sweep.run import run_sweep
    from kgsearch.sweep.faults import FAULT_ENV

    calls = []
    original = DansRecipe.__dict__["prepare"]

    def counting(cls, config, dataset, **kwargs):
        calls.append(dataset.name)
        return original.__func__(cls, config, dataset, **kwargs)

    DansRecipe.prepare = classmethod(counting)
    os.environ[FAULT_ENV] = "2@1,4@1:raise"
    lines: list[str] = []
    storage = tmp_path_factory.mktemp("runs")
    printed = io.StringIO()
    try:
        spec = load_spec("dans_umls", smoke=True, num_samples=4)
        with contextlib.redirect_stdout(printed):  # the progress printer's lines
            # a file:// URI takes the same code path as s3:// / gs:// storage (pyarrow filesystems)
            outcome = run_sweep(spec, storage=f"file://{storage}", say=lines.append)
    finally:
        DansRecipe.prepare = original
        os.environ.pop(FAULT_ENV, None)
    lines += printed.getvalue().splitlines()
    return {"outcome": outcome, "exp": outcome.experiment, "lines": lines, "prepare_calls": calls, "spec": spec}


def test_experiment_store_paths_and_uris(tmp_path):
    from kgsearch.sweep.storage import ExperimentStore

    for root in (str(tmp_path / "a"), f"file://{tmp_path}/b"):
        store = ExperimentStore(root, "exp")
        assert store.local is not None and not store.exists()
        store.write_text("best/config.yaml", "model: dans\n")
        store.write_file("best/blob.pt", lambda p: torch.save({"x": 1}, p))
        assert store.is_file("best/config.yaml") and store.read_text("best/config.yaml") == "model: dans\n"
        assert torch.load(store.local / "best" / "blob.pt")["x"] == 1
        assert store.join("_train") == f"{root}/exp/_train"


def read_trials(exp: Path) -> dict[str, dict]:
    with (exp / "trials.csv").open() as f:
        return {row["trial"]: row for row in csv.DictReader(f)}


def test_results_files(smoke):
    exp = smoke["exp"]
    rows = read_trials(exp)
    assert sorted(rows) == ["t001", "t002", "t003", "t004"]
    searched = list(smoke["spec"].space)
    assert set(searched) <= set(next(iter(rows.values())))  # one column per searched parameter
    for name in ("t001", "t003"):  # ASHA (grace 1) may stop one at epoch 1, depending on who reports first
        assert (rows[name]["status"], rows[name]["epochs"]) in {("completed", "2"), ("stopped_early", "1")}
        assert 0 < float(rows[name]["best_val_mrr"]) <= 1
    metrics = json.loads((exp / "best" / "metrics.json").read_text())
    assert metrics["trial"] in ("t001", "t003")  # re-trained: the best of the trials that did not fail
    assert metrics["seeds"] == [0, 1] and metrics["epochs"] == 2
    assert 0 < metrics["test"]["test_mrr"] <= 1 and metrics["test"]["test_count"] > 0
    assert (exp / "sweep.yaml").is_file() and (exp / "best" / "checkpoint.pt").is_file()
    summary = (exp / "summary.txt").read_text()
    assert "best configuration" in summary and "4 trials" in summary and "t002 failed: TrainingDiverged" in summary


def test_the_best_trial_is_retrained_with_each_seed_and_its_mean_reported(smoke):
    exp = smoke["exp"]
    rows = read_trials(exp)
    metrics = json.loads((exp / "best" / "metrics.json").read_text())
    trial = metrics["trial"]
    candidates = json.loads((exp / "retrain" / "candidates.json").read_text())
    assert [c["trial"] for c in candidates["candidates"]] == [trial] and candidates["seeds"] == [0, 1]
    assert candidates["candidates"][0]["config"]["epochs"] == 2  # the config's epochs, even if ASHA stopped it at 1
    # A trial ASHA let run both epochs (seed 0, as every search trial) is seed 0's run itself: not trained again.
    full = rows[trial]["status"] == "completed"
    assert candidates["candidates"][0].get("reused_seeds") == ([0] if full else None)
    runs = {p.name.split("_")[0]: p for p in (exp / "retrain").glob(f"{trial}-s*_*")}
    assert sorted(runs) == [f"{trial}-s{s}" for s in ((1,) if full else (0, 1))]
    for name, folder in runs.items():  # full length (FIFO), each with its seed
        epochs = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        assert [e["epochs_done"] for e in epochs] == [1, 2]
        assert json.loads((folder / "provenance.json").read_text())["seed"] == int(name[-1])
    per_seed = {r["seed"]: r for r in metrics["per_seed"]}
    assert sorted(per_seed) == [0, 1] and metrics["reused_seeds"] == ([0] if full else [])
    assert [(r["run"], r["source"]) for r in per_seed.values()] == [
        (trial, f"search trial {trial}") if full and s == 0 else (f"{trial}-s{s}", "re-trained") for s in (0, 1)]
    if full:  # seed 0's row is the search trial's best checkpoint
        (folder,) = exp.glob(f"{trial}_*")
        assert per_seed[0]["trial_path"] == str(folder) and per_seed[0]["best_epoch"] == int(rows[trial]["best_epoch"])
        assert per_seed[0]["val"]["val_mrr"] == pytest.approx(float(rows[trial]["best_val_mrr"]), abs=1e-6)
    for key in ("val_mrr", "test_mrr", "test_hits@1", "test_hits@10"):
        values = [per_seed[s][key.split("_")[0]][key] for s in (0, 1)]
        assert metrics[f"{key}_mean"] == pytest.approx(sum(values) / 2)
        assert metrics[f"{key}_std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    best_seed = max((0, 1), key=lambda s: per_seed[s]["val"]["val_mrr"])
    assert metrics["seed"] == best_seed and metrics["val"] == per_seed[best_seed]["val"]
    run = yaml.safe_load((exp / "best" / "config.yaml").read_text())
    assert run["params"]["seed"] == best_seed and run["params"]["epochs"] == 2
    assert f"# seed {best_seed}: the seed whose validation was best" in (exp / "best" / "config.yaml").read_text()
    assert [w["trial"] for w in metrics["winners"]] == [trial] and metrics["winners"][0]["chosen"]
    summary = (exp / "summary.txt").read_text()
    table = summary[summary.index("re-trained at full length"):].splitlines()
    assert table[3].startswith(f"*  {trial}") and f"{metrics['val_mrr_mean']:.4f} ± {metrics['val_mrr_std']:.4f}" in table[3]
    assert (exp / "report" / "seeds.png").is_file()  # the report's seed-spread figure reads metrics.json


def test_nan_trial_is_recorded_failed_and_the_sweep_goes_on(smoke):
    row = read_trials(smoke["exp"])["t002"]
    assert row["status"] == "failed"
    assert row["error"] == "TrainingDiverged: loss became nan at epoch 1"
    assert any("t002 FAILED" in line and "TrainingDiverged" in line for line in smoke["lines"])
    assert any(line.endswith("t003 start") or " t003 start " in line for line in smoke["lines"])


def test_raising_trial_is_recorded_failed_with_its_error(smoke):
    row = read_trials(smoke["exp"])["t004"]
    assert row["status"] == "failed"
    assert row["error"] == "RuntimeError: injected fault in epoch 1"


def test_fail_fast_stops_the_sweep_at_the_first_error(ray_session, tmp_path, monkeypatch):
    from kgsearch.sweep.run import run_sweep
    from kgsearch.sweep.faults import FAULT_ENV

    monkeypatch.setenv(FAULT_ENV, "1@1:raise")
    spec = load_spec("dans_umls", smoke=True, num_samples=3, max_concurrent_trials=1)
    lines: list[str] = []
    outcome = run_sweep(spec, storage=str(tmp_path), fail_fast=True, say=lines.append)
    assert {r.trial: r.status for r in outcome.rows} == {"t001": "failed"}  # t002, t003 never started
    assert "injected fault in epoch 1" in read_trials(outcome.experiment)["t001"]["error"]


def test_dataset_work_runs_once_per_sweep(smoke):
    # The driver prepared once; trials get (dataset, prepared) from the object store, and a recipe's
    # constructor never calls prepare when given prepared data (tests/contract.py checks each recipe).
    assert smoke["prepare_calls"] == ["umls"]
    rows = read_trials(smoke["exp"])
    assert all(rows[t]["status"] != "failed" for t in ("t001", "t003"))


def test_each_trial_folder_records_provenance(smoke):
    for folder in sorted(smoke["exp"].glob("t00*_*")):
        info = json.loads((folder / "provenance.json").read_text())
        assert info["seed"] == 0 and info["trial"] == folder.name.split("_")[0]
        assert "git_commit" in info and info["versions"]["torch"] == torch.__version__
        assert info["config"]["epochs"] == 2


def test_tensorboard_has_every_trials_curves_and_hparams(smoke):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    rows = read_trials(smoke["exp"])
    searched = list(smoke["spec"].space)
    for name in ("t001", "t003"):
        (folder,) = smoke["exp"].glob(f"{name}_*")
        acc = EventAccumulator(str(folder))
        acc.Reload()
        scalars = acc.Tags()["scalars"]
        epochs = list(range(1, int(rows[name]["epochs"]) + 1))
        assert [e.step for e in acc.Scalars("ray/tune/val_mrr")] == epochs  # x axis = epoch
        assert [e.step for e in acc.Scalars("ray/tune/loss")] == epochs
        assert "ray/tune/best_val_mrr" in scalars
        best = acc.Scalars("ray/tune/best_val_mrr")[-1].value
        assert math.isclose(best, float(rows[name]["best_val_mrr"]), rel_tol=1e-5)
        content = acc.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hparams = start.session_start_info.hparams
        assert sorted(hparams) == sorted(searched)
        assert math.isclose(hparams["lr"].number_value, float(rows[name]["lr"]), rel_tol=1e-9)
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
        assert "ray/tune/best_val_mrr" in {m.name.tag for m in experiment.experiment.metric_infos}


def test_best_config_replays_each_seeds_row_exactly(smoke, tmp_path):
    """`python -m kgsearch.train best/config.yaml --threads 1 --set params.seed=S` trains seed S's re-training
    run again: the same validation and test metrics to the last digit (deterministic on CPU for a fixed seed
    and thread count). The seed the file does not hold is replayed, the harder case."""
    from kgsearch.run.runfile import RunFile
    from kgsearch.train import main

    exp = smoke["exp"]
    run = RunFile.load(exp / "best" / "config.yaml")
    assert set(yaml.safe_load((exp / "best" / "config.yaml").read_text())) == {
        "model", "dataset", "data_root", "metric", "params"}  # device-free run file
    metrics = json.loads((exp / "best" / "metrics.json").read_text())
    assert run.params["epochs"] == metrics["epochs"] == 2 and run.metric == "val_mrr"
    other = next(r for r in metrics["per_seed"] if r["seed"] != run.params["seed"])
    threads = torch.get_num_threads()
    try:
        assert main([str(exp / "best" / "config.yaml"), "--threads", "1", "--set", f"params.seed={other['seed']}",
                     "--out", str(tmp_path / "replay")]) == 0
    finally:
        torch.set_num_threads(threads)
    replay = json.loads((tmp_path / "replay" / "metrics.json").read_text())
    assert replay["best_epoch"] == other["best_epoch"]
    for split in ("val", "test"):
        assert replay[split].keys() == other[split].keys()
        for key, value in other[split].items():
            assert replay[split][key] == pytest.approx(value, abs=1e-9), (split, key)


def test_progress_is_one_line_per_event(smoke):
    epochs = [line for line in smoke["lines"] if re.search(r"\] t\d{3} epoch +\d+/2 ", line)]
    rows = read_trials(smoke["exp"])
    assert len(epochs) == int(rows["t001"]["epochs"]) + int(rows["t003"]["epochs"])  # t002 never reported
    assert all(len(line) < 160 for line in epochs)


# ------------------------------------------------------------------------------------------------
# Without Ray


def test_sharded_validation_sums_to_the_single_worker_metrics():
    """What N DDP workers all-reduce (RankAccumulator sums) equals one worker's evaluation exactly."""
    from kgsearch.dans.recipe import DansRecipe
    from kgsearch.data import load
    from kgsearch.run.loop import seed_everything
    from kgsearch.run.metrics import evaluate_split

    spec = load_spec("dans_umls", smoke=True)
    config = config_from_dict(DansRecipe.Config, spec.fixed)
    dataset = load("umls")
    prepared = DansRecipe.prepare(config, dataset)
    seed_everything(0)
    single = DansRecipe(config, dataset, prepared)
    single.train_epoch(1)  # some trained weights, not just the initial ones
    shards = [DansRecipe(config, dataset, prepared, rank=r, world_size=2) for r in (0, 1)]
    for shard in shards:
        shard.load_state_dict(single.state_dict())
    other = shards[1].evaluate("valid")[""].to_tensor()
    reduced = evaluate_split(shards[0], "valid", reduce=lambda t: t + other.reshape(t.shape))
    alone = evaluate_split(single, "valid")
    assert reduced["val_count"] == alone["val_count"] == len(dataset.valid) * 2
    for key in ("val_mrr", "val_hits@1", "val_hits@10"):
        assert reduced[key] == pytest.approx(alone[key], abs=1e-12)


def test_a_trial_killed_for_memory_fails_alone():
    """Ray's OutOfMemoryError for a trial's pending task reaches Tune as an actor failure."""
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.exceptions import OutOfMemoryError, RayActorError

    from kgsearch.sweep.ray_env import survive_killed_trials

    survive_killed_trials()
    seen = []

    class Tracked:
        actor_id = "a1"
        _on_error = staticmethod(lambda actor, exc: seen.append(("actor", exc)))

    class Task:
        _tracked_actor = Tracked()
        _on_error = staticmethod(lambda actor, exc: seen.append(("task", exc)))

    class Manager:
        _failed_actor_ids: set = set()

        def _cleanup_actor(self, tracked_actor):
            pass

    RayActorManager._actor_task_failed(Manager(), Task(), OutOfMemoryError("node low on memory"))
    assert [kind for kind, _ in seen] == ["actor", "task"]
    assert all(isinstance(exc, RayActorError) and "OutOfMemoryError: node low on memory" in str(exc)
               for _, exc in seen)


METRIC_SWEEP = """\
model: dans
dataset: umls
metric: val_hits@1
num_samples: 1
scheduler: {type: fifo, max_t: 3}
retrain: {top_k: 1, seeds: [0]}  # t001 with its own seed: t001 is that run, so nothing is trained again
fixed: {seed: 0, eval_every: 1, dans: false, dim: 8, negatives: 4, batch_size: 256, lr: 0.05}
"""


def test_a_sweep_ranks_checkpoints_and_exports_by_its_own_metric(ray_session, tmp_path):
    """metric: val_hits@1 selects each trial's best checkpoint, ranks trials and names the exported test metric."""
    from kgsearch.run.checkpoint import load_checkpoint
    from kgsearch.sweep.run import run_sweep
    from kgsearch.sweep.validate import parse_spec

    spec = parse_spec(METRIC_SWEEP, source="metric.yaml", name="metric")
    outcome = run_sweep(spec, storage=str(tmp_path), say=lambda _: None)
    exp = outcome.experiment
    row = read_trials(exp)["t001"]
    (folder,) = exp.glob("t001_*")
    epochs = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
    hits = [e["val_hits@1"] for e in epochs]
    assert float(row["best_val_hits@1"]) == pytest.approx(max(hits), abs=1e-6)  # trials.csv rounds
    best = load_checkpoint(exp / "best" / "checkpoint.pt")
    assert best["state"]["fit"]["best_epoch"] == 1 + hits.index(max(hits))  # chosen by hits@1, not MRR
    metrics = json.loads((exp / "best" / "metrics.json").read_text())
    assert metrics["test_key"] == "test_hits@1" and metrics["val"]["val_hits@1"] == pytest.approx(max(hits))
    assert metrics["val_hits@1_mean"] == pytest.approx(max(hits)) and "test_hits@1_mean" in metrics
    assert "val_hits@1 (mean ± std)" in (exp / "summary.txt").read_text()
    assert yaml.safe_load((exp / "best" / "config.yaml").read_text())["metric"] == "val_hits@1"
    (reused,) = metrics["per_seed"]  # t001 ran its 3 epochs with seed 0: the re-training's only run, as it is
    assert (reused["run"], reused["source"], reused["trial_path"]) == ("t001", "search trial t001", str(folder))
    assert reused["val"] == metrics["val"] and not list((exp / "retrain").glob("t001-s0_*"))
    assert json.loads((exp / "retrain" / "candidates.json").read_text())["candidates"][0]["reused_seeds"] == [0]
    # Kept: the best checkpoint by the sweep metric and the newest (issue 16, item 9), each one copy of
    # the weights of its own epoch (no second, best-weights copy inside).
    kept = {json.loads((d / "meta.json").read_text())["epoch"]: d for d in folder.glob("checkpoint_*")}
    assert set(kept) == {1 + hits.index(max(hits)), len(hits)}
    for epoch, d in kept.items():
        blob = load_checkpoint(d / "checkpoint.pt")
        assert "best_state" not in blob["state"] and blob["state"]["fit"]["epoch"] == epoch


def test_progress_names_why_a_trial_stopped_early():
    """Under --no-asha --time-budget no line may say "by ASHA" (issue 16, item 16)."""
    import time
    from types import SimpleNamespace

    from kgsearch.sweep.progress import ProgressPrinter

    trial = SimpleNamespace(experiment_tag="3_lr=0.1", last_result={"epochs_done": 4, "best_val_mrr": 0.5})

    def line(printer) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            printer.on_trial_complete(0, [], trial)
        return out.getvalue()

    budget = ProgressPrinter("val_mrr", 10, (), asha=False, time_budget_s=60)
    budget.started = time.time() - 61
    assert "t003 stopped after 4 epochs by the time budget" in line(budget)
    assert "ASHA" not in line(ProgressPrinter("val_mrr", 10, (), asha=False))
    assert "stopped after 4 epochs by ASHA" in line(ProgressPrinter("val_mrr", 10, ()))


def test_the_best_checkpoint_is_never_one_whose_copy_was_cut_short(tmp_path):
    import pyarrow.fs

    from kgsearch.sweep.checkpoints import best_checkpoint, write_meta

    for name, epoch, score in (("checkpoint_000000", 1, 0.2), ("checkpoint_000001", 2, 0.4), ("checkpoint_000002", 3, 0.9)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "checkpoint.pt").write_bytes(b"x" * 100)
        write_meta(tmp_path / name, epoch, score)
    fs = pyarrow.fs.LocalFileSystem()
    assert best_checkpoint(fs, str(tmp_path)).endswith("checkpoint_000002")
    (tmp_path / "checkpoint_000002" / "checkpoint.pt").write_bytes(b"x" * 40)  # a kill mid-copy
    (tmp_path / "checkpoint_000003").mkdir()  # meta.json not copied yet
    (tmp_path / "checkpoint_000003" / "checkpoint.pt").write_bytes(b"x" * 100)
    assert best_checkpoint(fs, str(tmp_path)).endswith("checkpoint_000001")
    assert best_checkpoint(fs, str(tmp_path / "absent")) is None


def test_checkpoints_are_written_at_a_new_best_every_n_validations_and_at_the_end():
    from kgsearch.sweep.checkpoints import CheckpointPolicy

    policy = CheckpointPolicy(every=3, last_epoch=9)
    improved = {1: True, 2: False, 3: False, 4: False, 5: False, 6: True, 7: False, 8: False, 9: False}
    due = [e for e in range(1, 10) if policy.due({"epoch": e, "eval_time": 0.1}, improved[e])]
    assert due == [1, 4, 6, 9]
    assert not CheckpointPolicy(1, 9).due({"epoch": 2}, True)  # no validation this epoch: nothing to score


def test_epochs_before_the_first_validation_are_not_reported_later_ones_carry_the_last():
    """eval_every 3 (a re-training's `retrain.eval_every`): Tune refuses a result without the sweep metric, so
    epochs 1-2 are not reported; epoch 4 carries epoch 3's validation and says when it was taken."""
    from kgsearch.run.loop import FitState
    from kgsearch.sweep.checkpoints import CheckpointPolicy
    from kgsearch.sweep.trial import EpochReporter

    sent = []
    reporter = EpochReporter({}, None, lambda metrics, folder: sent.append((metrics, folder)), write_checkpoint=False,
                             policy=CheckpointPolicy(1, 5), metric="val_mrr")
    for epoch in range(1, 6):
        record = {"epoch": epoch, "loss": 1.0 / epoch, "epoch_time": 0.1}
        if epoch in (3, 5):
            record.update(val_mrr=0.1 * epoch, eval_time=0.01)
        reporter.after_epoch(record, FitState(epoch=epoch), improved=epoch in (3, 5))
    assert [m["epochs_done"] for m, _ in sent] == [3, 4, 5]
    assert [(m["val_mrr"], m["val_epoch"]) for m, _ in sent] == [(pytest.approx(0.3), 3.0), (pytest.approx(0.3), 3.0),
                                                                (pytest.approx(0.5), 5.0)]
    assert [m["loss"] for m, _ in sent] == [pytest.approx(1 / 3), 0.25, 0.2]


# ------------------------------------------------------------------------------------------------
# Experiments a kill left cut short (issue 16, item 3): on copies of the smoke sweep's folder


def cli(argv, capsys) -> tuple[int, str]:
    from kgsearch.sweep.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("victim", ["experiment_state-*.json", "tuner.pkl", "searcher-state-*.pkl",
                                    "search_gen_state-*.json", "sweep.yaml"])
def test_resuming_a_folder_a_kill_cut_short_says_what_is_broken_in_one_line(smoke, tmp_path, capsys, victim):
    import shutil

    shutil.copytree(smoke["exp"], tmp_path / "dans_umls")
    (target,) = (tmp_path / "dans_umls").glob(victim)
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])  # a copy cut short
    before = tree(tmp_path)
    code, err = cli(["dans_umls", "--smoke", "--resume", "--storage", str(tmp_path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "cannot be resumed" in err and ("sweep.yaml" if victim == "sweep.yaml" else target.name) in err
    assert "--name NEW" in err and "Traceback" not in err
    assert tree(tmp_path) == before


def test_a_sweep_killed_before_its_first_trial_starts_again(smoke, tmp_path, capsys):
    from kgsearch.sweep.restore import plan
    from kgsearch.sweep.storage import ExperimentStore

    (tmp_path / "dans_umls").mkdir()
    for name in ("sweep.yaml", "tuner.pkl"):  # written before Tune saved any state
        (tmp_path / "dans_umls" / name).write_bytes((smoke["exp"] / name).read_bytes())
    code, err = cli(["dans_umls", "--smoke", "--resume", "--storage", str(tmp_path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "never started a trial; run the same command without --resume (or with --resume auto)" in err
    store = ExperimentStore(str(tmp_path), "dans_umls")
    assert plan(store, False) == plan(store, "auto") == "start"  # nothing ran: start it (again)
    assert plan(ExperimentStore(str(smoke["exp"].parent), smoke["exp"].name), "auto") == "resume"
