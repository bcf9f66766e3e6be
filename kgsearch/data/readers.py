"""Reading a dataset folder into a `StaticDataset` / `TemporalDataset`.

Folder layout (every file tab-separated, UTF-8, one record per line; any file may be ``NAME.txt.gz``):

* static:   ``train.txt``, ``valid.txt``, ``test.txt`` with ``head<TAB>relation<TAB>tail`` names;
            optional ``entities.txt`` / ``relations.txt`` (one name per line) fix the vocabulary and its
            order, otherwise names are numbered in order of first appearance over train, valid, test
            (head before tail within a line).
* temporal: the same three files with ``head<TAB>relation<TAB>tail<TAB>time`` (time an integer). With
            ``entity2id.txt`` / ``relation2id.txt`` (``name<TAB>id``, ids 0..N-1) the first three columns
            are ids; without them they are names, numbered as above. RE-NET's raw files carry a constant
            5th column ``0``: a file whose lines all have 5 fields is accepted when that column is 0.

Kind detection: a folder is temporal when it has ``entity2id.txt`` or ``relation2id.txt``, or when the
first line of its training file has 4 (or 5) fields; with 3 fields it is static.

Unseen entities: static valid/test triples whose entity or relation does not occur in train are dropped
with an ``UnseenEntityWarning`` (``unseen="error"`` raises, ``unseen="keep"`` keeps them). Temporal data
keeps them, as RE-GCN does: its entity vocabulary is ``entity2id.txt``, and entities first seen at test
time are part of the extrapolation task.

Parsing is vectorised per file (one decode, one split, field counts from numpy over the raw bytes,
names mapped by C-level ``map`` over dicts); errors name the file and the first bad line.
"""

from __future__ import annotations

import codecs
import gzip
import os
import warnings
import zlib
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np
import torch

from kgsearch.data.types import SPLITS, Dataset, StaticDataset, TemporalDataset, UnseenEntityWarning
from kgsearch.errors import KGSearchError

UNSEEN_MODES = ("drop", "error", "keep")


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.txt", folder / f"{stem}.txt.gz"):
        if candidate.is_file():
            return candidate
    return None


def _require(folder: Path, stem: str) -> Path:
    path = _find(folder, stem)
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
class _Rows:
    """One parsed file: its fields row-major (`width` per line)."""

    path: Path
    fields: list[str]
    width: int

    @property
    def n(self) -> int:
        return len(self.fields) // self.width

    def column(self, j: int) -> list[str]:
        return self.fields[j :: self.width]


_LAYOUT = {1: "one name per line", 2: "name, id", 3: "head, relation, tail", 4: "head, relation, tail, time",
           5: "head, relation, tail, time, 0"}


def _read_rows(path: Path, widths: tuple[int, ...]) -> _Rows:
    data = _read_bytes(path)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    data = data.rstrip(b"\r\n")  # trailing newline(s) are not an extra empty record
    if not data.strip():
        raise KGSearchError(f"{path}: file is empty")
    text = _decode(path, data)
    counts = _fields_per_line(data)
    width = int(counts[0])
    if width not in widths:
        expected = " or ".join(f"{w} ({_LAYOUT[w]})" for w in widths)
        raise KGSearchError(f"{path}: line 1: expected {expected} tab-separated fields, found {width}")
    bad = np.flatnonzero(counts != width)
    if bad.size:
        line = int(bad[0]) + 1
        found = int(counts[bad[0]])
        blank = " (blank line)" if found == 1 and not text.split("\n", line)[line - 1].strip() else ""
        raise KGSearchError(
            f"{path}: line {line}: expected {width} tab-separated fields ({_LAYOUT[width]}) like line 1, "
            f"found {found}{blank}"
        )
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    fields = text.replace("\n", "\t").split("\t") if width > 1 else text.split("\n")
    if "" in fields:
        i = fields.index("")
        what = "blank line" if width == 1 else f"field {i % width + 1} is empty"
        raise KGSearchError(f"{path}: line {i // width + 1}: {what}")
    return _Rows(path, fields, width)


