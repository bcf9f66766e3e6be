"""Reading a dataset folder into a `StaticDataset` / `TemporalDataset`.

Folder layout (every file tab-separated, UTF-8, one record per line; any file may be ``NAME.txt.gz``):

* static:   ``train.txt``, ``valid.txt``, ``test.txt`` with ``head<TAB>relation<TAB>tail`` names;
            optional ``entities.txt`` / ``relations.txt`` (one name per line) fix the vocabulary and its
            order, otherwise names are numbered in order of first appearance over train, valid, test
            (head before tail within a line).
* temporal: the same three files with ``head<TAB>relation<TAB>tail<TAB>time`` (time a non-negative
            integer). With ``entity2id.txt`` / ``relation2id.txt`` (``name<TAB>id``, distinct names, ids
            0..N-1; RE-NET's YAGO ``entity2id.txt`` adds two validity-date columns, which are ignored)
            the first three columns are ids; without them they are names, numbered as above. RE-NET's
            raw files carry a constant 5th column ``0``: a file whose lines all have 5 fields is accepted
            when that column is 0. The split must be the extrapolation one: every valid time after every
            train time, every test time after every valid time (an overlap would put future facts in
            the history a model trains on).

Kind detection: a folder is temporal when it has ``entity2id.txt`` or ``relation2id.txt``, or when the
first line of its training file has 4 (or 5) fields; with 3 fields it is static.

Unseen entities: static valid/test triples whose entity or relation does not occur in train are kept
(``unseen="keep"``, the default: the published baselines rank the full test split), counted in
``StaticDataset.unseen``; ``unseen="drop"`` drops them with an ``UnseenEntityWarning`` and
``unseen="error"`` raises. Temporal data always keeps them, as RE-GCN does: its entity vocabulary is
``entity2id.txt``, and entities first seen at test time are part of the extrapolation task.

Parsing is vectorised per file (`parse`); errors name the file and the first bad line.
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from kgsearch.data.parse import (
    ENTITY_MAP,
    ID_MAP,
    QUADS,
    TRIPLES,
    Rows,
    check_ids,
    find_file,
    int_columns,
    name_ids,
    read_id_map,
    read_name_list,
    read_rows,
    require_file,
)
from kgsearch.data.types import SPLITS, Dataset, StaticDataset, TemporalDataset, UnseenEntityWarning, seen_in_train
from kgsearch.errors import KGSearchError

UNSEEN_MODES = ("keep", "drop", "error")


def _first_appearance(tables: list[Rows], cols: tuple[int, ...]) -> list[str]:
    """Distinct names of `cols` in order of first appearance, row by row over the tables."""
    order: dict[str, None] = {}
    for rows in tables:
        interleaved: list[str] = [""] * (rows.n * len(cols))
        for k, c in enumerate(cols):
            interleaved[k :: len(cols)] = rows.column(c)
        order.update(dict.fromkeys(interleaved))  # existing keys keep their first position
    return list(order)


def _vocab(folder: Path, tables: list[Rows], list_stem: str, cols: tuple[int, ...]) -> tuple[list[str], Path | None]:
    listed = find_file(folder, list_stem)
    if listed is not None:
        return read_name_list(listed), listed
    return _first_appearance(tables, cols), None


def _names_to_ids(folder: Path, tables: dict[str, Rows]) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """Map the head/relation/tail name columns of every split to ids (entities.txt/relations.txt order if present)."""
    entities, ent_src = _vocab(folder, list(tables.values()), "entities", (0, 2))
    relations, rel_src = _vocab(folder, list(tables.values()), "relations", (1,))
    eidx = {n: i for i, n in enumerate(entities)}
    ridx = {n: i for i, n in enumerate(relations)}
    lookups = [(0, eidx, "entity", ent_src), (1, ridx, "relation", rel_src), (2, eidx, "entity", ent_src)]
    arrays = {s: name_ids(rows, lookups) for s, rows in tables.items()}
    return entities, relations, arrays


def detect_kind(folder: str | os.PathLike) -> str:
    """``"temporal"`` if the folder has entity2id/relation2id or 4-5 fields per line, else ``"static"``."""
    folder = Path(folder)
    if find_file(folder, "entity2id") or find_file(folder, "relation2id"):
        return "temporal"
    path = require_file(folder, "train")
    try:  # the first line decides; read only that
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            width = handle.readline().count(b"\t") + 1
    except (OSError, EOFError, zlib.error):
        width = 0
    if width not in (3, 4, 5):
        width = read_rows(path, TRIPLES | QUADS).width  # raises with the precise message
    return "temporal" if width >= 4 else "static"


def load_folder(folder: str | os.PathLike, name: str | None = None, unseen: str = "keep") -> Dataset:
    """Load one dataset folder (layout and `unseen` modes in the module docstring)."""
    if unseen not in UNSEEN_MODES:
        raise KGSearchError(f"unseen={unseen!r}: expected one of {', '.join(UNSEEN_MODES)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise KGSearchError(f"dataset folder {folder} does not exist")
    name = name or folder.resolve().name
    paths = {s: require_file(folder, s) for s in SPLITS}
    has_maps = find_file(folder, "entity2id") is not None or find_file(folder, "relation2id") is not None
    train = read_rows(paths["train"], QUADS if has_maps else TRIPLES | QUADS)
    if train.width == 3:
        tables = {"train": train, **{s: read_rows(paths[s], TRIPLES) for s in ("valid", "test")}}
        return _build_static(folder, name, tables, unseen)
    tables = {"train": train, **{s: read_rows(paths[s], QUADS) for s in ("valid", "test")}}
    return _build_temporal(folder, name, tables, has_maps)


def _build_static(folder: Path, name: str, tables: dict[str, Rows], unseen: str) -> StaticDataset:
    entities, relations, arrays = _names_to_ids(folder, tables)
    tensors = {s: torch.from_numpy(np.ascontiguousarray(a)) for s, a in arrays.items()}
    counts: dict[str, int] = {}
    for split in ("valid", "test"):
        seen = seen_in_train(tensors["train"], tensors[split], len(entities), len(relations))  # [n, 3]
        ok = seen.all(dim=1)
        if bool(ok.all()):
            continue
        counts[split] = int((~ok).sum())
        if unseen == "error":
            i = int(torch.nonzero(~ok)[0])
            col = int(torch.nonzero(~seen[i])[0])
            what = ("head entity", "relation", "tail entity")[col]
            raise KGSearchError(
                f"{tables[split].path}: line {i + 1}: {what} {tables[split].column(col)[i]!r} does not occur in "
                f"{tables['train'].path.name} (unseen='error'; unseen='keep' keeps such triples, 'drop' drops them)"
            )
        if unseen == "drop":
            warnings.warn(
                f"{name}: dropped {counts[split]:,} of {len(ok):,} {split} triples whose entity or relation "
                f"does not occur in train ({tables[split].path})",
                UnseenEntityWarning,
                stacklevel=4,
            )
            tensors[split] = tensors[split][ok]
    return StaticDataset(name, entities, relations, tensors["train"], tensors["valid"], tensors["test"],
                         path=str(folder), dropped=dict(counts) if unseen == "drop" else {}, unseen=counts)


def _drop_renet_zero_column(rows: Rows) -> None:
    extra = rows.column(4)
    if not set(extra) <= {"0"}:
        for i, value in enumerate(extra):
            if value.strip() != "0":
                raise KGSearchError(
                    f"{rows.path}: line {i + 1}: a 5th field is accepted only as RE-NET's constant 0, found {value!r}")
    del rows.fields[4::5]
    rows.width = 4


def _check_times(tables: dict[str, Rows], raw_times: dict[str, np.ndarray]) -> None:
    """Non-negative times, and the extrapolation order train < valid < test (the first offending line)."""
    for split, rows in tables.items():
        negative = np.flatnonzero(raw_times[split] < 0)
        if negative.size:
            i = int(negative[0])
            raise KGSearchError(f"{rows.path}: line {i + 1}: time {raw_times[split][i]} is negative")
    for earlier, later in (("train", "valid"), ("valid", "test")):
        j = int(np.argmax(raw_times[earlier]))
        last = int(raw_times[earlier][j])
        early = np.flatnonzero(raw_times[later] <= last)
        if early.size:
            i = int(early[0])
            raise KGSearchError(
                f"{tables[later].path}: line {i + 1}: time {raw_times[later][i]} is not after the last {earlier} "
                f"time {last} ({tables[earlier].path.name} line {j + 1}); the extrapolation split needs every "
                f"train time < every valid time < every test time")


def _build_temporal(folder: Path, name: str, tables: dict[str, Rows], has_maps: bool) -> TemporalDataset:
    for rows in tables.values():
        if rows.width == 5:  # RE-NET's raw rows end in a constant 0 column
            _drop_renet_zero_column(rows)
    if has_maps:
        ent_map, rel_map = require_file(folder, "entity2id"), require_file(folder, "relation2id")
        entities, relations = read_id_map(ent_map, ENTITY_MAP), read_id_map(rel_map, ID_MAP)
        limits = [("entity", len(entities), ent_map), ("relation", len(relations), rel_map),
                  ("entity", len(entities), ent_map)]
        arrays, raw_times = {}, {}
        for split, rows in tables.items():
            quads = int_columns(rows, (0, 1, 2, 3), ("entity id", "relation id", "entity id", "time"))
            check_ids(rows, quads[:, :3], limits)
            arrays[split], raw_times[split] = quads[:, :3], quads[:, 3]
    else:
        entities, relations, arrays = _names_to_ids(folder, tables)
        raw_times = {s: int_columns(rows, (3,), ("time",))[:, 0] for s, rows in tables.items()}
    _check_times(tables, raw_times)
    times, time_index = np.unique(np.concatenate([raw_times[s] for s in SPLITS]), return_inverse=True)
    bounds = np.cumsum([0] + [len(raw_times[s]) for s in SPLITS])
    tensors = {
        s: torch.from_numpy(np.concatenate([arrays[s], time_index[bounds[k]:bounds[k + 1], None]], axis=1))
        for k, s in enumerate(SPLITS)
    }
    return TemporalDataset(name, entities, relations, torch.from_numpy(times), tensors["train"], tensors["valid"],
                           tensors["test"], path=str(folder))
