"""Metric names, in one place: `<split>_<group>_<stat>` (val_mrr, test_tf_hits@10, val_rel_raw_mrr)."""

from __future__ import annotations

from typing import Callable

import torch

from kgsearch.evaluation import RankAccumulator

SPLIT_PREFIX = {"valid": "val", "test": "test", "train": "train"}


def metric_key(split: str, bare: str) -> str:
    """("valid", "tf_mrr") -> "val_tf_mrr"; a bare name may already carry "val_" (sweep files do)."""
    if bare.startswith("val_"):
        bare = bare[len("val_"):]
    return f"{SPLIT_PREFIX.get(split, split)}_{bare}"


def metrics_of(accs: dict[str, RankAccumulator], split: str) -> dict[str, float]:
    """{"": acc} -> val_mrr, val_hits@1, ...; {"tf": acc} -> val_tf_mrr, ... (count kept as *_count)."""
    return {metric_key(split, f"{group + '_' if group else ''}{name}"): value
            for group, acc in accs.items() for name, value in acc.result().items()}


def evaluate_split(recipe, split: str,
                   reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """Evaluate this worker's shard; `reduce` (an all-reduce sum) makes the metrics global and exact."""
    accs = recipe.evaluate(split)
    if reduce is not None:
        keys = sorted(accs)
        summed = reduce(torch.stack([accs[k].to_tensor() for k in keys]))
        accs = {k: RankAccumulator.from_tensor(summed[i]) for i, k in enumerate(keys)}
    return metrics_of(accs, split)
