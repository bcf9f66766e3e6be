"""The search space: Optuna's define-by-run view of it, and the checks that it yields only valid configs.

A space entry's key is the Optuna parameter's name; the config field it sets is its `param:` (default: the
key). So one field can be searched over different ranges in different branches of a choice:

    lr_rotate:  {type: loguniform, low: 1.0e-3, high: 2.0e-2, param: lr, when: {scorer: rotate}}
    lr_complex: {type: loguniform, low: 0.03, high: 0.3, param: lr, when: {scorer: complex_n3}}

The searcher suggests by key and hands Tune the fields (`to_config`), so every trial config, run file,
re-training config and best/config.yaml holds real config fields only; `searched_values` reads a config back
as the keys (trials.csv, the summary, a resume's reruns, the warm start from a run file). Entries that set the
same field must condition on the same choice parameter with disjoint values (`check_space`), so at most one is
active in a trial. A field in `fixed` that conditional entries also set is their default: the trial has the
fixed value wherever no active entry sets the field.
"""

from __future__ import annotations

import difflib
import random
import typing
from dataclasses import dataclass
from typing import Any, Callable

from kgsearch.config import ConfigError, check_value, field_names
from kgsearch.errors import KGSearchError
from kgsearch.sweep.spec import ChoiceParam, Param
from kgsearch.yamlio import YamlDoc


@dataclass(frozen=True)
class OptunaSpace:
    """Define-by-run search space for `OptunaSearch`.

    Tune pickles it (by reference to this class) into the searcher state, and --resume unpickles it,
    so it lives at module level under a stable name. Parameters come in an order where a `when`
    parent is suggested before its children.
    """

    params: tuple[tuple[str, Param], ...]

    def __call__(self, trial) -> None:
        chosen: dict[str, Any] = {}
        for name, param in self.params:
            if param.active(chosen):
                chosen[name] = param.suggest(name, trial)
        return None  # OptunaSearch records the suggested values itself

    def config(self, values: dict[str, Any]) -> dict[str, Any]:
        """Suggested values (by key) -> the config fields they set (`to_config`)."""
        return to_config(dict(self.params), values)

    def searched(self, config: dict[str, Any]) -> dict[str, Any]:
        """A trial's config -> its searched values by key (`searched_values`)."""
        return searched_values(dict(self.params), config)


def optuna_space(space: dict[str, Param]) -> OptunaSpace:
    return OptunaSpace(tuple(space.items()))


def active_values(space: dict[str, Param], sample: dict[str, Any]) -> dict[str, Any]:
    """The values of `sample` (by key) whose `when` conditions hold (in space order)."""
    chosen: dict[str, Any] = {}
    for name, param in space.items():
        if param.active(chosen):
            chosen[name] = sample[name]
    return chosen


def to_config(space: dict[str, Param], values: dict[str, Any]) -> dict[str, Any]:
    """Searched values by key -> by the config field each entry sets (`param:`); a key the space does not
    hold is kept as it is."""
    return {space[k].field(k) if k in space else k: v for k, v in values.items()}


def searched_values(space: dict[str, Param], config: dict[str, Any]) -> dict[str, Any]:
    """A config (a trial's, a run file's params) -> the searched values by key: each entry whose `when` holds
    for its parents' values (parents first, whatever the space's order) and whose field the config holds takes
    the config's value of that field. The inverse of `to_config` on what a trial was suggested; for a space
    without `param:` it is the config's values of the active keys."""
    chosen: dict[str, Any] = {}
    pending = dict(space)
    while pending:
        ready = [n for n, p in pending.items() if not any(parent in pending for parent in p.when)]
        for name in ready or list(pending):  # none ready: a `when` cycle, which validation refuses
            param = pending.pop(name)
            field = param.field(name)
            if field in config and param.active(chosen):
                chosen[name] = config[field]
    return {k: chosen[k] for k in space if k in chosen}


def setting(space: dict[str, Param]) -> dict[str, list[str]]:
    """{config field: the keys of the entries that set it}."""
    out: dict[str, list[str]] = {}
    for name, param in space.items():
        out.setdefault(param.field(name), []).append(name)
    return out


def pin(space: dict[str, Param], field: str, pinned: dict[str, str]) -> None:
    """A pinned field (smoke's `fixed`, --set fixed.FIELD) takes every entry that sets it out of `space`;
    `pinned` records them ({key: field}), so that a `when` on one is decided by the pinned value."""
    for key in [k for k, p in space.items() if p.field(k) == field]:
        pinned[key] = field
        space.pop(key)


def unknown_field(path: tuple, key: str, config_cls: type, doc: YamlDoc, note: str = "") -> KGSearchError:
    fields = field_names(config_cls)
    hint = difflib.get_close_matches(key, fields, n=1)
    return doc.error(path, f"{key!r} is not a parameter of this model's config"
                           + (f" (did you mean {hint[0]!r}?)" if hint else "") + note
                           + f"; known: {', '.join(sorted(fields))}")


