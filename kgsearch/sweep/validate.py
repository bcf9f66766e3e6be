"""Sweep files (search_spaces/NAME.yaml) -> a validated `SweepSpec`, checked before Ray starts.

Every mistake becomes one line naming the file, the YAML line, the key path (`space.lr.low`) and the
reason; all the mistakes of a file are reported together, in one `KGSearchError`. pydantic checks the
shape (kgsearch.sweep.spec); the checks here check meaning against the facts the recipe declares (data
kind, metrics, config fields, the fields `prepare()` reads): nothing here names a model. Keys left out
get the defaults documented in kgsearch.sweep.spec (the recipe's metric, TPE, ASHA over the config's
epochs, one CPU per trial, 20 trials, the first trial from configs/<name>.yaml: kgsearch.sweep.warmstart,
the 3 best configurations re-trained with seeds 0, 1, 2 at the end: kgsearch.sweep.retrain).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import itertools
import os
from pathlib import Path
from typing import Any, Sequence

from pydantic import ValidationError

from kgsearch.config import ConfigError, check_value, field_names
from kgsearch.errors import KGSearchError
from kgsearch.recipe import RECIPES, check_metric, get_recipe
from kgsearch.overrides import apply_overrides
from kgsearch.sweep.rungs import grash_problems
from kgsearch.sweep.space import check_configs, check_entries, check_space, pin, unknown_field
from kgsearch.sweep.spec import PARAM_MODELS, PARAM_TYPES, SECTIONS, SweepFile, SweepSpec
from kgsearch.sweep.trackers import missing_trackers
from kgsearch.sweep.warmstart import warm_start
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


class Problems:
    """Every problem of a file, reported together: one `file:line: key.path: reason` per line."""

    def __init__(self):
        self.lines: list[str] = []

    def add(self, exc: KGSearchError) -> None:
        for line in str(exc).splitlines():
            if line not in self.lines:
                self.lines.append(line)

    @contextlib.contextmanager
    def check(self):
        try:
            yield
        except KGSearchError as exc:
            self.add(exc)

    def raise_any(self) -> None:
        if self.lines:
            raise KGSearchError("\n".join(self.lines))


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
               data_root: str | None = None, sets: Sequence[str] = (), set_origins: Sequence[str] | None = None,
               retrain: bool | None = None, time_budget_minutes: float | None = None) -> SweepSpec:
    """Validate a sweep file's text and apply `sets` (--set KEY=VALUE), --smoke and the command-line flags.

    Every problem is reported at once (KGSearchError, one line each). `data_root` (--data-root) is
    where a dataset name that is not a known benchmark is looked up, before the file's own `data_root`.
    `retrain=False` (--no-retrain) turns the top-k re-training off; `time_budget_minutes` (--time-budget)
    replaces the file's search budget.
    """
    doc = apply_overrides(parse_yaml(text, source, what="sweep settings"), list(sets),
                          list(set_origins) if set_origins else None)
    problems = Problems()
    parsed = _shape(doc, problems)
    if parsed is None:
        problems.raise_any()
    if parsed.model not in RECIPES:
        problems.add(doc.error(("model",), f"unknown model {parsed.model!r} (known: {', '.join(sorted(RECIPES))})"))
        problems.raise_any()
    recipe_cls = get_recipe(parsed.model)
    config_cls = recipe_cls.Config
    defaults = config_cls()
    with problems.check():
        _check_dataset(parsed, recipe_cls, doc, data_root)
    metric = parsed.metric or f"val_{recipe_cls.metric}"
    with problems.check():
        try:
            check_metric(recipe_cls, metric)
            if not metric.startswith("val_"):
                raise KGSearchError(f"the sweep metric is a validation metric: 'val_{metric}'")
        except KGSearchError as exc:
            raise doc.error(("metric",), str(exc)) from None
    if parsed.mode != "max":
        problems.add(doc.error(("mode",), f"mode must be 'max' for {metric} (higher is better)"))

    fixed = _fixed_values(("fixed",), parsed.fixed, config_cls, doc, problems)
    smoke_fixed = _fixed_values(("smoke", "fixed"), parsed.smoke.fixed if parsed.smoke else {}, config_cls, doc,
                                problems)
    space = dict(parsed.space)
    pinned: dict[str, str] = {}  # {key: field} of the entries a pin took out (a `when` on them is then decided)
    for path in getattr(doc, "overrides", {}):  # --set fixed.lr=0.01 pins a searched parameter, as smoke does
        if len(path) == 2 and path[0] == "fixed":
            pin(space, path[1], pinned)
    sched = parsed.scheduler.model_dump()
    sched["max_t"] = sched["max_t"] or int(defaults.epochs)  # the config's own training length
    samples, concurrency = parsed.num_samples, parsed.max_concurrent_trials
    if smoke:
        if parsed.smoke is None:
            problems.add(doc.error((), "--smoke: this sweep has no `smoke:` block"))
            problems.raise_any()
        fixed.update(smoke_fixed)
        for k in smoke_fixed:
            pin(space, k, pinned)  # a smoke override pins a searched parameter
        samples = parsed.smoke.num_samples
        sched.update(max_t=parsed.smoke.max_t, grace_period=parsed.smoke.grace_period)
        concurrency = parsed.smoke.max_concurrent_trials or concurrency
    check_entries(space, fixed, recipe_cls, doc, problems.add)

    # Command-line flags (already checked positive by argparse).
    samples = num_samples or samples
    concurrency = max_concurrent_trials or concurrency
    if max_epochs:
        sched["max_t"] = max_epochs
    if asha is not None:
        if sched.get("type") == "grash" and not asha:  # FIFO would train every sample for max_t epochs
            problems.add(doc.error(("scheduler", "type"), "--no-asha: this sweep uses grash, whose rungs already "
                                   "train every configuration to its rung's end; drop --no-asha or set "
                                   "scheduler.type: fifo"))
        else:
            sched["type"] = "asha" if asha else "fifo"
    eval_every = int(fixed.get("eval_every", getattr(defaults, "eval_every", 1)))
    # Default grace: the first validation, so that ASHA's rungs fall on validation epochs.
    sched["grace_period"] = min(sched["grace_period"] or eval_every, sched["max_t"])
    fixed["epochs"] = sched["max_t"]

    space = check_space(space, fixed, config_cls, doc, problems.add, pinned)
    if not problems.lines:  # configs built from parts already refused would only repeat those problems
        with problems.check():
            check_configs(config_cls, fixed, space, doc, ("smoke", "fixed") if smoke else ("fixed",))
    start_from, start_values = None, {}
    with problems.check():  # the first trial: a run file's values of the searched params
        start_from, start_values = warm_start(parsed.start_from, name=name, source=source, model=parsed.model,
                                              space=space, config_cls=config_cls, doc=doc, report=problems.add)
    if sched["type"] == "asha" and sched["grace_period"] % eval_every and sched["grace_period"] < sched["max_t"]:
        where = ("smoke", "grace_period") if smoke else ("scheduler", "grace_period")
        problems.add(doc.error(where, f"grace_period {sched['grace_period']} must be a multiple of eval_every "
                                      f"({eval_every}) so that ASHA's rungs fall on validation epochs"))
    res = parsed.resources
    if res.workers > 1 and res.gpus_per_worker and not float(res.gpus_per_worker).is_integer():
        problems.add(doc.error(("resources", "gpus_per_worker"),
                               f"fractional GPUs ({res.gpus_per_worker}) only for one-worker trials "
                               f"(workers is {res.workers}); NCCL needs a whole GPU per worker"))
    retrain_spec = _retrain(parsed, smoke, retrain, space, config_cls, doc, problems)
    if sched["type"] == "grash":
        section = ("smoke", "retrain") if smoke and parsed.smoke is not None else ("retrain",)
        for where, reason in grash_problems(parsed.model, recipe_cls.data_kind, retrain_spec.on, section):
            problems.add(doc.error(where, reason))
    for key in missing_trackers(parsed.tracking):
        problems.add(doc.error(("tracking", key), f"the {key} package is not installed here (kgsearch does not "
                                                  f"depend on it): pip install {key}, or remove tracking.{key}"))
    problems.raise_any()

    return SweepSpec(
        name=name, source=source, model=parsed.model, dataset=parsed.dataset, data_root=parsed.data_root,
        metric=metric, mode=parsed.mode, num_samples=samples, max_concurrent_trials=concurrency,
        searcher=parsed.searcher.model_copy(update={"type": searcher or parsed.searcher.type}),
        scheduler=parsed.scheduler.model_copy(update=sched), resources=res, storage=parsed.storage,
        fixed=fixed, space=space, description=parsed.description, smoke=smoke, retries=parsed.retries,
        checkpoints=parsed.checkpoints, tracking=parsed.tracking, start_from=start_from, start_values=start_values,
        retrain=retrain_spec,
        time_budget_minutes=time_budget_minutes or (None if smoke else parsed.time_budget_minutes))


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


def _retrain(parsed: SweepFile, smoke: bool, retrain: bool | None, space: dict, config_cls: type, doc: YamlDoc,
             problems: Problems):
    """The re-training block that applies (`smoke.retrain` under --smoke), checked for meaning."""
    section = ("smoke", "retrain") if smoke and parsed.smoke is not None else ("retrain",)
    spec = parsed.smoke.retrain if section[0] == "smoke" else parsed.retrain
    if retrain is False:
        return spec.model_copy(update={"top_k": 0})
    if not spec.on:
        return spec
    repeated = sorted({s for s in spec.seeds if spec.seeds.count(s) > 1})
    if repeated:
        problems.add(doc.error(section + ("seeds",), f"seeds must be distinct; {repeated} repeated"))
    if "seed" not in field_names(config_cls):
        problems.add(doc.error(section, "this model's config has no `seed` field to re-train with; set top_k: 0"))
    elif any(p.field(k) == "seed" for k, p in space.items()):
        key = next(k for k, p in space.items() if p.field(k) == "seed")
        problems.add(doc.error(("space", key), "the re-training sets each run's seed, so `seed` cannot be "
                                               f"searched too; fix it in `fixed`, or set {'.'.join(section)}.top_k: 0"))
    if spec.eval_every is not None and "eval_every" not in field_names(config_cls):
        problems.add(doc.error(section + ("eval_every",), "this model's config has no `eval_every` field; remove "
                                                          f"{'.'.join(section)}.eval_every"))
    return spec


def _fixed_values(section: tuple, values: dict, config_cls: type, doc: YamlDoc, problems: Problems) -> dict:
    checked = {}
    for k, v in values.items():
        with problems.check():
            checked[k] = _fixed_value(section + (k,), k, v, config_cls, doc)
    return checked


def _fixed_value(path: tuple, key: str, value: Any, config_cls: type, doc: YamlDoc) -> Any:
    if key not in field_names(config_cls):
        raise unknown_field(path, key, config_cls, doc)
    if key == "epochs":
        raise doc.error(path, "epochs is set by scheduler.max_t (and --max-epochs), not here")
    try:
        return check_value(config_cls, key, value)
    except ConfigError as exc:
        raise doc.error(path, str(exc)) from None


def _known_keys(loc: tuple, raw: dict) -> list[str]:
    loc = tuple(str(p) for p in loc)
    if loc in SECTIONS:
        return sorted(SECTIONS[loc].model_fields)
    if len(loc) == 2 and loc[0] == "space":
        body = (raw.get("space") or {}).get(loc[1])
        kind = body.get("type") if isinstance(body, dict) else None
        return sorted(PARAM_MODELS[kind].model_fields) if kind in PARAM_MODELS else ["type"]
    return []


REQUIRED = {("model",), ("dataset",)}


def _shape(doc: YamlDoc, problems: Problems) -> SweepFile | None:
    """pydantic's view of the file. Each round reports what is wrong and drops it, so that the rest can
    still be checked for meaning; None when a required key is what is wrong."""
    data = doc.data
    for _ in range(4):
        try:
            return SweepFile.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
        for problem in _shape_errors(errors, doc):
            problems.add(problem)
        for e in errors:
            data = _without(data, tuple(e["loc"]))
            if data is None:
                return None
    return None


def _without(data: dict, loc: tuple) -> dict | None:
    """`data` without the entry a shape error points at (a whole `space` parameter, or one key)."""
    path = loc[:2] if loc[:1] == ("space",) else tuple(itertools.takewhile(lambda p: isinstance(p, str), loc))
    if not path or path in REQUIRED:
        return None
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)
    return data


def _shape_errors(errors: list[dict], doc: YamlDoc) -> list[KGSearchError]:
    extras = {tuple(e["loc"][:-1]): str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden"}
    out = []
    for e in errors:
        loc = tuple(e["loc"])
        if len(loc) >= 3 and loc[0] == "space" and loc[2] in PARAM_TYPES:
            loc = loc[:2] + loc[3:]  # drop pydantic's discriminator tag from the path
        kind, value = e["type"], e.get("input")
        if kind == "extra_forbidden":
            known = _known_keys(loc[:-1], doc.data)
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            reason = f"unknown key {loc[-1]!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") + \
                (f"; known keys: {', '.join(known)}" if known else "")
        elif kind == "missing":
            misspelt = extras.get(loc[:-1])
            if misspelt and difflib.get_close_matches(misspelt, [str(loc[-1])], n=1):
                continue  # already reported as the misspelling
            reason = "required key is missing"
        elif kind == "union_tag_not_found":
            reason = f"missing 'type' (one of {', '.join(PARAM_TYPES)})"
        elif kind == "union_tag_invalid":
            loc = loc + ("type",)
            reason = f"unknown type {e['ctx'].get('tag')!r} (expected one of {', '.join(PARAM_TYPES)})"
        else:
            reason = f"{e['msg'][0].lower()}{e['msg'][1:]} (got {value!r})"
        out.append(doc.error(loc, reason))
    return out


__all__ = ["load_spec", "parse_spec", "resolve_sweep", "available_sweeps", "search_dirs", "REPO_ROOT"]
