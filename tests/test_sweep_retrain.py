"""The sweep's last stage (kgsearch.sweep.retrain): its top-k configurations re-trained at full length with
several seeds, best/ the best mean. The `retrain:` block's validation, the choice of the distinct top-k, the
choice by mean, the candidates table and the metrics.json record, without Ray; and (slow) a sweep whose
re-training is stopped by SIGTERM and continued by --resume. The end-to-end smoke sweep with its
re-training, metrics.json and the exact replay of each seed's row: tests/test_sweep.py."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import threading
import time
from types import SimpleNamespace

import pytest
import torch
import yaml

from kgsearch.errors import KGSearchError
from kgsearch.sweep.cli import main
from kgsearch.sweep.results import TrialRow
from kgsearch.sweep.retrain import Candidate, Retrained, best_seed_row, rank, retrain_lines, select
from kgsearch.sweep.validate import load_spec, parse_spec

SWEEP = """\
model: dans
dataset: umls
num_samples: 3
max_concurrent_trials: 1
searcher: {type: random, seed: 0}
scheduler: {type: fifo, max_t: 4}
retrain:
  top_k: 2
  seeds: [0, 1, 2]
fixed: {seed: 0, eval_every: 1, dim: 16, negatives: 8, diffusion_steps: 20, pretrain_dim: 8, pretrain_epochs: 1,
        dam_epochs: 5}
space:
  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}
smoke:
  max_t: 1
