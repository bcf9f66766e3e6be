"""The Recipe protocol every model family implements, and the name -> recipe registry."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar, Protocol

import torch

from kgsearch.errors import KGSearchError

# name -> "module:Class"; imported lazily so `kgsearch.spec` validates without importing models.
RECIPES: dict[str, str] = {
    "dans": "kgsearch.dans.recipe:DansRecipe",
    "dkgr": "kgsearch.dkgr.recipe:DkgrRecipe",
}


class Recipe(Protocol):
    """One model family: typed config, once-per-dataset preparation, per-epoch training, evaluation."""

    name: ClassVar[str]
    Config: ClassVar[type]  # dataclass; must have `epochs`, `eval_every` and `seed` fields
    metric: ClassVar[str]  # the validation metric that selects checkpoints ("mrr", "tf_mrr")
    model: torch.nn.Module
    forward_model: torch.nn.Module  # the trainable replaces it with DDP(model)

    @classmethod
    def prepare(cls, config: Any, dataset: Any) -> dict: ...

    def train_epoch(self, epoch: int) -> dict[str, float]: ...

    def evaluate(self, split: str) -> dict: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def get_recipe(name: str) -> type:
    if name not in RECIPES:
        raise KGSearchError(f"unknown model {name!r} (known: {', '.join(sorted(RECIPES))})")
    module, cls = RECIPES[name].split(":")
    return getattr(importlib.import_module(module), cls)
