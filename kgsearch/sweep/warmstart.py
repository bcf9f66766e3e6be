"""Warm start: a sweep's first trial has a run file's values of the searched parameters (`start_from:`).

`start_from: auto` (the default) is `configs/<sweep name>.yaml` when it exists and is for the sweep's
model, on whatever dataset the sweep runs (looked up next to the sweep file's `search_spaces/` folder, then in the repo); a path
(absolute, or relative to the repo root, then to the working directory) picks another run file, of the
same model; `null` or `none` turns it off. Each searched parameter that is active for those values gets
the run file's value, or the recipe config's default where the run file does not set it; a value the
space cannot produce is a validation error, never clamped. kgsearch.sweep.searcher enqueues the values
as the study's first trial (`study.enqueue_trial`).

The first trial is the run file only if the sweep's `fixed` values agree with it too: `differences`
lists the keys where they do not (shown by --dry-run; tests/test_search_spaces.py holds the shipped
sweeps to it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from kgsearch.config import config_from_dict, config_to_dict
from kgsearch.errors import KGSearchError
from kgsearch.sweep.space import active_values
from kgsearch.sweep.spec import ChoiceParam, IntParam, Param
from kgsearch.yamlio import YamlDoc

AUTO = "auto"
OFF = ("none", "null", "")
CONFIGS = "configs"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def default_candidates(name: str, source: str) -> list[Path]:
    """Where `start_from: auto` looks: <project>/configs/NAME.yaml beside the sweep file's search_spaces/
    folder, then the repo's configs/NAME.yaml."""
    found: list[Path] = []
    sweep = Path(source)
    if sweep.parent.name == "search_spaces":
        found.append(sweep.parent.parent / CONFIGS / f"{name}.yaml")
    repo = REPO_ROOT / CONFIGS / f"{name}.yaml"
    if all(repo.resolve() != p.resolve() for p in found):
        found.append(repo)
    return found


def _is_off(start_from: Any) -> bool:
    return start_from is None or start_from is False or str(start_from).strip().lower() in OFF


def _explicit_path(text: str, doc: YamlDoc) -> Path:
    path = Path(text).expanduser()
    tried = [path] if path.is_absolute() else [REPO_ROOT / path, Path.cwd() / path]
    for candidate in tried:
        if candidate.is_file():
            return candidate.resolve()
    raise doc.error(("start_from",), f"no such run file {text!r} (looked for {', '.join(map(str, tried))})")


def _load(path: Path, doc: YamlDoc):
    from kgsearch.run.runfile import RunFile

    try:
        return RunFile.load(path)
    except KGSearchError as exc:
        raise doc.error(("start_from",), f"the run file is not valid: {exc}") from None


def find_run_file(start_from: Any, name: str, source: str, model: str, dataset: str, doc: YamlDoc):
    """The run file the first trial comes from, as (path, RunFile, how), or None."""
    if _is_off(start_from):
        return None
    if str(start_from).strip().lower() == AUTO:
        for candidate in default_candidates(name, source):
            if candidate.is_file():
                run = _load(candidate, doc)
                # The model must match; the dataset need not: a sweep pointed at another graph
                # (--set dataset=...) starts from the same known-good values.
                if run.model == model:
                    return candidate.resolve(), run, "start_from: auto"
                return None  # configs/NAME.yaml is for another model: no warm start
        return None
    path = _explicit_path(str(start_from), doc)
    run = _load(path, doc)
    if run.model != model:  # another dataset is allowed: the user pointed at it on purpose
        raise doc.error(("start_from",), f"{display(path)} is a run file for model {run.model!r}; this sweep "
                                         f"searches model {model!r}")
    return path, run, f"start_from: {start_from}"


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _in_space(param: Param, value: Any) -> tuple[bool, Any]:
    """Whether `param` can produce `value`, and the value as Optuna takes it."""
    if isinstance(param, ChoiceParam):
        for choice in param.values:
            if _same(choice, value):
                return True, choice
        return False, value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False, value
    if isinstance(param, IntParam):
        ok = float(value).is_integer() and param.low <= value <= param.high and (int(value) - param.low) % param.step == 0
        return ok, int(value)
    return param.low <= value <= param.high, float(value)


def start_values(path: Path, run, space: dict[str, Param], config_cls: type, doc: YamlDoc,
                 report: Callable[[KGSearchError], None]) -> dict[str, Any]:
    """The run file's values of the searched params (the config's defaults where it sets none); each value
    outside the space goes to `report`, naming the sweep file's line, the key and the run file."""
    config = config_from_dict(config_cls, run.params, source=str(path))
    sample = {k: getattr(config, k) for k in space}
    values: dict[str, Any] = {}
    for key, value in active_values(space, sample).items():
        ok, taken = _in_space(space[key], value)
        if ok:
            values[key] = taken
            continue
        where = (f"the run file {display(path)}" if key in run.params else
                 f"the config's default: the run file {display(path)} does not set it")
        report(doc.error(("space", key), f"the first trial's {key} = {value!r} ({where}) is outside the space "
                                         f"{space[key].describe()}; widen the space, change `fixed`, or set "
                                         "start_from: null"))
    return values


def warm_start(start_from: Any, *, name: str, source: str, model: str, dataset: str, space: dict[str, Param],
               config_cls: type, doc: YamlDoc, report: Callable[[KGSearchError], None]
               ) -> tuple[str | None, dict[str, Any]]:
    """(the run file's absolute path, the first trial's searched values), or (None, {})."""
    found = find_run_file(start_from, name, source, model, dataset, doc)
    if found is None:
        return None, {}
    path, run, _ = found
    problems: list[KGSearchError] = []
    values = start_values(path, run, space, config_cls, doc, problems.append)
    for problem in problems:
        report(problem)
    return (None, {}) if problems else (str(path), values)


def differences(spec) -> dict[str, tuple[Any, Any]]:
    """Keys the searched params leave alone where the first trial (`fixed` + the start values) differs
    from its run file: {key: (the sweep's value, the run file's value)}; {} without a warm start."""
    if spec.start_from is None:
        return {}
    from kgsearch.recipe import get_recipe
    from kgsearch.run.runfile import RunFile

    config_cls = get_recipe(spec.model).Config
    first = config_to_dict(config_from_dict(config_cls, {**spec.fixed, **spec.start_values}, source=spec.source))
    wanted = config_to_dict(RunFile.load(spec.start_from).config(spec.start_from))
    return {k: (first[k], wanted[k]) for k in first if k not in spec.space and first[k] != wanted[k]}


def display(path: str | os.PathLike) -> str:
    """A path as a user types it: relative to the working directory or the repo when inside one."""
    path = Path(path)
    for base in (Path.cwd(), REPO_ROOT):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def listed(name: str, source: str, data: dict) -> str:
    """For --list, without validating: the run file a sweep's first trial comes from, or '-'."""
    start_from = data.get("start_from", AUTO)
    if _is_off(start_from):
        return "-"
    if str(start_from).strip().lower() != AUTO:
        return str(start_from)
    import yaml

    for candidate in default_candidates(name, source):
        if candidate.is_file():
            try:
                run = yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError):
                return "-"
            return display(candidate) if run.get("model") == data.get("model") else "-"
    return "-"


__all__ = ["AUTO", "warm_start", "find_run_file", "start_values", "differences", "display", "listed"]
