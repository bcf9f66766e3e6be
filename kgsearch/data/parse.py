"""Reading one tab-separated file into fields, integer columns, name lists and id maps.

Vectorised per file: one decode, one split, field counts from numpy over the raw bytes, names mapped
by C-level ``map`` over dicts, duplicates found with ``np.unique``. Every error is one line
``PATH: line N: reason`` naming the first bad line.
"""

from __future__ import annotations

import codecs
import gzip
import re
import zlib
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np

from kgsearch.errors import KGSearchError

NAMES = {1: "one name per line"}
ID_MAP = {2: "name, id"}
# RE-NET's YAGO entity2id.txt adds each entity's validity dates ("1913-##-##", "####-##-##"); no model
# here reads them, so they are ignored.
ENTITY_MAP = {2: "name, id", 4: "name, id, start, end"}
TRIPLES = {3: "head, relation, tail"}
QUADS = {4: "head, relation, tail, time", 5: "head, relation, tail, time, 0"}


def find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.txt", folder / f"{stem}.txt.gz"):
        if candidate.is_file():
            return candidate
    return None


def require_file(folder: Path, stem: str) -> Path:
    path = find_file(folder, stem)
    if path is None:
        raise KGSearchError(f"{folder}: missing {stem}.txt (or {stem}.txt.gz)")
    return path


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KGSearchError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise KGSearchError(f"{path}: not a valid gzip file ({exc})") from None
    return raw


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise KGSearchError(
            f"{path}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column})"
        ) from None


def _fields_per_line(data: bytes) -> np.ndarray:
    """Number of tab-separated fields on each line, from the byte positions of tabs and newlines."""
    buf = np.frombuffer(data, dtype=np.uint8)
    line_ends = np.append(np.flatnonzero(buf == 10), buf.size)
    tabs = np.flatnonzero(buf == 9)
    return np.diff(np.searchsorted(tabs, line_ends), prepend=0) + 1


@dataclass
class Rows:
    """One parsed file: its fields row-major (`width` per line)."""

    path: Path
    fields: list[str]
    width: int

    @property
    def n(self) -> int:
        return len(self.fields) // self.width

    def column(self, j: int) -> list[str]:
        return self.fields[j :: self.width]


def read_rows(path: Path, layouts: dict[int, str]) -> Rows:
    """Split a file into fields; line 1 picks one of the `layouts` (field count -> description)."""
    data = _read_bytes(path)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    data = data.rstrip(b"\r\n")  # trailing newline(s) are not an extra empty record
    if not data.strip():
        raise KGSearchError(f"{path}: file is empty")
    text = _decode(path, data)
    counts = _fields_per_line(data)
    width = int(counts[0])
    if width not in layouts:
        expected = " or ".join(f"{w} ({layout})" for w, layout in layouts.items())
        raise KGSearchError(f"{path}: line 1: expected {expected} tab-separated fields, found {width}")
    bad = np.flatnonzero(counts != width)
    if bad.size:
        line = int(bad[0]) + 1
        found = int(counts[bad[0]])
        blank = " (blank line)" if found == 1 and not text.split("\n", line)[line - 1].strip() else ""
        raise KGSearchError(
            f"{path}: line {line}: expected {width} tab-separated fields ({layouts[width]}) like line 1, "
            f"found {found}{blank}"
        )
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    fields = text.replace("\n", "\t").split("\t") if width > 1 else text.split("\n")
    if "" in fields:
        i = fields.index("")
        what = "blank line" if width == 1 else f"field {i % width + 1} is empty"
        raise KGSearchError(f"{path}: line {i // width + 1}: {what}")
    return Rows(path, fields, width)


# What int() accepts minus its extras: digit separators ("1_0" is 10) and non-ASCII digits or spaces.
_INT = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)


def _is_int(value: str) -> bool:
    return _INT.fullmatch(value) is not None and -(2**63) <= int(value) < 2**63


