"""Optional experiment trackers: Ray's MLflow and Weights & Biases callbacks, switched on by the sweep
file's `tracking:` section (or `--track NAME`). Neither package is a kgsearch dependency: a sweep that
asks for one that is not installed is refused before anything starts."""

from __future__ import annotations

import importlib.util

from kgsearch.sweep.spec import TrackingSpec

PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}  # tracking key -> the package it needs


def installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken install, or a module set to None in sys.modules
        return False


def missing_trackers(tracking: TrackingSpec) -> list[str]:
    """The tracking keys the spec switches on whose package cannot be imported here."""
    return [key for key, package in PACKAGES.items() if getattr(tracking, key) is not None and not installed(package)]


def tracker_callbacks(tracking: TrackingSpec, experiment: str) -> list:
    """The Tune callbacks of the trackers the spec switches on (each defaults to the experiment name)."""
    callbacks = []
    if tracking.mlflow is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(tracking_uri=tracking.mlflow.tracking_uri,
                                              experiment_name=tracking.mlflow.experiment_name or experiment))
    if tracking.wandb is not None:
        from ray.air.integrations.wandb import WandbLoggerCallback

        callbacks.append(WandbLoggerCallback(project=tracking.wandb.project or experiment, group=tracking.wandb.group))
    return callbacks
