"""The Recipe protocol every model family implements, the facts it declares, and the name -> recipe registry.

A recipe states its own facts on the class (PyKEEN style), and everything above it asks the class:
the sweep validator checks a sweep file's dataset kind, metric and searched keys against them, the
trial engine checks that trials use what `prepare()` was run with. No module above names a model.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, ClassVar, Literal, Protocol

import torch

from kgsearch.errors import KGSearchError
from kgsearch.progress import ProgressFactory, silent

# name -> "module:Class"; imported on first use so that listing names imports no model code.
RECIPES: dict[str, str] = {
    "dans": "kgsearch.dans.recipe:DansRecipe",
    "dkgr": "kgsearch.dkgr.recipe:DkgrRecipe",
}

DataKind = Literal["static", "temporal"]


class Recipe(Protocol):
    """One model family: typed config, once-per-dataset preparation, per-epoch training, evaluation."""

    # -- facts -----------------------------------------------------------------------------------
    name: ClassVar[str]
    Config: ClassVar[type]  # dataclass with `epochs`, `eval_every` and `seed` fields
    data_kind: ClassVar[DataKind]  # the kind of dataset it trains on
    metric: ClassVar[str]  # default validation metric that selects checkpoints ("mrr", "tf_mrr")
    # evaluate() returns {group: RankAccumulator}; "" for one group ("mrr"), else "tf" -> "tf_mrr"
    metric_groups: ClassVar[tuple[str, ...]]
    # Config fields whose values `prepare()` reads: a sweep prepares once with the fixed values, so
    # these can never be searched, and every trial must carry the values it was prepared with.
    prepare_fields: ClassVar[frozenset[str]]

    # -- behaviour -------------------------------------------------------------------------------
    model: torch.nn.Module
    forward_model: torch.nn.Module  # the trial engine replaces it with DDP(model)
    progress: ProgressFactory  # called for each long loop (epoch, evaluation); silent unless a CLI sets it

    @classmethod
    def prepare(cls, config: Any, dataset: Any, progress: ProgressFactory = silent) -> dict: ...

    def __init__(self, config: Any, dataset: Any, prepared: dict, device: Any = "cpu",
                 rank: int = 0, world_size: int = 1) -> None: ...

    def epoch_shard(self, epoch: int) -> torch.Tensor:
        """Indices of the training units (queries, timestamps) this rank trains on in `epoch`."""

    def train_epoch(self, epoch: int) -> dict[str, float]: ...

    def evaluate(self, split: str) -> dict: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def get_recipe(name: str) -> type:
    if name not in RECIPES:
        raise KGSearchError(f"unknown model {name!r} (known: {', '.join(sorted(RECIPES))})")
    module, cls = RECIPES[name].split(":")
    return getattr(importlib.import_module(module), cls)


_METRIC = re.compile(r"(?:(?P<group>[a-z]+(?:_[a-z]+)*)_)?(?P<stat>mrr|hits@\d+)")


def check_metric(recipe_cls: type, metric: str) -> str:
    """A metric name this recipe reports ("tf_mrr", "hits@10"; a "val_" prefix is allowed) -> bare name."""
    bare = metric[len("val_"):] if metric.startswith("val_") else metric
    match = _METRIC.fullmatch(bare)
    if not match or (match["group"] or "") not in recipe_cls.metric_groups:
        examples = ", ".join(f"val_{g + '_' if g else ''}mrr" for g in recipe_cls.metric_groups)
        raise KGSearchError(f"unknown metric {metric!r} for model {recipe_cls.name!r} (e.g. {examples}, "
                            f"val_{recipe_cls.metric.replace('mrr', 'hits@10')})")
    return bare


def prepared_values(recipe_cls: type, config: Any) -> dict[str, Any]:
    """The config values `prepare()` reads (what a sweep prepared with)."""
    return {name: getattr(config, name) for name in sorted(recipe_cls.prepare_fields)}