def int_columns(rows: Rows, cols: tuple[int, ...], whats: tuple[str, ...]) -> np.ndarray:
    """Integer columns -> [n, len(cols)] int64; the first non-integer (in line order) is reported."""
    if cols == tuple(range(rows.width)):
        values = rows.fields
    else:
        values = [""] * (rows.n * len(cols))
        for k, c in enumerate(cols):
            values[k :: len(cols)] = rows.column(c)
    try:
        out = np.fromiter(map(int, values), dtype=np.int64, count=len(values)).reshape(rows.n, len(cols))
        joined = "".join(values)
        if joined.isascii() and "_" not in joined:
            return out
    except (ValueError, OverflowError):
        pass
    for j, value in enumerate(values):  # slow path only to name the first bad line
        if not _is_int(value):
            raise KGSearchError(
                f"{rows.path}: line {j // len(cols) + 1}: {whats[j % len(cols)]} {value!r} is not an integer")
    raise AssertionError("unreachable")


def first_repeat(values: list | np.ndarray) -> tuple[int, int] | None:
    """(index, index of its first occurrence) of the first value that occurred before, else None."""
    if len(set(values.tolist() if isinstance(values, np.ndarray) else values)) == len(values):
        return None
    _, first, inverse = np.unique(np.asarray(values), return_index=True, return_inverse=True)
    earlier = first[inverse.reshape(-1)]
    i = int(np.flatnonzero(earlier != np.arange(len(values)))[0])
    return i, int(earlier[i])


def check_ids(rows: Rows, ids: np.ndarray, limits: list[tuple[str, int, Path]]) -> None:
    """ids [n, k] must lie in 0..size-1 of the k id maps; report the first bad line."""
    sizes = np.array([size for _, size, _ in limits])
    bad = (ids < 0) | (ids >= sizes)
    if bad.any():
        i = int(np.flatnonzero(bad.any(axis=1))[0])
        k = int(np.flatnonzero(bad[i])[0])
        what, size, source = limits[k]
        raise KGSearchError(
            f"{rows.path}: line {i + 1}: {what} id {ids[i, k]} out of range ({source.name} has ids 0..{size - 1})"
        )


def name_ids(rows: Rows, lookups: list[tuple[int, dict[str, int], str, Path | None]]) -> np.ndarray:
    """Columns of names -> [n, len(lookups)] ids; an unknown name is reported at its first line."""
    ids = np.stack([np.fromiter(map(index.get, rows.column(col), repeat(-1)), dtype=np.int64, count=rows.n)
                    for col, index, _, _ in lookups], axis=1)
    missing = ids < 0
    if missing.any():
        i = int(np.flatnonzero(missing.any(axis=1))[0])
        k = int(np.flatnonzero(missing[i])[0])
        col, _, what, source = lookups[k]
        where = source.name if source is not None else "the vocabulary"
        raise KGSearchError(f"{rows.path}: line {i + 1}: {what} {rows.column(col)[i]!r} is not listed in {where}")
    return ids


def read_name_list(path: Path) -> list[str]:
    names = read_rows(path, NAMES).fields
    repeat_at = first_repeat(names)
    if repeat_at is not None:
        i, j = repeat_at
        raise KGSearchError(f"{path}: line {i + 1}: {names[i]!r} repeats line {j + 1}")
    return names


def read_id_map(path: Path, layouts: dict[int, str] = ID_MAP) -> list[str]:
    """``name<TAB>id`` lines (more columns where `layouts` allows) -> names ordered by id.

    Ids must be exactly 0..N-1 and names distinct: a name listed twice would make the name -> id
    direction ambiguous.
    """
    rows = read_rows(path, layouts)
    ids = int_columns(rows, (1,), ("id",))[:, 0]
    size = rows.n
    bad = np.flatnonzero((ids < 0) | (ids >= size))
    if bad.size:
        i = int(bad[0])
        raise KGSearchError(f"{path}: line {i + 1}: id {ids[i]} out of range (the {size} ids must be 0..{size - 1})")
    names = rows.column(0)
    for values, what in ((ids, "id"), (names, "name")):
        repeat_at = first_repeat(values)
        if repeat_at is not None:
            i, j = repeat_at
            value = ids[i] if what == "id" else repr(names[i])
            raise KGSearchError(f"{path}: line {i + 1}: {what} {value} repeats line {j + 1}")
    return [names[i] for i in np.argsort(ids).tolist()]
