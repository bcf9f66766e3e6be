"""The epoch loop shared by every recipe, and the single-run CLI.

    python -m kgsearch.train RUN.yaml [--out DIR] [--data-root DIR] [--device auto|cpu|cuda]
    python -m kgsearch.train RUN.yaml --resume --out DIR    # continue from DIR/last.pt
    python -m kgsearch.train --eval DIR/best.pt             # test metrics of a saved checkpoint

RUN.yaml is `{model, dataset, data_root?, params}`; a sweep's exported best/config.yaml is one.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from kgsearch.checkpoint import load_checkpoint, save_checkpoint
from kgsearch.config import config_from_dict, config_to_dict, read_yaml
from kgsearch.errors import KGSearchError, cli_entry
from kgsearch.evaluation import RankAccumulator
from kgsearch.recipe import get_recipe

RUN_KEYS = {"model", "dataset", "data_root", "params"}


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf: the trial is failed, not retried."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise KGSearchError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def metrics_of(accs: dict[str, RankAccumulator], prefix: str) -> dict[str, float]:
    """{"": acc} -> val_mrr, val_hits@1, ...; {"tf": acc} -> val_tf_mrr, ... (count kept as *_count)."""
    out: dict[str, float] = {}
    for key, acc in accs.items():
        for name, value in acc.result().items():
            out[f"{prefix}{key + '_' if key else ''}{name}"] = value
    return out


def evaluate_split(recipe, split: str, prefix: str,
                   reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """Evaluate this worker's shard; `reduce` (an all-reduce sum) makes the metrics global and exact."""
    accs = recipe.evaluate(split)
    if reduce is not None:
        keys = sorted(accs)
        summed = reduce(torch.stack([accs[k].to_tensor() for k in keys]))
        accs = {k: RankAccumulator.from_tensor(summed[i]) for i, k in enumerate(keys)}
    return metrics_of(accs, prefix)


@dataclass
class FitState:
    """Where a run stands; saved in checkpoints so a resumed run continues exactly."""

    epoch: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    best_metrics: dict = field(default_factory=dict)
    best_state: dict | None = None


def fit(recipe, *, epochs: int, eval_every: int, state: FitState | None = None,
        on_epoch: Callable[[dict, FitState, bool], None] | None = None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        log: Callable[[str], None] | None = print) -> FitState:
    """Train `recipe` to `epochs`, validating every `eval_every` epochs (and at the last one).

    Keeps the best-validation state (by the recipe's `metric`) in memory; `on_epoch(record, state,
    improved)` sees every epoch's record (loss parts, epoch time, validation metrics when evaluated).
    """
    state = state or FitState()
    key = f"val_{recipe.metric}"
    for epoch in range(state.epoch + 1, epochs + 1):
        start = time.perf_counter()
        record: dict[str, Any] = {"epoch": epoch, **recipe.train_epoch(epoch)}
        record["epoch_time"] = time.perf_counter() - start
        loss = record.get("loss", 0.0)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss} at epoch {epoch}")
        improved = False
        if epoch % eval_every == 0 or epoch == epochs:
            start = time.perf_counter()
            record.update(evaluate_split(recipe, "valid", "val_", reduce))
            record["eval_time"] = time.perf_counter() - start
            if record[key] > state.best_metric:
                improved = True
                state.best_metric, state.best_epoch = record[key], epoch
                state.best_metrics = {k: v for k, v in record.items() if k.startswith("val_")}
                state.best_state = copy.deepcopy(recipe.state_dict())
        state.epoch = epoch
        record["best_" + key] = state.best_metric
        if log is not None:
            shown = " ".join(f"{k}={v:.4g}" for k, v in record.items()
                             if isinstance(v, float) and not k.endswith("count"))
            log(f"epoch {epoch}/{epochs} {shown}")
        if on_epoch is not None:
            on_epoch(record, state, improved)
    return state


def load_run_file(path: str | Path) -> dict:
    run = read_yaml(path)
    unknown = sorted(set(run) - RUN_KEYS)
    if unknown:
        raise KGSearchError(f"{path}: unknown key {unknown[0]!r} (expected {sorted(RUN_KEYS)})")
    for required in ("model", "dataset"):
        if required not in run:
            raise KGSearchError(f"{path}: missing key {required!r}")
    if not isinstance(run.get("params") or {}, dict):
        raise KGSearchError(f"{path}: key 'params' must be a mapping")
    return run


