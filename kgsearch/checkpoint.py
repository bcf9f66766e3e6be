"""Our checkpoint format: a tagged dict loaded with weights_only=True; anything else is rejected."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from kgsearch.errors import KGSearchError

MAGIC = "kgsearch-checkpoint-v1"


def save_checkpoint(path: str | Path, *, model: str, config: dict, state: dict, epoch: int,
                    metrics: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": MAGIC, "model": model, "config": config, "state": state,
                "epoch": int(epoch), "metrics": dict(metrics or {})}, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-write never leaves a truncated checkpoint


def load_checkpoint(path: str | Path, model: str | None = None) -> dict[str, Any]:
    path = Path(path)
    try:
        with warnings.catch_warnings():  # foreign pickles make torch warn before refusing them
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise KGSearchError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # pickle errors, truncated zip, foreign objects refused by weights_only
        raise KGSearchError(f"{path}: not a kgsearch checkpoint ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != MAGIC:
        raise KGSearchError(f"{path}: not a kgsearch checkpoint (missing format tag {MAGIC!r})")
    if model is not None and blob.get("model") != model:
        raise KGSearchError(f"{path}: checkpoint is for model {blob.get('model')!r}, not {model!r}")
    return blob
