"""Search-space files (search_spaces/NAME.yaml) -> a validated `SweepSpec`, checked before Ray starts.

A sweep file names a recipe ("model"), a dataset, fixed recipe params, a search space over recipe
params (uniform / loguniform / int / choice, optionally `when: {param: value}`), the metric, Optuna
and ASHA settings, per-trial resources and a `smoke:` block of overrides. Every mistake becomes one
`KGSearchError` naming the file, the YAML line, the key path (`space.lr.low`) and the reason.

Validation has two layers: pydantic checks the shape (unknown keys, types, required keys), then
`_check_*` functions check meaning (bounds, recipe config fields, `when` references, resources).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import random
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from kgsearch.config import _coerce
from kgsearch.errors import KGSearchError

SEARCH_SPACES = "search_spaces"
REPO_ROOT = Path(__file__).resolve().parent.parent
PARAM_TYPES = ("uniform", "loguniform", "int", "choice")
# Validation metric groups each recipe's evaluate() returns (kgsearch.train.metrics_of names them
# val_<group>_<metric>); a metric outside these would fail Tune's strict metric check in every trial.
METRIC_GROUPS = {"dans": ("",), "dkgr": ("raw_", "tf_", "rel_", "rel_raw_")}
# Static vs temporal benchmark names, to reject e.g. dans on icews14 before loading anything.
TEMPORAL_DATASETS = ("icews14", "icews18", "icews05-15")

Scalar = Union[StrictBool, StrictInt, StrictFloat, StrictStr]


# ------------------------------------------------------------------------------------------------
# Shape (pydantic)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Param(_Strict):
    when: dict[str, Union[Scalar, list[Scalar]]] | None = None  # exists only when these params have these values


class UniformParam(_Param):
    type: Literal["uniform"]
    low: float
    high: float


class LogUniformParam(_Param):
    type: Literal["loguniform"]
    low: float
    high: float


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False


class ChoiceParam(_Param):
    type: Literal["choice"]
    values: list[Scalar] = Field(min_length=1)


ParamModel = Annotated[Union[UniformParam, LogUniformParam, IntParam, ChoiceParam], Field(discriminator="type")]


class SearcherModel(_Strict):
    type: Literal["tpe", "random"] = "tpe"  # Optuna TPE, or Optuna's random sampler (baseline)
    seed: int = 0
    n_startup_trials: int = Field(10, ge=0)  # TPE: random trials before the model is used


class SchedulerModel(_Strict):
    type: Literal["asha", "fifo"] = "asha"  # fifo: every trial runs max_t epochs (no early stopping)
    max_t: int = Field(ge=1)  # epochs a trial may run (sets params.epochs)
    grace_period: int = Field(1, ge=1)  # epochs before ASHA may stop a trial
    reduction_factor: int = Field(3, ge=2)


class ResourcesModel(_Strict):
    workers: int = Field(1, ge=1)  # 1: the trial trains inside the Tune trial; >1: Ray Train DDP workers
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    max_failures: int = Field(0, ge=-1)  # worker-group restarts from the last checkpoint (-1: unlimited)


class SmokeModel(_Strict):
    num_samples: int = Field(2, ge=1)
    max_t: int = Field(2, ge=1)
    grace_period: int = Field(1, ge=1)
    max_concurrent_trials: int | None = Field(None, ge=1)
    fixed: dict[str, Any] = Field(default_factory=dict)  # param overrides; pins searched params too


class SweepFile(_Strict):
    description: str | None = None
    model: str
    dataset: str
    data_root: str | None = None
    metric: str
    mode: Literal["max", "min"] = "max"
    num_samples: int = Field(ge=1)
    max_concurrent_trials: int = Field(1, ge=1)
    searcher: SearcherModel = Field(default_factory=SearcherModel)
    scheduler: SchedulerModel
    resources: ResourcesModel = Field(default_factory=ResourcesModel)
    storage: str | None = None
    fixed: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, ParamModel] = Field(default_factory=dict)
    smoke: SmokeModel | None = None


_SECTIONS: dict[tuple, type[BaseModel]] = {
    (): SweepFile, ("searcher",): SearcherModel, ("scheduler",): SchedulerModel,
    ("resources",): ResourcesModel, ("smoke",): SmokeModel,
}
_PARAM_MODELS = {"uniform": UniformParam, "loguniform": LogUniformParam, "int": IntParam, "choice": ChoiceParam}


# ------------------------------------------------------------------------------------------------
# The resolved spec (plain frozen dataclasses: picklable, shipped to trials and the searcher state)


@dataclass(frozen=True)
class ParamDef:
    """One searched parameter; `when` = ((parent, allowed values), ...) all of which must hold."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    step: int = 1
    log: bool = False
    values: tuple = ()
    when: tuple[tuple[str, tuple], ...] = ()

    def active(self, chosen: dict) -> bool:
        return all(parent in chosen and chosen[parent] in allowed for parent, allowed in self.when)

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial (define-by-run) for this parameter's value."""
        if self.type == "uniform":
            return trial.suggest_float(self.name, self.low, self.high)
        if self.type == "loguniform":
            return trial.suggest_float(self.name, self.low, self.high, log=True)
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step, log=self.log)
        return trial.suggest_categorical(self.name, list(self.values))

    def sample(self, rng: random.Random) -> Any:
        """A random value (used to check that the space only produces valid configs)."""
        if self.type == "uniform":
            return rng.uniform(self.low, self.high)
        if self.type == "loguniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        if self.type == "int":
            if self.log:
                value = int(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))))
                return min(self.high, max(self.low, value))
            return rng.randrange(self.low, self.high + 1, self.step)
        return rng.choice(self.values)

    def describe(self) -> str:
        if self.type == "choice":
            return f"choice{list(self.values)}"
        scale = " log" if self.log or self.type == "loguniform" else ""
        return f"{self.type}[{self.low}, {self.high}]{scale}"


