"""Warm start: a sweep's first trial has a run file's values of the searched parameters (`start_from:`).

`start_from: auto` (the default) is `configs/<sweep name>.yaml` when it exists and is for the sweep's
model, on whatever dataset the sweep runs (looked up next to the sweep file's `search_spaces/` folder, then in the repo); a path
(absolute, or relative to the repo root, then to the working directory) picks another run file, of the
same model; `null` or `none` turns it off. Each searched parameter that is active for those values gets
the run file's value of the field it sets (its `param:`, else its key), or the recipe config's default where
the run file does not set it; an entry whose `when` does not hold for those values is left out (a RotatE run
file gives `lr_rotate`, never `lr_complex`). A value the space cannot produce is a validation error, never
clamped. kgsearch.sweep.searcher enqueues the values (by key) as the study's first trial
(`study.enqueue_trial`).

`start_from` may also name an earlier sweep: its experiment folder or the `optuna_journal.log` in it
(kgsearch.sweep.study). The first trial then has the searched values of that study's best COMPLETE
trial, checked against this sweep's space in the same way; they are matched by key (Optuna's parameter
names), so a parameter this sweep searches and the old study did not (under that key) is sampled for that
trial, one only the old study searched is left out.

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
from kgsearch.sweep.space import active_values, to_config
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


def _candidates(text: str) -> list[Path]:
    path = Path(text).expanduser()
    return [path] if path.is_absolute() else [REPO_ROOT / path, Path.cwd() / path]


def _journal(text: str) -> Path | None:
    """The journal of an earlier sweep that `start_from` names (its folder or the file), else None."""
    from kgsearch.sweep.study import find_journal

    for candidate in _candidates(text):
        found = find_journal(candidate)
        if found is not None:
            return found
    return None


def _explicit_path(text: str, doc: YamlDoc) -> Path:
    tried = _candidates(text)
    for candidate in tried:
        if candidate.is_file():
            return candidate.resolve()
    raise doc.error(("start_from",), f"no such run file {text!r} (looked for {', '.join(map(str, tried))}), "
                                     "nor an experiment folder holding an optuna_journal.log")


def _load(path: Path, doc: YamlDoc):
    from kgsearch.run.runfile import RunFile

    try:
        return RunFile.load(path)
    except KGSearchError as exc:
        raise doc.error(("start_from",), f"the run file is not valid: {exc}") from None


class StudyStart:
    """An earlier sweep's best COMPLETE trial, standing in for a run file (`params`: its searched values)."""

    def __init__(self, journal: Path, doc: YamlDoc, model: str):
        from kgsearch.sweep.study import best_complete_trial

        try:
            best = best_complete_trial(journal)
        except KGSearchError as exc:
            raise doc.error(("start_from",), str(exc)) from None
        self.params, self.number, self.value = dict(best.params), best.number, best.value
        self.label = f"the best trial (#{best.number}, value {best.value:.4f}) of {display(journal)}"
        self.model = model
        sweep = journal.parent / "sweep.yaml"  # the old sweep's settings, when they are beside it
        if sweep.is_file():
            import yaml

            try:
                self.model = ((yaml.safe_load(sweep.read_text(encoding="utf-8")) or {}).get("spec") or {}).get(
                    "model", model)
            except (OSError, yaml.YAMLError, AttributeError):
                pass


def is_study(path: str | os.PathLike | None) -> bool:
    """Whether a spec's `start_from` is an earlier sweep's journal rather than a run file."""
    from kgsearch.sweep.study import JOURNAL_FILE

    return path is not None and Path(path).name == JOURNAL_FILE


def find_run_file(start_from: Any, name: str, source: str, model: str, doc: YamlDoc):
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
    journal = _journal(str(start_from))
    if journal is not None:
        run = StudyStart(journal, doc, model)
        if run.model != model:
            raise doc.error(("start_from",), f"{display(journal)} is the study of a sweep of model {run.model!r}; "
                                             f"this sweep searches model {model!r}")
        return journal, run, f"start_from: {start_from}"
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
    if isinstance(run, StudyStart):  # the old study's values; a param it did not search is sampled
        sample = {k: v for k, v in run.params.items() if k in space}
        chosen = {k: sample[k] for k, p in space.items() if k in sample and p.active(sample)}
    else:
        config = config_from_dict(config_cls, run.params, source=str(path))
        chosen = active_values(space, {k: getattr(config, p.field(k)) for k, p in space.items()})
    values: dict[str, Any] = {}
    for key, value in chosen.items():
        ok, taken = _in_space(space[key], value)
        if ok:
            values[key] = taken
            continue
        field = key if isinstance(run, StudyStart) else space[key].field(key)
        shown = key if field == key else f"{key} ({field})"
        what = run.label if isinstance(run, StudyStart) else f"the run file {display(path)}"
        where = what if field in run.params else f"the config's default: {what} does not set it"
        report(doc.error(("space", key), f"the first trial's {shown} = {value!r} ({where}) is outside the space "
                                         f"{space[key].describe()}; widen the space, change `fixed`, or set "
                                         "start_from: null"))
    return values


def warm_start(start_from: Any, *, name: str, source: str, model: str, space: dict[str, Param],
               config_cls: type, doc: YamlDoc, report: Callable[[KGSearchError], None]
               ) -> tuple[str | None, dict[str, Any]]:
    """(the run file's absolute path, the first trial's searched values), or (None, {})."""
    found = find_run_file(start_from, name, source, model, doc)
    if found is None:
        return None, {}
    path, run, _ = found
    problems: list[KGSearchError] = []
    values = start_values(path, run, space, config_cls, doc, problems.append)
    for problem in problems:
        report(problem)
    return (None, {}) if problems else (str(path), values)


def first_config(spec) -> dict[str, Any]:
    """The first trial's params as the search hands them to Tune: `fixed` + the start values' fields."""
    return {**spec.fixed, **to_config(spec.space, spec.start_values)}


def differences(spec) -> dict[str, tuple[Any, Any]]:
    """Fields the searched params leave alone where the first trial (`fixed` + the start values) differs
    from its run file: {field: (the sweep's value, the run file's value)}; {} without a warm start. Left
    alone: neither set by an active entry, nor only by inactive entries without a `fixed` default (a field
    that matters only in another branch); a `fixed` default that an inactive entry would override is compared."""
    if spec.start_from is None or is_study(spec.start_from):  # an earlier sweep's study: no run file
        return {}
    from kgsearch.recipe import get_recipe
    from kgsearch.run.runfile import RunFile

    config_cls = get_recipe(spec.model).Config
    first = config_to_dict(config_from_dict(config_cls, first_config(spec), source=spec.source))
    wanted = config_to_dict(RunFile.load(spec.start_from).config(spec.start_from))
    searched = set(to_config(spec.space, spec.start_values)) | (spec.searched_fields - set(spec.fixed))
    return {k: (first[k], wanted[k]) for k in first if k not in searched and first[k] != wanted[k]}


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


__all__ = ["AUTO", "warm_start", "is_study", "find_run_file", "start_values", "first_config", "differences", "display",
           "listed"]
