"""`scheduler: {type: grash}`: the seeded k-core subgraph (kgsearch.data.subgraph), the rung plan
(kgsearch.sweep.rungs), the promotions and the re-training's candidates (kgsearch.sweep.grash), the sweep
file's checks, and (slow, ~40 s) one tiny end-to-end GraSH sweep on UMLS, resumed once it has finished."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from kgsearch.data import StaticDataset, load
from kgsearch.data.subgraph import core_numbers, kcore_subgraph, train_share
from kgsearch.errors import KGSearchError
from kgsearch.sweep.results import TrialRow
from kgsearch.sweep.rungs import plan_rungs, promoted, rung_count


def random_graph(seed: int = 0, entities: int = 300, relations: int = 6, triples: int = 2400) -> StaticDataset:
    """A sparse random KG: many entities share a core number, so the seeded tie order matters."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        return torch.stack([torch.randint(entities, (n,), generator=g), torch.randint(relations, (n,), generator=g),
                            torch.randint(entities, (n,), generator=g)], dim=1)

    return StaticDataset(name="random", entities=[f"e{i}" for i in range(entities)],
                         relations=[f"r{i}" for i in range(relations)], train=split(triples), valid=split(300),
                         test=split(300))


def named(ds: StaticDataset, split: str) -> list[tuple[str, str, str]]:
    return [(ds.entities[h], ds.relations[r], ds.entities[t]) for h, r, t in ds.split(split).tolist()]


@pytest.fixture(scope="module")
def umls():
    return load("umls")


# ------------------------------------------------------------------------------------------------
# The subgraph


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.35, 0.6, 0.9])
@pytest.mark.parametrize("which", ["umls", "random"])
def test_the_subgraph_holds_about_the_fraction_of_training_triples_with_both_ends_selected(umls, which, fraction):
    ds = umls if which == "umls" else random_graph()
    sub = kcore_subgraph(ds, fraction, seed=0)
    assert abs(train_share(sub, ds) - fraction) <= 0.02
    kept, original = named(sub, "train"), set(named(ds, "train"))
    assert set(kept) <= original and len(set(kept)) == len(set(kept) & original)
    # induced: every training triple whose two entities are in the subgraph is in it (relation included)
    entities, relations = set(sub.entities), set(sub.relations)
    induced = [t for t in named(ds, "train") if t[0] in entities and t[2] in entities]
    assert sorted(kept) == sorted(induced)
    assert relations == {r for _, r, _ in kept}


@pytest.mark.parametrize("which", ["umls", "random"])
def test_valid_and_test_keep_exactly_the_triples_inside_the_subgraph(umls, which):
    ds = umls if which == "umls" else random_graph()
    sub = kcore_subgraph(ds, 0.3, seed=1)
    entities, relations = set(sub.entities), set(sub.relations)
    for split in ("valid", "test"):
        inside = [t for t in named(ds, split) if t[0] in entities and t[2] in entities and t[1] in relations]
        assert sorted(named(sub, split)) == sorted(inside) and inside
        assert len(inside) < len(ds.split(split))


def test_entities_and_relations_are_reindexed_compactly_in_their_old_order(umls):
    sub = kcore_subgraph(umls, 0.25, seed=0)
    assert sub.num_entities < umls.num_entities and sub.num_relations <= umls.num_relations
    used = torch.cat([sub.train[:, 0], sub.train[:, 2]]).unique()
    assert used.tolist() == list(range(sub.num_entities))  # every id 0..n-1, each an entity of a training triple
    assert sub.train[:, 1].unique().tolist() == list(range(sub.num_relations))
    for split in ("train", "valid", "test"):
        t = sub.split(split)
        assert int(t[:, [0, 2]].max()) < sub.num_entities and int(t[:, 1].max()) < sub.num_relations
    old = {name: i for i, name in enumerate(umls.entities)}
    assert [old[n] for n in sub.entities] == sorted(old[n] for n in sub.entities)
    assert sub.train.dtype == umls.train.dtype and sub.unseen == {}