def check_entries(space: dict[str, Param], fixed: dict, recipe_cls: type, doc: YamlDoc,
                  report: Callable[[KGSearchError], None]) -> None:
    """Each entry's field (its `param:`, else its key) against the recipe, and against `fixed`; an entry with a
    problem goes to `report` and out of `space`. A field in `fixed` that a conditional entry sets is that
    entry's default (the trials where it is inactive have the fixed value); beside an entry without `when`
    the fixed value would never be used, which is refused."""
    fields = field_names(recipe_cls.Config)
    for k, p in list(space.items()):
        field = p.field(k)
        try:
            if p.param is not None and p.param not in fields:
                raise unknown_field(("space", k, "param"), p.param, recipe_cls.Config, doc)
            if p.param is not None and p.param != k and k in fields:
                raise doc.error(("space", k, "param"), f"the key {k!r} is a config field itself, so it cannot set "
                                                       f"{p.param!r}; name the entry otherwise (e.g. "
                                                       f"{p.param + '_' + k!r})")
            if field in fixed and not p.when:
                what = repr(k) if field == k else f"{k!r} sets {field!r}, which"
                raise doc.error(("space", k), f"{what} is also set in `fixed`; a parameter is either fixed or "
                                              "searched (or searched under a `when`, with `fixed` as the default "
                                              "where that does not hold)")
            if field not in fields:
                raise unknown_field(("space", k), field, recipe_cls.Config, doc,
                                    " (an entry whose key is not the field it sets names that field with `param:`)")
            if field == "epochs":
                raise doc.error(("space", k), "epochs is set by scheduler.max_t; search the ASHA budget instead")
            if field in recipe_cls.prepare_fields:
                raise doc.error(("space", k), f"{field!r} feeds {recipe_cls.__name__}.prepare(), which a sweep runs "
                                              "once with the fixed values for all trials; it cannot be searched "
                                              "(set it in `fixed`, or run one sweep per value)")
        except KGSearchError as exc:
            report(exc)
            space.pop(k)


def _base_type(hint: Any) -> type | None:
    if hint in (int, float, bool, str):
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return _base_type(args[0]) if len(args) == 1 else None


def check_space(space: dict[str, Param], fixed: dict, config_cls: type, doc: YamlDoc,
                report: Callable[[KGSearchError], None], pinned: dict[str, str] | None = None) -> dict[str, Param]:
    """Ranges, types and `when` links of the searched params -> the space in dependency order.

    A `when` on a fixed param is decided now (the param stays or drops out); a `when` on a searched
    param must name one of its choices. `pinned`: {key: field} of the entries a pin (smoke's `fixed`,
    --set fixed.FIELD) took out of `space`; a `when` on such a key is decided by the pinned value. Entries
    that set the same field must be exclusive (`_exclusive`). Each problem goes to `report` and its
    parameter is left out.
    """
    pinned = pinned or {}
    hints = typing.get_type_hints(config_cls)
    checked: dict[str, Param] = {}
    for name, p in space.items():
        try:
            checked[name] = _checked_param(name, p, _base_type(hints[p.field(name)]), config_cls, doc)
        except KGSearchError as exc:
            report(exc)
    for field, names in setting(checked).items():  # at most one entry may set a field in any trial
        for i, later in enumerate(names):
            for earlier in names[:i]:
                if later in checked and earlier in checked and not _exclusive(checked[earlier], checked[later]):
                    report(doc.error(("space", later), f"{earlier!r} and {later!r} both set {field!r}, and their "
                                     "`when` conditions can hold together; entries that set the same field need "
                                     "`when` conditions on the same choice parameter with no value in common "
                                     "(e.g. {scorer: rotate} and {scorer: complex_n3})"))
                    checked.pop(later)
    refused = set(space) - set(checked)
    set_by = setting(space)

    kept: dict[str, Param] = {}
    for name, p in checked.items():
        try:
            conds, stays = _conditions(name, p, fixed, checked, refused, doc, pinned, set_by)
        except KGSearchError as exc:
            report(exc)
            continue
        if stays:  # e.g. smoke pinned the parent to another value: the parameter drops out
            kept[name] = p.model_copy(update={"when": conds})
    for name, p in list(kept.items()):  # a child of a dropped parent drops too
        if any(parent not in kept for parent in p.when):
            kept.pop(name)
    try:
        return _dependency_order(kept, doc)
    except KGSearchError as exc:
        report(exc)
        return {}


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _exclusive(a: Param, b: Param) -> bool:
    """Whether two entries' `when`s can never hold together: both condition on one parameter, with no value
    in common. (Exclusion through a chain of parents is not worked out: such entries are refused.)"""
    return any(parent in b.when and not any(_same(x, y) for x in allowed for y in b.when[parent])
               for parent, allowed in a.when.items())


