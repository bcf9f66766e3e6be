"""A trial's checkpoints: when it writes one, what Tune and Train keep, and which kept one is its best.

A checkpoint is a folder with checkpoint.pt (one copy of the weights of its epoch and where the run
stood: an "epoch" checkpoint of kgsearch.run.checkpoint) and meta.json (the epoch, the sweep metric
at it, and the size of checkpoint.pt). A trial writes one at a validation that sets a new best, every
`checkpoints.every` validations otherwise, and when it ends. Tune (direct trials) and Train (worker
groups) keep the `checkpoints.keep` best by the sweep metric, and always the newest: the newest
resumes or retries a trial, the best is what the sweep exports.

A folder is copied to storage file by file; one whose checkpoint.pt is not the size meta.json
recorded (a copy cut short by a kill) is never chosen.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pyarrow.fs

from kgsearch.sweep.spec import CheckpointSpec

CHECKPOINT_FILE = "checkpoint.pt"
META_FILE = "meta.json"


class CheckpointPolicy:
    """Decides, epoch by epoch, whether a trial reports a checkpoint."""

    def __init__(self, every: int, last_epoch: int):
        self.every, self.last_epoch = every, last_epoch
        self.since = 0  # validations since the last checkpoint

    def due(self, record: dict, improved: bool) -> bool:
        if "eval_time" not in record:  # only validated epochs: their score is the sweep metric of that epoch
            return False
        self.since += 1
        ends = record["epoch"] >= self.last_epoch or bool(record.get("converged"))
        if improved or ends or self.since >= self.every:
            self.since = 0
            return True
        return False


def write_meta(folder: str | Path, epoch: int, score: float) -> None:
    size = os.path.getsize(Path(folder) / CHECKPOINT_FILE)
    (Path(folder) / META_FILE).write_text(json.dumps({"epoch": int(epoch), "score": float(score), "bytes": size}))


def keep_config(checkpoints: CheckpointSpec, metric: str) -> dict:
    """CheckpointConfig arguments (Tune and Train take the same): the best `keep` by the metric, plus the newest."""
    return {"num_to_keep": checkpoints.keep, "checkpoint_score_attribute": metric, "checkpoint_score_order": "max"}


def _meta(fs: pyarrow.fs.FileSystem, folder: str) -> dict | None:
    try:
        with fs.open_input_stream(f"{folder}/{META_FILE}") as f:
            meta = json.loads(f.readall())
        size = fs.get_file_info(f"{folder}/{CHECKPOINT_FILE}").size
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or size is None or size != meta.get("bytes"):
        return None
    return meta


def best_checkpoint(fs: pyarrow.fs.FileSystem, folder: str) -> str | None:
    """The complete checkpoint folder under `folder` with the best score (the earliest of equal ones)."""
    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(folder))
    except (OSError, FileNotFoundError):
        return None
    best, key = None, None
    for entry in entries:
        if entry.type != pyarrow.fs.FileType.Directory or not entry.base_name.startswith("checkpoint_"):
            continue
        meta = _meta(fs, entry.path)
        if meta is None or not math.isfinite(meta.get("score", math.nan)):
            continue
        candidate = (meta["score"], -meta["epoch"])
        if key is None or candidate > key:
            best, key = entry.path, candidate
    return best
