"""The cluster path end to end on one machine: a real Ray head node, `ray job submit` with the working
directory and cluster/runtime_env.yaml exactly as docs/cluster.md tells, the smoke sweep on UMLS, and the
experiment folder it leaves in --storage.

The head node is this test's own: its temp dir, HOME and ports are private, it listens on 127.0.0.1, and
it is stopped by signalling only the processes that carry this run's marker in their environment (every
Ray process of the node inherits it: GCS, raylet, dashboard, workers, the job driver). A bare `ray stop`
would kill every Ray process on the machine, other people's included.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
PYTHON = str(BIN / "python")
MARKER = "KGSEARCH_TEST_HEAD"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def own_processes(tag: str) -> list[psutil.Process]:
    mine = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(MARKER) == tag:
                mine.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return mine


def stop_own_head(tag: str) -> None:
    procs = own_processes(tag)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


class Head:
    def __init__(self, base: Path, env: dict[str, str], dashboard_port: int):
        self.base = base
        self.env = env
        self.address = f"http://127.0.0.1:{dashboard_port}"

    def ray(self, *args: str, timeout: float, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run([RAY, *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=check)


@pytest.fixture
def head_node():
    # A short path under /tmp: Ray's unix socket paths below the temp dir must stay under 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="kgs-head-", dir="/tmp"))
    tag = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        HOME=str(base / "home"),  # keeps ~/.ray (tokens, configs) of the real user untouched
        KGSEARCH_CACHE=str(base / "cache"),
        # The venv is not on the PATH, as with `.venv/bin/ray start` and no activated venv: the job's
        # command names the venv's python itself, as docs/cluster.md's local recipe does.
        PATH=os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != BIN),
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_TRAIN_ENABLE_PREEMPTION_WATCHER="0",
        **{MARKER: tag},
    )
    (base / "home").mkdir()
    dashboard_port = free_port()
    start = [
        "start", "--head", "--num-cpus", "2",
        "--port", str(free_port()),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
        "--ray-client-server-port", str(free_port()),
        "--dashboard-agent-listen-port", str(free_port()),
        "--object-store-memory", str(150 * 1024 * 1024),
        "--temp-dir", str(base / "ray"),
        "--disable-usage-stats",
    ]
    head = Head(base, env, dashboard_port)
    try:
        started = head.ray(*start, timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
        yield head
    finally:
        stop_own_head(tag)
        shutil.rmtree(base, ignore_errors=True)


def test_smoke_sweep_runs_as_a_ray_job(head_node):
    storage = head_node.base / "results"  # absolute: the job runs in a temporary copy of the checkout
    job_id = f"kgsearch-test-{uuid.uuid4().hex[:8]}"
    submit = [
        "job", "submit", "--address", head_node.address, "--submission-id", job_id,
        "--runtime-env", "cluster/runtime_env.yaml", "--working-dir", ".",
        "--", PYTHON, "-m", "kgsearch.sweep", "dans_umls", "--smoke", "--storage", str(storage),
    ]
    try:
        done = head_node.ray(*submit, timeout=1200)
    except subprocess.TimeoutExpired:
        head_node.ray("job", "stop", "--address", head_node.address, job_id, timeout=60)
        raise
    log = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, log

    status = head_node.ray("job", "status", "--address", head_node.address, job_id, timeout=60)
    assert f"Job '{job_id}' succeeded" in status.stdout + status.stderr, status.stdout + status.stderr

    experiment = storage / "dans_umls"
    assert (experiment / "best" / "config.yaml").is_file(), log
    trials = (experiment / "trials.csv").read_text().splitlines()
    assert len(trials) >= 2, trials  # header + at least one trial
    # The job ran from the uploaded copy: nothing excluded by runtime_env.yaml was shipped.
    shipped = [d for d in (head_node.base / "ray").glob("session_*/runtime_resources/working_dir_files/*")
               if d.is_dir()]
    assert shipped and all(not (d / ".venv").exists() and not (d / ".git").exists() for d in shipped)


def job_status(head, job_id: str) -> str:
    out = head.ray("job", "status", "--address", head.address, job_id, timeout=60)
    return out.stdout + out.stderr


def test_ray_job_stop_writes_the_results_and_a_resumed_job_continues(head_node):
    """`ray job stop` sends SIGTERM, then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S (cluster/runtime_env.yaml):
    the sweep stops its trials, writes trials.csv and the summary, and `--resume` continues it."""
    import json
    import time

    storage = head_node.base / "results"
    exp = storage / "dans_rotate_umls"  # RotatE smoke epochs are the slower ones: time to stop the job mid-way
    command = ["--", PYTHON, "-m", "kgsearch.sweep", "dans_rotate_umls", "--smoke", "--max-epochs", "40", "--no-retrain",
               "--storage", str(storage)]
    submit = ["job", "submit", "--address", head_node.address, "--runtime-env", "cluster/runtime_env.yaml",
              "--working-dir", "."]
    job_id = f"kgsearch-stop-{uuid.uuid4().hex[:8]}"
    started = head_node.ray(*submit, "--submission-id", job_id, "--no-wait", *command, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr

    def epochs() -> int:
        counts = [len((f / "result.json").read_text().splitlines()) for f in exp.glob("t00*_*")
                  if (f / "result.json").exists()]
        return max(counts, default=0)

    deadline = time.time() + 600
    while epochs() < 3:
        assert time.time() < deadline and "FAILED" not in job_status(head_node, job_id), job_status(head_node, job_id)
        time.sleep(1)
    stop = head_node.ray("job", "stop", "--address", head_node.address, job_id, timeout=400)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert f"Job '{job_id}' was stopped" in job_status(head_node, job_id)
    log = head_node.ray("job", "logs", "--address", head_node.address, job_id, timeout=60).stdout
    assert "SIGTERM: trials stopped" in log and "Aborted" not in log, log[-4000:]
    assert "continue with --resume" in (exp / "summary.txt").read_text()
    assert "unfinished" in (exp / "trials.csv").read_text()
    before = {f.name: (f / "result.json").read_text() for f in exp.glob("t00*_*")}

    done = head_node.ray(*submit, "--submission-id", f"{job_id}-resumed", *command, "--resume", "auto", timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    rows = (exp / "trials.csv").read_text().splitlines()[1:]
    assert rows and not any(",unfinished," in row for row in rows)
    for name, text in before.items():  # what was written before the stop is kept, and continued from
        after = (exp / name / "result.json").read_text()
        assert after.startswith(text)
        epochs_done = [json.loads(line)["epochs_done"] for line in after.splitlines()]
        stopped_at = len(text.splitlines())
        # From its newest checkpoint: the epoch of a report that reached result.json while Tune was
        # stopping may be trained again, but the trial never starts over.
        again = epochs_done[stopped_at:]
        assert not again or (1 < again[0] <= stopped_at + 1 and again == list(range(again[0], again[-1] + 1)))
