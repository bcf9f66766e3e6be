"""Sweep files (search_spaces/NAME.yaml) -> a validated `SweepSpec`, checked before Ray starts.

Every mistake becomes one `KGSearchError` naming the file, the YAML line, the key path
(`space.lr.low`) and the reason. pydantic checks the shape (kgsearch.sweep.spec); the checks here
check meaning against the facts the recipe declares (data kind, metrics, config fields, the fields
`prepare()` reads): nothing here names a model.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kgsearch.config import ConfigError, check_value, field_names
from kgsearch.errors import KGSearchError
from kgsearch.recipe import RECIPES, check_metric, get_recipe
from kgsearch.sweep.space import check_configs, check_space
from kgsearch.sweep.spec import PARAM_MODELS, PARAM_TYPES, SECTIONS, SweepFile, SweepSpec
from kgsearch.yamlio import YamlDoc, parse_yaml

SEARCH_SPACES = "search_spaces"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


# ------------------------------------------------------------------------------------------------
# Finding sweep files


def search_dirs(cwd: Path | None = None) -> list[Path]:
    """Where sweep names are looked up: ./search_spaces, then the one next to the kgsearch package."""
    unique: list[Path] = []
    for d in (Path(cwd or Path.cwd()) / SEARCH_SPACES, REPO_ROOT / SEARCH_SPACES):
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def available_sweeps(cwd: Path | None = None) -> list[str]:
    names: set[str] = set()
    for d in search_dirs(cwd):
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def resolve_sweep(name_or_path: str, cwd: Path | None = None) -> Path:
    """A sweep NAME -> search_spaces/NAME.yaml (./ first, then the repo's); a PATH -> that file."""
    text = str(name_or_path)
    if os.sep in text or (os.altsep and os.altsep in text) or text.endswith((".yaml", ".yml")):
        path = Path(text).expanduser()
        if not path.is_file():
            raise KGSearchError(f"{path}: no such sweep file")
        return path
    for d in search_dirs(cwd):
        candidate = d / f"{text}.yaml"
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(d) for d in search_dirs(cwd))
    known = ", ".join(available_sweeps(cwd)) or "none"
    raise KGSearchError(f"unknown sweep {text!r} (looked in {looked}); available sweeps: {known}")


# ------------------------------------------------------------------------------------------------
# Loading


def load_spec(name_or_path: str | os.PathLike, *, cwd: Path | None = None, **overrides) -> SweepSpec:
    """Resolve, read and validate a sweep file; `overrides` as for `parse_spec`."""
    path = resolve_sweep(os.fspath(name_or_path), cwd)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KGSearchError(f"{path}: cannot read: {exc}") from None
    return parse_spec(text, source=str(path), name=path.stem, **overrides)


def parse_spec(text: str, *, source: str = "<sweep>", name: str = "sweep", smoke: bool = False,
               num_samples: int | None = None, max_epochs: int | None = None, searcher: str | None = None,
               asha: bool | None = None, max_concurrent_trials: int | None = None,
               data_root: str | None = None) -> SweepSpec:
    """Validate a sweep file's text and apply --smoke and the command-line overrides.

    `data_root` (--data-root) is where a dataset name that is not a known benchmark is looked up,
    before the file's own `data_root`.
    """
    doc = parse_yaml(text, source, what="sweep settings")
    try:
        parsed = SweepFile.model_validate(doc.data)
    except ValidationError as exc:
        raise _shape_error(exc, doc) from None

    if parsed.model not in RECIPES:
        raise doc.error(("model",), f"unknown model {parsed.model!r} (known: {', '.join(sorted(RECIPES))})")
    recipe_cls = get_recipe(parsed.model)
    _check_dataset(parsed, recipe_cls, doc, data_root)
    try:
        check_metric(recipe_cls, parsed.metric)
        if not parsed.metric.startswith("val_"):
            raise KGSearchError(f"the sweep metric is a validation metric: 'val_{parsed.metric}'")
    except KGSearchError as exc:
        raise doc.error(("metric",), str(exc)) from None
    if parsed.mode != "max":
        raise doc.error(("mode",), f"mode must be 'max' for {parsed.metric} (higher is better)")

    config_cls = recipe_cls.Config
    fixed = {k: _fixed_value(("fixed", k), k, v, config_cls, doc) for k, v in parsed.fixed.items()}
    smoke_fixed = {k: _fixed_value(("smoke", "fixed", k), k, v, config_cls, doc)
                   for k, v in (parsed.smoke.fixed if parsed.smoke else {}).items()}
    space = dict(parsed.space)
    sched = parsed.scheduler.model_dump()
    samples, concurrency = parsed.num_samples, parsed.max_concurrent_trials
    if smoke:
        if parsed.smoke is None:
            raise doc.error((), "--smoke: this sweep has no `smoke:` block")
        fixed.update(smoke_fixed)
        for k in smoke_fixed:
            space.pop(k, None)  # a smoke override pins a searched parameter
        samples = parsed.smoke.num_samples
        sched.update(max_t=parsed.smoke.max_t, grace_period=parsed.smoke.grace_period)
        concurrency = parsed.smoke.max_concurrent_trials or concurrency
    for k in fixed:
        if k in space:
            raise doc.error(("space", k), f"{k!r} is also set in `fixed`; a parameter is either fixed or searched")
    for k in space:
        _searchable(("space", k), k, recipe_cls, doc)

    # Command-line overrides (already checked positive by argparse).
    samples = num_samples or samples
    concurrency = max_concurrent_trials or concurrency
    if max_epochs:
        sched["max_t"] = max_epochs
    sched["grace_period"] = min(sched["grace_period"], sched["max_t"])
    if asha is not None:
        sched["type"] = "asha" if asha else "fifo"
    fixed["epochs"] = sched["max_t"]

    space = check_space(space, fixed, config_cls, doc)
    check_configs(config_cls, fixed, space, doc, ("smoke", "fixed") if smoke else ("fixed",))
    eval_every = int(fixed.get("eval_every", getattr(config_cls(), "eval_every", 1)))
    if sched["type"] == "asha" and sched["grace_period"] % eval_every and sched["grace_period"] < sched["max_t"]:
        where = ("smoke", "grace_period") if smoke else ("scheduler", "grace_period")
        raise doc.error(where, f"grace_period {sched['grace_period']} must be a multiple of eval_every "
                               f"({eval_every}) so that ASHA's rungs fall on validation epochs")
    res = parsed.resources
    if res.workers > 1 and res.gpus_per_worker and not float(res.gpus_per_worker).is_integer():
        raise doc.error(("resources", "gpus_per_worker"),
                        f"fractional GPUs ({res.gpus_per_worker}) only for one-worker trials "
                        f"(workers is {res.workers}); NCCL needs a whole GPU per worker")

    return SweepSpec(
        name=name, source=source, model=parsed.model, dataset=parsed.dataset, data_root=parsed.data_root,
        metric=parsed.metric, mode=parsed.mode, num_samples=samples, max_concurrent_trials=concurrency,
        searcher=parsed.searcher.model_copy(update={"type": searcher or parsed.searcher.type}),
        scheduler=parsed.scheduler.model_copy(update=sched), resources=res, storage=parsed.storage,
        fixed=fixed, space=space, description=parsed.description, smoke=smoke)


