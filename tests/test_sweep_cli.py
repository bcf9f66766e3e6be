"""The sweep CLI refuses bad input with one message and exit code 2, before Ray starts and without
touching the experiment folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kgsearch.sweep.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


def snapshot(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else None


def test_unknown_sweep_lists_the_available_ones(capsys, tmp_path):
    code, err = run_cli(["dans_umsl", "--storage", str(tmp_path)], capsys)
    assert code == 2
    assert err.startswith("kgsearch: error: unknown sweep 'dans_umsl'") and "dans_umls" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_bad_yaml_names_file_line_and_key(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: dans\ndataset: umls\nmetric: val_mrr\nnum_samples: 2\n"
                   "scheduler: {max_t: 2}\nspace:\n  lr: {type: loguniform, low: -1, high: 0.1}\n")
    code, err = run_cli([str(bad), "--storage", str(tmp_path / "runs")], capsys)
    assert code == 2
    assert f"{bad}:7: space.lr.low: a log-scale range needs low > 0, got -1.0" in err
    assert not (tmp_path / "runs").exists()


def test_resume_without_a_sweep_leaves_the_folder_untouched(capsys, tmp_path):
    (tmp_path / "dans_umls").mkdir()
    (tmp_path / "dans_umls" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    code, err = run_cli(["dans_umls", "--resume", "--storage", str(tmp_path)], capsys)
    assert code == 2 and "holds no sweep to resume" in err
    assert snapshot(tmp_path) == before


def test_unreadable_data_root(capsys, tmp_path):
    code, err = run_cli(["dans_umls", "--data-root", str(tmp_path / "nowhere"), "--storage", str(tmp_path / "runs")],
                        capsys)
    assert code == 2 and "--data-root" in err and "no such folder" in err
    assert not (tmp_path / "runs").exists()


def test_existing_experiment_needs_resume_or_a_new_name(capsys, tmp_path):
    exp = tmp_path / "dans_umls"
    (exp / "t001_ab12cd34").mkdir(parents=True)  # a sweep that got as far as a trial
    (exp / "sweep.yaml").write_text("format: 3\nspec: {}\n")
    before = snapshot(tmp_path)
    code, err = run_cli(["dans_umls", "--storage", str(tmp_path)], capsys)
    # this one cannot even be resumed (its sweep.yaml holds no spec): only a new name helps
    assert code == 2 and "already holds a sweep (it cannot be resumed: sweep.yaml is damaged)" in err
    assert "--name NEW" in err and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_smoke_on_a_file_without_smoke_block(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("model: dans\ndataset: umls\nmetric: val_mrr\nnum_samples: 2\nscheduler: {max_t: 2}\n")
    code, err = run_cli([str(path), "--smoke"], capsys)
    assert code == 2 and "has no `smoke:` block" in err


def test_flag_values_are_checked(capsys):
    with pytest.raises(SystemExit) as info:
        main(["dans_umls", "--num-samples", "0"])
    assert info.value.code == 2 and "expected a positive integer" in capsys.readouterr().err


def test_resources_adapt_to_a_cluster_without_gpus(monkeypatch):
    import ray

    from kgsearch.sweep.validate import load_spec
    from kgsearch.sweep.ray_env import adapt_resources

    spec = load_spec("dans_fb15k237")  # 4 workers x (4 CPU + 1 GPU), 2 trials at a time
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "memory": 1e10})
    said = []
    local = adapt_resources(spec, "local", said.append)
    assert local.resources.gpus_per_worker == 0 and local.resources.workers == 4
    assert local.resources.cpus_per_worker == 0.5 and local.max_concurrent_trials == 1  # fits on 2 CPUs
    assert any("Ray has no GPU here" in s for s in said) and any("max_concurrent_trials 2 -> 1" in s for s in said)
    # A cluster may autoscale (a GPU node comes when trials ask for it): the spec is trusted there.
    cluster = adapt_resources(spec, "cluster", said.append)
    assert cluster.resources == spec.resources and cluster.max_concurrent_trials == 2
    assert any("trials wait for the autoscaler" in s for s in said)
    forced = adapt_resources(spec, "cluster", said.append, cpu_only=True)
    assert forced.resources.gpus_per_worker == 0 and forced.resources.cpus_per_worker == 4
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64.0, "GPU": 8.0})
    gpus = adapt_resources(spec, "cluster", said.append)
    assert gpus.resources == spec.resources and gpus.max_concurrent_trials == 2


def test_unfinished_trials_reads_tunes_saved_state(tmp_path):
    """After Ctrl-C, Tune's saved state (not its in-memory trials) says which trials --resume continues."""
    import json

    from kgsearch.sweep.restore import unfinished_trials
    from kgsearch.sweep.storage import ExperimentStore

    store = ExperimentStore(str(tmp_path), "exp")
    folder = tmp_path / "exp"
    folder.mkdir()
    assert unfinished_trials(store) == set()
    trials = {"a1": "TERMINATED", "b2": "RUNNING", "c3": "ERROR", "d4": "PENDING", "e5": "PAUSED"}
    state = {"trial_data": [[json.dumps({"trial_id": k, "status": v}), "{}"] for k, v in trials.items()]}
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": []}))
    (folder / "experiment_state-2026-01-02_00-00-00.json").write_text(json.dumps(state))
    assert unfinished_trials(store) == {"b2", "d4", "e5"}  # the newest state file wins
    (folder / "experiment_state-2026-01-03_00-00-00.json").write_text("not json")
    assert unfinished_trials(store) == set()  # unreadable: fall back to what Tune's results say


