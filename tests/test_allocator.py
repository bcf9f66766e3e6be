"""kgsearch/allocator.py: commands restart themselves with the glibc malloc settings in their environment."""

from __future__ import annotations

import os
import subprocess
import sys

from kgsearch.allocator import MALLOC_ENV

PROBE = ("import os; from kgsearch.allocator import restart_with_allocator_env; restart_with_allocator_env(); "
         "print(os.getpid(), *(os.environ.get(k, '-') for k in sorted(KEYS)))").replace(
             "KEYS", repr(list(MALLOC_ENV)))


def run_probe(**extra: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV and k != "KGSEARCH_NO_MALLOC_TUNING"}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**env, **extra}, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[1:]


def test_a_command_without_the_settings_restarts_with_them():
    assert run_probe() == [MALLOC_ENV[k] for k in sorted(MALLOC_ENV)]


def test_settings_already_in_the_environment_are_kept():
    given = {k: ("1" if k == "MALLOC_MMAP_MAX_" else v) for k, v in MALLOC_ENV.items()}
    assert run_probe(**given) == [given[k] for k in sorted(MALLOC_ENV)]


def test_the_switch_turns_the_restart_off():
    assert run_probe(KGSEARCH_NO_MALLOC_TUNING="1") == ["-"] * len(MALLOC_ENV)
