"""bench/sweep_compare.py without Ray: the commands of each method (and that the sweep CLI accepts them), the
table from fake rows, and a run whose sweeps are faked on disk (rows appended, skipped on a rerun)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "sweep_compare.py"


@pytest.fixture(scope="module")
def sc():
    spec = importlib.util.spec_from_file_location("sweep_compare", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(method: str, seed: int, first: float | None, test: float, best_val: float = 0.93, trials: int = 30) -> dict:
    return {"sweep": "dans_rotate_umls", "method": method, "seed": seed, "command": [method, str(seed)],
            "metric": "val_mrr", "target": 0.933, "first_target_s": first, "best_val": best_val, "test_key": "test_mrr", "test_mean": test,
            "test_std": 0.005, "trials": trials, "search_s": 600.0, "wall_s": 900.0}


def test_the_table_aggregates_the_repeats_of_each_method(sc):
    rows = [row("default", 0, 100.0, 0.935), row("default", 1, 300.0, 0.931), row("default", 2, None, 0.933),
            row("random", 0, None, 0.930, trials=12), row("random", 1, None, 0.926, trials=10)]
    a = sc.aggregate(rows, "default")
    assert a["repeats"] == 3 and a["reached"] == 2 and a["time_to_target_s"] == [100.0, 300.0]
    assert a["spread"] == pytest.approx(0.004)
    lines = sc.table(rows, ["default", "legacy", "random"]).splitlines()
    assert lines[0].startswith("| method | repeats | first val_mrr ≥ 0.9330 (s) | reached |")
    assert len(lines) == 4  # header, rule, default, random (legacy has no rows)
    assert lines[2] == ("| default | 3 | 200 ± 141 | 2/3 | 0.9300 ± 0.0000 | 0.9330 ± 0.0020 | 0.0040 | 30 ± 0 | "
                        "10.0 ± 0.0 |")
    assert lines[3].startswith("| random | 2 | - | 0/2 |") and "| 0.9280 ± 0.0028 | 0.0040 | 11 ± 1 |" in lines[3]


def test_dry_run_prints_one_command_per_method_and_seed(sc, capsys, tmp_path):
    out = tmp_path / "r.json"
    argv = ["dans_rotate_umls", "--seeds", "0", "1", "--dry-run", "--time-budget", "12", "--out", str(out)]
    assert sc.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and not out.exists()
    common = "--time-budget 12 --num-samples 200"
    sweep = "python -m kgsearch.sweep dans_rotate_umls --name dans_rotate_umls"
    assert lines[0] == f"{sweep}-default-s0 --set searcher.seed=0 {common}"
    assert lines[3] == f"{sweep}-legacy-s1 --set searcher.feedback=last --set start_from=null --set searcher.seed=1 {common}"
    assert lines[4] == f"{sweep}-random-s0 --searcher random --no-asha --set searcher.seed=0 {common}"


def test_each_methods_flags_give_the_sweep_it_stands_for(sc):
    args = sc.parse_args(["dans_rotate_umls", "--reference", "0.928"])
    specs = {m: sc.check_command(sc.sweep_command(args, m, 1)) for m in sc.METHODS}
    d, legacy, rand = specs["default"], specs["legacy"], specs["random"]
    assert (d.searcher.type, d.searcher.feedback, d.scheduler.type, d.searcher.seed) == ("tpe", "best", "asha", 1)
    assert d.start_from is not None and d.start_values and d.num_samples == 200
    assert (legacy.searcher.type, legacy.searcher.feedback, legacy.scheduler.type) == ("tpe", "last", "asha")
    assert legacy.start_from is None and legacy.start_values == {}
    assert (rand.searcher.type, rand.scheduler.type, rand.searcher.feedback) == ("random", "fifo", "best")
    assert rand.start_values == d.start_values  # the same warm-start trial


def fake_sweep(exp: Path, first_reach_at: float) -> None:
    """What a finished sweep leaves that the bench reads: timing.json, sweep.yaml, trial results, best/."""
    exp.mkdir(parents=True)
    (exp / "timing.json").write_text(json.dumps({"tune_started_at": 1000.0, "tune_finished_at": 1600.0,
                                                 "wall_s": 800.0, "max_concurrent_trials": 2}))
    (exp / "sweep.yaml").write_text("spec: {metric: val_mrr}\n")
    (exp / "t001_a").mkdir()
    (exp / "t001_a" / "result.json").write_text(
        "".join(json.dumps({"val_mrr": v, "timestamp": 1000.0 + t}) + "\n"
                for v, t in [(0.90, 50.0), (0.94, first_reach_at), (0.935, first_reach_at + 30)]))
    (exp / "summary.txt").write_text(f"sweep dans_rotate_umls finished in 13.3 min -> {exp}\n")
    (exp / "best").mkdir()
    (exp / "best" / "metrics.json").write_text(json.dumps({"test_key": "test_mrr", "test_mrr_mean": 0.936,
                                                           "test_mrr_std": 0.004, "val_mrr_mean": 0.932,
                                                           "seeds": [0, 1, 2]}))


def test_a_run_appends_each_sweep_and_a_rerun_skips_it(sc, tmp_path, monkeypatch, capsys):
    calls = []

    def call(cmd):
        calls.append(cmd)
        name = cmd[cmd.index("--name") + 1]
        fake_sweep(Path(cmd[cmd.index("--storage") + 1]) / name, 200.0 if "default" in name else 400.0)
        return 0

    monkeypatch.setattr(sc, "run_command", call)
    monkeypatch.setattr(sc, "check_command", lambda cmd: None)
    out = tmp_path / "compare.json"
    argv = ["dans_rotate_umls", "--seeds", "0", "--methods", "default", "random", "--reference", "0.928",
            "--storage", str(tmp_path / "runs"), "--out", str(out)]
    assert sc.main(argv) == 0
    rows = json.loads(out.read_text())
    assert [(r["method"], r["first_target_s"], r["test_mean"], r["best_val"]) for r in rows] == [
        ("default", 200.0, 0.936, 0.94), ("random", 400.0, 0.936, 0.94)]
    assert rows[0]["target"] == pytest.approx(0.933) and rows[0]["search_s"] == 600.0 and len(calls) == 2
    capsys.readouterr()
    assert sc.main(argv) == 0  # everything is in --out already
    assert len(calls) == 2 and capsys.readouterr().out.count("skipped") == 2
    assert sc.main(argv[:-4] + ["--reference", "0.936"] + argv[-4:]) == 0  # a higher target: re-read, not re-run
    rows = json.loads(out.read_text())
    assert len(calls) == 2 and [r["first_target_s"] for r in rows] == [None, None]


def test_a_folder_whose_sweep_did_not_finish_is_neither_run_again_nor_recorded(sc, tmp_path, monkeypatch, capsys):
    exp = tmp_path / "runs" / "dans_rotate_umls-random-s0"
    fake_sweep(exp, 100.0)
    (exp / "summary.txt").write_text("sweep dans_rotate_umls interrupted after 1.2 min (2 trial(s) unfinished)\n")
    calls = []
    monkeypatch.setattr(sc, "run_command", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.setattr(sc, "check_command", lambda cmd: None)
    out = tmp_path / "compare.json"
    assert sc.main(["dans_rotate_umls", "--seeds", "0", "--methods", "random", "--reference", "0.928",
                    "--storage", str(tmp_path / "runs"), "--out", str(out)]) == 1
    assert calls == [] and not out.exists() and "delete it" in capsys.readouterr().out
