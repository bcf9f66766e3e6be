"""Fetch a named benchmark dataset from its public source into a local cache, sha256-checked.

Used only when asked (``kgsearch.data.load(name, download=True)`` or ``python -m kgsearch.data.download NAME``);
nothing else in kgsearch touches the network.

The URLs pin the commits the shared copies were taken from (see the datasets README). A ``sha256`` is
given only where the downloaded bytes are known exactly: it was computed from the local copy and
cross-checked against the source's git blob hash (for the RED-GNN ``train.txt`` = ``facts.txt`` +
``train.txt`` concatenation, for the CRLF originals of FB15k-237 valid/test, and for RE-NET's space-padded
5-column ICEWS18 rows); ``yago`` and ``wiki`` have no shared copy, so theirs were computed from the
git blobs of the pinned commit. ``None`` marks files whose exact bytes we could not verify; they are
downloaded unchecked.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kgsearch import __version__
from kgsearch.data.names import DATA_ROOT_ENV, canonical_name, default_cache_dir
from kgsearch.errors import KGSearchError, cli_entry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name inside the dataset folder
    urls: tuple[str, ...]  # fetched in order and concatenated
    sha256: str | None  # of the assembled file; None = no trusted checksum


@dataclass(frozen=True)
class RemoteDataset:
    name: str
    files: tuple[RemoteFile, ...]
    source: str  # where it comes from, for humans


_RED_GNN = "https://raw.githubusercontent.com/LARS-research/RED-GNN/e064161e8d2b8b3e0ed17d7a746cbcb43b3c327e/transductive/data"
_TIRGN = "https://raw.githubusercontent.com/Liyyy2122/TiRGN/4b74c98b24b200a138e22b7e69f948f0f8d0232a/data"
_PP413 = "https://raw.githubusercontent.com/pp413/Knowledge_embedding_benchmark_datasets/7823ceac4b2c5a05c0e2c80b1328de376af66d46"


def _red_gnn(name: str, folder: str, sha: dict[str, str | None]) -> RemoteDataset:
    base = f"{_RED_GNN}/{folder}"
    files = [RemoteFile("train.txt", (f"{base}/facts.txt", f"{base}/train.txt"), sha["train"])]
    files += [RemoteFile(f"{s}.txt", (f"{base}/{s}.txt",), sha[s]) for s in ("valid", "test", "entities", "relations")]
    return RemoteDataset(name, tuple(files), f"LARS-research/RED-GNN transductive/data/{folder} (train = facts + train)")


def _tirgn(name: str, folder: str, sha: dict[str, str | None]) -> RemoteDataset:
    files = tuple(RemoteFile(f"{stem}.txt", (f"{_TIRGN}/{folder}/{stem}.txt",), digest) for stem, digest in sha.items())
    return RemoteDataset(name, files, f"Liyyy2122/TiRGN data/{folder} (RE-GCN extrapolation split)")


REGISTRY: dict[str, RemoteDataset] = {
    d.name: d
    for d in (
        _red_gnn("family", "family", {
            "train": "768bef275a5f4c30d29ee0180dba1bd8329e7f29a981edd49a4cf40b78e7e322",
            "valid": "b27c96db987d829aeb7ab8025d8b26cb469d9a8b9881fe84beeab96f9c9c7d30",
            "test": "42cc9b400a3bfbd8908c81a14a073fe3e0c73e51b8ed05d2587255c11d257eb8",
            "entities": "92b2490495481c3bcb121c0c03898aa644d762a4394c6376fc8b909d7e245c5b",
            "relations": "b7d831023d060a07cab0db78e6e4d8ed492c42ef4476f43c82b6f54ce1106506"}),
        _red_gnn("umls", "umls", {
            "train": "bb60650f4c3069340e47d58bfc9d74e91fefe2bea45b708f6823a54032752ae5",
            "valid": "ba822243da69339090b440d2324a83b33729d3d449132f757355a9f2bc3afca2",
            "test": "d72207ba52da6f9ca1a958a29e326c2b5cfa3b7a2b8d156d704644c325be3971",
            "entities": "082c89718568e99ce54f52aa2d3a3cdf0711e0c45e46eb7de0fcf7a7fa8f2a44",
            "relations": "313de7c4aff4e14d962a6cadaffbd590dd5a01d11fc850a8531d5e26ee745db4"}),
        _red_gnn("wn18rr", "WN18RR", {
            "train": "68c92a7ce2969498eadc9c4ce83c410c2767d3ac6b0de915fe2cd73d8c4c8197",
            "valid": "453ce7202afa58094a04d2b1560ee2b02660f1c260b32ce6651c8ccedd1028ab",
            "test": "0383bceaaa1096cf3c03ec021ed0048068e2355dbfc0239b292cefdac821cec5",
            "entities": "ceeaf46e4b4f46265535b05d55934499150189f4fae6e33a00f7a341bc9d7bfa",
            "relations": "00205a4aafe4a02cab3a86307da08a65ce783a20b32d49900e97b6ba7273d2cc"}),
        # RED-GNN's FB15k-237 facts/train partition was never verified against the standard train set;
        # valid/test are ConvE's CRLF files (the loader accepts CRLF).
        _red_gnn("fb15k-237", "fb15k-237", {
            "train": None,
            "valid": "cf6309010852f6a8d47a45df830a426415d1ee6f7a3970a8376ff1fb81db4a5c",
            "test": "5711cf41623ceb4eacc50eb6108a3ca6565c7492e3caaf82a3e355cc660d1574",
            "entities": "4e5c6411f8c7acab59d9d333ee8f63a8a8c670ec5d2897a9436fc99bff162cb8",
            "relations": "6237dd75b956dbc46cfa756b2cd45b7fe52a78484c3346471a7fccf4144a1160"}),
        # The shared copy's facts part is in another order, so the assembled train.txt has no known hash.
        _red_gnn("nell-995", "nell", {
            "train": None,
            "valid": "9c02548083036fd7ccc4ccec649a633fc3a58c544a0d28496cd751c35fef23a8",
            "test": "5fce32ea11fcf6f7da8da032fd989f8c028338c4debfc8077215bffd85e56ebd",
            "entities": "db0a2e1bd424e330d3bf5160872d2ab37c98436aa021db0ae7c20cb81012f01d",
            "relations": "a2d7aa06a78b63ed3c7273cfa24d1c6f5e3784784064c8def4b3dca2073c1f09"}),
        RemoteDataset("yago3-10", (
            RemoteFile("train.txt", (f"{_PP413}/YAGO3-10/train.txt",), None),
            RemoteFile("valid.txt", (f"{_PP413}/YAGO3-10/valid.txt",),
                       "c9018b77ec77e99f8d48bc3258d404f10b2049a6c7b4ac6eb663697e799dc6f5"),
            RemoteFile("test.txt", (f"{_PP413}/YAGO3-10/test.txt",),
                       "003887ca8a34c90fcaf9b0250b1c30a4b5f617f80f8cf0aeab9723333061598a"),
        ), "pp413/Knowledge_embedding_benchmark_datasets YAGO3-10"),
        _tirgn("icews14", "ICEWS14s", {
            "train": "228da10c44ae0a5babc439c76e063ee8094352da7270b299b0b0a6778cddd0f4",
            "valid": "b046fe729601246f0b52fceff371e7cb668b63669aee812ddf392cad4fcd8196",
            "test": "1ce0a75fbdc1d1e041efe290f44948722327c65a9ea09a728060b2c34d3474bd",
            "entity2id": "0251b09f1c2e56cdc5506f9d7f83e7a88d5d54c3df25609ae8ce4edb7fb3e573",
            "relation2id": "32fcce0906d05205824f03e980981436a71a85feba72a817f5291e4afda9d04e",
            "stat": "590d6632d8efd57bdd13dcab133dc0fcd848103f651766fe47ba4316a1db2547",
            "e-w-graph": "fa25a0bcff6886fc5587a34194b1e1860c42e46e5c9a19b8d8a69c35e7e15fa6",
            "word2id": "be042a82f57d1fc4e193df7c4595b1b68d9fd2a1c3946c1a5e617b668c911cb7"}),
        # RE-NET's space-padded rows with a constant 5th column (the loader accepts both).
        _tirgn("icews18", "ICEWS18", {
            "train": "019cfba096e15abae04e8d8d6f4dbeda2add15f53826681702f25298a9fbc7bf",
            "valid": "aa9966e928768ad3a9fd28c7fe2c078458ec1caa523fc0ddf9d0a38ece349c50",
            "test": "a00d46f993557cf78a8823b0c3a7b3b135f40ffa74150ee8f795794e2b536e33",
            "entity2id": "ba2e7a66411cfc53517f08151124a3d36249cd70dfdcf3bab03b64f1300614a3",
            "relation2id": "8d513a2bb23c4c00f16caa3f7a8b9ea7fbdfbee14508c046621e76e1ff50585b",
            "stat": "0f198e1b76c90bf39428bdd9eb41fe3c84ef287f93f9934d478cf068b0794690",
            "e-w-graph": "a1378253ac0d27231b8efe4931c79f41c63c92fe419760dad9f00be9d8ea18fc",
            "word2id": "6f304b6cff1854d15f440408113de8c210346c3a7a74f8448d51e7478b169f0d"}),
        _tirgn("icews05-15", "ICEWS05-15", {
            "train": "fc1cfb55a08e6c08b08f67b00aa10ca2f068a0122cc48242f2bf7ff0b468b7e0",
            "valid": "3e001c4452922d0be96264549b9497285bbfe71bda6cae6aaf1fd9d212c286be",
            "test": "3a62ae8edf4265fa6cce3e3997894a565b85b9349f0f77ad19f2742df240ea8e",
            "entity2id": "cdbdf157aa24aa4be2ec44d5ded6ebb48b087e287e9550867e60d97547a29edf",
            "relation2id": "8b1a98961005e80b84fc1602b0764912ba64781361cde126bbc9d4aab85b8e85",
            "stat": "2274a315b1019de6ec3c07298313d8877174985314c14b79d449e813229a602c",
            "e-w-graph": "4bebcfa6bd756ca54730e5d769e07c154d373439d91f9fae84f2cbc7283804aa",
            "word2id": "c0e68a4a85c421f8f408404472a5706093d28c152f94c725b98bec976b839a5c"}),
        # RE-NET's temporal YAGO and WIKI (blob-identical to INK-USC/RE-Net's data/): rows with a constant
        # 5th column, YAGO's entity2id with validity dates, no entity-word graph. WIKI's train.txt blob
        # (over 4 MiB) was not available to hash.
        _tirgn("yago", "YAGO", {
            "train": "31f78c30627ffe143940a5dadf06562602944e58f1c766481e894a366561f7ec",
            "valid": "c99d9d520264a9f0f8ef5774436f0d3941fbb3637181b6f2ad0dd665da9d2bb2",
            "test": "9b2c808c89f9045ddbc92983b84e88333fa1ce695abacd4f2531d47d9df5248a",
            "entity2id": "3a5482d19f80b3936ca735ea105db799f5c500b170c57f7a59f0ea2650231789",
            "relation2id": "83e460205fa11720980c814aa99d70b4ec42ff9571f7ce9915390e262fc8dc34",
            "stat": "49cf9bb1e0340938ab7da557e7c50168d05a8ecdf1207c9425cb1b041f903eed"}),
        _tirgn("wiki", "WIKI", {
            "train": None,
            "valid": "d9fb60e43b9e6ed970c6c63f1252d2bb5b3ed60eb1384a51e4b771d624350663",
            "test": "3e70736c25102f85faac7e0763263d67b113a3698e71efac72bb4dc2f84c9d79",
            "entity2id": "307628d198b9369b650d46bb88980b38ed0957a9e8148227c94907f9b2804f01",
            "relation2id": "50e6d3c632dde882c8a84aece1eda1f640f4a79a184033eb0941c10dad90e517",
            "stat": "6dc7a849dd77bbb4a88220d34636ded1f7fb879c6d4e8a0bc74bc1ae99fe146f"}),
    )
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stream(url: str, out, digest, timeout: float, label: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": f"kgsearch/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                digest.update(chunk)
    except urllib.error.HTTPError as exc:
        raise KGSearchError(f"download of {label} failed: HTTP {exc.code} {exc.reason} from {url}") from None
    except urllib.error.URLError as exc:
        raise KGSearchError(f"download of {label} failed: cannot reach {url} ({exc.reason})") from None
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, truncated bodies
        raise KGSearchError(f"download of {label} failed: {url}: {exc}") from None


def fetch_file(remote: RemoteFile, dest: Path, timeout: float = 60.0, label: str | None = None) -> Path:
    """Download `remote` to `dest` via a temporary file and an atomic rename; skip it when already verified."""
    label = label or dest.name
    if dest.exists():
        if remote.sha256 is None:
            log.info("%s: present (no checksum to verify)", dest)
            return dest
        if sha256_file(dest) == remote.sha256:
            return dest
        log.warning("%s: checksum mismatch, downloading again", dest)
        dest.unlink()
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for url in remote.urls:
                log.info("downloading %s", url)
                _stream(url, out, digest, timeout, label)
        got = digest.hexdigest()
        if remote.sha256 is not None and got != remote.sha256:
            raise KGSearchError(
                f"checksum mismatch for {label} from {', '.join(remote.urls)}: expected sha256 {remote.sha256}, "
                f"got {got}; the downloaded file was removed"
            )
        os.replace(tmp, dest)
    except OSError as exc:
        raise KGSearchError(f"cannot write {dest}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def fetch(name: str, cache_dir: str | os.PathLike | None = None, timeout: float = 60.0) -> Path:
    """Download dataset `name` into ``<cache_dir>/<name>/`` (default: `default_cache_dir()`); return that folder."""
    canon = canonical_name(name)
    spec = REGISTRY.get(canon)
    if spec is None:
        raise KGSearchError(f"no download source for dataset {name!r} (downloadable: {', '.join(sorted(REGISTRY))})")
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = folder / canon
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KGSearchError(f"cannot create download folder {folder}: {exc.strerror or exc}") from None
    for remote in spec.files:
        fetch_file(remote, folder / remote.name, timeout=timeout, label=f"{canon}/{remote.name}")
    return folder


@cli_entry
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kgsearch.data.download", description=__doc__.split("\n")[0])
    parser.add_argument("name", metavar="NAME", help="one of: " + ", ".join(sorted(REGISTRY)))
    parser.add_argument("--cache-dir", default=None, help=f"default: ${DATA_ROOT_ENV} or ~/.cache/kgsearch/datasets")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(fetch(args.name, args.cache_dir))


if __name__ == "__main__":
    main()
