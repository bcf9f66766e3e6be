"""glibc malloc settings for training processes: CPU epochs spend much of their time in page faults without them.

glibc serves large tensors with a fresh mmap and returns freed memory to the OS eagerly, so every
[N, d] temporary of an epoch is faulted in page by page again. With no mmap for allocations
(MALLOC_MMAP_MAX_=0), a huge trim threshold and a 1 GB top pad, freed memory stays in the heap and
is reused: an ICEWS18 DKGR-DR step 5.98 -> 4.40 CPU-s, a RotatE epoch on UMLS ~2x faster
(docs/benchmarks_dkgr.md, docs/ray.md). One set of values for every place that sets them
(tests/test_cluster.py checks the cluster files against it).
"""

from __future__ import annotations

import ctypes
import os
import sys

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "17179869184", "MALLOC_TOP_PAD_": "1073741824"}
_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_MAX_": -4}  # M_* of malloc.h


def tune_allocator() -> dict[str, str]:
    """Apply the settings to this process (mallopt(3); a value already in the environment wins) and return
    them as env vars for child processes; {} when KGSEARCH_NO_MALLOC_TUNING is set."""
    if os.environ.get("KGSEARCH_NO_MALLOC_TUNING"):
        return {}
    env = {k: os.environ.get(k, v) for k, v in MALLOC_ENV.items()}
    try:
        libc = ctypes.CDLL("libc.so.6")
        for key, param in _MALLOPT.items():
            libc.mallopt(param, int(env[key]))
    except (OSError, AttributeError, ValueError):
        pass  # not glibc: the env vars are harmless
    return env


def restart_with_allocator_env() -> None:
    """For a command's `__main__`: re-run this very command line with the settings in its environment
    unless they are there already. Settings in the environment at start-up measured faster than the same
    ones applied by mallopt once the interpreter runs (ICEWS18 step 4.5 vs 5.1 CPU-s): the allocations
    made while importing torch and loading data are placed by them too."""
    if os.environ.get("KGSEARCH_NO_MALLOC_TUNING") or all(k in os.environ for k in MALLOC_ENV):
        return
    orig = getattr(sys, "orig_argv", None)
    if not orig or not sys.executable:
        return
    try:
        os.execve(sys.executable, orig, {**os.environ, **MALLOC_ENV})
    except OSError:
        pass  # cannot re-exec here: mallopt in tune_allocator still applies
