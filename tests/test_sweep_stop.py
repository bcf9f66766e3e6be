"""SIGTERM (what `ray job stop` and `kubectl delete rayjob` send) stops a sweep like Ctrl-C: the
trials stop, Tune saves its state, trials.csv / summary.txt / best/ are written, the exit code is 143,
and `--resume` finishes the sweep with no finished trial lost (issue 16, item 1). Before, Ray's C++
handler aborted the driver ("SIGTERM received", `Aborted`) and none of the files was written.
The same through `ray job stop` on a local head node: tests/test_job_submit.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from test_sweep_resume import SWEEP, epochs_of, sweep_cmd, trial_folder


def test_sigterm_does_what_ctrl_c_does():
    from kgsearch.sweep.stop import sigterm_stops_the_sweep

    calls = []
    previous_int = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))  # e.g. Tune's
    previous_term = signal.getsignal(signal.SIGTERM)
    try:
        with sigterm_stops_the_sweep() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # a second one while the stop is under way: ignored
            time.sleep(0.05)
        assert calls == [signal.SIGINT] and stop.received
        assert signal.getsignal(signal.SIGTERM) is previous_term  # Ray's own handler again afterwards
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with pytest.raises(KeyboardInterrupt), sigterm_stops_the_sweep():  # outside Tune: Ctrl-C's default
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    finally:
        signal.signal(signal.SIGINT, previous_int)


@pytest.mark.slow
def test_sigterm_mid_sweep_writes_the_results_and_resume_finishes_it(tmp_path):
    sweep = tmp_path / "stop_me.yaml"
    sweep.write_text(SWEEP)
    storage = tmp_path / "runs"
    exp = storage / "stop_me"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "first.log"
    with log_path.open("w") as log:
        driver = subprocess.Popen(sweep_cmd(sweep, storage), env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            deadline = time.time() + 240
            while time.time() < deadline:  # t001 finished, t002 part-way
                t2 = trial_folder(exp, "t002")
                if t2 is not None and 2 <= len(epochs_of(t2)) < 8:
                    break
                assert driver.poll() is None, log_path.read_text()
                time.sleep(0.2)
            else:
                pytest.fail("the sweep did not reach trial 2 in time:\n" + log_path.read_text())
            os.kill(driver.pid, signal.SIGTERM)  # the driver only, as the job supervisor does
            code = driver.wait(timeout=120)
        finally:
            time.sleep(2)
            try:
                os.killpg(driver.pid, signal.SIGKILL)  # whatever the embedded Ray left behind
            except ProcessLookupError:
                pass
    text = log_path.read_text()
    assert code == 143, text[-3000:]
    assert "Aborted" not in text and "SIGTERM received at" not in text
    rows = {line.split(",")[0]: line.split(",") for line in (exp / "trials.csv").read_text().splitlines()[1:]}
    assert rows["t001"][2] == "completed" and rows["t002"][2] == "unfinished"
    assert "continue with --resume" in (exp / "summary.txt").read_text()
    assert (exp / "best" / "config.yaml").is_file()
    t1_before = (trial_folder(exp, "t001") / "result.json").read_text()
    stopped_at = len(epochs_of(trial_folder(exp, "t002")))

    done = subprocess.run(sweep_cmd(sweep, storage, "--resume"), env=env, capture_output=True, text=True,
                          timeout=400, start_new_session=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (trial_folder(exp, "t001") / "result.json").read_text() == t1_before  # not rerun
    # t002 continued from its newest checkpoint: the epoch of a report that reached result.json while
    # Tune was stopping may be trained again, but it never starts over.
    resumed = [int(m) for m in re.findall(r"\] t002 epoch +(\d+)/8", done.stdout)]
    assert 1 < resumed[0] <= stopped_at + 1 and resumed == list(range(resumed[0], 9)), resumed
    assert epochs_of(trial_folder(exp, "t002"))[-1] == 8
    rows = (exp / "trials.csv").read_text().splitlines()
    assert len(rows) == 4 and all(",completed," in row for row in rows[1:])