@dataclass(frozen=True)
class OptunaSpace:
    """Define-by-run search space for `OptunaSearch`.

    Lives at module level in the package because Tune pickles it (by reference to this class) into
    the searcher state; resuming a sweep unpickles it (RAY_NOTES "Optuna through Tune").
    Parameters are ordered so that a `when` parent is always suggested before its children.
    """

    params: tuple[ParamDef, ...]

    def __call__(self, trial) -> None:
        chosen: dict[str, Any] = {}
        for param in self.params:
            if param.active(chosen):
                chosen[param.name] = param.suggest(trial)
        return None  # OptunaSearch records the suggested values itself


@dataclass(frozen=True)
class SearcherSpec:
    type: str = "tpe"
    seed: int = 0
    n_startup_trials: int = 10


@dataclass(frozen=True)
class SchedulerSpec:
    type: str = "asha"
    max_t: int = 10
    grace_period: int = 1
    reduction_factor: int = 3


@dataclass(frozen=True)
class ResourcesSpec:
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_failures: int = 0

    @property
    def direct(self) -> bool:
        """One worker: train inside the Tune trial (no Ray Train worker group; RAY_NOTES "Cost")."""
        return self.workers == 1


@dataclass(frozen=True)
class SweepSpec:
    name: str  # the file stem
    source: str  # the file it came from
    model: str
    dataset: str
    data_root: str | None
    metric: str
    mode: str
    num_samples: int
    max_concurrent_trials: int
    searcher: SearcherSpec
    scheduler: SchedulerSpec
    resources: ResourcesSpec
    storage: str | None
    fixed: dict  # every fixed recipe param, `epochs` = scheduler.max_t included
    space: tuple[ParamDef, ...]
    description: str | None = None
    smoke: bool = False

    def optuna_space(self) -> OptunaSpace:
        return OptunaSpace(self.space)

    def to_dict(self) -> dict:
        """Plain data (YAML-safe) of the resolved spec, written into the experiment folder."""
        out = dataclasses.asdict(self)
        out["space"] = {p.name: _param_to_yaml(p) for p in self.space}
        return out


def _param_to_yaml(p: ParamDef) -> dict:
    body: dict[str, Any] = {"type": p.type}
    if p.type == "choice":
        body["values"] = list(p.values)
    else:
        body.update(low=p.low, high=p.high)
        if p.type == "int":
            body.update(step=p.step, log=p.log)
    if p.when:
        body["when"] = {parent: list(values) for parent, values in p.when}
    return body


