"""What a run records about itself: git commit, package versions, host, seeds."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("kgsearch", "torch", "ray", "optuna", "torch_geometric", "networkx", "scikit-learn", "numpy")


def git_commit(start: Path | None = None) -> str | None:
    """Commit of the checkout holding this package (None outside a git checkout, e.g. a wheel install)."""
    here = start or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def provenance(seed: int | None = None) -> dict:
    return {"git_commit": git_commit(), "versions": versions(), "host": platform.node(), "seed": seed}
