"""A finished sweep extended with `--resume --num-samples`: the earlier trials are kept (not rerun), the new
ones are added on top, and the Optuna study in the experiment's journal holds all of them; a later sweep
can start from that experiment. A real (embedded) Ray, the 2-epoch `dans_umls --smoke` trials."""

from __future__ import annotations

import csv

import pytest
import yaml
from optuna.trial import TrialState

from kgsearch.sweep.validate import load_spec


def trial_rows(exp) -> dict[str, dict]:
    with (exp / "trials.csv").open() as f:
        return {row["trial"]: row for row in csv.DictReader(f)}


@pytest.mark.slow
def test_resume_num_samples_extends_a_finished_sweep_and_its_study(ray_session, tmp_path):
    from kgsearch.sweep.run import run_sweep
    from kgsearch.sweep.study import JOURNAL_FILE, importance_lines, load_study

    spec = load_spec("dans_umls", smoke=True, num_samples=2, max_concurrent_trials=1)
    first = run_sweep(spec, storage=str(tmp_path), say=lambda line: None)
    exp = first.experiment
    assert sorted(trial_rows(exp)) == ["t001", "t002"]
    journal = exp / JOURNAL_FILE
    study = load_study(journal)
    assert study.study_name == "dans_umls" and len(study.trials) == 2
    assert all(t.state.is_finished() for t in study.trials)
    before = {p.name: (p / "result.json").read_text() for p in exp.glob("t00*_*")}

    lines: list[str] = []
    more = run_sweep(spec, storage=str(tmp_path), resume=True, resume_samples=1, resume_add=True,
                     say=lines.append)  # --resume --num-samples 1
    assert any("num_samples 2 -> 3" in line for line in lines), lines
    rows = trial_rows(exp)
    assert sorted(rows) == ["t001", "t002", "t003"]  # every earlier trial kept, one added
    assert sorted(r.trial for r in more.rows) == ["t001", "t002", "t003"]
    assert all(rows[t]["status"] in ("completed", "stopped_early") for t in rows), rows
    for name, text in before.items():
        assert (exp / name / "result.json").read_text() == text  # not rerun
    assert "3 trials" in (exp / "summary.txt").read_text()
    assert yaml.safe_load((exp / "sweep.yaml").read_text())["spec"]["num_samples"] == 3

    study = load_study(journal)  # the same study, continued: TPE saw the first two
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert study.trials[0].params == spec.start_values  # the warm start, once
    assert importance_lines(journal)[0].startswith("parameter importances")

    # A new sweep can start from this experiment: its first trial is the study's best COMPLETE trial.
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = max(done, key=lambda t: t.value)
    follow = load_spec("dans_umls", smoke=True, sets=[f"start_from={exp}"])
    assert follow.start_from == str(journal.resolve())
    assert follow.start_values == {k: v for k, v in best.params.items() if k in follow.space}
