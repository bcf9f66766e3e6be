"""Ray trial loop for DKGR-DR (temporal KG reasoning): binds DkgrRecipe to the trial engine (kgsearch.sweep.trial)."""

from __future__ import annotations

from kgsearch.dkgr.recipe import DkgrRecipe
from kgsearch.sweep.trial import TrialContext, drive_trial, worker_loop


def train_fn_per_worker(config: dict) -> None:
    """One Ray Train DDP worker of a multi-worker trial."""
    worker_loop(DkgrRecipe, config)


def train_driver_fn(config: dict, context: TrialContext) -> None:
    """The Tune function trial: trains here (one worker) or runs a TorchTrainer of train_fn_per_worker."""
    drive_trial(DkgrRecipe, train_fn_per_worker, config, context)
