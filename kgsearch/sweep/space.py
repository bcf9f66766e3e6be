"""The search space: Optuna's define-by-run view of it, and the checks that it yields only valid configs."""

from __future__ import annotations

import random
import typing
from dataclasses import dataclass
from typing import Any, Callable

from kgsearch.config import ConfigError, check_value
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


def optuna_space(space: dict[str, Param]) -> OptunaSpace:
    return OptunaSpace(tuple(space.items()))


def active_values(space: dict[str, Param], sample: dict[str, Any]) -> dict[str, Any]:
    """The values of `sample` whose `when` conditions hold (in space order)."""
    chosen: dict[str, Any] = {}
    for name, param in space.items():
        if param.active(chosen):
            chosen[name] = sample[name]
    return chosen


def _base_type(hint: Any) -> type | None:
    if hint in (int, float, bool, str):
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return _base_type(args[0]) if len(args) == 1 else None


def check_space(space: dict[str, Param], fixed: dict, config_cls: type, doc: YamlDoc,
                report: Callable[[KGSearchError], None]) -> dict[str, Param]:
    """Ranges, types and `when` links of the searched params -> the space in dependency order.

    A `when` on a fixed param is decided now (the param stays or drops out); a `when` on a searched
    param must name one of its choices. Each problem goes to `report` and its parameter is left out.
    """
    hints = typing.get_type_hints(config_cls)
    checked: dict[str, Param] = {}
    for name, p in space.items():
        try:
            checked[name] = _checked_param(name, p, _base_type(hints[name]), config_cls, doc)
        except KGSearchError as exc:
            report(exc)
    refused = set(space) - set(checked)

    kept: dict[str, Param] = {}
    for name, p in checked.items():
        try:
            conds, stays = _conditions(name, p, fixed, checked, refused, doc)
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


def _checked_param(name: str, p: Param, base: type | None, config_cls: type, doc: YamlDoc) -> Param:
    path = ("space", name)
    if p.type == "choice":
        values = []
        for i, v in enumerate(p.values):
            try:
                values.append(check_value(config_cls, name, v))
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
        raise doc.error(path + ("type",), f"{name!r} is an integer parameter; use type: int")
    if p.type == "int" and (p.high - p.low) % p.step:
        raise doc.error(path + ("step",), f"high - low ({p.high - p.low}) is not a multiple of step {p.step}")
    if p.type == "int" and p.log and p.step != 1:
        raise doc.error(path + ("log",), "log-scale int ranges need step 1 (Optuna)")
    if base not in (int, float, None):
        raise doc.error(path + ("type",), f"{name!r} is not numeric; use type: choice")
    return p


def _conditions(name: str, p: Param, fixed: dict, checked: dict, refused: set, doc: YamlDoc) -> tuple[dict, bool]:
    """`p.when` without the conditions on fixed params, and whether those hold."""
    conds, stays = {}, True
    for parent, allowed in p.when.items():
        path = ("space", name, "when", parent)
        if parent == name:
            raise doc.error(path, "a parameter cannot depend on itself")
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
            _validated(config_cls(**{**fixed, **chosen}))
        except (ValueError, AssertionError) as exc:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items())
            raise doc.error(("space",), f"the space can produce an invalid config ({exc}), e.g. {shown}; "
                                        "narrow the ranges so that every combination is valid") from None


def _validated(config: Any) -> Any:
    check = getattr(config, "validate", None)
    if check is not None:
        check()
    return config


__all__ = ["OptunaSpace", "optuna_space", "active_values", "check_space", "check_configs"]
