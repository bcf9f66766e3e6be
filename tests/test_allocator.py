"""kgsearch/allocator.py: commands restart themselves with the glibc malloc settings in their environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kgsearch.allocator import MALLOC_ENV

KEYS = sorted(MALLOC_ENV)
PROBE = f"""\
import os
from kgsearch.allocator import restart_with_allocator_env
restart_with_allocator_env()
print(*(os.environ.get(k, '-') for k in {KEYS!r}))
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the restart is for Linux/glibc")


def run(argv: list[str], tmp_path: Path, **extra: str) -> list[str]:
    (tmp_path / "probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items()
           if k not in MALLOC_ENV and k not in ("KGSEARCH_NO_MALLOC_TUNING", "KGSEARCH_MALLOC_RESTARTED")}
    out = subprocess.run([sys.executable, *argv], env={**env, **extra}, cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


def test_a_command_without_the_settings_restarts_with_them(tmp_path):
    assert run(["probe.py", "--flag"], tmp_path) == [MALLOC_ENV[k] for k in KEYS]


def test_a_value_the_user_set_is_kept_and_the_others_are_added(tmp_path):
    got = dict(zip(KEYS, run(["probe.py"], tmp_path, MALLOC_TOP_PAD_="0")))
    assert got == {**MALLOC_ENV, "MALLOC_TOP_PAD_": "0"}


def test_the_switch_turns_the_restart_off(tmp_path):
    assert run(["probe.py"], tmp_path, KGSEARCH_NO_MALLOC_TUNING="1") == ["-"] * len(KEYS)


def test_a_host_process_running_the_command_is_not_replaced(tmp_path):
    host = "import runpy, sys; sys.argv = ['probe.py']; runpy.run_path('probe.py', run_name='__main__')"
    assert run(["-c", host], tmp_path) == ["-"] * len(KEYS)  # e.g. pytest or IPython running a __main__


def test_a_restarted_process_never_restarts_again(tmp_path):
    assert run(["probe.py"], tmp_path, KGSEARCH_MALLOC_RESTARTED="1") == ["-"] * len(KEYS)
