"""Dataset names and where they live on disk: known benchmarks, spellings, data roots, the download cache.

Nothing here reads a dataset or touches the network: `locate` only looks for folders, so the loader
(`kgsearch.data.resolve`) and the downloader (`kgsearch.data.download`) can both build on it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from kgsearch.errors import KGSearchError

DATA_ROOT_ENV = "KGSEARCH_DATA_ROOT"
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "datasets"
BUNDLED = ("umls", "icews14")  # shipped in kgsearch/datasets/, loaded without a data root
KNOWN = ("family", "umls", "wn18rr", "fb15k-237", "nell-995", "yago3-10", "icews14", "icews18", "icews05-15",
         "yago", "wiki")
# "yago" / "wiki" are RE-NET's temporal YAGO and WIKI (folders YAGO/, WIKI/ in RE-GCN's data), not YAGO3-10.
KNOWN_KINDS: dict[str, str] = {
    "family": "static", "umls": "static", "wn18rr": "static", "fb15k-237": "static", "nell-995": "static",
    "yago3-10": "static", "icews14": "temporal", "icews18": "temporal", "icews05-15": "temporal",
    "yago": "temporal", "wiki": "temporal",
}
# Normalised spelling (lower case, punctuation dropped) -> folder name; KNOWN names map to themselves.
_ALIASES = {
    "nell": "nell-995",
    "yago3": "yago3-10",
    "icews14s": "icews14",  # RE-GCN's folder name for the same split
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical_name(name: str) -> str:
    """Known benchmark spellings ("FB15k237", "ICEWS05_15", "nell995") -> folder name; others unchanged."""
    key = _norm(name)
    for known in KNOWN:
        if _norm(known) == key:
            return known
    return _ALIASES.get(key, name)


def known_kind(name: str) -> str | None:
    """``"static"`` / ``"temporal"`` for a known benchmark under any accepted spelling, else None."""
    return KNOWN_KINDS.get(canonical_name(name))


def default_cache_dir() -> Path:
    """``$KGSEARCH_DATA_ROOT`` if set (so downloads land where ``load`` looks), else ~/.cache/kgsearch/datasets."""
    root = os.environ.get(DATA_ROOT_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "kgsearch" / "datasets"


def _looks_like_path(text: str) -> bool:
    seps = [os.sep] + ([os.altsep] if os.altsep else [])
    return any(s in text for s in seps) or text.startswith(("~", "."))


def _roots(data_root: str | os.PathLike | None) -> list[tuple[Path, str]]:
    """Folders searched for a named dataset, with how each was chosen (for the error message)."""
    roots: list[tuple[Path, str]] = []
    if data_root is not None:
        roots.append((Path(data_root).expanduser(), "data_root"))
    elif os.environ.get(DATA_ROOT_ENV):
        roots.append((Path(os.environ[DATA_ROOT_ENV]).expanduser(), f"${DATA_ROOT_ENV}"))
    cache = default_cache_dir()
    if all(cache != r for r, _ in roots):
        roots.append((cache, "download cache"))
    return roots


def _find_in_root(root: Path, given: str, canon: str) -> Path | None:
    for candidate in dict.fromkeys([canon, given]):
        if (root / candidate).is_dir():
            return root / candidate
    if root.is_dir():  # e.g. a folder spelled "FB15k-237"
        key = _norm(canon)
        for entry in sorted(root.iterdir()):
            if entry.is_dir() and _norm(entry.name) == key:
                return entry
    return None


class Location(NamedTuple):
    folder: Path | None  # None: not on disk
    name: str  # dataset name: canonical for a name, the folder's own name for a path
    in_root: bool  # found under a data root or the cache, where a download may have been interrupted
    looked: tuple[str, ...]  # the folders tried, for a not-found message


def locate(name_or_path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> Location:
    """Find a bundled name, a name under a data root (or the download cache), or a folder path on disk."""
    text = os.fspath(name_or_path)
    if not text.strip():
        raise KGSearchError("empty dataset name")
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(text):
        folder = Path(text).expanduser()
        if not folder.is_dir():
            raise KGSearchError(f"dataset folder {folder} does not exist" if not folder.exists()
                                else f"dataset path {folder} is not a folder")
        return Location(folder, folder.resolve().name, False, ())
    canon = canonical_name(text)
    if canon in BUNDLED:
        return Location(BUNDLED_DIR / canon, canon, False, ())
    looked = []
    for root, how in _roots(data_root):
        found = _find_in_root(root, text, canon)
        if found is not None:
            return Location(found, canon, True, tuple(looked))
        looked.append(f"{root / canon} ({how}{'' if root.is_dir() else ', missing'})")
    if Path(text).is_dir():  # a bare relative folder name
        return Location(Path(text), Path(text).resolve().name, False, tuple(looked))
    return Location(None, canon, False, tuple(looked))