def test_fault_hook_values_are_checked():
    from kgsearch.errors import KGSearchError
    from kgsearch.sweep.faults import parse_faults

    assert parse_faults("2@1,4@3:raise,5:crash") == {2: (1, "nan"), 4: (3, "raise"), 5: (1, "crash")}
    assert parse_faults(None) == {}
    with pytest.raises(KGSearchError, match="expected '<trial number>@<epoch>"):
        parse_faults("2@1:explode")


def test_resuming_a_sweep_from_before_the_sweep_package_says_so(capsys, tmp_path):
    exp = tmp_path / "dans_umls"
    exp.mkdir()
    (exp / "sweep.yaml").write_text("spec: {name: dans_umls}\n")  # no `format`: written by kgsearch 0.1
    (exp / "t001_ab12cd34").mkdir()  # it ran a trial
    before = snapshot(tmp_path)
    code, err = run_cli(["dans_umls", "--resume", "--storage", str(tmp_path)], capsys)
    assert code == 2 and "started by an older kgsearch" in err and "--name NEW" in err
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------
# Issue 16: --dry-run, --list, --set, --resume auto, --track


def test_dry_run_prints_the_resolved_sweep_and_its_cost_and_starts_nothing(capsys, tmp_path):
    import ray

    code = main(["dans_umls", "--dry-run", "--set", "fixed.lr=0.01", "--set", "max_concurrent_trials=4",
                 "--storage", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0 and not ray.is_initialized() and not (tmp_path / "runs").exists()
    resolved = yaml.safe_load(out.split("\n\n")[0])
    assert resolved["fixed"]["lr"] == 0.01 and "lr" not in resolved["space"] and resolved["max_concurrent_trials"] == 4
    assert "24 x <= 100 epochs = 2400 trial-epochs" in out  # num_samples x max_t of search_spaces/dans_umls.yaml
    assert "about 569 trial-epochs" in out  # the ASHA estimate of docs/cluster.md's cost table
    assert f"experiment folder: {tmp_path / 'runs' / 'dans_umls'}" in out
    # the first trial: configs/dans_umls.yaml's searched values, bar lr (pinned by --set)
    assert "first trial: the searched values of configs/dans_umls.yaml (start_from)" in out
    assert resolved["start_values"]["dim"] == 200 and "lr" not in resolved["start_values"]


def test_list_shows_the_shipped_sweeps(capsys):
    assert main(["--list"]) == 0
    rows = {line.split()[0]: line.split()[1:4] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["dans_umls"] == ["dans", "umls", "configs/dans_umls.yaml"]  # model, dataset, first trial
    assert rows["dkgr_icews14"] == ["dkgr", "icews14", "configs/dkgr_icews14.yaml"]
    assert rows["dans_wn18rr"][2] == "-"  # no run file: the first trial is sampled
    assert set(rows) == {p.stem for p in (REPO / "search_spaces").glob("*.yaml")}


def test_a_run_file_outside_the_space_exits_2_in_one_line(capsys, tmp_path):
    code, err = run_cli(["dans_umls", "--set", "space.dim.values=[100]", "--storage", str(tmp_path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "search_spaces/dans_umls.yaml:" in err and ": space.dim: the first trial's dim = 200" in err
    assert "configs/dans_umls.yaml" in err and list(tmp_path.iterdir()) == []
    assert main(["dans_umls", "--set", "space.dim.values=[100]", "--set", "start_from=null", "--dry-run"]) == 0
    assert "first trial: sampled" in capsys.readouterr().out


def test_resume_takes_auto(capsys):
    from kgsearch.sweep.cli import parse_args

    assert parse_args(["dans_umls", "--resume", "auto"]).resume == "auto"
    assert parse_args(["dans_umls", "--resume"]).resume is True and parse_args(["dans_umls"]).resume is False
    code, err = run_cli(["--resume", "dans_umls"], capsys)
    assert code == 2 and "the only value --resume takes is 'auto'" in err


def test_track_without_the_package_is_refused_before_anything_starts(capsys, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)
    code, err = run_cli(["dans_umls", "--track", "wandb", "--storage", str(tmp_path)], capsys)
    assert code == 2 and "--track wandb: tracking.wandb: the wandb package is not installed" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags, minutes", [([], 7), (["--time-budget", "2"], 2), (["--smoke"], None)])
def test_the_sweep_files_time_budget_reaches_the_search(monkeypatch, tmp_path, flags, minutes):
    """dans_umls states time_budget_minutes: 7; --time-budget replaces it, --smoke drops it."""
    import kgsearch.sweep.run as run
    from kgsearch.sweep.cli import main
    from kgsearch.sweep.run import SweepOutcome

    seen = {}

    def fake_run_sweep(spec, **kw):
        seen["budget_s"] = kw["time_budget_s"]
        return SweepOutcome(experiment=tmp_path, rows=[], best=None, wall_s=0.0)

    monkeypatch.setattr(run, "run_sweep", fake_run_sweep)
    assert main(["dans_umls", "--storage", str(tmp_path), *flags]) == 0
    assert seen["budget_s"] == (None if minutes is None else minutes * 60)