"""


# ------------------------------------------------------------------------------------------------
# The sweep file's retrain: block


def test_the_block_defaults_to_three_by_three_and_smoke_and_no_retrain_make_it_small():
    default = parse_spec(SWEEP.replace("retrain:\n  top_k: 2\n  seeds: [0, 1, 2]\n", "")).retrain
    assert (default.top_k, default.seeds) == (3, [0, 1, 2])
    spec = parse_spec(SWEEP)
    assert (spec.retrain.top_k, spec.retrain.seeds) == (2, [0, 1, 2])
    smoke = parse_spec(SWEEP, smoke=True)  # a smoke block without retrain: one configuration, two seeds
    assert (smoke.retrain.top_k, smoke.retrain.seeds) == (1, [0, 1])
    assert parse_spec(SWEEP, retrain=False).retrain.top_k == 0  # --no-retrain
    assert parse_spec(SWEEP, sets=["retrain.top_k=0"]).retrain.top_k == 0
    stored = parse_spec(SWEEP).model_dump()  # sweep.yaml keeps it, for --resume
    assert stored["retrain"] == {"top_k": 2, "seeds": [0, 1, 2], "eval_every": None}  # None: the search's
    cadence = parse_spec(SWEEP.replace("  seeds: [0, 1, 2]\n", "  seeds: [0, 1, 2]\n  eval_every: 2\n"))
    assert cadence.retrain.eval_every == 2 and cadence.fixed["eval_every"] == 1  # the search still validates each epoch


@pytest.mark.parametrize("old,new,path,reason", [
    ("top_k: 2", "top_k: -1", "retrain.top_k", "greater than or equal to 0"),
    ("top_k: 2", "top_k: two", "retrain.top_k", "valid integer"),
    ("top_k: 2", "topk: 2", "retrain.topk", "unknown key 'topk' (did you mean 'top_k'?)"),
    ("seeds: [0, 1, 2]", "seeds: []", "retrain.seeds", "at least 1 item"),
    ("seeds: [0, 1, 2]", "seeds: [0, 1, 1]", "retrain.seeds", "seeds must be distinct; [1] repeated"),
    ("seeds: [0, 1, 2]", "seeds: [0, one]", "retrain.seeds.1", "valid integer"),
    ("seeds: [0, 1, 2]", "seeds: [0, -3]", "retrain.seeds.1", "greater than or equal to 0"),
    ("seeds: [0, 1, 2]", "seeds: [0, 1, 2]\n  eval_every: 0", "retrain.eval_every", "greater than or equal to 1"),
    ("seeds: [0, 1, 2]", "seeds: [0, 1, 2]\n  eval_every: often", "retrain.eval_every", "valid integer"),
    ("  lr: {type", "  seed: {type: int, low: 0, high: 9}\n  lr: {type", "space.seed", "sets each run's seed"),
])
def test_a_bad_retrain_block_is_one_line_naming_the_key(tmp_path, old, new, path, reason):
    text = SWEEP.replace("fixed: {seed: 0, ", "fixed: {") if path == "space.seed" else SWEEP
    text = text.replace(old, new)
    assert text != SWEEP
    with pytest.raises(KGSearchError) as info:
        parse_spec(text, source="s.yaml")
    (line,) = str(info.value).splitlines()
    m = re.match(r"s\.yaml:(\d+): (\S+): (.+)", line)
    assert m and m[2] == path and reason in m[3], line
    assert path.split(".")[-1 if not path[-1].isdigit() else -2] in text.splitlines()[int(m[1]) - 1]


def test_a_bad_smoke_retrain_is_named_there(tmp_path):
    text = SWEEP.replace("  max_t: 1\n", "  max_t: 1\n  retrain: {top_k: 1, seeds: [4, 4]}\n")
    with pytest.raises(KGSearchError, match=r"s\.yaml:\d+: smoke\.retrain\.seeds: seeds must be distinct"):
        parse_spec(text, source="s.yaml", smoke=True)
    assert parse_spec(text, source="s.yaml").retrain.seeds == [0, 1, 2]  # not read without --smoke


def test_the_cli_refuses_a_bad_block_with_exit_2_and_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SWEEP.replace("top_k: 2", "top_k: -1"))
    with pytest.raises(SystemExit) as info:
        main([str(bad), "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and not (tmp_path / "runs").exists()
    line = 1 + SWEEP.splitlines().index("  top_k: 2")
    assert err.strip() == (f"kgsearch: error: {bad}:{line}: retrain.top_k: input should be greater than or equal "
                           "to 0 (got -1)")


def test_dry_run_shows_the_retrain_and_counts_its_epochs(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(SWEEP)
    assert main([str(path), "--dry-run", "--storage", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out.split("\n\n")[0])["retrain"] == {"top_k": 2, "seeds": [0, 1, 2], "eval_every": None}
    assert "re-training: the top 2 configuration(s) x 3 seed(s) (0, 1, 2) x 4 epochs = 24 trial-epochs" in out
    assert "up to 2 x 4 = 8 of them not run: a top-2 trial that ran all 4 epochs (seed 0) is its own seed-0 run" in out
    assert "~36 CPU-epochs in all" in out  # 3 trials x 4 epochs (FIFO) + 24
    assert main([str(path), "--dry-run", "--no-retrain", "--storage", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "re-training: off" in out and "~12 CPU-epochs in all" in out
    path.write_text(SWEEP.replace("  seeds: [0, 1, 2]\n", "  seeds: [0, 1, 2]\n  eval_every: 2\n"))
    assert main([str(path), "--dry-run", "--storage", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out  # validated at another cadence, no search trial is a re-training run
    assert "x 4 epochs = 24 trial-epochs (full length, FIFO, validating every 2 epochs)" in out and "not run" not in out


def test_the_shipped_sweeps_retrain_small_graphs_3x3_large_ones_less_and_smoke_tiny():
    large = {"dans_wn18rr", "dans_fb15k237", "dans_nell995", "dkgr_icews18", "dkgr_icews0515"}
    # dans_umls (make sweep) and dans_family re-train their best only, with 3 seeds: time-budgeted laptop
    # sweeps (their files say why)
    budgeted = {"dans_umls": (1, 3), "dans_family": (1, 3)}
    for name in ("dans_umls", "dans_family", "dans_rotate_umls", "dans_rotate_family", "dans_umls_bases",
                 "dans_nbfnet_umls", "dans_nbfnet_family", "dkgr_icews14", *large):
        spec, smoke = load_spec(name), load_spec(name, smoke=True)
        runs = (spec.retrain.top_k, len(spec.retrain.seeds))
        assert runs == budgeted.get(name, (2, 2) if name in large else (3, 3)), name
        assert smoke.retrain.top_k == 1 and len(smoke.retrain.seeds) <= 2 and smoke.fixed["epochs"] <= 2, name


# ------------------------------------------------------------------------------------------------
# Choosing


def row(trial: str, best: float, status: str = "completed", **params) -> TrialRow:
    return TrialRow(trial=trial, trial_id=f"id{trial}", status=status, epochs=4 if status == "completed" else 1,
                    best=best, best_epoch=1, params=params, config={"seed": 0, "epochs": 4, **params}, path="",
                    checkpoint=None, time_s=1.0)


def test_select_takes_the_distinct_top_k_and_skips_failed_and_unfinished_trials():
    rows = [row("t001", 0.80, lr=0.1), row("t002", 0.95, "failed", lr=0.2), row("t003", 0.90, lr=0.3),
            row("t004", 0.90, "stopped_early", lr=0.3),  # the same values as t003 (a rerun): once, the earlier
            row("t005", 0.85, "stopped_early", lr=0.5), row("t006", math.nan, lr=0.6),
            row("t007", 0.99, "unfinished", lr=0.7), row("t008", 0.85, lr=0.8)]
    assert [r.trial for r in select(rows, 3)] == ["t003", "t005", "t008"]
    assert [r.trial for r in select(rows, 10)] == ["t003", "t005", "t008", "t001"]
    assert select(rows, 0) == [] and select([rows[1]], 3) == []
    assert [r.trial for r in select(rows, 2, mode="min")] == ["t001", "t005"]


def test_a_trial_the_time_budget_ended_before_its_first_result_does_not_block_the_retraining(tmp_path):
    """--time-budget: Tune ends (TERMINATED) a trial that had just started; it reported nothing. Counted as
    unfinished, it made the sweep skip its re-training and exit 130 (bench/sweep_compare.py's random search)."""
    import pyarrow.fs

    from kgsearch.sweep.results import collect_trials

    def result(name: str, epochs: int):
        metrics = {"trial_id": name, "epochs_done": epochs, "best_val_mrr": 0.5} if epochs else {}
        return SimpleNamespace(metrics=metrics, path=str(tmp_path / f"{name}_{name}"), error=None, config={"lr": 0.1},
                               filesystem=pyarrow.fs.LocalFileSystem())

    results = [result("t001", 4), result("t002", 2), result("t003", 0)]
    rows = collect_trials(results, "val_mrr", 4, ("lr",))
    assert [r.status for r in rows] == ["completed", "stopped_early", "unfinished"]  # no budget: a resume's
    rows = collect_trials(results, "val_mrr", 4, ("lr",), budget_ended=True)
    assert [r.status for r in rows] == ["completed", "stopped_early", "stopped_early"]
    assert not math.isfinite(rows[2].best) and [r.trial for r in select(rows, 3)] == ["t001"]
    # what Tune's saved state still lists as running is left to --resume even after the budget
    rows = collect_trials(results, "val_mrr", 4, ("lr",), unfinished={"t003"}, budget_ended=True)
    assert rows[2].status == "unfinished"


def test_the_runs_train_the_configs_epochs_not_the_epochs_an_early_stopped_trial_ran():
    from kgsearch.sweep.retrain import retrain_record

    spec = parse_spec(SWEEP)
    stopped = row("t002", 0.9, "stopped_early", lr=0.004)  # ASHA stopped it after 1 of 4 epochs
    record, configs = retrain_record(spec, [stopped], int(spec.fixed["epochs"]))
    assert configs == {"t002": {"epochs": 4, "lr": 0.004}}  # each run sets its own seed
    assert record["candidates"][0]["search_epochs"] == 1 and record["epochs"] == 4
    assert record["seeds"] == [0, 1, 2] and record["metric"] == "val_mrr"
    assert "reused_seeds" not in record["candidates"][0]  # as in a record written before reuse existed
    cadence = parse_spec(SWEEP.replace("  seeds: [0, 1, 2]\n", "  seeds: [0, 1, 2]\n  eval_every: 2\n"))
    assert retrain_record(cadence, [stopped], 4)[1] == {"t002": {"epochs": 4, "lr": 0.004, "eval_every": 2}}


def done(trial: str, best: float, seed: int = 0, **config) -> TrialRow:
    """A search trial that ran all 4 epochs with `seed` and kept a best checkpoint."""
    return dataclasses.replace(row(trial, best, **config), config={"seed": seed, "epochs": 4, **config},
                               checkpoint=f"{trial}/checkpoint_000003")


def test_a_search_trial_that_is_a_seeds_run_is_reused_and_only_the_other_runs_are_trained():
    """(t, s) is not trained when search trial t ran all max_t epochs, with seed s (one of the seeds), and the
    re-training's config of it, with seed s, is its config: anything else, and the run is trained."""
    from kgsearch.sweep.progress import retrain_run, trial_label
    from kgsearch.sweep.retrain_plan import plan_runs, retrain_record, retrain_space, run_configs
    from ray.tune.search.variant_generator import generate_variants

    spec = parse_spec(SWEEP)  # max_t 4, seeds 0, 1, 2; the search runs every trial with seed 0
    full = done("t001", 0.90, lr=0.001)
    stopped = dataclasses.replace(done("t002", 0.95, lr=0.002), status="stopped_early", epochs=1)  # by ASHA
    other_seed = done("t003", 0.85, seed=7, lr=0.003)  # a seed the re-training does not use
    no_checkpoint = dataclasses.replace(done("t004", 0.84, lr=0.004), checkpoint=None)
    failed = dataclasses.replace(done("t005", 0.83, lr=0.005), status="failed")
    picked = [stopped, full, other_seed, no_checkpoint, failed]
    plan = plan_runs(picked, run_configs(spec, picked, 4), [0, 1, 2], 4)
    assert plan.reused == {("t001", 0): full}
    assert plan.train == [(t, s) for s in (0, 1, 2) for t in ("t002", "t001", "t003", "t004", "t005")
                          if (t, s) != ("t001", 0)]  # seed-major, as the full grid was
    record, _ = retrain_record(spec, picked, 4, plan)
    assert [c.get("reused_seeds") for c in record["candidates"]] == [None, [0], None, None, None]
    assert plan.continued == {("t002", 0): stopped}  # the same run, stopped by ASHA: continued, not restarted
    assert plan.starts() == {"t002-s0": stopped.checkpoint}
    assert [c.get("continued_seeds") for c in record["candidates"]] == [[0], None, None, None, None]
    # The Tuner's grid is exactly the runs to train: a restored Tuner cannot train t001-s0 either.
    configs = [config for _, config in generate_variants(retrain_space(plan))]
    assert [retrain_run(c) for c in configs] == plan.train  # what the trainable trains (kgsearch.sweep.tuner)
    assert [trial_label(SimpleNamespace(config=c)) for c in configs] == [f"{t}-s{s}" for t, s in plan.train]
    assert retrain_run({"retrain_of": "t002", "seed": 1, "lr": 0.1}) == ("t002", 1)  # a Tuner stored before

    def reused(sweep_text: str, trial: TrialRow, seeds=(0, 1, 2), same=None) -> bool:
        s = parse_spec(sweep_text)
        return bool(plan_runs([trial], run_configs(s, [trial], 4), list(seeds), 4, same).reused)

    assert not reused(SWEEP, full, seeds=(1, 2))  # its seed is not re-trained
    assert not reused(SWEEP, dataclasses.replace(full, epochs=3))  # not the full length
    assert not reused(SWEEP, dataclasses.replace(full, config={**full.config, "epochs": 3}))  # another length
    cadence = SWEEP.replace("  seeds: [0, 1, 2]\n", "  seeds: [0, 1, 2]\n  eval_every: 2\n")
    assert not reused(cadence, dataclasses.replace(full, config={**full.config, "eval_every": 1}))  # validated apart
    assert reused(cadence, dataclasses.replace(full, config={**full.config, "eval_every": 2}))  # the same cadence
    # `same` decides field by field (run_retrain: every config field, defaults included)
    assert not reused(SWEEP, full, same=lambda a, b: False) and reused(SWEEP, full, same=lambda a, b: True)


def test_a_stopped_search_trial_is_continued_only_when_it_is_the_same_run_on_the_whole_graph():
    from kgsearch.sweep.retrain_plan import plan_runs, run_configs

    stopped = dataclasses.replace(done("t002", 0.95, lr=0.002), status="stopped_early", epochs=2)

    def continued(trial: TrialRow, seeds=(0, 1, 2), sweep: str = SWEEP) -> dict:
        s = parse_spec(sweep)
        return plan_runs([trial], run_configs(s, [trial], 4), list(seeds), 4).continued

    assert continued(stopped) == {("t002", 0): stopped}
    assert continued(stopped, seeds=(1, 2)) == {}  # its seed is not re-trained
    assert continued(dataclasses.replace(stopped, config={**stopped.config, "seed": 7})) == {}
    cadence = SWEEP.replace("  seeds: [0, 1, 2]\n", "  seeds: [0, 1, 2]\n  eval_every: 2\n")
    assert continued(dataclasses.replace(stopped, config={**stopped.config, "eval_every": 1}), sweep=cadence) == {}
    assert continued(dataclasses.replace(stopped, checkpoint=None)) == {}  # nothing to continue from
    assert continued(dataclasses.replace(stopped, status="failed")) == {}
    assert continued(dataclasses.replace(stopped, fidelity={"rung": 0, "graph_share": 0.25})) == {}  # a subgraph's


@pytest.mark.slow
def test_a_run_that_continues_its_asha_stopped_search_trial_equals_the_run_from_scratch(ray_session, tmp_path):
    """ASHA stops t002 at the first rung (its values are below t001's there); the re-training's t002-s0 run
    continues it from its best checkpoint (epoch 1) to max_t instead of starting over, and its row is what
    `python -m kgsearch.train` trains from scratch with that config, to the last digit."""
    from kgsearch.sweep.run import run_sweep
    from kgsearch.train import main as train

    text = (SWEEP.replace("num_samples: 3", "num_samples: 2")
            .replace("seed: 0}", "seed: 4}")  # the searcher's: lr 0.0093, then 0.0035
            .replace("scheduler: {type: fifo, max_t: 4}",
                     "scheduler: {type: asha, max_t: 4, grace_period: 1, reduction_factor: 2}")
            .replace("seeds: [0, 1, 2]", "seeds: [0]"))
    spec = parse_spec(text, source="asha.yaml", name="asha")
    lines: list[str] = []
    outcome = run_sweep(spec, storage=str(tmp_path), say=lines.append)
    exp = outcome.experiment
    rows = {r.trial: r for r in outcome.rows}
    assert (rows["t001"].status, rows["t002"].status, rows["t002"].epochs) == ("completed", "stopped_early", 1)
    assert any("t002-s0 continues search trial t002" in line for line in lines), lines
    assert not list((exp / "retrain").glob("t001-s0_*"))  # t001 is its own seed-0 run
    (run,) = (exp / "retrain").glob("t002-s0_*")
    reported = [json.loads(line)["epochs_done"] for line in (run / "result.json").read_text().splitlines()]
    assert reported == [2, 3, 4]  # from the epoch-1 checkpoint on
    (record,) = [c for c in json.loads((exp / "retrain" / "candidates.json").read_text())["candidates"]
                 if c["trial"] == "t002"]
    assert record["continued_seeds"] == [0]
    metrics = json.loads((exp / "best" / "metrics.json").read_text())
    (row,) = [w for w in metrics["winners"] if w["trial"] == "t002"][0]["per_seed"]
    assert row["continued_from"] == {"trial": "t002", "epoch": 1} and row["source"] == "re-trained"
    run_file = tmp_path / "t002.yaml"
    run_file.write_text(yaml.safe_dump({"model": "dans", "dataset": "umls", "metric": "val_mrr",
                                        "params": {**record["config"], "seed": 0}}))
    threads = torch.get_num_threads()
    try:
        assert train([str(run_file), "--threads", "1", "--out", str(tmp_path / "scratch")]) == 0
    finally:
        torch.set_num_threads(threads)
    scratch = json.loads((tmp_path / "scratch" / "metrics.json").read_text())
    assert scratch["best_epoch"] == row["best_epoch"]
    for split in ("val", "test"):
        for key, value in row[split].items():
            assert scratch[split][key] == pytest.approx(value, abs=1e-9), (split, key)


def cand(trial: str, search_best: float, vals: list, tests: list | None = None) -> Candidate:
    c = Candidate(trial=trial, trial_id=f"id{trial}", params={"lr": search_best}, search_best=search_best,
                  search_epochs=4)
    for seed, v in enumerate(vals):
        if v is None:
            c.rows.append({"seed": seed, "run": f"{trial}-s{seed}", "status": "failed", "error": "TrainingDiverged"})
        else:
            t = (tests or vals)[seed]
            c.rows.append({"seed": seed, "run": f"{trial}-s{seed}", "status": "completed", "best_epoch": 4,
                           "val": {"val_count": 9, "val_tf_mrr": v, "val_mrr": v / 2},
                           "test": {"test_count": 9, "test_tf_mrr": t, "test_tf_hits@1": t / 3}})
    return c


def test_the_choice_is_the_best_mean_not_the_best_single_trial():
    lucky = cand("t001", 0.95, [0.95, 0.80, 0.82])  # the search's best trial was one lucky seed
    steady = cand("t002", 0.90, [0.88, 0.87, 0.89])
    third = cand("t003", 0.89, [0.87, 0.86, 0.85])  # mean 0.86 > lucky 0.857
    ranked = rank([lucky, steady, third], "val_tf_mrr")
    assert [c.trial for c in ranked] == ["t002", "t003", "t001"]
    assert steady.mean("val_tf_mrr") == pytest.approx(0.88) and steady.std("val_tf_mrr") == pytest.approx(0.01)
    assert best_seed_row(steady, "val_tf_mrr")["seed"] == 2  # best/ holds the chosen one's best seed
    assert [c.trial for c in rank([lucky, steady], "val_tf_mrr", mode="min")] == ["t001", "t002"]


def test_a_candidate_with_a_failed_seed_ranks_after_the_complete_ones():
    diverged = cand("t001", 0.95, [0.99, None, 0.98])
    steady = cand("t002", 0.90, [0.88, 0.87, 0.89])
    dead = cand("t003", 0.99, [None, None, None])
    assert [c.trial for c in rank([dead, diverged, steady], "val_tf_mrr")] == ["t002", "t001", "t003"]
    assert diverged.failed == 1 and diverged.values("val_tf_mrr") == [0.99, 0.98]


def test_the_record_names_every_metric_mean_and_std_generically():
    c = cand("t002", 0.9, [0.88, 0.87, 0.89], tests=[0.5, 0.6, 0.7])
    record = c.summary()
    assert record["seeds"] == [0, 1, 2] and record["failed_seeds"] == []
    assert record["test_tf_mrr_mean"] == pytest.approx(0.6) and record["test_tf_mrr_std"] == pytest.approx(0.1)
    assert record["test_tf_hits@1_mean"] == pytest.approx(0.2) and record["val_mrr_mean"] == pytest.approx(0.44)
    assert not any(k.startswith(("val_count", "test_count")) for k in record)
    assert [r["seed"] for r in record["per_seed"]] == [0, 1, 2]
    from kgsearch.sweep.report import winners

    (name, rows), = winners({"winners": [record]})  # what the report's seed figure reads
    assert name == "t002" and [r["test_tf_mrr"] for r in rows] == [0.5, 0.6, 0.7]


def test_the_summary_table_marks_the_chosen_one_and_shows_mean_and_std():
    reusing = cand("t002", 0.90, [0.88, 0.87, 0.89])
    reusing.rows[0].update(run="t002", source="search trial t002")  # seed 0's row is the search trial itself
    out = Retrained(folder="retrain", epochs=4, seeds=[0, 1, 2], candidates=rank(
        [cand("t001", 0.95, [0.95, 0.80, None]), reusing], "val_tf_mrr"))
    lines = retrain_lines(out, "val_tf_mrr", "test_tf_mrr")
    assert lines[0].startswith("re-trained at full length (4 epochs) with seeds 0, 1, 2")
    assert re.match(r"\*\s+t002\s+0\.9\s+0\.8800 ± 0\.0100\s+0\.8800 ± 0\.0100\s+3/3; seed 0 = search trial t002$",
                    lines[3]), lines[3]
    assert re.match(r"\s+t001\s+0\.95\s+0\.8750 ± 0\.1061\s+.*2/3 \(failed: 2\)$", lines[4]), lines[4]
    assert reusing.summary()["reused_seeds"] == [0] and out.candidates[1].summary()["reused_seeds"] == []
    from kgsearch.sweep.report import _candidate_line  # report.html's line for it

    assert _candidate_line(reusing.summary(), "val_tf_mrr").endswith("over 3 seed(s); in the search 0.9; "
                                                                      "seed 0 = the search trial itself")
    stopped = Retrained(folder="retrain", epochs=4, seeds=[0], candidates=[], interrupted=True)
    assert "continue with --resume" in retrain_lines(stopped, "val_tf_mrr", "test_tf_mrr")[0]


# ------------------------------------------------------------------------------------------------
# --resume of a sweep stopped during its re-training


@pytest.mark.slow
def test_a_sweep_stopped_while_it_retrains_continues_the_retraining_on_resume(ray_session, tmp_path):
    """The top trial ran all 4 epochs with seed 0 (FIFO, `fixed.seed` 0), so seed 0's row is that search trial
    and only seeds 1 and 2 are trained. SIGTERM once seed 1 is done: the re-training stops (exit 143 from the
    CLI), best/ holds the best search trial; --resume goes straight to the re-training, keeps the finished run,
    trains seed 2 and never seed 0, and best/ is then the best mean, seed 0's row the search trial's best
    checkpoint tested."""
    from kgsearch.sweep.checkpoints import CHECKPOINT_FILE
    from kgsearch.sweep.run import run_sweep
    from kgsearch.train import evaluate_checkpoint

    spec = parse_spec(SWEEP.replace("top_k: 2", "top_k: 1"), source="retrain_me.yaml", name="retrain_me")
    exp = tmp_path / "retrain_me"
    fired = threading.Event()

    def stop_after_the_first_run():
        deadline = time.time() + 300
        while time.time() < deadline and not fired.is_set():
            started = list((exp / "retrain").glob("t00*-s2_*"))  # s1 done, s2 begun: inside the retrain's fit
            if started:
                fired.set()
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)

    watcher = threading.Thread(target=stop_after_the_first_run, daemon=True)
    watcher.start()
    first = run_sweep(spec, storage=str(tmp_path), say=lambda _: None)
    watcher.join(timeout=5)
    assert fired.is_set() and first.terminated and first.interrupted
    assert first.retrained is not None and first.retrained.interrupted
    assert "re-training interrupted" in (exp / "summary.txt").read_text()
    assert "trial" in json.loads((exp / "best" / "metrics.json").read_text())  # the best search trial, meanwhile
    (s1,) = (exp / "retrain").glob("t00*-s1_*")
    s1_before = (s1 / "result.json").read_text()
    assert len(s1_before.splitlines()) == 4
    assert not list((exp / "retrain").glob("t00*-s0_*"))  # the search trial is seed 0's run
    searched = {p.name: (p / "result.json").read_text() for p in exp.glob("t00*_*")}

    lines: list[str] = []
    done = run_sweep(spec, storage=str(tmp_path), resume=True, say=lines.append)
    assert not done.interrupted and not done.terminated
    assert any("(continuing: finished runs kept)" in line for line in lines), lines
    assert (s1 / "result.json").read_text() == s1_before  # the finished seed run is not trained again
    assert {p.name: (p / "result.json").read_text() for p in exp.glob("t00*_*")} == searched  # nor the search
    runs = sorted(p.name.split("_")[0] for p in (exp / "retrain").glob("t00*-s*_*"))
    assert [r[-2:] for r in runs] == ["s1", "s2"] and not list(exp.glob("retrain_2"))  # seed 0 never trained
    metrics = json.loads((exp / "best" / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1, 2] and len(metrics["per_seed"]) == 3 and metrics["reused_seeds"] == [0]
    reused, *trained = metrics["per_seed"]
    trial = metrics["trial"]
    assert (reused["seed"], reused["run"], reused["source"]) == (0, trial, f"search trial {trial}")
    assert [(r["run"], r["source"]) for r in trained] == [(f"{trial}-s1", "re-trained"), (f"{trial}-s2", "re-trained")]
    assert all(len((exp / "retrain").glob(f"{r['run']}_*").__next__().joinpath("result.json").read_text()
                   .splitlines()) == 4 for r in trained)  # each ran its 4 epochs, once
    # Seed 0's row is the search trial's best checkpoint: its best validation and that checkpoint's test metrics.
    (folder,) = exp.glob(f"{trial}_*")
    assert reused["trial_path"] == str(folder)
    epochs = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
    vals = [e["val_mrr"] for e in epochs]
    assert len(epochs) == 4 and reused["best_epoch"] == 1 + vals.index(max(vals))
    assert reused["val"]["val_mrr"] == pytest.approx(max(vals), abs=1e-9)
    (best,) = [d for d in folder.glob("checkpoint_*")
               if json.loads((d / "meta.json").read_text())["epoch"] == reused["best_epoch"]]
    tested = evaluate_checkpoint(str(best / CHECKPOINT_FILE))  # the CLI's --eval, not the sweep's code path
    assert tested.keys() == reused["test"].keys()
    assert all(reused["test"][k] == pytest.approx(v, abs=1e-9) for k, v in tested.items())
    summary = (exp / "summary.txt").read_text()
    assert f"3/3; seed 0 = search trial {trial}" in summary


@pytest.mark.slow
def test_retrain_eval_every_sets_the_retrainings_cadence_only(ray_session, tmp_path):
    """retrain.eval_every 3 with max_t 4: the search trial validates every epoch (fixed.eval_every 1), its
    re-training at epochs 3 and 4 (the last), and the row's checkpoint is the better of those two. Validated
    at another cadence, the search trial is not seed 0's run, so seed 0 is trained."""
    from kgsearch.sweep.run import run_sweep

    text = (SWEEP.replace("num_samples: 3", "num_samples: 1").replace("top_k: 2", "top_k: 1")
            .replace("seeds: [0, 1, 2]", "seeds: [0]\n  eval_every: 3"))
    spec = parse_spec(text, source="cadence.yaml", name="cadence")
    outcome = run_sweep(spec, storage=str(tmp_path), say=lambda _: None)
    exp = outcome.experiment
    assert not outcome.interrupted and outcome.rows[0].status == "completed"
    (search,) = exp.glob("t001_*")
    assert [json.loads(line)["epochs_done"] for line in (search / "result.json").read_text().splitlines()] == [1, 2, 3, 4]
    (run,) = (exp / "retrain").glob("t001-s0_*")
    reports = [json.loads(line) for line in (run / "result.json").read_text().splitlines()]
    assert [(r["epochs_done"], r["val_epoch"]) for r in reports] == [(3, 3.0), (4, 4.0)]
    metrics = json.loads((exp / "best" / "metrics.json").read_text())
    (row,) = metrics["per_seed"]
    assert (row["run"], row["source"]) == ("t001-s0", "re-trained") and metrics["reused_seeds"] == []
    vals = [r["val_mrr"] for r in reports]
    assert row["best_epoch"] == 3 + vals.index(max(vals)) and row["val"]["val_mrr"] == pytest.approx(max(vals), abs=1e-9)
    assert yaml.safe_load((exp / "best" / "config.yaml").read_text())["params"]["eval_every"] == 3  # replays the row
    assert json.loads((exp / "retrain" / "candidates.json").read_text())["candidates"][0]["config"]["eval_every"] == 3
