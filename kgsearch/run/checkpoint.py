"""Checkpoints: the file format, and the one way a checkpoint becomes recipe weights + loop state.

A checkpoint is a tagged dict loaded with weights_only=True (anything else is refused):
``{format, model, config: run-file dict, state: {fit, recipe, best_state?, params?}, epoch, metrics}``;
`params` is every field of the run's config, defaults included, so that a checkpoint is resumed and evaluated
as it was trained even after a default changed in the code (older checkpoints lack it).
A "last" checkpoint holds the latest weights and the best-validation ones (`best_state`), so one
file resumes a run *and* exports its best; a "best" checkpoint holds only the best weights; an
"epoch" checkpoint holds one copy of the weights of its epoch and where the run stood (sweep trials
write those and keep the best one as a checkpoint of its own: kgsearch.sweep.checkpoints).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

import torch

from kgsearch.config import config_to_dict
from kgsearch.errors import KGSearchError
from kgsearch.run.loop import FitState

MAGIC = "kgsearch-checkpoint-v1"


def save_checkpoint(path: str | Path, *, model: str, config: dict, state: dict, epoch: int,
                    metrics: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": MAGIC, "model": model, "config": config, "state": state,
                    "epoch": int(epoch), "metrics": dict(metrics or {})}, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename, so a power cut cannot leave an empty file there
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


def save_run(path: str | Path, run: dict, recipe, state: FitState, which: Literal["last", "best", "epoch"]) -> None:
    """Write the run's "last" checkpoint (resumable, with the best weights), its "best" one (best-validation
    weights only) or an "epoch" one (resumable, this epoch's weights only)."""
    body = {"fit": {"epoch": state.epoch, "best_metric": state.best_metric, "best_epoch": state.best_epoch,
                    "best_metrics": state.best_metrics, "converged": state.converged}}
    body["recipe"] = state.best_state if which == "best" else recipe.state_dict()
    if which == "last":
        body["best_state"] = state.best_state
    config = getattr(recipe, "config", None)
    if config is not None:
        body["params"] = config_to_dict(config)
    save_checkpoint(path, model=run["model"], config=run, state=body, epoch=state.epoch,
                    metrics=state.best_metrics)


def saved_params(blob: dict) -> dict | None:
    """Every config field the checkpoint's run trained with (None: a checkpoint from before they were saved)."""
    return blob["state"].get("params")


# What a resume may change: how long the run goes on and how often it validates.
RESUME_MAY_CHANGE = frozenset({"epochs", "eval_every", "eval_batch_size", "patience"})


def check_resumable(blob: dict, config: Any, path: str | Path) -> None:
    """Refuse to resume a run whose config now resolves to other values than it trained with: an edited run
    file, another --set, or a default changed in the code since (which --set can pin back); bar
    RESUME_MAY_CHANGE."""
    saved = saved_params(blob)
    if saved is None:
        return
    now = config_to_dict(config)
    differ = {k: (saved[k], now.get(k, "<no such field>")) for k in saved
              if k not in RESUME_MAY_CHANGE and now.get(k, object()) != saved[k]}
    if differ:
        shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(differ.items()))
        pins = " ".join(f"--set params.{k}={a}" for k, (a, _) in sorted(differ.items()))
        raise KGSearchError(f"--resume: {path} trained with other settings than this run file gives now ({shown}); "
                            f"resume with {pins}, or train into a new --out")


def restore_run(blob: dict, recipe, weights: Literal["saved", "best"] = "saved") -> FitState:
    """Load a checkpoint into `recipe` and return where its run stood.

    weights="saved": the weights the file was written with (resume, --eval); "best": its
    best-validation weights (a "last" checkpoint's `best_state`, else the saved ones).
    """
    state = blob["state"]
    best = state.get("best_state")
    recipe.load_state_dict(best if weights == "best" and best is not None else state["recipe"])
    fit = state["fit"]
    return FitState(epoch=fit["epoch"], best_metric=fit["best_metric"], best_epoch=fit["best_epoch"],
                    best_metrics=fit["best_metrics"], best_state=best, converged=fit.get("converged", False))
