"""glibc malloc settings for training processes: CPU epochs spend much of their time in page faults without them.

glibc returns freed memory to the OS eagerly and serves mid-sized tensors with a fresh mmap, so the [N, d]
temporaries of every step are faulted in page by page again. With a 32 MB mmap threshold, a huge trim
threshold and a 1 GB top pad, freed memory below 32 MB stays in the heap and is reused: an ICEWS18 DKGR-DR
step 5.98 -> 4.50 CPU-s, a RotatE epoch on UMLS ~2x faster (docs/benchmarks_dkgr.md, docs/ray.md). Tensors
over 32 MB keep their mmap, so their memory goes back to the OS when freed: no mmap at all
(MALLOC_MMAP_MAX_=0) measured the same speed at a 0.7 GB higher peak on ICEWS18. One set of values for every
place that sets them (tests/test_cluster.py checks the cluster files against it).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "17179869184",
              "MALLOC_TOP_PAD_": "1073741824"}
_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}  # M_* of malloc.h
OFF = "KGSEARCH_NO_MALLOC_TUNING"
_RESTARTED = "KGSEARCH_MALLOC_RESTARTED"  # set for the restarted process: it never restarts again


def tune_allocator() -> dict[str, str]:
    """Apply the settings to this process (mallopt(3); a value already in the environment wins) and return
    them as env vars for child processes; {} when KGSEARCH_NO_MALLOC_TUNING is set."""
    if os.environ.get(OFF):
        return {}
    env = {k: os.environ.get(k, v) for k, v in MALLOC_ENV.items()}
    try:
        libc = ctypes.CDLL("libc.so.6")
        for key, param in _MALLOPT.items():
            libc.mallopt(param, int(env[key]))
    except (OSError, AttributeError, ValueError):
        pass  # not glibc: the env vars are harmless
    return env


def _invoked_as_command() -> bool:
    """True when this interpreter was started for the running __main__ (python -m MODULE ... or python
    SCRIPT ...), not when a host process (pytest, IPython's %run, runpy) runs it: only then may it restart."""
    orig, args = getattr(sys, "orig_argv", None), sys.argv[1:]
    if not orig or not sys.executable or (args and orig[len(orig) - len(args):] != args):
        return False
    head = orig[:len(orig) - len(args)]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None:  # python -m kgsearch.sweep runs kgsearch.sweep.__main__
        module = spec.name.removesuffix(".__main__")
        return len(head) >= 2 and head[-2] == "-m" and head[-1] == module
    return bool(head) and os.path.realpath(head[-1]) == os.path.realpath(sys.argv[0])


def restart_with_allocator_env() -> None:
    """For a command's `__main__`: re-run this very command line with the settings in its environment unless
    they are there already (values the user set are kept). Settings in the environment at start-up measured
    faster than the same ones applied by mallopt once the interpreter runs (ICEWS18 step 4.5 vs 5.1 CPU-s):
    the allocations made while importing torch and loading data follow them too. Linux with glibc only."""
    if (os.environ.get(OFF) or os.environ.get(_RESTARTED) or all(k in os.environ for k in MALLOC_ENV)
            or not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc" or not _invoked_as_command()):
        return
    try:
        os.execve(sys.executable, sys.orig_argv, {**MALLOC_ENV, **os.environ, _RESTARTED: "1"})
    except OSError:
        pass  # cannot re-exec here: mallopt in tune_allocator still applies