def _checked_param(name: str, p: Param, base: type | None, config_cls: type, doc: YamlDoc) -> Param:
    path = ("space", name)
    field = p.field(name)
    what = repr(name) if field == name else f"{name!r} (field {field!r})"
    if p.type == "choice":
        values = []
        for i, v in enumerate(p.values):
            try:
                values.append(check_value(config_cls, field, v))
            except ConfigError as exc:
                raise doc.error(path + ("values", i), str(exc)) from None
        if len(set(map(repr, values))) != len(values):
            raise doc.error(path + ("values",), "repeated value")
        return p.model_copy(update={"values": values})
    if p.low > p.high:
        raise doc.error(path + ("low",), f"low {p.low} is above high {p.high}")
    if (p.type == "loguniform" or getattr(p, "log", False)) and p.low <= 0:
        raise doc.error(path + ("low",), f"a log-scale range needs low > 0, got {p.low}")
    if p.type != "int" and base is int:
        raise doc.error(path + ("type",), f"{what} is an integer parameter; use type: int")
    if p.type == "int" and (p.high - p.low) % p.step:
        raise doc.error(path + ("step",), f"high - low ({p.high - p.low}) is not a multiple of step {p.step}")
    if p.type == "int" and p.log and p.step != 1:
        raise doc.error(path + ("log",), "log-scale int ranges need step 1 (Optuna)")
    if base not in (int, float, None):
        raise doc.error(path + ("type",), f"{what} is not numeric; use type: choice")
    return p


def _conditions(name: str, p: Param, fixed: dict, checked: dict, refused: set, doc: YamlDoc,
                pinned: dict[str, str], set_by: dict[str, list[str]]) -> tuple[dict, bool]:
    """`p.when` without the conditions on fixed params, and whether those hold."""
    conds, stays = {}, True
    for parent, allowed in p.when.items():
        path = ("space", name, "when", parent)
        if parent == name:
            raise doc.error(path, "a parameter cannot depend on itself")
        if parent in pinned and pinned[parent] in fixed:  # its entry was pinned (smoke, --set fixed.FIELD)
            stays &= fixed[pinned[parent]] in allowed
            continue
        if parent in fixed and parent in set_by:
            raise doc.error(path, f"{parent!r} is in `fixed` and also set by space entry "
                                  f"{', '.join(map(repr, set_by[parent]))} in some trials, so its value is not "
                                  "known here; condition on the choice that switches that entry instead")
        if parent in fixed:
            stays &= fixed[parent] in allowed
            continue
        if parent in refused:
            return {}, False  # its parent was already reported
        if parent not in checked:
            raise doc.error(path, f"names unknown parameter {parent!r} (not in space or fixed)")
        if not isinstance(checked[parent], ChoiceParam):
            raise doc.error(path, f"{parent!r} is a {checked[parent].type} range; only choice "
                                  "parameters can switch others on")
        for v in allowed:
            if v not in checked[parent].values:
                raise doc.error(path, f"{v!r} is not one of {parent!r}'s choices {list(checked[parent].values)}")
        conds[parent] = allowed
    return conds, stays


def _dependency_order(params: dict[str, Param], doc: YamlDoc) -> dict[str, Param]:
    order: dict[str, Param] = {}
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise doc.error(("space", name, "when"), f"circular `when`: {' -> '.join(chain + (name,))}")
        state[name] = 1
        for parent in params[name].when:
            visit(parent, chain + (name,))
        state[name] = 2
        order[name] = params[name]

    for name in params:
        visit(name, ())
    return order


def check_configs(config_cls: type, fixed: dict, space: dict[str, Param], doc: YamlDoc, section: tuple) -> None:
    """Build the recipe config from the fixed params, and from the space's corners and random samples.

    A space whose ranges can produce an invalid config (say beta_low above beta_global) is refused
    here instead of failing trials one by one at run time.
    """
    try:
        _validated(config_cls(**fixed))
    except (ValueError, AssertionError, TypeError) as exc:
        raise doc.error(section, f"invalid {config_cls.__name__}: {exc}") from None
    if not space:
        return
    rng = random.Random(0)
    candidates = [{n: p.corner(False) for n, p in space.items()}, {n: p.corner(True) for n, p in space.items()}]
    candidates += [{n: p.sample(rng) for n, p in space.items()} for _ in range(64)]
    for sample in candidates:
        chosen = active_values(space, sample)
        try:
            _validated(config_cls(**{**fixed, **to_config(space, chosen)}))
        except (ValueError, AssertionError) as exc:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items())
            raise doc.error(("space",), f"the space can produce an invalid config ({exc}), e.g. {shown}; "
                                        "narrow the ranges so that every combination is valid") from None


def _validated(config: Any) -> Any:
    check = getattr(config, "validate", None)
    if check is not None:
        check()
    return config


__all__ = ["OptunaSpace", "optuna_space", "active_values", "to_config", "searched_values", "setting", "pin",
           "unknown_field", "check_entries", "check_space", "check_configs"]
