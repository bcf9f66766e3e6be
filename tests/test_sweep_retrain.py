"""The sweep's last stage (kgsearch.sweep.retrain): its top-k configurations re-trained at full length with
several seeds, best/ the best mean. The `retrain:` block's validation, the choice of the distinct top-k, the
choice by mean, the candidates table and the metrics.json record, without Ray; and (slow) a sweep whose
re-training is stopped by SIGTERM and continued by --resume. The end-to-end smoke sweep with its
re-training, metrics.json and the exact replay of each seed's row: tests/test_sweep.py."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import threading
import time

import pytest
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
    assert stored["retrain"] == {"top_k": 2, "seeds": [0, 1, 2]}


@pytest.mark.parametrize("old,new,path,reason", [
    ("top_k: 2", "top_k: -1", "retrain.top_k", "greater than or equal to 0"),
    ("top_k: 2", "top_k: two", "retrain.top_k", "valid integer"),
    ("top_k: 2", "topk: 2", "retrain.topk", "unknown key 'topk' (did you mean 'top_k'?)"),
    ("seeds: [0, 1, 2]", "seeds: []", "retrain.seeds", "at least 1 item"),
    ("seeds: [0, 1, 2]", "seeds: [0, 1, 1]", "retrain.seeds", "seeds must be distinct; [1] repeated"),
    ("seeds: [0, 1, 2]", "seeds: [0, one]", "retrain.seeds.1", "valid integer"),
    ("seeds: [0, 1, 2]", "seeds: [0, -3]", "retrain.seeds.1", "greater than or equal to 0"),
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
    assert yaml.safe_load(out.split("\n\n")[0])["retrain"] == {"top_k": 2, "seeds": [0, 1, 2]}
    assert "re-training: the top 2 configuration(s) x 3 seed(s) (0, 1, 2) x 4 epochs = 24 trial-epochs" in out
    assert "~36 CPU-epochs in all" in out  # 3 trials x 4 epochs (FIFO) + 24
    assert main([str(path), "--dry-run", "--no-retrain", "--storage", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "re-training: off" in out and "~12 CPU-epochs in all" in out


def test_the_shipped_sweeps_retrain_small_graphs_3x3_large_ones_less_and_smoke_tiny():
    large = {"dans_wn18rr", "dans_fb15k237", "dans_nell995", "dkgr_icews18", "dkgr_icews0515"}
    for name in ("dans_umls", "dans_family", "dans_nbfnet_umls", "dans_nbfnet_family", "dkgr_icews14", *large):
        spec, smoke = load_spec(name), load_spec(name, smoke=True)
        runs = (spec.retrain.top_k, len(spec.retrain.seeds))
        assert runs == ((2, 2) if name in large else (3, 3)), name
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


def test_the_runs_train_the_configs_epochs_not_the_epochs_an_early_stopped_trial_ran():
    from kgsearch.sweep.retrain import retrain_record

    spec = parse_spec(SWEEP)
    stopped = row("t002", 0.9, "stopped_early", lr=0.004)  # ASHA stopped it after 1 of 4 epochs
    record, configs = retrain_record(spec, [stopped], int(spec.fixed["epochs"]))
    assert configs == {"t002": {"epochs": 4, "lr": 0.004}}  # each run sets its own seed
    assert record["candidates"][0]["search_epochs"] == 1 and record["epochs"] == 4
    assert record["seeds"] == [0, 1, 2] and record["metric"] == "val_mrr"


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
    out = Retrained(folder="retrain", epochs=4, seeds=[0, 1, 2], candidates=rank(
        [cand("t001", 0.95, [0.95, 0.80, None]), cand("t002", 0.90, [0.88, 0.87, 0.89])], "val_tf_mrr"))
    lines = retrain_lines(out, "val_tf_mrr", "test_tf_mrr")
    assert lines[0].startswith("re-trained at full length (4 epochs) with seeds 0, 1, 2")
    assert re.match(r"\*\s+t002\s+0\.9\s+0\.8800 ± 0\.0100\s+0\.8800 ± 0\.0100\s+3/3$", lines[3]), lines[3]
    assert re.match(r"\s+t001\s+0\.95\s+0\.8750 ± 0\.1061\s+.*2/3 \(failed: 2\)$", lines[4]), lines[4]
    stopped = Retrained(folder="retrain", epochs=4, seeds=[0], candidates=[], interrupted=True)
    assert "continue with --resume" in retrain_lines(stopped, "val_tf_mrr", "test_tf_mrr")[0]


# ------------------------------------------------------------------------------------------------
# --resume of a sweep stopped during its re-training


@pytest.mark.slow
def test_a_sweep_stopped_while_it_retrains_continues_the_retraining_on_resume(ray_session, tmp_path):
    """SIGTERM once seed 0 of the first candidate is done: the re-training stops (exit 143 from the CLI),
    best/ holds the best search trial; --resume goes straight to the re-training, keeps the finished runs and
    trains the rest, and best/ is then the best mean."""
    from kgsearch.sweep.run import run_sweep

    spec = parse_spec(SWEEP.replace("top_k: 2", "top_k: 1"), source="retrain_me.yaml", name="retrain_me")
    exp = tmp_path / "retrain_me"
    fired = threading.Event()

    def stop_after_the_first_run():
        deadline = time.time() + 300
        while time.time() < deadline and not fired.is_set():
            started = list((exp / "retrain").glob("t00*-s1_*"))  # s0 done, s1 begun: inside the retrain's fit
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
    (s0,) = (exp / "retrain").glob("t00*-s0_*")
    s0_before = (s0 / "result.json").read_text()
    assert len(s0_before.splitlines()) == 4
    searched = {p.name: (p / "result.json").read_text() for p in exp.glob("t00*_*")}

    lines: list[str] = []
    done = run_sweep(spec, storage=str(tmp_path), resume=True, say=lines.append)
    assert not done.interrupted and not done.terminated
    assert any("(continuing: finished runs kept)" in line for line in lines), lines
    assert (s0 / "result.json").read_text() == s0_before  # the finished seed run is not trained again
    assert {p.name: (p / "result.json").read_text() for p in exp.glob("t00*_*")} == searched  # nor the search
    runs = sorted(p.name.split("_")[0] for p in (exp / "retrain").glob("t00*-s*_*"))
    assert [r[-2:] for r in runs] == ["s0", "s1", "s2"] and not list(exp.glob("retrain_2"))
    metrics = json.loads((exp / "best" / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1, 2] and len(metrics["per_seed"]) == 3
    assert all(len((exp / "retrain").glob(f"{r['run']}_*").__next__().joinpath("result.json").read_text()
                   .splitlines()) == 4 for r in metrics["per_seed"])  # each ran its 4 epochs, once
