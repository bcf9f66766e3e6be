"""Content-addressed on-disk cache for per-dataset preparation (pre-training, DAM, histories)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch


def cache_dir() -> Path:
    return Path(os.environ.get("KGSEARCH_CACHE", Path.home() / ".cache" / "kgsearch"))


def cache_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def cached(kind: str, key: dict, build: Callable[[], dict], enabled: bool = True) -> dict:
    """Return build() from `<cache>/<kind>/<hash(key)>.pt`, computing and storing it on a miss.

    Values must be tensors / numbers / strings / lists / dicts (saved and loaded with weights_only).
    """
    if not enabled or os.environ.get("KGSEARCH_NO_CACHE"):
        return build()
    path = cache_dir() / kind / f"{cache_key(**key)}.pt"
    if path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            path.unlink(missing_ok=True)  # corrupt entry: rebuild
    value = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(value, tmp)
    os.replace(tmp, path)
    return value
