"""`--set key.path=value`: command-line overrides of a YAML file's keys, applied before validation.

Values are YAML (`--set fixed.lr=0.01`, `--set resources.cpus_per_worker=2`,
`--set space.lr='{type: loguniform, low: 1e-4, high: 1e-2}'`). A mistake in an overridden value is
reported against the `--set` that made it, not against a line of the file.

Generic on purpose (it knows nothing of sweeps): it needs only yaml and kgsearch.errors / yamlio.
"""

from __future__ import annotations

import copy

import yaml

from kgsearch.errors import KGSearchError
from kgsearch.yamlio import YamlDoc


def parse_override(item: str) -> tuple[tuple[str, ...], object]:
    """'fixed.lr=0.01' -> (('fixed', 'lr'), 0.01)."""
    key, eq, text = item.partition("=")
    path = tuple(key.strip().split("."))
    if not eq or not all(path):
        raise KGSearchError(f"--set {item}: expected KEY.PATH=VALUE, e.g. fixed.lr=0.01")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise KGSearchError(f"--set {item}: the value is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return path, value


class OverriddenDoc(YamlDoc):
    """A YamlDoc whose errors under an overridden key name the override instead of a file line."""

    def __init__(self, base: YamlDoc, data: dict, overrides: dict[tuple, str]):
        self.base, self.data, self.source, self.overrides = base, data, base.source, overrides

    def error(self, path: tuple, reason: str) -> KGSearchError:
        names = tuple(str(p) for p in path)
        for key, origin in self.overrides.items():
            if names[:len(key)] == key:
                return KGSearchError(f"{origin}: {'.'.join(names)}: {reason}")
        return self.base.error(path, reason)


def apply_overrides(doc: YamlDoc, items: list[str], origins: list[str] | None = None) -> YamlDoc:
    """`doc` with each `key.path=value` of `items` set (in order; later ones win).

    `origins` names each item in messages (default: '--set ITEM').
    """
    if not items:
        return doc
    data = copy.deepcopy(doc.data)
    applied: dict[tuple, str] = {}
    for i, item in enumerate(items):
        origin = origins[i] if origins else f"--set {item}"
        path, value = parse_override(item)
        node = data
        for depth, key in enumerate(path[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise KGSearchError(f"{origin}: {'.'.join(path[:depth + 1])} is a value, not a section")
            node = child
        node[path[-1]] = value
        applied[path] = origin
    return OverriddenDoc(doc, data, applied)


__all__ = ["apply_overrides", "parse_override", "OverriddenDoc"]
