"""Meta-tests: every registered recipe comes with what a model needs to be sweepable and tested."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import yaml

from kgsearch.recipe import RECIPES

REPO = Path(__file__).resolve().parent.parent


def contract_subclasses() -> dict[str, str]:
    """recipe name -> "file::Class" of each `class X(RecipeContract)` with `recipe = "name"` in tests/."""
    found = {}
    for path in (REPO / "tests").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "RecipeContract" for b in node.bases):
                for stmt in node.body:
                    if (isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] == ["recipe"]
                            and isinstance(stmt.value, ast.Constant)):
                        found[stmt.value.value] = f"{path.name}::{node.name}"
    return found


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_has_a_trainable(name):
    module = importlib.import_module(f"trainables.{name}")
    assert callable(getattr(module, "train_driver_fn", None)), f"trainables/{name}.py: no train_driver_fn"
    assert callable(getattr(module, "train_fn_per_worker", None)), f"trainables/{name}.py: no train_fn_per_worker"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_has_a_sweep_file(name):
    models = {yaml.safe_load(p.read_text()).get("model") for p in (REPO / "search_spaces").glob("*.yaml")}
    assert name in models, f"no search_spaces/*.yaml with model: {name}"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_has_a_contract_test(name):
    assert name in contract_subclasses(), (f"no `class ...(RecipeContract)` with recipe = {name!r} in tests/ "
                                           "(see tests/contract.py)")
