"""Shared pytest fixtures.

Tiny on-disk datasets (kgsearch.data folder layout) small enough to check by hand:

* ``tiny_static_dir``: 5 entities a..e (ids in that order: first appearance), relations r1, r2;
  6 / 2 / 2 train/valid/test triples, every valid/test entity occurs in train.
* ``tiny_temporal_dir``: RE-GCN layout (integer ids + entity2id.txt / relation2id.txt); 5 entities with
  ICEWS-style names, 2 relations, raw times {0, 5, 10, 20, 30} -> time indices 0..4; 5 / 2 / 2
  quadruples; entity 4 (Iran) occurs only in test.
* ``make_dataset_dir(files, name="ds")``: write ``{file name: text or bytes}`` into ``tmp_path/name``.
* ``ray_session`` (module scope): a small local Ray for the sweep tests.
* ``shared_datasets(*names)``: the folder holding the full benchmark copies (``$KGSEARCH_DATA_ROOT``,
  else ``shared/datasets`` beside the checkout), or a skip that says where it looked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import logging
import os

import pytest
import torch

TINY_STATIC = {
    "train.txt": "a\tr1\tb\nb\tr2\tc\nc\tr1\td\nd\tr2\te\ne\tr1\ta\na\tr2\tc\n",
    "valid.txt": "a\tr1\tc\nb\tr1\td\n",
    "test.txt": "c\tr2\te\ne\tr2\tb\n",
}

TINY_TEMPORAL = {
    "entity2id.txt": "Government_(Nigeria)\t0\nFrance\t1\nCitizen_(France)\t2\nChina\t3\nIran\t4\n",
    "relation2id.txt": "Make_statement\t0\nConsult\t1\n",
    "train.txt": "0\t0\t1\t10\n1\t1\t2\t0\n2\t0\t3\t10\n0\t1\t2\t5\n3\t0\t1\t5\n",
    "valid.txt": "1\t0\t3\t20\n2\t1\t0\t20\n",
    "test.txt": "4\t1\t0\t30\n3\t0\t2\t30\n",
}


REPO = Path(__file__).resolve().parent.parent
SKIP_NO_DATA = "shared benchmark copies not found"


def shared_dataset_roots() -> list[tuple[Path, str]]:
    """Candidate folders of the full benchmark copies, with how each was chosen (read at import, before any
    test's monkeypatch clears $KGSEARCH_DATA_ROOT)."""
    roots = []
    if os.environ.get("KGSEARCH_DATA_ROOT"):
        roots.append((Path(os.environ["KGSEARCH_DATA_ROOT"]).expanduser(), "$KGSEARCH_DATA_ROOT"))
    roots.append((REPO.parent / "shared" / "datasets", "beside the checkout"))
    return roots


SHARED_ROOTS = shared_dataset_roots()


@pytest.fixture(scope="session")
def shared_datasets() -> Callable[..., Path]:
    """``shared_datasets("fb15k-237", ...)`` -> the first candidate root holding all those folders, else skip."""

    def need(*names: str) -> Path:
        for root, _ in SHARED_ROOTS:
            if all((root / name).is_dir() for name in names or ("",)):
                return root
        looked = "; ".join(f"{root} ({how})" for root, how in SHARED_ROOTS)
        pytest.skip(f"{SKIP_NO_DATA}: needs {', '.join(names) or 'the folder'} in one of {looked}; "
                    "set KGSEARCH_DATA_ROOT to the folder that holds them")

    return need


def pytest_terminal_summary(terminalreporter) -> None:
    """Say which data-dependent tests were skipped, and why, even without ``-rs``."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        text = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        text = text.removeprefix("Skipped: ")
        if SKIP_NO_DATA in text:
            reasons[text] = reasons.get(text, 0) + 1
    for text, count in reasons.items():
        terminalreporter.write_line(f"{count} data-dependent test(s) skipped: {text}", yellow=True)


def write_dataset(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return folder


@pytest.fixture
def make_dataset_dir(tmp_path: Path) -> Callable[..., Path]:
    def make(files: dict[str, str | bytes], name: str = "ds") -> Path:
        return write_dataset(tmp_path / name, files)

    return make


@pytest.fixture
def tiny_static_dir(make_dataset_dir) -> Path:
    return make_dataset_dir(TINY_STATIC, name="tiny_static")


@pytest.fixture
def tiny_temporal_dir(make_dataset_dir) -> Path:
    return make_dataset_dir(TINY_TEMPORAL, name="tiny_temporal")


@pytest.fixture
def one_thread():
    """Tiny tensors: a second OpenMP thread only adds barrier waits on a shared 2-core box."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


RAY_TEST_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                "RAY_AIR_NEW_OUTPUT": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


@pytest.fixture(scope="module")
def ray_session():
    """One small Ray per test module that asks for it (docs/ray.md, "Tests")."""
    import ray

    saved = {k: os.environ.get(k) for k in RAY_TEST_ENV}
    os.environ.update(RAY_TEST_ENV)
    ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", object_store_memory=100 << 20,
             log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
