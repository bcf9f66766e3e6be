"""Single runs: train a run file, resume it, or test a checkpoint.

    python -m kgsearch.train RUN.yaml [--out DIR] [--data-root DIR] [--device auto|cpu|cuda]
    python -m kgsearch.train RUN.yaml --resume --out DIR    # continue from DIR/last.pt
    python -m kgsearch.train --eval DIR/best.pt             # test metrics of a saved checkpoint
    python -m kgsearch.train --eval DIR/best.pt --set params.eval_history=multi_step   # changed settings
    python -m kgsearch.train RUN.yaml --set params.lr=0.01  # any key of the run file, without copying it
    python -m kgsearch.train best/config.yaml --threads 1 --set params.seed=1   # a sweep's seed-1 row, exactly

RUN.yaml is `{model, dataset, data_root?, metric?, params}`; a sweep's exported best/config.yaml is one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kgsearch.allocator import restart_with_allocator_env, tune_allocator
from kgsearch.errors import KGSearchError, cli_entry
from kgsearch.overrides import apply_overrides
from kgsearch.progress import console
from kgsearch.run.checkpoint import check_resumable, load_checkpoint, restore_run, save_run, saved_params
from kgsearch.run.loop import FitHooks, FitState, fit
from kgsearch.run.metrics import evaluate_split
from kgsearch.run.runfile import RunFile, build
from kgsearch.yamlio import YamlDoc, read_yaml


class SaveCheckpoints(FitHooks):
    """OUT/last.pt after every epoch (what --resume reads), OUT/best.pt when validation improves."""

    def __init__(self, out: Path, run: dict, recipe):
        self.out, self.run, self.recipe = out, run, recipe

    def after_epoch(self, record: dict, state: FitState, improved: bool) -> None:
        save_run(self.out / "last.pt", self.run, self.recipe, state, "last")
        if improved:
            save_run(self.out / "best.pt", self.run, self.recipe, state, "best")


def run_training(run: RunFile, source: str, out: Path | None, data_root: str | None = None,
                 device: str = "auto", resume: bool = False) -> dict:
    """Train one run file end to end; returns {"val": best validation metrics, "test": test metrics}."""
    from kgsearch.provenance import provenance

    config, _, recipe = build(run, source, data_root, device, progress=console)
    state = None
    if resume:
        if out is None or not (out / "last.pt").exists():
            raise KGSearchError(f"--resume: no last.pt in {out}")
        blob = load_checkpoint(out / "last.pt", model=run.model)
        check_resumable(blob, config, out / "last.pt")
        state = restore_run(blob, recipe)
        print(f"resumed from {out / 'last.pt'} at epoch {state.epoch}")
    hooks = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps({"run": run.to_dict(), **provenance(config.seed)}, indent=2))
        hooks.append(SaveCheckpoints(out, run.to_dict(), recipe))
    state = fit(recipe, epochs=config.epochs, eval_every=config.eval_every, metric=run.metric, state=state,
                hooks=hooks, patience=getattr(config, "patience", 0))
    if state.converged:
        print(f"converged: no better validation for {config.patience} evaluations after epoch {state.best_epoch}")
    if state.best_state is not None:
        recipe.load_state_dict(state.best_state)
    test = evaluate_split(recipe, "test")
    result = {"model": run.model, "dataset": run.dataset, "best_epoch": state.best_epoch,
              "val": state.best_metrics, "test": test}
    if out is not None:
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def evaluate_checkpoint(path: str, data_root: str | None = None, device: str = "auto",
                        overrides: list[str] = ()) -> dict:
    """Test metrics of the weights saved in a checkpoint (data and preparation rebuilt from its run file,
    with `overrides` -- `--set` items -- applied to it: evaluation settings such as params.eval_history;
    one that changes the model's shape fails when the weights are loaded)."""
    blob = load_checkpoint(path)
    source = f"{path} (its run file)"
    data = dict(blob["config"])
    if saved_params(blob) is not None:  # as it trained, whatever the code's defaults are now
        data["params"] = dict(saved_params(blob))
    doc = apply_overrides(YamlDoc(data, "", source), list(overrides))
    run = RunFile.from_dict(doc.data, source=source, doc=doc)
    _, _, recipe = build(run, path, data_root, device, progress=console)
    restore_run(blob, recipe)
    return evaluate_split(recipe, "test")


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
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a key of the run file, e.g. params.lr=0.01 (repeatable; with --eval: "
                        "of the checkpoint's run file, e.g. params.eval_history=multi_step)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads (default: torch's, one per core); a sweep's trials train with "
                        "resources.cpus_per_worker threads, and the same count reproduces their numbers exactly")
    args = parser.parse_args(argv)
    tune_allocator()  # kgsearch/allocator.py: page faults otherwise cost up to a third of an epoch
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads: expected a positive integer, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.eval:
        print(format_metrics(evaluate_checkpoint(args.eval, args.data_root, args.device, args.set)))
        return 0
    if not args.run:
        parser.error("a run file is required (or --eval CHECKPOINT)")
    doc = apply_overrides(read_yaml(args.run, what="run settings (model, dataset, params)"), args.set)
    run = RunFile.from_dict(doc.data, args.run, doc)
    result = run_training(run, args.run, args.out, args.data_root, args.device, args.resume)
    print(f"best validation (epoch {result['best_epoch']}):\n{format_metrics(result['val'])}")
    print(f"test:\n{format_metrics(result['test'])}")
    return 0


if __name__ == "__main__":
    restart_with_allocator_env()
    main()
