"""Per-trial Ray loops, one module per model family (`trainables.<recipe name>`).

Each module binds its recipe to the shared loop in `trainables.common` and exposes
`train_driver_fn(config, context)` (the Tune function trial) and `train_fn_per_worker(config)`
(a Ray Train worker). Adding a model = one module here named after its recipe.
"""

from __future__ import annotations

from types import ModuleType



def get_trainable(model: str) -> ModuleType:
    """The trainables module of recipe `model` (e.g. trainables.dans)."""
    from kgsearch.sweep import trainable_module

    return trainable_module(model)
