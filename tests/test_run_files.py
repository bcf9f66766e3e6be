"""Every shipped run file (configs/*.yaml) is one a user can train: it loads, its params build a valid config
of its model, the dataset is one kgsearch knows, and the data kind suits the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgsearch.data.names import canonical_name, known_kind
from kgsearch.recipe import get_recipe
from kgsearch.run.runfile import RunFile

RUN_FILES = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_run_files():
    assert len(RUN_FILES) >= 5


@pytest.mark.parametrize("path", RUN_FILES, ids=lambda p: p.name)
def test_every_shipped_run_file_builds_a_valid_config_of_its_model(path):
    run = RunFile.load(path)
    config = run.config()  # unknown keys and out-of-range values raise here
    recipe = get_recipe(run.model)
    assert isinstance(config, recipe.Config)
    kind = known_kind(canonical_name(run.dataset))
    assert kind is not None, f"{path.name}: dataset {run.dataset!r} is not one kgsearch knows"
    assert kind == recipe.data_kind, f"{path.name}: {run.model} trains on {recipe.data_kind} data, {run.dataset} is {kind}"
