"""Typed recipe configs: a dataclass per recipe, filled from YAML mappings.

Values are checked per field by pydantic in strict mode (an int is taken for a float, nothing else is
converted, bar a whole float for an int), the same check for run files, sweep files' `fixed:` blocks and search-space choices.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Mapping

import pydantic

from kgsearch.errors import KGSearchError


class ConfigError(KGSearchError):
    """A bad config value or key; `key` and `reason` let a caller point at its YAML line instead."""

    def __init__(self, message: str, key: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.key, self.reason = key, reason or message


@functools.cache
def _adapters(cls: type) -> dict[str, pydantic.TypeAdapter]:
    strict = pydantic.ConfigDict(strict=True)
    return {name: pydantic.TypeAdapter(hint, config=strict) for name, hint in typing.get_type_hints(cls).items()
            if name in {f.name for f in dataclasses.fields(cls)}}


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def check_value(cls: type, key: str, value: Any) -> Any:
    """`value` as field `key` of config class `cls` takes it; ConfigError says why not."""
    adapters = _adapters(cls)
    if key not in adapters:
        raise ConfigError(f"unknown key {key!r} for {cls.__name__} (known: {', '.join(sorted(adapters))})", key)
    try:
        return adapters[key].validate_python(value)
    except pydantic.ValidationError as exc:
        if isinstance(value, float) and value.is_integer():  # `dim: 4.0` in YAML means 4
            try:
                return adapters[key].validate_python(int(value))
            except pydantic.ValidationError:
                pass
        reason = exc.errors()[0]["msg"]
        raise ConfigError(f"{reason[0].lower()}{reason[1:]}, got {value!r}", key) from None


def config_from_dict(cls: type, mapping: Mapping[str, Any] | None, source: str = "config") -> Any:
    """Build dataclass `cls` from `mapping`; an unknown key or a wrongly typed value names itself."""
    values = {}
    for key, value in dict(mapping or {}).items():
        try:
            values[key] = check_value(cls, key, value)
        except ConfigError as exc:
            prefix = "" if str(exc).startswith("unknown key") else f"key {key!r}: "
            raise ConfigError(f"{source}: {prefix}{exc}", key, exc.reason) from None
    config = cls(**values)
    check = getattr(config, "validate", None)
    if check is not None:
        try:
            check()
        except (ValueError, AssertionError) as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
