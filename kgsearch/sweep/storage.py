"""Where an experiment lives: a local or shared folder, or a bucket (s3://, gs://, file://) via pyarrow.fs.

Tune and Train write their own files through the same pyarrow filesystem; the sweep's own files
(sweep.yaml, trials.csv, best/, ...) go through `ExperimentStore` so that a multi-node cluster can keep
everything in one bucket: on a multi-node cluster every node must reach the same storage.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyarrow.fs

from kgsearch.errors import KGSearchError


class ExperimentStore:
    """One experiment folder `<root>/<name>` on a pyarrow filesystem."""

    def __init__(self, root: str, name: str):
        self.name = name
        if "://" in root:
            try:
                self.fs, base = pyarrow.fs.FileSystem.from_uri(root)
            except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError, OSError) as exc:
                raise KGSearchError(f"storage {root!r}: {exc}") from None
            self.root = root.rstrip("/")  # what Tune and Train are given (they resolve it themselves)
            self.base = base.rstrip("/")
        else:
            # Absolute: a `ray job submit` working directory is a temporary copy, deleted after the job.
            self.fs = pyarrow.fs.LocalFileSystem()
            self.root = self.base = str(Path(root).expanduser().resolve())
        self.path = f"{self.base}/{name}"  # the experiment folder on `fs`

    @property
    def uri(self) -> str:
        """The experiment folder as the user names it (a path, or root URI + name)."""
        return f"{self.root}/{self.name}"

    @property
    def local(self) -> Path | None:
        """The experiment folder as a local Path when the filesystem is local (file:// included)."""
        return Path(self.path) if isinstance(self.fs, pyarrow.fs.LocalFileSystem) else None

    def _at(self, rel: str) -> str:
        return f"{self.path}/{rel}" if rel else self.path

    def exists(self, rel: str = "") -> bool:
        return self.fs.get_file_info(self._at(rel)).type != pyarrow.fs.FileType.NotFound

    def is_file(self, rel: str) -> bool:
        return self.fs.get_file_info(self._at(rel)).type == pyarrow.fs.FileType.File

    def read_text(self, rel: str) -> str:
        with self.fs.open_input_stream(self._at(rel)) as f:
            return f.readall().decode("utf-8")

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode("utf-8"))

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Whole or not at all: a local file is renamed into place (a bucket object appears whole anyway)."""
        target = self._at(rel)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        local = isinstance(self.fs, pyarrow.fs.LocalFileSystem)
        written = f"{target}.tmp-{os.getpid()}" if local else target
        with self.fs.open_output_stream(written) as f:
            f.write(data)
        if local:
            os.replace(written, target)

    def write_json(self, rel: str, data: dict) -> None:
        self.write_text(rel, json.dumps(data, indent=2, default=float) + "\n")

    def write_file(self, rel: str, write) -> None:
        """`write(local_path)` produces a file (e.g. torch.save); it is then stored at `rel`."""
        local = self.local
        if local is not None:
            (local / rel).parent.mkdir(parents=True, exist_ok=True)
            write(local / rel)
            return
        with tempfile.TemporaryDirectory(prefix="kgsearch-") as tmp:
            path = Path(tmp) / os.path.basename(rel)
            write(path)
            self.write_bytes(rel, path.read_bytes())

    def join(self, *parts: str) -> str:
        """A path under the experiment in the form Ray takes for storage_path (URI or absolute path)."""
        return "/".join([self.uri, *parts])