@pytest.mark.parametrize("which", ["umls", "random"])
def test_the_densest_cores_come_first_and_seeds_differ_only_in_ties(umls, which):
    ds = umls if which == "umls" else random_graph()
    core = core_numbers(ds.train, ds.num_entities)
    index = {n: i for i, n in enumerate(ds.entities)}
    picks = {}
    for seed in (0, 1, 2, 3):
        sub = kcore_subgraph(ds, 0.4, seed=seed)
        again = kcore_subgraph(ds, 0.4, seed=seed)
        assert torch.equal(sub.train, again.train) and sub.entities == again.entities  # same seed, same graph
        assert torch.equal(sub.valid, again.valid) and torch.equal(sub.test, again.test)
        picks[seed] = np.array(sorted(index[n] for n in sub.entities))
        inside = np.zeros(ds.num_entities, dtype=bool)
        inside[picks[seed]] = True
        assert core[inside].min() >= core[~inside].max()  # highest core numbers first
    boundary = min(core[p].min() for p in picks.values())
    above = set(np.flatnonzero(core > boundary))
    for p in picks.values():
        assert above <= set(p) and not set(p) - set(np.flatnonzero(core >= boundary))
    if which == "random":  # many ties at the boundary: the seed decides among them
        assert len({tuple(p) for p in picks.values()}) > 1


def test_fraction_one_is_the_dataset_itself_and_a_bad_fraction_is_refused(umls):
    assert kcore_subgraph(umls, 1.0, seed=3) is umls
    for bad in (0, -0.5, 1.5):
        with pytest.raises(KGSearchError, match="fraction"):
            kcore_subgraph(umls, bad)
    tiny = kcore_subgraph(umls, 1e-6)  # at least one triple
    assert len(tiny.train) >= 1 and tiny.num_entities <= 2 + len(tiny.train)


# ------------------------------------------------------------------------------------------------
# The rung plan


@pytest.mark.parametrize("n,eta,rungs", [(24, 4, 3), (16, 4, 2), (17, 4, 3), (64, 4, 3), (1, 4, 1), (2, 4, 1),
                                         (4, 2, 2), (27, 3, 3), (28, 3, 4)])
def test_there_are_ceil_log_eta_num_samples_rungs(n, eta, rungs):
    assert rung_count(n, eta) == rungs == len(plan_rungs(n, eta, 3.0, "combined", 60))


def test_24_samples_eta_4_budget_3_combined():
    plan = plan_rungs(24, 4, 3.0, "combined", 60)
    assert [r.configs for r in plan] == [24, 6, 2]  # the top ceil(n / 4) of each rung go on
    assert [r.fidelity for r in plan] == pytest.approx([1 / 24, 1 / 6, 1 / 2])
    assert [r.graph for r in plan] == pytest.approx([math.sqrt(1 / 24), math.sqrt(1 / 6), math.sqrt(1 / 2)])
    assert [r.epochs for r in plan] == [12, 24, 42]  # 60 x sqrt(f), rounded
    assert sum(r.configs * r.fidelity for r in plan) == pytest.approx(3.0)  # as planned: exactly the budget
    for r in plan:  # each rung about budget / R, with its epochs rounded
        assert r.cost(60) == pytest.approx(1.0, abs=0.03)
    assert sum(r.cost(60) for r in plan) == pytest.approx(3.0, abs=0.06)


def test_the_variants_spend_the_fidelity_on_the_graph_the_epochs_or_both():
    graph, epoch = plan_rungs(64, 4, 3.0, "graph", 40), plan_rungs(64, 4, 3.0, "epoch", 40)
    assert [r.configs for r in graph] == [64, 16, 4]
    assert [r.epochs for r in graph] == [40, 40, 40] and [r.graph for r in graph] == pytest.approx([1 / 64, 1 / 16, 1 / 4])
    assert [r.graph for r in epoch] == [1, 1, 1] and [r.epochs for r in epoch] == [1, 3, 10]  # 40/64 -> at least 1; 2.5 -> 3
    assert sum(r.cost(40) for r in graph) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="variant"):
        plan_rungs(8, 2, 1.0, "edges", 10)


