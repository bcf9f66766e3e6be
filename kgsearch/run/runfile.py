"""The run file: `{model, dataset, data_root?, metric?, params}`, what `kgsearch.train` runs and a
sweep exports as best/config.yaml, and what every checkpoint records as its `config`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kgsearch.config import ConfigError, config_from_dict
from kgsearch.errors import KGSearchError
from kgsearch.progress import ProgressFactory, silent
from kgsearch.recipe import RECIPES, check_metric, get_recipe
from kgsearch.run.loop import seed_everything
from kgsearch.yamlio import YamlDoc, read_yaml, yaml_text


@dataclass(frozen=True)
class RunFile:
    model: str  # a recipe name
    dataset: str  # a dataset name or folder
    params: dict = field(default_factory=dict)  # the recipe's config fields (unset ones: its defaults)
    data_root: str | None = None  # where a dataset name is looked up (else $KGSEARCH_DATA_ROOT)
    metric: str | None = None  # validation metric that selects the best checkpoint; None: the recipe's

    @classmethod
    def from_dict(cls, data: dict, source: str = "run file", doc: YamlDoc | None = None) -> "RunFile":
        """Validate a run-file mapping (`doc` lets errors name the YAML line)."""
        def error(path: tuple, reason: str) -> KGSearchError:
            return doc.error(path, reason) if doc is not None else KGSearchError(
                f"{source}: {'.'.join(map(str, path))}: {reason}")

        keys = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in keys:
                raise error((key,), f"unknown key {key!r} (expected {', '.join(keys)})")
        for key in ("model", "dataset"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise error((key,), "required key is missing" if key not in data else "expected a name")
        if data["model"] not in RECIPES:
            raise error(("model",), f"unknown model {data['model']!r} (known: {', '.join(sorted(RECIPES))})")
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise error(("params",), "expected a mapping of config fields")
        run = cls(model=data["model"], dataset=data["dataset"], params=dict(params),
                  data_root=data.get("data_root"), metric=data.get("metric"))
        try:
            run.config(source)
        except ConfigError as exc:
            if exc.key is None:
                raise
            raise error(("params", exc.key), exc.reason) from None
        if run.metric is not None:
            try:
                check_metric(run.recipe_cls(), run.metric)
            except KGSearchError as exc:
                raise error(("metric",), str(exc)) from None
        return run

    @classmethod
    def load(cls, path: str | Path) -> "RunFile":
        doc = read_yaml(path, what="run settings (model, dataset, params)")
        return cls.from_dict(doc.data, str(path), doc)

    def recipe_cls(self) -> type:
        return get_recipe(self.model)

    def config(self, source: str | None = None) -> Any:
        return config_from_dict(self.recipe_cls().Config, self.params, source=f"{source or 'run'}: params")

    def to_dict(self) -> dict:
        out = {"model": self.model, "dataset": self.dataset, "data_root": self.data_root}
        if self.metric is not None:
            out["metric"] = self.metric
        return {**out, "params": self.params}

    def to_yaml(self, header: str = "") -> str:
        return yaml_text(self.to_dict(), header)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise KGSearchError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def build(run: RunFile, source: str, data_root: str | None = None, device: str = "auto",
          progress: ProgressFactory = silent):
    """Run file -> (config, dataset, recipe): loads the data and runs `prepare()` for this one run;
    `progress` shows the preparation and, on the recipe, each epoch and evaluation pass."""
    from kgsearch.data import load

    recipe_cls = run.recipe_cls()  # before loading data: a wrong name fails fast
    config = run.config(source)
    dataset = load(run.dataset, data_root=data_root or run.data_root)
    seed_everything(config.seed)
    prepared = recipe_cls.prepare(config, dataset, progress=progress)
    seed_everything(config.seed)  # the same initial weights whether or not prepare() drew numbers
    recipe = recipe_cls(config, dataset, prepared, device=resolve_device(device))
    recipe.progress = progress
    return config, dataset, recipe
