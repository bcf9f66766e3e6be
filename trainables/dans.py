"""Ray trial loop for DANS-KGC (static link prediction): binds DansRecipe to the trial engine (kgsearch.sweep.trial)."""

from __future__ import annotations

from kgsearch.dans.recipe import DansRecipe
from kgsearch.sweep.trial import TrialContext, drive_trial, worker_loop


def train_fn_per_worker(config: dict) -> None:
    """One Ray Train DDP worker of a multi-worker trial."""
    worker_loop(DansRecipe, config)


def train_driver_fn(config: dict, context: TrialContext) -> None:
    """The Tune function trial: trains here (one worker) or runs a TorchTrainer of train_fn_per_worker."""
    drive_trial(DansRecipe, train_fn_per_worker, config, context)