def _ints(rows: _Rows, cols: tuple[int, ...], whats: tuple[str, ...]) -> np.ndarray:
    """Integer columns -> [n, len(cols)] int64; the first non-integer (in line order) is reported."""
    if cols == tuple(range(rows.width)):
        values = rows.fields
    else:
        values = [""] * (rows.n * len(cols))
        for k, c in enumerate(cols):
            values[k :: len(cols)] = rows.column(c)
    try:
        return np.fromiter(map(int, values), dtype=np.int64, count=len(values)).reshape(rows.n, len(cols))
    except (ValueError, OverflowError):
        pass
    for j, value in enumerate(values):  # slow path only to name the first bad line
        try:
            if -(2**63) <= int(value) < 2**63:
                continue
        except ValueError:
            pass
        raise KGSearchError(f"{rows.path}: line {j // len(cols) + 1}: {whats[j % len(cols)]} {value!r} is not an integer")
    raise AssertionError("unreachable")


def _check_range(rows: _Rows, ids: np.ndarray, limits: list[tuple[str, int, Path]]) -> None:
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


def _name_ids(rows: _Rows, lookups: list[tuple[int, dict[str, int], str, Path | None]]) -> np.ndarray:
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


def _read_name_list(path: Path) -> list[str]:
    names = _read_rows(path, (1,)).fields
    if len(set(names)) != len(names):
        first: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in first:
                raise KGSearchError(f"{path}: line {i + 1}: {name!r} repeats line {first[name] + 1}")
            first[name] = i
    return names


def _read_id_map(path: Path) -> list[str]:
    """``name<TAB>id`` lines -> names ordered by id; ids must be exactly 0..N-1."""
    rows = _read_rows(path, (2,))
    ids = _ints(rows, (1,), ("id",))[:, 0]
    size = rows.n
    bad = np.flatnonzero((ids < 0) | (ids >= size))
    if bad.size:
        i = int(bad[0])
        raise KGSearchError(f"{path}: line {i + 1}: id {ids[i]} out of range (the {size} ids must be 0..{size - 1})")
    if np.bincount(ids, minlength=size).max() > 1:
        first: dict[int, int] = {}
        for i, value in enumerate(ids.tolist()):
            if value in first:
                raise KGSearchError(f"{path}: line {i + 1}: id {value} repeats line {first[value] + 1}")
            first[value] = i
    names = rows.column(0)
    return [names[i] for i in np.argsort(ids).tolist()]


def _first_appearance(tables: list[_Rows], cols: tuple[int, ...]) -> list[str]:
    """Distinct names of `cols` in order of first appearance, row by row over the tables."""
    order: dict[str, None] = {}
    for rows in tables:
        interleaved: list[str] = [""] * (rows.n * len(cols))
        for k, c in enumerate(cols):
            interleaved[k :: len(cols)] = rows.column(c)
        order.update(dict.fromkeys(interleaved))  # existing keys keep their first position
    return list(order)


def _vocab(folder: Path, tables: list[_Rows], list_stem: str, cols: tuple[int, ...]) -> tuple[list[str], Path | None]:
    listed = _find(folder, list_stem)
    if listed is not None:
        return _read_name_list(listed), listed
    return _first_appearance(tables, cols), None


def _names_to_ids(folder: Path, tables: dict[str, _Rows]) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """Map the head/relation/tail name columns of every split to ids (entities.txt/relations.txt order if present)."""
    entities, ent_src = _vocab(folder, list(tables.values()), "entities", (0, 2))
    relations, rel_src = _vocab(folder, list(tables.values()), "relations", (1,))
    eidx = {n: i for i, n in enumerate(entities)}
    ridx = {n: i for i, n in enumerate(relations)}
    lookups = [(0, eidx, "entity", ent_src), (1, ridx, "relation", rel_src), (2, eidx, "entity", ent_src)]
    arrays = {s: _name_ids(rows, lookups) for s, rows in tables.items()}
    return entities, relations, arrays


def detect_kind(folder: str | os.PathLike) -> str:
    """``"temporal"`` if the folder has entity2id/relation2id or 4-5 fields per line, else ``"static"``."""
    folder = Path(folder)
    if _find(folder, "entity2id") or _find(folder, "relation2id"):
        return "temporal"
    path = _require(folder, "train")
    try:  # the first line decides; read only that
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            width = handle.readline().count(b"\t") + 1
    except (OSError, EOFError, zlib.error):
        width = 0
    if width not in (3, 4, 5):
        width = _read_rows(path, (3, 4, 5)).width  # raises with the precise message
    return "temporal" if width >= 4 else "static"


