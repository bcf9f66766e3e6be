"""kgsearch.data.download against a local http.server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import re
import threading
from pathlib import Path

import pytest

from kgsearch import data
from kgsearch.data import download
from kgsearch.data.download import RemoteDataset, RemoteFile, fetch, fetch_file
from kgsearch.errors import KGSearchError

# The datasets with a shared copy (the datasets README); yago and wiki have none.
SHARED_NAMES = ("family", "umls", "wn18rr", "fb15k-237", "nell-995", "yago3-10", "icews14", "icews18", "icews05-15")


def sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class _Server:
    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean; record the path instead
                log.append(self.path)

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def file(self, name: str, payload: bytes) -> str:
        (self.root / name).write_bytes(payload)
        return f"{self.url}/{name}"


@pytest.fixture
def server(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "served"
    root.mkdir()
    srv = _Server(root)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


TRAIN_A = b"a\tr1\tb\nb\tr2\tc\n"
TRAIN_B = b"c\tr1\ta\n"
VALID = b"a\tr2\tc\n"
TEST = b"b\tr1\tc\n"


@pytest.fixture
def tiny_remote(server, monkeypatch):
    """A registry entry 'tinykg' whose train.txt is assembled from two URLs, like RED-GNN's facts + train."""
    spec = RemoteDataset("tinykg", (
        RemoteFile("train.txt", (server.file("facts.txt", TRAIN_A), server.file("queries.txt", TRAIN_B)),
                   sha(TRAIN_A + TRAIN_B)),
        RemoteFile("valid.txt", (server.file("valid.txt", VALID),), sha(VALID)),
        RemoteFile("test.txt", (server.file("test.txt", TEST),), None),
    ), "test server")
    monkeypatch.setitem(download.REGISTRY, "tinykg", spec)
    return spec


def test_fetch_downloads_verifies_and_skips_when_present(tiny_remote, server, tmp_path):
    folder = fetch("tinykg", cache_dir=tmp_path / "cache")
    assert folder == tmp_path / "cache" / "tinykg"
    assert (folder / "train.txt").read_bytes() == TRAIN_A + TRAIN_B
    assert (folder / "test.txt").read_bytes() == TEST
    assert sorted(p.name for p in folder.iterdir()) == ["test.txt", "train.txt", "valid.txt"]  # no temp files left
    assert len(server.requests) == 4
    fetch("tinykg", cache_dir=tmp_path / "cache")
    assert len(server.requests) == 4  # present and verified (or unverifiable): nothing fetched again


def test_corrupt_cached_file_is_fetched_again(tiny_remote, server, tmp_path):
    folder = fetch("tinykg", cache_dir=tmp_path)
    (folder / "valid.txt").write_bytes(b"tampered\n")
    fetch("tinykg", cache_dir=tmp_path)
    assert (folder / "valid.txt").read_bytes() == VALID
    assert server.requests[-1] == "/valid.txt"


