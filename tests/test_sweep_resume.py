"""A real sweep whose driver is killed with SIGKILL mid-trial resumes with --resume: finished trials
are not rerun, the interrupted one continues from its checkpoint, the searcher adds the rest, and the
Optuna study in the experiment's journal holds each trial once (~1-2 min)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SWEEP = """\
model: dans
dataset: umls
metric: val_mrr
num_samples: 3
max_concurrent_trials: 1
searcher: {type: tpe, seed: 0, n_startup_trials: 2}
scheduler: {type: fifo, max_t: 8}
retrain: {top_k: 0}          # the search's resume (tests/test_sweep_retrain.py resumes a re-training)
resources: {workers: 1, cpus_per_worker: 1}
fixed: {seed: 0, eval_every: 1, dim: 32, negatives: 16, diffusion_steps: 20, pretrain_dim: 16,
        pretrain_epochs: 2, dam_epochs: 20}
space:
  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}
"""


def epochs_of(folder: Path) -> list[int]:
    path = folder / "result.json"
    if not path.exists():
        return []
    return [json.loads(line)["epochs_done"] for line in path.read_text().splitlines() if line.strip()]


def trial_folder(exp: Path, name: str) -> Path | None:
    found = sorted(exp.glob(f"{name}_*"))
    return found[0] if found else None


def sweep_cmd(sweep: Path, storage: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "kgsearch.sweep", str(sweep), "--storage", str(storage), *extra]


def test_resume_after_sigkill_keeps_finished_trials(tmp_path):
    sweep = tmp_path / "resume_me.yaml"
    sweep.write_text(SWEEP)
    storage = tmp_path / "runs"
    exp = storage / "resume_me"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "first.log").open("w")
    # Own session: after killing the driver, its leftover Ray helpers are ours to remove by group id.
    driver = subprocess.Popen(sweep_cmd(sweep, storage), env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # t001 finished and t002 part-way (>= 2 of 8 epochs)
            t2 = trial_folder(exp, "t002")
            if t2 is not None and 2 <= len(epochs_of(t2)) < 8:
                break
            assert driver.poll() is None, (tmp_path / "first.log").read_text()
            time.sleep(0.2)
        else:
            pytest.fail("the sweep did not reach trial 2 in time:\n" + (tmp_path / "first.log").read_text())
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        time.sleep(2)
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # the embedded Ray's agents left behind
        except ProcessLookupError:
            pass
        log.close()

    t1 = trial_folder(exp, "t001")
    t1_before = (t1 / "result.json").read_text()
    t2_before = epochs_of(trial_folder(exp, "t002"))
    assert epochs_of(t1) == list(range(1, 9)) and 2 <= len(t2_before) < 8

    done = subprocess.run(sweep_cmd(sweep, storage, "--resume"), env=env, capture_output=True, text=True,
                          timeout=400, start_new_session=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (t1 / "result.json").read_text() == t1_before  # finished trial not rerun
    assert "t001 start" not in done.stdout
    t2_after = epochs_of(trial_folder(exp, "t002"))
    assert t2_after == list(range(1, 9)), t2_after  # continued from its checkpoint, not from epoch 1
    assert epochs_of(trial_folder(exp, "t003")) == list(range(1, 9))
    assert sorted(p.name.split("_")[0] for p in exp.glob("t00*_*")) == ["t001", "t002", "t003"]
    rows = (exp / "trials.csv").read_text().splitlines()
    assert len(rows) == 4 and all(",completed," in row for row in rows[1:])
    assert (exp / "best" / "config.yaml").is_file()
    # The Optuna study in the journal (kgsearch.sweep.study) went on across the kill: one trial each, all told
    from kgsearch.sweep.study import JOURNAL_FILE, load_study

    assert [t.state.name for t in load_study(exp / JOURNAL_FILE).trials] == ["COMPLETE"] * 3