# ------------------------------------------------------------------------------------------------
# Meaning checks


def _check_dataset(parsed: SweepFile, recipe_cls: type, doc: YamlDoc, data_root: str | None) -> None:
    from kgsearch.data import KNOWN, known_kind, resolve

    name = parsed.dataset
    kind = known_kind(name)
    if kind is not None:
        if kind != recipe_cls.data_kind:
            raise doc.error(("dataset",), f"{name!r} is a {kind} dataset; model {parsed.model!r} needs a "
                                          f"{recipe_cls.data_kind} one")
        return
    try:  # a custom name under the data root, or a folder path
        resolve(name, data_root or parsed.data_root)
    except KGSearchError:
        raise doc.error(("dataset",), f"unknown dataset {name!r} (known: {', '.join(KNOWN)}; or a folder "
                                      "path, or a folder under data_root / $KGSEARCH_DATA_ROOT)") from None


def _unknown_param(path: tuple, key: str, config_cls: type, doc: YamlDoc) -> KGSearchError:
    fields = field_names(config_cls)
    hint = difflib.get_close_matches(key, fields, n=1)
    return doc.error(path, f"{key!r} is not a parameter of this model's config"
                           + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; known: {', '.join(sorted(fields))}")


def _fixed_value(path: tuple, key: str, value: Any, config_cls: type, doc: YamlDoc) -> Any:
    if key not in field_names(config_cls):
        raise _unknown_param(path, key, config_cls, doc)
    if key == "epochs":
        raise doc.error(path, "epochs is set by scheduler.max_t (and --max-epochs), not here")
    try:
        return check_value(config_cls, key, value)
    except ConfigError as exc:
        raise doc.error(path, str(exc)) from None


def _searchable(path: tuple, key: str, recipe_cls: type, doc: YamlDoc) -> None:
    if key not in field_names(recipe_cls.Config):
        raise _unknown_param(path, key, recipe_cls.Config, doc)
    if key == "epochs":
        raise doc.error(path, "epochs is set by scheduler.max_t; search the ASHA budget instead")
    if key in recipe_cls.prepare_fields:
        raise doc.error(path, f"{key!r} feeds {recipe_cls.__name__}.prepare(), which a sweep runs once with "
                              "the fixed values for all trials; it cannot be searched (set it in `fixed`, or run "
                              "one sweep per value)")


def _known_keys(loc: tuple, raw: dict) -> list[str]:
    if loc in SECTIONS:
        return sorted(SECTIONS[loc].model_fields)
    if len(loc) == 2 and loc[0] == "space":
        body = (raw.get("space") or {}).get(loc[1])
        kind = body.get("type") if isinstance(body, dict) else None
        return sorted(PARAM_MODELS[kind].model_fields) if kind in PARAM_MODELS else ["type"]
    return []


def _shape_error(err: ValidationError, doc: YamlDoc) -> KGSearchError:
    # A misspelt key also shows up as the correct one "missing": report the misspelling first.
    rank = {"extra_forbidden": 0, "missing": 2}
    first = sorted(err.errors(), key=lambda e: rank.get(e["type"], 1))[0]
    loc = tuple(first["loc"])
    if len(loc) >= 3 and loc[0] == "space" and loc[2] in PARAM_TYPES:
        loc = loc[:2] + loc[3:]  # drop pydantic's discriminator tag from the path
    kind, value = first["type"], first.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1], doc.data)
        hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
        reason = f"unknown key {loc[-1]!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") + \
            (f"; known keys: {', '.join(known)}" if known else "")
    elif kind == "missing":
        reason = "required key is missing"
    elif kind == "union_tag_not_found":
        reason = f"missing 'type' (one of {', '.join(PARAM_TYPES)})"
    elif kind == "union_tag_invalid":
        loc = loc + ("type",)
        reason = f"unknown type {first['ctx'].get('tag')!r} (expected one of {', '.join(PARAM_TYPES)})"
    else:
        reason = f"{first['msg'][0].lower()}{first['msg'][1:]} (got {value!r})"
    return doc.error(loc, reason)


__all__ = ["load_spec", "parse_spec", "resolve_sweep", "available_sweeps", "search_dirs", "REPO_ROOT"]
