"""Benchmark datasets: static triples and temporal quadruples as integer id tensors.

``load(name_or_path)`` finds the folder (a bundled name, a name under the data root or the download
cache, or a path; see `names`), optionally downloads it (`download`), and reads it (`readers`, which
documents the folder layout, on top of the file parsing in `parse`) into a `StaticDataset` or
`TemporalDataset` (`types`).

Modules import downwards only: `types`, `names` and `parse` depend on nothing here, `readers` on
`parse` and `types`, `download` on `names`, and this package on all of them but `subgraph` (a seeded
k-core subgraph of a static dataset, on `types`; imported where it is used, with networkx).
"""

from __future__ import annotations

import os
from pathlib import Path

from kgsearch.data.names import (
    BUNDLED,
    BUNDLED_DIR,
    DATA_ROOT_ENV,
    KNOWN,
    KNOWN_KINDS,
    canonical_name,
    default_cache_dir,
    known_kind,
    locate,
)
from kgsearch.data.parse import find_file
from kgsearch.data.readers import UNSEEN_MODES, detect_kind, load_folder
from kgsearch.data.types import (
    SPLITS,
    Dataset,
    StaticDataset,
    TemporalDataset,
    UnseenEntityWarning,
    describe,
    seen_in_train,
)
from kgsearch.errors import KGSearchError, cli_entry

# `kgsearch.data.download` is imported where it is used: importing it here would make runpy warn,
# on ``python -m kgsearch.data.download``, that the module was imported before it ran.


def resolve(name_or_path: str | os.PathLike, data_root: str | os.PathLike | None = None,
            download: bool = False) -> tuple[Path, str]:
    """Return (folder, dataset name) for a bundled name, a name under a data root, or a folder path."""
    found = locate(name_or_path, data_root)
    if found.folder is not None:
        if download and found.in_root and any(find_file(found.folder, s) is None for s in SPLITS):
            from kgsearch.data.download import fetch  # an interrupted download: complete it

            return fetch(found.name, cache_dir=found.folder.parent), found.name
        return found.folder, found.name
    if download:
        from kgsearch.data.download import fetch

        target = Path(data_root).expanduser() if data_root is not None else None
        return fetch(found.name, cache_dir=target), found.name
    from kgsearch.data.download import REGISTRY

    hint = "" if data_root is not None or os.environ.get(DATA_ROOT_ENV) else (
        f"; no data root set (pass data_root / --data-root or set {DATA_ROOT_ENV})")
    raise KGSearchError(
        f"dataset {os.fspath(name_or_path)!r} not found: looked in {', '.join(found.looked)}{hint}; "
        f"bundled: {', '.join(BUNDLED)}; known names: {', '.join(KNOWN)}; "
        f"download=True fetches one of: {', '.join(sorted(REGISTRY))}; a folder path loads that folder"
    )


def load(name_or_path: str | os.PathLike, data_root: str | os.PathLike | None = None, unseen: str = "keep",
         download: bool = False) -> Dataset:
    """Load a dataset by name (bundled ``umls`` / ``icews14``, else ``<data_root>/<name>``) or folder path.

    `data_root` defaults to ``$KGSEARCH_DATA_ROOT``; the download cache is searched too. The network is
    used only with ``download=True`` (and only when the dataset is not already on disk).
    `unseen` (static data): static valid/test triples with an entity or relation absent from train are
    kept (``"keep"``, the published protocol: headline numbers are on the full split; their count is
    ``dataset.unseen`` and ``dataset.seen_only(split)`` the split without them), dropped with an
    ``UnseenEntityWarning`` (``"drop"``, count in ``dataset.dropped``) or an error (``"error"``).
    Malformed files raise `KGSearchError` naming the file and line.
    """
    if unseen not in UNSEEN_MODES:
        raise KGSearchError(f"unseen={unseen!r}: expected one of {', '.join(UNSEEN_MODES)}")
    folder, name = resolve(name_or_path, data_root, download)
    return load_folder(folder, name=name, unseen=unseen)


__all__ = [
    "BUNDLED", "BUNDLED_DIR", "DATA_ROOT_ENV", "KNOWN", "KNOWN_KINDS", "SPLITS", "UNSEEN_MODES", "Dataset",
    "StaticDataset", "TemporalDataset", "UnseenEntityWarning", "canonical_name", "default_cache_dir", "describe",
    "detect_kind", "known_kind", "load", "load_folder", "resolve", "seen_in_train",
]


@cli_entry
def main(argv: list[str] | None = None) -> None:
    """``python -m kgsearch.data NAME_OR_PATH [--data-root DIR]``: print the dataset's counts."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kgsearch.data", description="Load a dataset and print its counts.")
    parser.add_argument("dataset", help=f"bundled ({', '.join(BUNDLED)}), a name under the data root, or a folder")
    parser.add_argument("--data-root", default=None, help=f"default: ${DATA_ROOT_ENV}")
    parser.add_argument("--unseen", choices=UNSEEN_MODES, default="keep",
                        help="static valid/test triples with an entity or relation unseen in train (default: keep)")
    parser.add_argument("--download", action="store_true", help="fetch a known dataset if it is not on disk")
    args = parser.parse_args(argv)
    print(describe(load(args.dataset, args.data_root, unseen=args.unseen, download=args.download)))
