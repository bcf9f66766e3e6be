"""Failed trials on a real local Ray (issue 16): Tune retries what failed from outside the trial and
never what fails again by itself (item 6); `--resume` runs again only the trials that failed from
outside them, under the concurrency limit, with Optuna told their results (item 2); `--resume auto`
starts a sweep that is not there and continues one that is (item 4).

Faults come from the KGSEARCH_FAULT hook (kgsearch/sweep/faults.py): `crash` kills the trial's process
once (a lost node or an OOM kill, as far as Ray can tell), `nan` makes its loss NaN.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
from pathlib import Path

import pytest

from kgsearch.sweep.faults import FAULT_ENV
from kgsearch.sweep.study import JOURNAL_FILE, load_study
from kgsearch.sweep.validate import load_spec

pytestmark = pytest.mark.slow  # two small sweeps and a resume: about a minute on two busy cores

SWEEP = """\
model: dans
dataset: umls
num_samples: 4
max_concurrent_trials: 1
searcher: {type: random, seed: 0}
scheduler: {type: fifo, max_t: 3}
retrain: {top_k: 0}
retries: 0
fixed: {seed: 0, eval_every: 1, dim: 16, negatives: 8, diffusion_steps: 20, pretrain_dim: 8, pretrain_epochs: 1,
        dam_epochs: 5}
space:
  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}
"""

def run(sweep: Path, storage: Path, fault: str | None = None, **kw):
    """run_sweep with KGSEARCH_FAULT set; returns the outcome and every line it said or printed."""
    from kgsearch.sweep.run import run_sweep

    lines: list[str] = []
    printed = io.StringIO()
    if fault:
        os.environ[FAULT_ENV] = fault
    try:
        with contextlib.redirect_stdout(printed):
            outcome = run_sweep(load_spec(sweep), storage=str(storage), say=lines.append, **kw)
    finally:
        os.environ.pop(FAULT_ENV, None)
    return outcome, lines + printed.getvalue().splitlines()


def fired(exp: Path, trial: str) -> int:
    """How often the trial trained into its injected fault."""
    files = list((exp / "_train").glob(f"fired-{trial}_*-rank0"))
    return len(files[0].read_text().splitlines()) if files else 0


def never_two_trained_at_once(lines: list[str]) -> None:
    """No two trials trained at the same time (max_concurrent_trials 1): between a training trial's start
    line and its end line no other trial reports an epoch. (A failed trial that a resume restarts in
    place fails at once, without training: kgsearch.sweep.failures.)"""
    events = [(m[1], m[2]) for line in lines if (m := re.search(r"\] (t\d{3}) (start|epoch|done|stopped|FAILED)\b", line))]
    trained = {t for t, kind in events if kind == "epoch"}
    running = None
    for trial, kind in events:
        if trial not in trained:
            continue
        if kind == "start":
            assert running in (None, trial), f"{trial} started while {running} trained"
            running = trial
        elif kind == "epoch":
            assert running == trial, f"{trial} trained while {running} did"
        else:
            running = None


@pytest.fixture(scope="module")
def failed_sweep(ray_session, tmp_path_factory):
    """4 trials, one at a time: t001 and t002 crash in epoch 2 (no retries), t003's loss turns NaN."""
    base = tmp_path_factory.mktemp("recovery")
    sweep = base / "recover.yaml"
    sweep.write_text(SWEEP)
    storage = base / "runs"
    outcome, lines = run(sweep, storage, "1@2:crash,2@2:crash,3@2:nan", resume="auto")  # nothing there: starts
    return {"sweep": sweep, "storage": storage, "exp": outcome.experiment, "lines": lines,
            "rows": {r.trial: r for r in outcome.rows}}


def test_resume_auto_starts_a_sweep_that_is_not_there(failed_sweep):
    assert not any(line.startswith("resuming") for line in failed_sweep["lines"])
    assert sorted(failed_sweep["rows"]) == ["t001", "t002", "t003", "t004"]


def test_resume_runs_again_only_what_failed_from_outside_under_the_limit(failed_sweep):
    exp, before = failed_sweep["exp"], failed_sweep["rows"]
    assert {t: r.status for t, r in before.items()} == {"t001": "failed", "t002": "failed", "t003": "failed",
                                                        "t004": "completed"}
    assert "ActorDiedError" in before["t001"].error and before["t003"].error.startswith("TrainingDiverged")
    assert fired(exp, "t003") == 1

    outcome, lines = run(failed_sweep["sweep"], failed_sweep["storage"], "1@2:crash,2@2:crash,3@2:nan",
                         resume="auto")
    assert any(line.startswith("resuming sweep recover") for line in lines)  # auto: there is one, continue it
    rows = {r.trial: r for r in outcome.rows}
    # The crashed trials' values ran again as new trials; the NaN trial never trained again.
    assert sorted(rows) == ["t001", "t002", "t003", "t004", "t005", "t006"]
    assert [rows[t].params for t in ("t005", "t006")] == [before["t001"].params, before["t002"].params]
    assert rows["t005"].status == rows["t006"].status == "completed" and rows["t005"].epochs == 3
    assert {t: rows[t].status for t in ("t001", "t002", "t003")} == {t: "failed" for t in ("t001", "t002", "t003")}
    assert fired(exp, "t003") == 1
    assert not any(" t004 start" in line for line in lines)  # a finished trial is not run again
    never_two_trained_at_once(lines)

    # Optuna was told the new trials' results: two COMPLETE trials with the crashed trials' values.
    state = pickle.loads(sorted(exp.glob("searcher-state-*.pkl"))[-1].read_bytes())
    study = load_study(exp / JOURNAL_FILE)  # the study lives in the experiment's journal (kgsearch.sweep.study)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["lr"] for t in done) == sorted(rows[n].params["lr"] for n in ("t004", "t005", "t006"))
    assert state["trials"] == {}  # none left waiting for a result


def test_tune_retries_a_crash_but_not_a_nan(ray_session, tmp_path):
    """retries: 1. The crashed trial continues from its epoch-1 checkpoint; the NaN trial fails at once on
    its retry instead of training into the NaN again."""
    sweep = tmp_path / "retry.yaml"
    sweep.write_text(SWEEP.replace("retries: 0", "retries: 1").replace("num_samples: 4", "num_samples: 2"))
    outcome, lines = run(sweep, tmp_path / "runs", "1@2:crash,2@2:nan")
    rows = {r.trial: r for r in outcome.rows}
    assert rows["t001"].status == "completed" and rows["t001"].epochs == 3
    reports = [line for line in lines if re.search(r"\] t001 epoch +\d", line)]
    assert [int(re.search(r"epoch +(\d+)/", line)[1]) for line in reports] == [1, 2, 3]  # epoch 1 not trained twice
    assert rows["t002"].status == "failed" and rows["t002"].error == "TrainingDiverged: loss became nan at epoch 2"
    assert fired(outcome.experiment, "t002") == 1  # its retry did not train
    assert (outcome.experiment / "_train" / f"failed-{rows['t002'].trial_id}.json").is_file()
