"""Export to best/: a checkpoint's best-validation weights tested on valid and test, and best/{config.yaml,
checkpoint.pt,metrics.json} written. `export_best` exports the best search trial (the re-training off);
kgsearch.sweep.retrain tests every re-trained run with `restore_and_test` and writes the winner with `write_best`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgsearch.run.checkpoint import load_checkpoint, restore_run, save_run
from kgsearch.run.loop import FitState, seed_everything
from kgsearch.run.metrics import evaluate_split, metric_key
from kgsearch.run.runfile import RunFile, resolve_device
from kgsearch.sweep.results import TrialRow
from kgsearch.sweep.spec import SweepSpec
from kgsearch.sweep.storage import ExperimentStore
from kgsearch.sweep.checkpoints import CHECKPOINT_FILE


@dataclass
class Tested:
    """A trial's best checkpoint restored into a recipe, with its metrics on valid and test."""

    run: RunFile  # the run file inside the checkpoint (every config field, the trial's seed and epochs)
    recipe: Any
    state: FitState
    val: dict
    test: dict


def restore_and_test(spec: SweepSpec, checkpoint, label: str, recipe_cls, dataset, prepared,
                    evaluate: bool = True) -> Tested:
    """Restore a Ray checkpoint's best-validation weights and evaluate them on valid and test (`evaluate`)."""
    with checkpoint.as_directory() as folder:  # a local path, or a download from the bucket
        blob = load_checkpoint(Path(folder) / CHECKPOINT_FILE, model=spec.model)
    run = RunFile.from_dict(blob["config"], source=f"{label} checkpoint")
    config = run.config(f"{label} checkpoint")
    seed_everything(config.seed)
    recipe = recipe_cls(config, dataset, prepared, device=resolve_device("auto"))
    state = restore_run(blob, recipe, weights="best")
    val = evaluate_split(recipe, "valid") if evaluate else {}
    test = evaluate_split(recipe, "test") if evaluate else {}
    return Tested(run=run, recipe=recipe, state=state, val=val, test=test)


def write_best(spec: SweepSpec, store: ExperimentStore, tested: Tested, params: dict, data_root, header: str) -> None:
    """best/config.yaml (a device-free run file with `params`) and best/checkpoint.pt (`tested`'s weights)."""
    replay = RunFile(model=spec.model, dataset=spec.dataset, data_root=data_root, metric=spec.metric, params=params)
    store.write_text("best/config.yaml", replay.to_yaml(header=header))
    store.write_file("best/checkpoint.pt",
                     lambda path: save_run(path, replay.to_dict(), tested.recipe, tested.state, "best"))


def export_best(spec: SweepSpec, store: ExperimentStore, best: TrialRow, recipe_cls, dataset, prepared,
                data_root) -> dict:
    """Evaluate the best trial's best-validation weights on valid and test, and write best/."""
    tested = restore_and_test(spec, best.checkpoint, best.trial, recipe_cls, dataset, prepared)
    where = store.local or store.uri
    # The run file replays the trial: same params and seed, trained for the epochs the trial ran.
    write_best(spec, store, tested, {**tested.run.params, "epochs": best.epochs}, data_root,
               header=f"# best trial {best.trial} ({best.trial_id}) of sweep {spec.name}: "
                      f"{spec.metric} {best.best:.4f} at epoch {best.best_epoch}\n"
                      f"# replay: python -m kgsearch.train {where}/best/config.yaml")
    test_key = metric_key("test", spec.metric)
    info = {"trial": best.trial, "trial_id": best.trial_id, "best_epoch": tested.state.best_epoch,
            "epochs_run": best.epochs, "searched": best.params, "val": tested.val, "test": tested.test,
            "test_key": test_key, "trial_path": best.path}
    store.write_json("best/metrics.json", info)
    return info