def spec_from_dict(data: dict) -> SweepSpec:
    """Inverse of `SweepSpec.to_dict` (used by --resume to reload the spec a sweep started with)."""
    data = dict(data)
    space = []
    for name, body in (data.pop("space") or {}).items():
        when = tuple((k, tuple(v)) for k, v in (body.get("when") or {}).items())
        space.append(ParamDef(name=name, type=body["type"], low=body.get("low"), high=body.get("high"),
                              step=body.get("step", 1), log=body.get("log", False),
                              values=tuple(body.get("values", ())), when=when))
    return SweepSpec(**{**data, "searcher": SearcherSpec(**data["searcher"]),
                        "scheduler": SchedulerSpec(**data["scheduler"]),
                        "resources": ResourcesSpec(**data["resources"]), "space": tuple(space)})


# ------------------------------------------------------------------------------------------------
# Finding sweep files


def search_dirs(cwd: Path | None = None) -> list[Path]:
    """Where sweep names are looked up: ./search_spaces, then the one next to the kgsearch package."""
    dirs = [Path(cwd or Path.cwd()) / SEARCH_SPACES, REPO_ROOT / SEARCH_SPACES]
    unique: list[Path] = []
    for d in dirs:
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
# Errors with YAML line numbers


class _Lines:
    """Key path -> 1-based YAML line, from the composed node tree (marks survive only there)."""

    def __init__(self, text: str):
        self.lines: dict[tuple, int] = {}
        try:
            root = yaml.compose(text)
        except yaml.YAMLError:
            root = None
        if root is not None:
            self._walk(root, ())

    def _walk(self, node, path: tuple) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = path + (key.value,)
                self.lines[sub] = key.start_mark.line + 1
                self._walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, path + (i,))

    def line(self, path: tuple) -> int | None:
        path = tuple(str(p) if not isinstance(p, int) else p for p in path)
        while path not in self.lines and path:
            path = path[:-1]  # a missing key: point at its parent
        return self.lines.get(path) if path else None


class _Reporter:
    def __init__(self, source: str, text: str):
        self.source, self.index = source, _Lines(text)

    def error(self, path: tuple, reason: str) -> KGSearchError:
        line = self.index.line(path)
        where = f"{self.source}:{line}" if line else self.source
        dotted = ".".join(str(p) for p in path)
        return KGSearchError(f"{where}: {dotted}: {reason}" if dotted else f"{where}: {reason}")


def _known_keys(loc: tuple, raw: dict) -> list[str]:
    if loc in _SECTIONS:
        return sorted(_SECTIONS[loc].model_fields)
    if len(loc) == 2 and loc[0] == "space":
        body = (raw.get("space") or {}).get(loc[1])
        kind = body.get("type") if isinstance(body, dict) else None
        return sorted(_PARAM_MODELS[kind].model_fields) if kind in _PARAM_MODELS else ["type"]
    return []


def _pydantic_error(err: ValidationError, raw: dict, report: _Reporter) -> KGSearchError:
    # A misspelt key also shows up as the correct one "missing": report the misspelling first.
    rank = {"extra_forbidden": 0, "missing": 2}
    first = sorted(err.errors(), key=lambda e: rank.get(e["type"], 1))[0]
    loc = tuple(first["loc"])
    if len(loc) >= 3 and loc[0] == "space" and loc[2] in PARAM_TYPES:
        loc = loc[:2] + loc[3:]  # drop pydantic's discriminator tag from the path
    kind, value = first["type"], first.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1], raw)
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
    return report.error(loc, reason)


# ------------------------------------------------------------------------------------------------
# Loading


def load_spec(name_or_path: str | os.PathLike, *, smoke: bool = False, num_samples: int | None = None,
              max_epochs: int | None = None, searcher: str | None = None, asha: bool | None = None,
              max_concurrent_trials: int | None = None, data_root: str | None = None,
              cwd: Path | None = None) -> SweepSpec:
    """Resolve, parse and validate a sweep file; apply --smoke and command-line overrides.

    `data_root` (--data-root) is where a dataset name that is not a known benchmark is looked up,
    before the file's own `data_root`.
    """
    path = resolve_sweep(os.fspath(name_or_path), cwd)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KGSearchError(f"{path}: cannot read: {exc}") from None
    return parse_spec(text, source=str(path), name=path.stem, smoke=smoke, num_samples=num_samples,
                      max_epochs=max_epochs, searcher=searcher, asha=asha,
                      max_concurrent_trials=max_concurrent_trials, data_root=data_root)


