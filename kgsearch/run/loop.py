"""The epoch loop shared by every recipe: `fit()` with explicit hooks, and the `FitState` it keeps."""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from kgsearch.run.metrics import evaluate_split, metric_key


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf: a deterministic failure, never retried."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


@dataclass
class FitState:
    """Where a run stands; saved in checkpoints so a resumed run continues exactly."""

    epoch: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    best_metrics: dict = field(default_factory=dict)
    best_state: dict | None = None
    converged: bool = False  # stopped early: `patience` validations in a row without a new best


class FitHooks:
    """Extension points of `fit()`; override what you need (reporting, fault injection, rank averaging)."""

    def before_epoch(self, epoch: int) -> None:
        """Before the epoch's training."""

    def after_train(self, epoch: int, record: dict) -> dict:
        """The epoch's training record (loss parts), before the divergence check; may replace it."""
        return record

    def after_epoch(self, record: dict, state: FitState, improved: bool) -> None:
        """After training and (when due) validation; `improved`: this epoch set a new best."""


def fit(recipe, *, epochs: int, eval_every: int, metric: str | None = None, state: FitState | None = None,
        hooks: Sequence[FitHooks] = (), reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        patience: int = 0, log: Callable[[str], None] | None = print) -> FitState:
    """Train `recipe` to `epochs`, validating every `eval_every` epochs (and at the last one).

    Keeps the best-validation state by `metric` (default: the recipe's own) in memory. `reduce` (an
    all-reduce sum) makes validation global across DDP ranks. `patience` > 0 stops the run once that
    many validations in a row brought no new best (the record of the last epoch says `converged`), so
    a long epoch budget costs nothing after a run has converged.
    """
    state = state or FitState()
    key = metric_key("valid", metric or recipe.metric)
    for epoch in range(state.epoch + 1, epochs + 1):
        if state.converged:
            break
        for hook in hooks:
            hook.before_epoch(epoch)
        start = time.perf_counter()
        record: dict[str, Any] = recipe.train_epoch(epoch)
        for hook in hooks:
            record = hook.after_train(epoch, record)
        record = {"epoch": epoch, **record, "epoch_time": time.perf_counter() - start}
        loss = record.get("loss", 0.0)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss} at epoch {epoch}")
        improved = False
        if epoch % eval_every == 0 or epoch == epochs:
            start = time.perf_counter()
            record.update(evaluate_split(recipe, "valid", reduce))
            record["eval_time"] = time.perf_counter() - start
            if key not in record:
                raise KeyError(f"{type(recipe).__name__}.evaluate reported no {key}")
            if record[key] > state.best_metric:
                improved = True
                state.best_metric, state.best_epoch = record[key], epoch
                state.best_metrics = {k: v for k, v in record.items() if k.startswith("val_")}
                state.best_state = copy.deepcopy(recipe.state_dict())
        state.epoch = epoch
        record["best_" + key] = state.best_metric
        if patience and "eval_time" in record and epoch - state.best_epoch >= patience * eval_every:
            state.converged = True
            record["converged"] = 1.0
        if log is not None:
            shown = " ".join(f"{k}={v:.4g}" for k, v in record.items()
                             if isinstance(v, float) and not k.endswith("count"))
            log(f"epoch {epoch}/{epochs} {shown}")
        for hook in hooks:
            hook.after_epoch(record, state, improved)
    return state