def test_a_budget_above_what_the_rungs_can_use_caps_each_run_at_a_full_run():
    (only,) = plan_rungs(2, 4, 3.0, "combined", 10)  # one rung: 2 runs of 1.5 full runs each, capped at 1
    assert (only.configs, only.fidelity, only.graph, only.epochs, only.cost(10)) == (2, 1.0, 1.0, 10, 2.0)


def test_promotion_takes_the_top_one_over_eta_at_least_one():
    assert [promoted(n, 4) for n in (24, 6, 2, 1, 8, 9)] == [6, 2, 1, 1, 2, 3]


def row(trial: str, best: float, rung: int, status: str = "completed", lr: float | None = None) -> TrialRow:
    lr = float(trial[1:4]) if lr is None else lr
    return TrialRow(trial=trial, trial_id=trial, status=status, epochs=1, best=best, best_epoch=1,
                    params={"lr": lr}, config={"lr": lr}, path="", checkpoint=None, time_s=0.0,
                    fidelity={"rung": rung})


def test_candidates_are_the_last_rungs_winners_then_the_runners_up_below():
    from kgsearch.sweep.grash import ranked, rung_label

    rung0 = [row("t001", 0.5, 0), row("t002", 0.9, 0), row("t003", 0.7, 0), row("t004", 0.8, 0, "failed"),
             row("t005", 0.6, 0, lr=2.0)]  # t005: t002's values again
    rung1 = [row("t002-r1", 0.4, 1, lr=2.0), row("t003-r1", 0.6, 1)]
    order = [r.trial for r in ranked([rung0, rung1], "max")]
    assert order == ["t003-r1", "t002-r1", "t001"]  # by rung first; failed and repeated values left out
    assert [r.trial for r in ranked([rung0, rung1], "min")] == ["t002-r1", "t003-r1", "t001"]
    assert rung_label("t003", 1) == "t003-r1" and rung_label("t003-r1", 2) == "t003-r2"


def test_a_grash_sweep_cannot_grow_or_drop_its_retraining_on_resume():
    from kgsearch.sweep.grash import refuse_resume

    refuse_resume(8, 8, True)
    with pytest.raises(KGSearchError, match="cannot grow"):
        refuse_resume(8, 9, True)
    with pytest.raises(KGSearchError, match="--no-retrain"):
        refuse_resume(8, 8, False)


# ------------------------------------------------------------------------------------------------
# The sweep file


SWEEP = """\
model: dans
dataset: umls
num_samples: 4
max_concurrent_trials: 1
searcher: {type: random, seed: 0}
scheduler: {type: grash, eta: 2, budget: 1.0, variant: combined, max_t: 4}
start_from: null
retrain: {top_k: 1, seeds: [0]}
fixed: {seed: 0, eval_every: 1, dim: 16, negatives: 8, diffusion_steps: 20, pretrain_dim: 8, pretrain_epochs: 1,
        dam_epochs: 5}
space:
  lr: {type: loguniform, low: 1.0e-3, high: 3.0e-2}
smoke:
  num_samples: 2
  max_t: 2
"""


def test_the_grash_keys_are_read_and_defaulted():
    from kgsearch.sweep.validate import parse_spec

    s = parse_spec(SWEEP).scheduler
    assert (s.type, s.eta, s.budget, s.variant, s.max_t) == ("grash", 2, 1.0, "combined", 4)
    d = parse_spec(SWEEP.replace("eta: 2, budget: 1.0, variant: combined, ", "")).scheduler
    assert (d.eta, d.budget, d.variant) == (4, 3.0, "combined")
    smoke = parse_spec(SWEEP, smoke=True)
    assert smoke.scheduler.type == "grash" and smoke.scheduler.max_t == 2 and smoke.num_samples == 2