def load_folder(folder: str | os.PathLike, name: str | None = None, unseen: str = "drop") -> Dataset:
    """Load one dataset folder (layout in the module docstring)."""
    if unseen not in UNSEEN_MODES:
        raise KGSearchError(f"unseen={unseen!r}: expected one of {', '.join(UNSEEN_MODES)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise KGSearchError(f"dataset folder {folder} does not exist")
    name = name or folder.resolve().name
    paths = {s: _require(folder, s) for s in SPLITS}
    has_maps = _find(folder, "entity2id") is not None or _find(folder, "relation2id") is not None
    train = _read_rows(paths["train"], (4, 5) if has_maps else (3, 4, 5))
    if train.width == 3:
        tables = {"train": train, **{s: _read_rows(paths[s], (3,)) for s in ("valid", "test")}}
        return _build_static(folder, name, tables, unseen)
    tables = {"train": train, **{s: _read_rows(paths[s], (4, 5)) for s in ("valid", "test")}}
    return _build_temporal(folder, name, tables, has_maps)


def _build_static(folder: Path, name: str, tables: dict[str, _Rows], unseen: str) -> StaticDataset:
    entities, relations, arrays = _names_to_ids(folder, tables)
    dropped: dict[str, int] = {}
    if unseen != "keep":
        train = arrays["train"]
        seen_ent = np.zeros(len(entities), dtype=bool)
        seen_ent[train[:, 0]] = True
        seen_ent[train[:, 2]] = True
        seen_rel = np.zeros(len(relations), dtype=bool)
        seen_rel[train[:, 1]] = True
        for split in ("valid", "test"):
            triples = arrays[split]
            seen = np.stack([seen_ent[triples[:, 0]], seen_rel[triples[:, 1]], seen_ent[triples[:, 2]]], axis=1)
            ok = seen.all(axis=1)
            if ok.all():
                continue
            if unseen == "error":
                i = int(np.flatnonzero(~ok)[0])
                col = int(np.flatnonzero(~seen[i])[0])
                what = ("head entity", "relation", "tail entity")[col]
                raise KGSearchError(
                    f"{tables[split].path}: line {i + 1}: {what} {tables[split].column(col)[i]!r} does not occur in "
                    f"{tables['train'].path.name} (unseen='error'; unseen='drop' drops such triples)"
                )
            dropped[split] = int((~ok).sum())
            arrays[split] = triples[ok]
            warnings.warn(
                f"{name}: dropped {dropped[split]:,} of {len(triples):,} {split} triples whose entity or relation "
                f"does not occur in train ({tables[split].path})",
                UnseenEntityWarning,
                stacklevel=4,
            )
    tensors = {s: torch.from_numpy(np.ascontiguousarray(a)) for s, a in arrays.items()}
    return StaticDataset(name, entities, relations, tensors["train"], tensors["valid"], tensors["test"],
                         path=str(folder), dropped=dropped)


def _build_temporal(folder: Path, name: str, tables: dict[str, _Rows], has_maps: bool) -> TemporalDataset:
    for rows in tables.values():
        if rows.width == 5:  # RE-NET's raw rows end in a constant 0 column
            extra = rows.column(4)
            if not set(extra) <= {"0"}:
                for i, value in enumerate(extra):
                    if value.strip() != "0":
                        raise KGSearchError(
                            f"{rows.path}: line {i + 1}: a 5th field is accepted only as RE-NET's constant 0, "
                            f"found {value!r}")
            del rows.fields[4::5]
            rows.width = 4
    if has_maps:
        ent_map, rel_map = _require(folder, "entity2id"), _require(folder, "relation2id")
        entities, relations = _read_id_map(ent_map), _read_id_map(rel_map)
        limits = [("entity", len(entities), ent_map), ("relation", len(relations), rel_map),
                  ("entity", len(entities), ent_map)]
        arrays, raw_times = {}, {}
        for split, rows in tables.items():
            quads = _ints(rows, (0, 1, 2, 3), ("entity id", "relation id", "entity id", "time"))
            _check_range(rows, quads[:, :3], limits)
            arrays[split], raw_times[split] = quads[:, :3], quads[:, 3]
    else:
        entities, relations, arrays = _names_to_ids(folder, tables)
        raw_times = {s: _ints(rows, (3,), ("time",))[:, 0] for s, rows in tables.items()}
    times, time_index = np.unique(np.concatenate([raw_times[s] for s in SPLITS]), return_inverse=True)
    bounds = np.cumsum([0] + [len(raw_times[s]) for s in SPLITS])
    tensors = {
        s: torch.from_numpy(np.concatenate([arrays[s], time_index[bounds[k]:bounds[k + 1], None]], axis=1))
        for k, s in enumerate(SPLITS)
    }
    return TemporalDataset(name, entities, relations, torch.from_numpy(times), tensors["train"], tensors["valid"],
                           tensors["test"], path=str(folder))
