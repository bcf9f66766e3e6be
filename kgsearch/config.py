"""Typed configs: a dataclass per recipe, built from YAML mappings with unknown keys rejected by name."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from kgsearch.errors import KGSearchError


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Light type check / coercion for YAML scalars (ints given for floats, etc.)."""
    origin = typing.get_origin(annotation)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is str and isinstance(value, str):
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except KGSearchError:
                continue
    if origin is typing.Literal:
        if value in typing.get_args(annotation):
            return value
        raise KGSearchError(f"{where}: {value!r} is not one of {list(typing.get_args(annotation))}")
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        return type(value)(value) if origin is list else tuple(value)
    if annotation is Any:
        return value
    expected = getattr(annotation, "__name__", str(annotation))
    raise KGSearchError(f"{where}: expected {expected}, got {value!r}")


def config_from_dict(cls: type, mapping: Mapping[str, Any] | None, source: str = "config") -> Any:
    """Build dataclass `cls` from `mapping`; an unknown key or a wrongly typed value names itself."""
    mapping = dict(mapping or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise KGSearchError(
            f"{source}: unknown key {unknown[0]!r} for {cls.__name__} "
            f"(known: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    values = {k: _coerce(v, hints[k], f"{source}: key {k!r}") for k, v in mapping.items()}
    config = cls(**values)
    check = getattr(config, "validate", None)
    if check is not None:
        try:
            check()
        except (ValueError, AssertionError) as exc:
            raise KGSearchError(f"{source}: {exc}") from None
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """safe_load a YAML mapping; a missing file or bad syntax names the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KGSearchError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KGSearchError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise KGSearchError(f"{path}:{line}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise KGSearchError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
