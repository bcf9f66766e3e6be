"""YAML files in and out: one reader for run files and sweep files, with `file:line` in every error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kgsearch.errors import KGSearchError


class KeyLines:
    """Key path -> 1-based line of a YAML text, from the composed node tree (marks survive only there)."""

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
        path = tuple(p if isinstance(p, int) else str(p) for p in path)
        while path not in self.lines and path:
            path = path[:-1]  # a missing key: point at its parent
        return self.lines.get(path) if path else None


class YamlDoc:
    """A parsed YAML mapping that can name the file and line of any key path in its errors."""

    def __init__(self, data: dict, text: str, source: str):
        self.data, self.source, self._lines = data, source, KeyLines(text)

    def error(self, path: tuple, reason: str) -> KGSearchError:
        line = self._lines.line(path)
        where = f"{self.source}:{line}" if line else self.source
        dotted = ".".join(str(p) for p in path)
        return KGSearchError(f"{where}: {dotted}: {reason}" if dotted else f"{where}: {reason}")


def parse_yaml(text: str, source: str, what: str = "settings") -> YamlDoc:
    """safe_load a YAML mapping; bad syntax or a non-mapping names the source (and line)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise KGSearchError(f"{source}{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise KGSearchError(f"{source}: expected a mapping of {what}, got {type(data).__name__}")
    return YamlDoc(data, text, source)


def read_yaml(path: str | Path, what: str = "settings") -> YamlDoc:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KGSearchError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KGSearchError(f"{path}: cannot read: {exc}") from None
    return parse_yaml(text, str(path), what)


def yaml_text(data: dict, header: str = "") -> str:
    """A mapping as block YAML in insertion order, after an optional comment header."""
    return (header + "\n" if header else "") + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def plain(value: Any) -> Any:
    """Tuples -> lists, recursively: what safe_dump and JSON take."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