def build(run: dict, source: str, data_root: str | None = None, device: str = "auto"):
    """run-file dict -> (recipe class, config, dataset, prepared, recipe instance)."""
    recipe_cls = get_recipe(run["model"])  # before loading data: a wrong name fails fast
    from kgsearch.data import load

    config = config_from_dict(recipe_cls.Config, run.get("params"), source=f"{source}: params")
    dataset = load(run["dataset"], data_root=data_root or run.get("data_root"))
    seed_everything(config.seed)
    prepared = recipe_cls.prepare(config, dataset)
    seed_everything(config.seed)
    recipe = recipe_cls(config, dataset, prepared, device=resolve_device(device))
    return recipe_cls, config, dataset, recipe


def _save(path: Path, run: dict, recipe, state: FitState, which: str) -> None:
    body = {"fit": {"epoch": state.epoch, "best_metric": state.best_metric, "best_epoch": state.best_epoch,
                    "best_metrics": state.best_metrics}}
    body["recipe"] = recipe.state_dict() if which == "last" else state.best_state
    if which == "last":
        body["best_state"] = state.best_state
    save_checkpoint(path, model=run["model"], config=run, state=body, epoch=state.epoch,
                    metrics=state.best_metrics)


def _restore(blob: dict) -> FitState:
    fit_info = blob["state"]["fit"]
    return FitState(epoch=fit_info["epoch"], best_metric=fit_info["best_metric"],
                    best_epoch=fit_info["best_epoch"], best_metrics=fit_info["best_metrics"],
                    best_state=blob["state"].get("best_state"))


def run_training(run: dict, source: str, out: Path | None, data_root: str | None = None,
                 device: str = "auto", resume: bool = False) -> dict:
    """Train one run file end to end; returns {"val": best validation metrics, "test": test metrics}."""
    from kgsearch.provenance import provenance

    recipe_cls, config, dataset, recipe = build(run, source, data_root, device)
    state = None
    if resume:
        if out is None or not (out / "last.pt").exists():
            raise KGSearchError(f"--resume: no last.pt in {out}")
        blob = load_checkpoint(out / "last.pt", model=run["model"])
        recipe.load_state_dict(blob["state"]["recipe"])
        state = _restore(blob)
        print(f"resumed from {out / 'last.pt'} at epoch {state.epoch}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps({"run": run, **provenance(config.seed)}, indent=2))

    def on_epoch(record, st, improved):
        if out is not None:
            _save(out / "last.pt", run, recipe, st, "last")
            if improved:
                _save(out / "best.pt", run, recipe, st, "best")

    state = fit(recipe, epochs=config.epochs, eval_every=config.eval_every, state=state, on_epoch=on_epoch)
    if state.best_state is not None:
        recipe.load_state_dict(state.best_state)
    test = evaluate_split(recipe, "test", "test_")
    result = {"model": run["model"], "dataset": run["dataset"], "best_epoch": state.best_epoch,
              "val": state.best_metrics, "test": test}
    if out is not None:
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def format_metrics(metrics: dict[str, float]) -> str:
    rows = [f"  {k:<22} {v:.4f}" if isinstance(v, float) else f"  {k:<22} {v}" for k, v in metrics.items()]
    return "\n".join(rows)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kgsearch.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", help="run file (YAML): model, dataset, params")
    parser.add_argument("--out", type=Path, help="folder for checkpoints and metrics.json")
    parser.add_argument("--data-root", help="folder holding datasets by name (default: $KGSEARCH_DATA_ROOT)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda[:N]")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--eval", metavar="CHECKPOINT", help="evaluate a saved checkpoint on the test split")
    args = parser.parse_args(argv)
    if args.eval:
        blob = load_checkpoint(args.eval)
        run = blob["config"]
        _, _, _, recipe = build(run, args.eval, args.data_root, args.device)
        recipe.load_state_dict(blob["state"]["recipe"])
        print(format_metrics(evaluate_split(recipe, "test", "test_")))
        return 0
    if not args.run:
        parser.error("a run file is required (or --eval CHECKPOINT)")
    run = load_run_file(args.run)
    result = run_training(run, args.run, args.out, args.data_root, args.device, args.resume)
    print(f"best validation (epoch {result['best_epoch']}):\n{format_metrics(result['val'])}")
    print(f"test:\n{format_metrics(result['test'])}")
    return 0


if __name__ == "__main__":
    main()