def test_checksum_mismatch_removes_file(server, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    remote = RemoteFile("valid.txt", (server.file("valid.txt", VALID),), "0" * 64)
    with pytest.raises(KGSearchError) as err:
        fetch_file(remote, dest / "valid.txt", label="tinykg/valid.txt")
    msg = str(err.value)
    assert "checksum mismatch for tinykg/valid.txt" in msg and sha(VALID) in msg and "removed" in msg
    assert list(dest.iterdir()) == []


def test_http_404_is_a_clear_error(server, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    remote = RemoteFile("test.txt", (f"{server.url}/missing.txt",), None)
    with pytest.raises(KGSearchError, match=r"download of tinykg/test\.txt failed: HTTP 404 .* from http://127\.0\.0\.1:\d+/missing\.txt"):
        fetch_file(remote, dest / "test.txt", label="tinykg/test.txt")
    assert list(dest.iterdir()) == []


def test_unreachable_server_is_a_clear_error(tmp_path):
    remote = RemoteFile("x.txt", ("http://127.0.0.1:9/x.txt",), None)  # discard port: connection refused
    with pytest.raises(KGSearchError, match="cannot reach http://127.0.0.1:9/x.txt"):
        fetch_file(remote, tmp_path / "x.txt", timeout=5)


def test_unknown_dataset_lists_downloadable_names(tmp_path):
    with pytest.raises(KGSearchError, match=r"no download source for dataset 'nope' \(downloadable: family, fb15k-237"):
        fetch("nope", cache_dir=tmp_path)


def test_load_downloads_only_when_asked(tiny_remote, server, tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ROOT_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(KGSearchError, match="not found"):
        data.load("tinykg", data_root=tmp_path / "root")
    assert server.requests == []  # no surprise network
    ds = data.load("tinykg", data_root=tmp_path / "root", download=True)
    assert (ds.num_entities, ds.num_relations) == (3, 2)
    assert [ds.split(s).shape[0] for s in data.SPLITS] == [3, 1, 1]
    assert (tmp_path / "root" / "tinykg" / "train.txt").is_file()
    (tmp_path / "root" / "tinykg" / "test.txt").unlink()  # as if interrupted between files
    with pytest.raises(KGSearchError, match="missing test.txt"):
        data.load("tinykg", data_root=tmp_path / "root")
    assert data.load("tinykg", data_root=tmp_path / "root", download=True).test.shape[0] == 1
    # default cache = $KGSEARCH_DATA_ROOT, so a later plain load finds the download
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(tmp_path / "root"))
    assert data.default_cache_dir() == tmp_path / "root"
    assert data.load("tinykg").num_entities == 3


def test_registry_is_well_formed():
    for name, spec in download.REGISTRY.items():
        assert name == spec.name and name in data.KNOWN
        files = {f.name for f in spec.files}
        assert {"train.txt", "valid.txt", "test.txt"} <= files
        for remote in spec.files:
            assert remote.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", remote.sha256)
            assert all(url.startswith("https://raw.githubusercontent.com/") for url in remote.urls)


YAGO_FILES = {  # RE-NET's layout, as the registry's URLs serve it
    "entity2id.txt": b"<Getafe_CF>\t0\t1983-07-08\t####-##-##\n<Spain>\t1\t####-##-##\t####-##-##\n",
    "relation2id.txt": b"<isAffiliatedTo>\t0\n",
    "stat.txt": b"2\t1\t3",
    "train.txt": b"0\t0\t1\t0\t0\n",
    "valid.txt": b"1\t0\t0\t1\t0\n",
    "test.txt": b"0\t0\t1\t2\t0\n",
}


@pytest.mark.parametrize("name, folder", [("yago", "YAGO"), ("wiki", "WIKI")])
def test_yago_and_wiki_download_and_load(server, tmp_path, monkeypatch, name, folder):
    spec = download.REGISTRY[name]
    assert {f.name for f in spec.files} == set(YAGO_FILES)
    assert all(len(f.urls) == 1 and f.urls[0].endswith(f"/data/{folder}/{f.name}") for f in spec.files)
    # The same entry served from 127.0.0.1: file names and checksum rules as registered.
    local = tuple(RemoteFile(f.name, (server.file(f.name, YAGO_FILES[f.name]),), sha(YAGO_FILES[f.name]))
                  for f in spec.files)
    monkeypatch.setitem(download.REGISTRY, name, RemoteDataset(name, local, spec.source))
    ds = data.load(name.upper(), data_root=tmp_path / "root", download=True)
    assert (ds.name, ds.num_entities, ds.num_relations, ds.num_times) == (name, 2, 1, 3)
    assert (tmp_path / "root" / name / "stat.txt").is_file()


def _as_published(dataset: str, name: str, payload: bytes) -> bytes:
    """The shared copies normalised two sources; undo that to get the bytes the URLs serve."""
    if dataset == "fb15k-237" and name in ("valid.txt", "test.txt"):
        return payload.replace(b"\n", b"\r\n")  # ConvE's CRLF originals
    if dataset == "icews18" and name in ("train.txt", "valid.txt", "test.txt"):
        rows = payload.decode().splitlines()
        return "".join("%-5s\t%-5s\t%-3s\t%-3s\t0\n" % tuple(r.split("\t")) for r in rows).encode()  # RE-NET rows
    return payload


def test_registry_checksums_match_the_shared_copies(shared_datasets):
    root = shared_datasets(*SHARED_NAMES)
    checked = 0
    for name in SHARED_NAMES:
        for remote in download.REGISTRY[name].files:
            if remote.sha256 is None:
                continue
            local = root / name / remote.name
            assert sha(_as_published(name, remote.name, local.read_bytes())) == remote.sha256, f"{name}/{remote.name}"
            checked += 1
    assert checked == 49
    gz = root / "fb15k-237" / "train.txt.gz"
    if gz.is_file():  # the README's decompressed hash, as a guard on the copy itself
        assert sha(gzip.decompress(gz.read_bytes())).startswith("61099230")


def test_bundled_copies_match_the_registry_checksums():
    for name in data.BUNDLED:
        for remote in download.REGISTRY[name].files:
            bundled = data.BUNDLED_DIR / name / remote.name
            assert bundled.is_file(), bundled
            if remote.sha256 is not None:
                assert download.sha256_file(bundled) == remote.sha256, bundled