@pytest.mark.parametrize("old,new,path,reason", [
    ("eta: 2", "eta: 1", "scheduler.eta", "greater than or equal to 2"),
    ("budget: 1.0", "budget: 0", "scheduler.budget", "greater than 0"),
    ("budget: 1.0", "budget: .nan", "scheduler.budget", "finite number"),
    ("variant: combined", "variant: edges", "scheduler.variant", "'combined', 'graph' or 'epoch'"),
    ("type: grash", "type: hyperband", "scheduler.type", "'asha', 'fifo' or 'grash'"),
    ("top_k: 1", "top_k: 0", "retrain.top_k", "grash ends with the re-training"),
])
def test_a_bad_grash_key_is_named(tmp_path, old, new, path, reason):
    from kgsearch.sweep.validate import load_spec

    bad = tmp_path / "bad.yaml"
    bad.write_text(SWEEP.replace(old, new))
    with pytest.raises(KGSearchError) as info:
        load_spec(bad)
    assert f": {path}: " in str(info.value) and reason in str(info.value), str(info.value)


def test_a_temporal_sweep_with_grash_is_refused_with_exit_2(tmp_path, capsys):
    from kgsearch.sweep.cli import main

    with pytest.raises(SystemExit) as info:
        main(["dkgr_icews14", "--set", "scheduler.type=grash", "--dry-run", "--storage", str(tmp_path / "runs")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "scheduler.type: grash trains its low rungs on subgraphs of a static graph" in err
    assert not (tmp_path / "runs").exists()


def test_dry_run_prints_the_rung_table(tmp_path, capsys):
    from kgsearch.sweep.cli import main

    path = tmp_path / "g.yaml"
    path.write_text(SWEEP.replace("num_samples: 4", "num_samples: 24").replace("eta: 2, budget: 1.0", "eta: 4, budget: 3")
                    .replace("max_t: 4", "max_t: 60"))
    assert main([str(path), "--dry-run", "--storage", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "GraSH (combined, eta 4, budget 3): 3 rung(s)" in out
    assert "rung 0: 24 configuration(s) x 12/60 epochs on 20.4% of the training triples" in out
    assert "rung 2: 2 configuration(s) x 42/60 epochs" in out


# ------------------------------------------------------------------------------------------------
# End to end


def read_csv(path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {r["trial"]: r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_a_tiny_grash_sweep_trains_its_rungs_promotes_and_retrains_the_winner(ray_session, tmp_path, umls):
    from optuna.trial import TrialState

    from kgsearch.sweep.run import run_sweep
    from kgsearch.sweep.study import JOURNAL_FILE, load_study
    from kgsearch.sweep.validate import parse_spec

    spec = parse_spec(SWEEP, name="grash_tiny")
    # 4 trials at rung 0: 1 epoch on 35% of the triples; the best 2 at rung 1: 2 epochs on 50%; then the best
    # of those re-trained for 4 epochs on the whole graph.
    lines: list[str] = []
    outcome = run_sweep(spec, storage=str(tmp_path), say=lines.append)
    exp = outcome.experiment
    rows = read_csv(exp / "trials.csv")
    rung0 = {k: r for k, r in rows.items() if r["rung"] == "0"}
    rung1 = {k: r for k, r in rows.items() if r["rung"] == "1"}
    assert sorted(rung0) == ["t001", "t002", "t003", "t004"] and len(rung1) == 2 and len(rows) == 6
    sub0, sub1 = kcore_subgraph(umls, math.sqrt(1 / 8), 0), kcore_subgraph(umls, 0.5, 0)
    for r in rung0.values():
        assert (r["status"], r["epochs"], r["rung_epochs"]) == ("completed", "1", "1")
        assert float(r["graph_share"]) == pytest.approx(train_share(sub0, umls), abs=1e-4)
    for r in rung1.values():
        assert (r["status"], r["epochs"], r["rung_epochs"]) == ("completed", "2", "2")
        assert float(r["graph_share"]) == pytest.approx(train_share(sub1, umls), abs=1e-4) and r["promoted"] == ""
    best0 = sorted(rung0, key=lambda k: -float(rung0[k]["best_val_mrr"]))[:2]
    assert sorted(rung1) == sorted(f"{t}-r1" for t in best0)  # the top 1/eta went on
    assert sorted(k for k, r in rung0.items() if r["promoted"] == "yes") == sorted(best0)
    for t in best0:  # the same configuration, trained again from scratch
        assert rows[f"{t}-r1"]["lr"] == rows[t]["lr"]
        (folder,) = (exp / "rung1").glob(f"{t}-r1_*")
        assert [json.loads(x)["epochs_done"] for x in (folder / "result.json").read_text().splitlines()] == [1, 2]
    record = json.loads((exp / "rung1" / "rung.json").read_text())
    assert record["epochs"] == 2 and sorted(record["configs"]) == sorted(rung1)

    # The models on the subgraphs are smaller: their checkpoints have the subgraph's entities.
    (t0,) = exp.glob("t001_*")
    blob = torch.load(next(t0.glob("checkpoint_*/checkpoint.pt")), weights_only=True)
    sizes = {v.shape[0] for v in blob["state"]["recipe"]["model"].values() if v.dim() == 2}
    assert sub0.num_entities in sizes and umls.num_entities not in sizes

    # Optuna learned from rung 0 only: 4 trials, COMPLETE at rung 0's epochs.
    study = load_study(exp / JOURNAL_FILE)
    assert len(study.trials) == 4 and all(t.state == TrialState.COMPLETE for t in study.trials)

    # The last rung's winner is re-trained on the whole graph for max_t epochs.
    winner = max(rung1, key=lambda k: float(rung1[k]["best_val_mrr"]))
    candidates = json.loads((exp / "retrain" / "candidates.json").read_text())
    assert [c["trial"] for c in candidates["candidates"]] == [winner] and candidates["epochs"] == 4
    assert candidates["candidates"][0]["config"]["epochs"] == 4 and "reused_seeds" not in candidates["candidates"][0]
    metrics = json.loads((exp / "best" / "metrics.json").read_text())
    assert metrics["trial"] == winner and metrics["epochs"] == 4 and 0 < metrics["test"]["test_mrr"] <= 1
    summary = (exp / "summary.txt").read_text()
    assert "rung" in summary.splitlines()[1] and "6 trials" in summary
    page = (exp / "report.html").read_text()
    assert f"<td>{winner}</td><td>1</td>" in page and "<th>graph_share</th>" in page
    share = f"{100 * train_share(sub1, umls):.1f}% of the training triples"
    assert any(line.startswith("rung 1: ") and share in line for line in lines), lines

    # --resume of the finished sweep: every rung restored as it is, nothing trained again.
    before = {p: p.read_text() for p in exp.glob("**/result.json")}
    again: list[str] = []
    resumed = run_sweep(spec, storage=str(tmp_path), resume=True, say=again.append)
    assert sorted(r.trial for r in resumed.rows) == sorted(rows) and resumed.best["trial"] == winner
    assert any("rung1 (continuing: finished runs kept)" in line for line in again), again
    assert {p: p.read_text() for p in exp.glob("**/result.json")} == before
    assert not list(exp.glob("rung1_*"))


def test_no_asha_cannot_turn_a_grash_sweep_into_fifo(tmp_path, capsys):
    from kgsearch.sweep.cli import main

    with pytest.raises(SystemExit) as info:
        main(["dans_umls", "--set", "scheduler.type=grash", "--no-asha", "--dry-run", "--storage", str(tmp_path)])
    assert info.value.code == 2
    assert "--no-asha: this sweep uses grash" in capsys.readouterr().err


def test_the_report_reads_each_rungs_newest_folder_and_keeps_subgraph_values_apart(tmp_path):
    from kgsearch.sweep.report import subgraph_trials, trial_folders

    for folder in ("t001_a", "t002_b", "rung1/t001-r1_c", "rung1_2/t002-r1_d"):
        (tmp_path / folder).mkdir(parents=True)
    assert [p.relative_to(tmp_path).as_posix() for p in trial_folders(tmp_path)] == [
        "rung1_2/t002-r1_d", "t001_a", "t002_b"]  # rung1/ was left behind by a resume that changed promotions
    (tmp_path / "trials.csv").write_text("trial,graph_share\nt001,0.2100\nt002,0.2100\nt002-r1,1\n")
    assert subgraph_trials(tmp_path) == {"t001", "t002"}