def parse_spec(text: str, *, source: str = "<sweep>", name: str = "sweep", smoke: bool = False,
               num_samples: int | None = None, max_epochs: int | None = None, searcher: str | None = None,
               asha: bool | None = None, max_concurrent_trials: int | None = None,
               data_root: str | None = None) -> SweepSpec:
    report = _Reporter(source, text)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise KGSearchError(f"{source}{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(raw, dict):
        raise KGSearchError(f"{source}: expected a mapping of sweep settings, got {type(raw).__name__}")
    try:
        parsed = SweepFile.model_validate(raw)
    except ValidationError as exc:
        raise _pydantic_error(exc, raw, report) from None

    recipe_cls = _check_model(parsed, report)
    _check_dataset(parsed, report, data_root)
    _check_metric(parsed, report)
    fields, hints = _config_fields(recipe_cls)

    sched = parsed.scheduler.model_copy()
    fixed = {k: _check_fixed_value(("fixed", k), k, v, fields, hints, report) for k, v in parsed.fixed.items()}
    smoke_fixed = {k: _check_fixed_value(("smoke", "fixed", k), k, v, fields, hints, report)
                   for k, v in (parsed.smoke.fixed if parsed.smoke else {}).items()}
    space = dict(parsed.space)
    samples, concurrency = parsed.num_samples, parsed.max_concurrent_trials
    if smoke:
        if parsed.smoke is None:
            raise report.error((), "--smoke: this sweep has no `smoke:` block")
        fixed.update(smoke_fixed)
        for k in smoke_fixed:
            space.pop(k, None)  # a smoke override pins a searched parameter
        samples, sched.max_t, sched.grace_period = parsed.smoke.num_samples, parsed.smoke.max_t, \
            parsed.smoke.grace_period
        concurrency = parsed.smoke.max_concurrent_trials or concurrency
    for k in fixed:
        if k in space:
            raise report.error(("space", k), f"{k!r} is also set in `fixed`; a parameter is either fixed or searched")

    # Command-line overrides (already checked positive by argparse).
    samples = num_samples or samples
    concurrency = max_concurrent_trials or concurrency
    if max_epochs:
        sched.max_t = max_epochs
    sched.grace_period = min(sched.grace_period, sched.max_t)
    sched_type = sched.type if asha is None else ("asha" if asha else "fifo")
    fixed["epochs"] = sched.max_t

    params = _check_space(space, fixed, fields, hints, report)
    _check_config(recipe_cls, fixed, params, report, smoke)
    eval_every = int(fixed.get("eval_every", getattr(recipe_cls.Config(), "eval_every", 1)))
    if sched_type == "asha" and sched.grace_period % eval_every and sched.grace_period < sched.max_t:
        where = ("smoke", "grace_period") if smoke else ("scheduler", "grace_period")
        raise report.error(where, f"grace_period {sched.grace_period} must be a multiple of eval_every "
                                  f"({eval_every}) so that ASHA's rungs fall on validation epochs")
    res = parsed.resources
    if res.workers > 1 and res.gpus_per_worker and not float(res.gpus_per_worker).is_integer():
        raise report.error(("resources", "gpus_per_worker"),
                           f"fractional GPUs ({res.gpus_per_worker}) only for one-worker trials "
                           f"(workers is {res.workers}); NCCL needs a whole GPU per worker")

    return SweepSpec(
        name=name, source=source, model=parsed.model, dataset=parsed.dataset, data_root=parsed.data_root,
        metric=parsed.metric, mode=parsed.mode, num_samples=samples, max_concurrent_trials=concurrency,
        searcher=SearcherSpec(type=searcher or parsed.searcher.type, seed=parsed.searcher.seed,
                              n_startup_trials=parsed.searcher.n_startup_trials),
        scheduler=SchedulerSpec(type=sched_type, max_t=sched.max_t, grace_period=sched.grace_period,
                                reduction_factor=sched.reduction_factor),
        resources=ResourcesSpec(workers=res.workers, cpus_per_worker=res.cpus_per_worker,
                                gpus_per_worker=res.gpus_per_worker, max_failures=res.max_failures),
        storage=parsed.storage, fixed=fixed, space=params, description=parsed.description, smoke=smoke)


# ------------------------------------------------------------------------------------------------
# Meaning checks


def _check_model(parsed: SweepFile, report: _Reporter) -> type:
    from kgsearch.recipe import RECIPES, get_recipe

    if parsed.model not in RECIPES:
        raise report.error(("model",), f"unknown model {parsed.model!r} (known: {', '.join(sorted(RECIPES))})")
    return get_recipe(parsed.model)


def _check_dataset(parsed: SweepFile, report: _Reporter, data_root: str | None = None) -> None:
    from kgsearch.data import KNOWN, canonical_name, resolve

    name = parsed.dataset
    canon = canonical_name(name)
    if canon in KNOWN:
        temporal = canon in TEMPORAL_DATASETS
        if parsed.model == "dans" and temporal or parsed.model == "dkgr" and not temporal:
            kind = "temporal" if temporal else "static"
            raise report.error(("dataset",), f"{name!r} is a {kind} dataset; model {parsed.model!r} needs a "
                                             f"{'static' if temporal else 'temporal'} one")
        return
    try:  # a custom name under the data root, or a folder path
        resolve(name, data_root or parsed.data_root)
    except KGSearchError:
        raise report.error(("dataset",), f"unknown dataset {name!r} (known: {', '.join(KNOWN)}; or a folder "
                                         "path, or a folder under data_root / $KGSEARCH_DATA_ROOT)") from None


def _check_metric(parsed: SweepFile, report: _Reporter) -> None:
    groups = METRIC_GROUPS.get(parsed.model)
    match = re.fullmatch(r"val_(?P<group>(?:[a-z]+_)*)(?:mrr|hits@\d+)", parsed.metric)
    if not match or (groups is not None and match["group"] not in groups):
        examples = ", ".join(f"val_{g}mrr" for g in groups or ("",))
        raise report.error(("metric",), f"unknown metric {parsed.metric!r} for model {parsed.model!r} "
                                        f"(e.g. {examples}, val_{(groups or ('',))[0]}hits@10)")
    if parsed.mode != "max":
        raise report.error(("mode",), f"mode must be 'max' for {parsed.metric} (higher is better)")


def _config_fields(recipe_cls: type) -> tuple[dict, dict]:
    fields = {f.name: f for f in dataclasses.fields(recipe_cls.Config)}
    return fields, typing.get_type_hints(recipe_cls.Config)


def _unknown_param(path: tuple, key: str, fields: dict, report: _Reporter) -> KGSearchError:
    hint = difflib.get_close_matches(key, list(fields), n=1)
    return report.error(path, f"{key!r} is not a parameter of this model's config"
                              + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; known: {', '.join(sorted(fields))}")


def _check_fixed_value(path: tuple, key: str, value: Any, fields: dict, hints: dict, report: _Reporter) -> Any:
    if key not in fields:
        raise _unknown_param(path, key, fields, report)
    if key == "epochs":
        raise report.error(path, "epochs is set by scheduler.max_t (and --max-epochs), not here")
    try:
        return _coerce(value, hints[key], "x")
    except KGSearchError as exc:
        raise report.error(path, str(exc).split(": ", 1)[1]) from None


def _check_space(space: dict, fixed: dict, fields: dict, hints: dict, report: _Reporter) -> tuple[ParamDef, ...]:
    defs: dict[str, ParamDef] = {}
    for name, p in space.items():
        path = ("space", name)
        if name not in fields:
            raise _unknown_param(path, name, fields, report)
        if name == "epochs":
            raise report.error(path, "epochs is set by scheduler.max_t; search the ASHA budget instead")
        hint = hints[name]
        if p.type in ("uniform", "loguniform", "int"):
            if p.low > p.high:
                raise report.error(path + ("low",), f"low {p.low} is above high {p.high}")
            if (p.type == "loguniform" or getattr(p, "log", False)) and p.low <= 0:
                raise report.error(path + ("low",), f"a log-scale range needs low > 0, got {p.low}")
            if p.type != "int" and _base_type(hint) is int:
                raise report.error(path + ("type",), f"{name!r} is an integer parameter; use type: int")
            if p.type == "int" and (p.high - p.low) % p.step:
                raise report.error(path + ("step",), f"high - low ({p.high - p.low}) is not a multiple of "
                                                     f"step {p.step}")
            if p.type == "int" and p.log and p.step != 1:
                raise report.error(path + ("log",), "log-scale int ranges need step 1 (Optuna)")
            if _base_type(hint) not in (int, float, None):
                raise report.error(path + ("type",), f"{name!r} is not numeric; use type: choice")
            defs[name] = ParamDef(name, p.type, low=p.low, high=p.high, step=getattr(p, "step", 1),
                                  log=getattr(p, "log", False))
        else:
            values = []
            for i, v in enumerate(p.values):
                try:
                    values.append(_coerce(v, hint, "x"))
                except KGSearchError as exc:
                    raise report.error(path + ("values", i), str(exc).split(": ", 1)[1]) from None
            if len(set(map(repr, values))) != len(values):
                raise report.error(path + ("values",), "repeated value")
            defs[name] = ParamDef(name, "choice", values=tuple(values))

    # `when`: resolve conditions on fixed params now; keep conditions on searched choice params.
    kept: dict[str, ParamDef] = {}
    for name, p in space.items():
        conds = []
        static_ok = True
        for parent, allowed in (p.when or {}).items():
            path = ("space", name, "when", parent)
            allowed_t = tuple(allowed) if isinstance(allowed, list) else (allowed,)
            if parent == name:
                raise report.error(path, "a parameter cannot depend on itself")
            if parent in fixed:
                static_ok &= fixed[parent] in allowed_t
                continue
            if parent not in defs:
                raise report.error(path, f"names unknown parameter {parent!r} (not in space or fixed)")
            if defs[parent].type != "choice":
                raise report.error(path, f"{parent!r} is a {defs[parent].type} range; only choice "
                                         "parameters can switch others on")
            for v in allowed_t:
                if v not in defs[parent].values:
                    raise report.error(path, f"{v!r} is not one of {parent!r}'s choices {list(defs[parent].values)}")
            conds.append((parent, allowed_t))
        if static_ok:  # e.g. smoke pinned the parent to another value: the parameter drops out
            kept[name] = dataclasses.replace(defs[name], when=tuple(conds))
    for name, p in list(kept.items()):  # a child of a dropped parent drops too
        if any(parent not in kept for parent, _ in p.when):
            kept.pop(name)
    return _topological(kept, report)


def _topological(params: dict[str, ParamDef], report: _Reporter) -> tuple[ParamDef, ...]:
    order: list[ParamDef] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise report.error(("space", name, "when"), f"circular `when`: {' -> '.join(chain + (name,))}")
        state[name] = 1
        for parent, _ in params[name].when:
            visit(parent, chain + (name,))
        state[name] = 2
        order.append(params[name])

    for name in params:
        visit(name, ())
    return tuple(order)


def _base_type(hint: Any) -> type | None:
    if hint in (int, float, bool, str):
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return _base_type(args[0]) if len(args) == 1 else None


def _check_config(recipe_cls: type, fixed: dict, params: tuple[ParamDef, ...], report: _Reporter,
                  smoke: bool) -> None:
    """Build the recipe config from the fixed params, and from the space's corners and random samples.

    A space whose ranges can produce an invalid config (say beta_low above beta_global) is refused
    here instead of failing trials one by one at run time.
    """
    section = ("smoke", "fixed") if smoke else ("fixed",)
    try:
        _validated(recipe_cls.Config(**fixed))
    except (ValueError, AssertionError, TypeError) as exc:
        raise report.error(section, f"invalid {recipe_cls.Config.__name__}: {exc}") from None
    if not params:
        return
    rng = random.Random(0)
    candidates = [{p.name: p.low if p.type != "choice" else p.values[0] for p in params},
                  {p.name: p.high if p.type != "choice" else p.values[-1] for p in params}]
    candidates += [{p.name: p.sample(rng) for p in params} for _ in range(64)]
    for sample in candidates:
        chosen: dict[str, Any] = {}
        for p in params:
            if p.active(chosen):
                chosen[p.name] = sample[p.name]
        try:
            _validated(recipe_cls.Config(**{**fixed, **chosen}))
        except (ValueError, AssertionError) as exc:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items())
            raise report.error(("space",), f"the space can produce an invalid config ({exc}), e.g. {shown}; "
                                           "narrow the ranges so that every combination is valid") from None


def _validated(config: Any) -> Any:
    check = getattr(config, "validate", None)
    if check is not None:
        check()
    return config


__all__ = ["SweepSpec", "ParamDef", "OptunaSpace", "SearcherSpec", "SchedulerSpec", "ResourcesSpec",
           "load_spec", "parse_spec", "resolve_sweep", "available_sweeps", "spec_from_dict",
           "REPO_ROOT"]
