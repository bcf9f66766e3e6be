"""Export of a sweep's best trial: its best-validation weights tested, best/{config.yaml,checkpoint.pt,metrics.json}."""

from __future__ import annotations

from pathlib import Path

from kgsearch.run.checkpoint import load_checkpoint, restore_run, save_run
from kgsearch.run.loop import seed_everything
from kgsearch.run.metrics import evaluate_split, metric_key
from kgsearch.run.runfile import RunFile, resolve_device
from kgsearch.sweep.results import TrialRow
from kgsearch.sweep.spec import SweepSpec
from kgsearch.sweep.storage import ExperimentStore
from kgsearch.sweep.checkpoints import CHECKPOINT_FILE


def export_best(spec: SweepSpec, store: ExperimentStore, best: TrialRow, recipe_cls, dataset, prepared,
                data_root) -> dict:
    """Evaluate the best trial's best-validation weights on valid and test, and write best/."""
    with best.checkpoint.as_directory() as folder:  # a local path, or a download from the bucket
        blob = load_checkpoint(Path(folder) / CHECKPOINT_FILE, model=spec.model)
    run = RunFile.from_dict(blob["config"], source=f"{best.trial} checkpoint")
    config = run.config(f"{best.trial} checkpoint")
    seed_everything(config.seed)
    recipe = recipe_cls(config, dataset, prepared, device=resolve_device("auto"))
    state = restore_run(blob, recipe, weights="best")
    val = evaluate_split(recipe, "valid")
    test = evaluate_split(recipe, "test")
    # The run file replays the trial: same params and seed, trained for the epochs the trial ran.
    replay = RunFile(model=spec.model, dataset=spec.dataset, data_root=data_root, metric=spec.metric,
                     params={**run.params, "epochs": best.epochs})
    where = store.local or store.uri
    store.write_text("best/config.yaml", replay.to_yaml(
        header=f"# best trial {best.trial} ({best.trial_id}) of sweep {spec.name}: "
               f"{spec.metric} {best.best:.4f} at epoch {best.best_epoch}\n"
               f"# replay: python -m kgsearch.train {where}/best/config.yaml"))
    store.write_file("best/checkpoint.pt", lambda path: save_run(path, replay.to_dict(), recipe, state, "best"))
    test_key = metric_key("test", spec.metric)
    info = {"trial": best.trial, "trial_id": best.trial_id, "best_epoch": state.best_epoch,
            "epochs_run": best.epochs, "searched": best.params, "val": val, "test": test, "test_key": test_key,
            "trial_path": best.path}
    store.write_json("best/metrics.json", info)
    return info
