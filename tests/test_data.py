"""kgsearch.data: formats, vocabularies, counts, snapshots, unseen handling and bad-input messages."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from kgsearch import data
from kgsearch.data import StaticDataset, TemporalDataset, UnseenEntityWarning, canonical_name, describe, load
from kgsearch.errors import KGSearchError


def files_of(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()}


@pytest.fixture(autouse=True)
def no_data_root(monkeypatch, tmp_path):
    # Name lookups must not see the developer's environment or download cache.
    monkeypatch.delenv(data.DATA_ROOT_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# ---------------------------------------------------------------------------------------------- formats


def test_static_names_first_appearance_vocabulary(tiny_static_dir):
    ds = load(tiny_static_dir)
    assert isinstance(ds, StaticDataset)
    assert ds.entities == ["a", "b", "c", "d", "e"]
    assert ds.relations == ["r1", "r2"]
    assert (ds.num_entities, ds.num_relations) == (5, 2)
    assert ds.train.dtype == torch.long and ds.train.shape == (6, 3)
    assert ds.train.tolist() == [[0, 0, 1], [1, 1, 2], [2, 0, 3], [3, 1, 4], [4, 0, 0], [0, 1, 2]]
    assert ds.valid.tolist() == [[0, 0, 2], [1, 0, 3]]
    assert ds.test.tolist() == [[2, 1, 4], [4, 1, 1]]
    assert ds.name == "tiny_static" and ds.dropped == {}
    assert str(ds) == repr(ds) == describe(ds) == (
        "tiny_static: static KG, 5 entities, 2 relations, 6 / 2 / 2 train/valid/test triples")


def test_first_appearance_spans_splits_head_before_tail(make_dataset_dir):
    folder = make_dataset_dir({"train.txt": "b\tr\ta\n", "valid.txt": "c\tr\ta\n", "test.txt": "a\ts\td\n"})
    ds = load(folder, unseen="keep")
    assert ds.entities == ["b", "a", "c", "d"] and ds.relations == ["r", "s"]
    assert ds.test.tolist() == [[1, 1, 3]]


def test_entity_and_relation_lists_fix_the_order(make_dataset_dir, tiny_static_dir):
    files = files_of(tiny_static_dir) | {"entities.txt": "e\nd\nc\nb\na\nz\n", "relations.txt": "r2\nr1\n"}
    ds = load(make_dataset_dir(files))
    assert ds.entities == ["e", "d", "c", "b", "a", "z"]  # listed but unused entities still count
    assert ds.relations == ["r2", "r1"]
    assert ds.train[0].tolist() == [4, 1, 3]  # a r1 b


def test_gzip_crlf_and_bom_are_accepted(make_dataset_dir, tiny_static_dir):
    plain = load(tiny_static_dir)
    files = files_of(tiny_static_dir)
    variant = {
        "train.txt.gz": gzip.compress(files["train.txt"].encode()),
        "valid.txt": "\ufeff" + files["valid.txt"].replace("\n", "\r\n"),
        "test.txt.gz": gzip.compress(files["test.txt"].rstrip("\n").encode()),  # no final newline
    }
    ds = load(make_dataset_dir(variant))
    for split in data.SPLITS:
        assert torch.equal(ds.split(split), plain.split(split))
    assert ds.entities == plain.entities


def test_temporal_ids_with_maps(tiny_temporal_dir):
    ds = load(tiny_temporal_dir)
    assert isinstance(ds, TemporalDataset)
    assert ds.entities[0] == "Government_(Nigeria)" and ds.entities[4] == "Iran"
    assert ds.relations == ["Make_statement", "Consult"]
    assert ds.times.tolist() == [0, 5, 10, 20, 30] and ds.times.dtype == torch.long
    assert (ds.num_entities, ds.num_relations, ds.num_times) == (5, 2, 5)
    assert ds.train.tolist() == [[0, 0, 1, 2], [1, 1, 2, 0], [2, 0, 3, 2], [0, 1, 2, 1], [3, 0, 1, 1]]
    assert ds.valid.tolist() == [[1, 0, 3, 3], [2, 1, 0, 3]]
    # entity 4 never occurs in train: temporal data keeps it (RE-GCN protocol)
    assert ds.test.tolist() == [[4, 1, 0, 4], [3, 0, 2, 4]]
    assert str(ds) == ("tiny_temporal: temporal KG, 5 entities, 2 relations, 5 timestamps, "
                       "5 / 2 / 2 train/valid/test quadruples")


def test_id_map_lines_may_come_in_any_order(make_dataset_dir, tiny_temporal_dir):
    files = files_of(tiny_temporal_dir) | {"relation2id.txt": "Consult\t1\nMake_statement\t0\n"}
    assert load(make_dataset_dir(files)).relations == ["Make_statement", "Consult"]


def test_snapshots_are_time_ordered_and_keep_file_order(tiny_temporal_dir):
    snaps = load(tiny_temporal_dir).snapshots("train")
    assert [t for t, _ in snaps] == [0, 1, 2]
    assert [s.tolist() for _, s in snaps] == [[[1, 1, 2]], [[0, 1, 2], [3, 0, 1]], [[0, 0, 1], [2, 0, 3]]]
    assert all(s.dtype == torch.long and s.shape[1] == 3 for _, s in snaps)


def test_temporal_names_without_maps(make_dataset_dir):
    folder = make_dataset_dir({
        "train.txt": "A\tvisit\tB\t2014\nB\tmeet\tC\t2013\n",
        "valid.txt": "C\tvisit\tA\t2015\n",
        "test.txt": "D\tmeet\tA\t2016\n",
    })
    ds = load(folder)
    assert ds.entities == ["A", "B", "C", "D"] and ds.relations == ["visit", "meet"]
    assert ds.times.tolist() == [2013, 2014, 2015, 2016]
    assert ds.train.tolist() == [[0, 0, 1, 1], [1, 1, 2, 0]]
    assert ds.test.tolist() == [[3, 1, 0, 3]]


def test_renet_five_column_padded_rows(make_dataset_dir, tiny_temporal_dir):
    files = files_of(tiny_temporal_dir)
    padded = "".join("%-5s\t%-5s\t%-3s\t%-3s\t0\n" % tuple(line.split("\t")) for line in files["train.txt"].splitlines())
    ds = load(make_dataset_dir(files | {"train.txt": padded}))
    assert torch.equal(ds.train, load(tiny_temporal_dir).train)


def test_kind_detection(tiny_static_dir, tiny_temporal_dir, make_dataset_dir):
    assert data.detect_kind(tiny_static_dir) == "static"
    assert data.detect_kind(tiny_temporal_dir) == "temporal"
    names4 = make_dataset_dir({"train.txt": "a\tr\tb\t1\n", "valid.txt": "a\tr\tb\t2\n", "test.txt": "a\tr\tb\t3\n"})
    assert data.detect_kind(names4) == "temporal"


# ---------------------------------------------------------------------------------------------- names


def test_canonical_names():
    assert canonical_name("fb15k237") == "fb15k-237"
    assert canonical_name("FB15k-237") == "fb15k-237"
    assert canonical_name("ICEWS05_15") == "icews05-15"
    assert canonical_name("icews0515") == "icews05-15"
    assert canonical_name("nell995") == "nell-995"
    assert canonical_name("UMLS") == "umls"
    assert canonical_name("mykg") == "mykg"


def test_known_kind():
    assert data.known_kind("ICEWS14s") == data.known_kind("icews18") == "temporal"
    assert data.known_kind("umls") == data.known_kind("FB15k-237") == "static"
    assert data.known_kind("my_graph") is None
    assert set(data.KNOWN_KINDS) == set(data.KNOWN)


def test_bundled_umls_counts():
    ds = load("UMLS")
    assert (ds.num_entities, ds.num_relations) == (135, 46)
    assert [ds.split(s).shape[0] for s in data.SPLITS] == [5327, 569, 633]
    text = str(ds)
    for count in ("135 entities", "46 relations", "5,327 / 569 / 633"):
        assert count in text
    assert Path(ds.path) == data.BUNDLED_DIR / "umls"


def test_bundled_icews14_counts_and_snapshots():
    ds = load("icews14")
    assert (ds.num_entities, ds.num_relations, ds.num_times) == (7128, 230, 365)
    assert [ds.split(s).shape[0] for s in data.SPLITS] == [74845, 8514, 7371]
    assert "7,128 entities, 230 relations, 365 timestamps, 74,845 / 8,514 / 7,371" in str(ds)
    assert ds.times.tolist() == list(range(1, 366))
    snaps = ds.snapshots("valid")
    times = [t for t, _ in snaps]
    assert times == sorted(times) and len(set(times)) == len(times) == 30
    assert sum(s.shape[0] for _, s in snaps) == 8514
    for t, s in snaps[:3]:
        expected = ds.valid[ds.valid[:, 3] == t, :3]
        assert torch.equal(s, expected)
    assert max(t for t, _ in ds.snapshots("train")) < min(times)  # extrapolation split


def test_name_under_data_root_env_and_case_insensitive_folder(tmp_path, monkeypatch, tiny_static_dir):
    root = tmp_path / "root"
    (root / "FB15k-237").mkdir(parents=True)
    for p in tiny_static_dir.iterdir():
        (root / "FB15k-237" / p.name).write_bytes(p.read_bytes())
    assert load("fb15k237", data_root=root).name == "fb15k-237"
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(root))
    assert load("FB15K_237").num_entities == 5
    assert load(str(root / "FB15k-237")).name == "FB15k-237"  # a path loads that folder


def test_unknown_name_lists_where_it_looked(tmp_path):
    with pytest.raises(KGSearchError) as err:
        load("fb15k237", data_root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "fb15k-237") in msg
    assert "umls" in msg and "icews05-15" in msg and "download=True" in msg


def test_missing_folder_path(tmp_path):
    with pytest.raises(KGSearchError, match="does not exist"):
        load(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------- unseen


UNSEEN = {
    "train.txt": "a\tr1\tb\nb\tr2\tc\n",
    "valid.txt": "a\tr1\tc\nb\tr1\tx\n",  # line 2: x never occurs in train
    "test.txt": "c\tr3\ta\nb\tr2\ta\n",  # line 1: relation r3 never occurs in train
}


def test_unseen_kept_by_default_and_counted(make_dataset_dir):
    folder = make_dataset_dir(UNSEEN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # keeping is the protocol, not something to warn about
        ds = load(folder)
    assert ds.valid.tolist() == [[0, 0, 2], [1, 0, 3]] and ds.test.tolist() == [[2, 2, 0], [1, 1, 0]]
    assert ds.unseen == {"valid": 1, "test": 1} and ds.dropped == {}
    assert ds.seen_only("valid").tolist() == [[0, 0, 2]] and ds.seen_only("test").tolist() == [[1, 1, 0]]
    assert "kept with an entity or relation unseen in train: 1 valid, 1 test" in str(ds)


def test_kept_unseen_entity_is_ranked_by_the_filtered_evaluation(make_dataset_dir):
    from kgsearch.evaluation import evaluate_static, static_filter

    ds = load(make_dataset_dir(UNSEEN))  # x (id 3) occurs only in valid: b r1 x
    scores = torch.tensor([3.0, 2.0, 1.0, 0.0])  # every query ranks a > b > c > x
    acc = evaluate_static(lambda a, r: scores.expand(len(a), -1), ds.valid, ds.num_entities,
                          ds.num_relations, static_filter(ds))
    # a r1 ?=c: 2 (b filtered); b r1 ?=x: 4; ? r1 c=a: 1; ? r1 x=b: 2
    assert acc.result() == pytest.approx({"count": 4, "mrr": (1 / 2 + 1 / 4 + 1 + 1 / 2) / 4,
                                          "hits@1": 0.25, "hits@3": 0.75, "hits@10": 1.0})


def test_unseen_dropped_with_warning(make_dataset_dir):
    folder = make_dataset_dir(UNSEEN)
    with pytest.warns(UnseenEntityWarning) as record:
        ds = load(folder, unseen="drop")
    messages = [str(w.message) for w in record]
    assert any("dropped 1 of 2 valid" in m and "valid.txt" in m for m in messages)
    assert any("dropped 1 of 2 test" in m for m in messages)
    assert ds.valid.tolist() == [[0, 0, 2]] and ds.test.tolist() == [[1, 1, 0]]
    assert ds.entities == ["a", "b", "c", "x"]  # the vocabulary still lists x
    assert ds.dropped == ds.unseen == {"valid": 1, "test": 1}
    assert "dropped as unseen in train: 1 valid, 1 test" in str(ds)


def test_unseen_error_names_file_and_line(make_dataset_dir):
    folder = make_dataset_dir(UNSEEN)
    with pytest.raises(KGSearchError, match=r"valid\.txt: line 2: tail entity 'x' does not occur in train\.txt"):
        load(folder, unseen="error")
    folder2 = make_dataset_dir(UNSEEN | {"valid.txt": "a\tr1\tc\n"}, name="ds2")
    with pytest.raises(KGSearchError, match=r"test\.txt: line 1: relation 'r3'"):
        load(folder2, unseen="error")


def test_unseen_keep_and_bad_mode(make_dataset_dir):
    folder = make_dataset_dir(UNSEEN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(folder, unseen="keep").valid.shape[0] == 2
    with pytest.raises(KGSearchError, match="unseen='maybe'"):
        load(folder, unseen="maybe")


# ---------------------------------------------------------------------------------------------- bad input


def _error(folder) -> str:
    with pytest.raises(KGSearchError) as err:
        load(folder)
    return str(err.value)


@pytest.mark.parametrize(
    "files, pattern",
    [
        ({"valid.txt": "a\tr1\tc\nb\tr1\n"}, r"valid\.txt: line 2: expected 3 tab-separated fields .* found 2"),
        ({"valid.txt": "a\tr1\tc\n\nb\tr1\td\n"}, r"valid\.txt: line 2: .*found 1 \(blank line\)"),
        ({"train.txt": "a\tr1\n"}, r"train\.txt: line 1: expected .*found 2"),
        ({"test.txt": "a\tr1\t\n"}, r"test\.txt: line 1: field 3 is empty"),
        ({"test.txt": ""}, r"test\.txt: file is empty"),
        ({"test.txt": "\n\n"}, r"test\.txt: file is empty"),
        ({"valid.txt": b"a\tr1\tc\nb\tr\xff1\td\n"}, r"valid\.txt: line 2: not valid UTF-8 \(byte 0xff at column 4\)"),
        ({"test.txt.gz": b"not gzip"}, r"test\.txt\.gz: not a valid gzip file"),
        ({"entities.txt": "a\nb\nc\nd\ne\nb\n"}, r"entities\.txt: line 6: 'b' repeats line 2"),
        ({"entities.txt": "a\nb\nc\nd\n"}, r"train\.txt: line 4: entity 'e' is not listed in entities\.txt"),
        ({"relations.txt": "r1\n\nr2\n"}, r"relations\.txt: line 2: blank line"),
    ],
)
def test_bad_static_input(make_dataset_dir, tiny_static_dir, files, pattern):
    base = files_of(tiny_static_dir)
    if "test.txt.gz" in files:
        del base["test.txt"]
    assert re.search(pattern, _error(make_dataset_dir(base | files)))


def test_missing_split_file(make_dataset_dir, tiny_static_dir):
    files = files_of(tiny_static_dir)
    del files["valid.txt"]
    msg = _error(make_dataset_dir(files))
    assert "missing valid.txt (or valid.txt.gz)" in msg


@pytest.mark.parametrize(
    "files, pattern",
    [
        ({"valid.txt": "1\t0\t3\t20\n2\t1\t0\tmay\n"}, r"valid\.txt: line 2: time 'may' is not an integer"),
        ({"train.txt": "0\t0\t1\t10\n1\tx\t2\t0\n"}, r"train\.txt: line 2: relation id 'x' is not an integer"),
        ({"test.txt": "4\t1\t0\t30\n3\t0\t7\t30\n"},
         r"test\.txt: line 2: entity id 7 out of range \(entity2id\.txt has ids 0\.\.4\)"),
        ({"test.txt": "4\t1\t0\t30\n3\t-1\t2\t30\n"}, r"test\.txt: line 2: relation id -1 out of range"),
        ({"valid.txt": "1\t0\t3\n"}, r"valid\.txt: line 1: expected 4 .* or 5 .* found 3"),
        ({"valid.txt": "1\t0\t3\t20\t0\n2\t1\t0\t20\t0\t0\n"}, r"valid\.txt: line 2: expected 5 tab-separated"),
        ({"valid.txt": "1\t0\t3\t20\t0\n2\t1\t0\t20\t1\n"}, r"valid\.txt: line 2: a 5th field is accepted only"),
        ({"entity2id.txt": "A\t0\nB\t1\nC\t1\nD\t3\nE\t4\n"}, r"entity2id\.txt: line 3: id 1 repeats line 2"),
        ({"entity2id.txt": "A\t0\nB\t1\nC\t2\nD\t3\nE\t5\n"},
         r"entity2id\.txt: line 5: id 5 out of range \(the 5 ids must be 0\.\.4\)"),
        ({"relation2id.txt": "Make_statement\tzero\n"}, r"relation2id\.txt: line 1: id 'zero' is not an integer"),
        # the extrapolation order: train times (0..10) < valid (20) < test (30)
        ({"valid.txt": "1\t0\t3\t20\n2\t1\t0\t10\n"},
         r"valid\.txt: line 2: time 10 is not after the last train time 10 \(train\.txt line 1\)"),
        ({"valid.txt": "1\t0\t3\t5\n"}, r"valid\.txt: line 1: time 5 is not after the last train time 10"),
        ({"test.txt": "4\t1\t0\t30\n3\t0\t2\t20\n"},
         r"test\.txt: line 2: time 20 is not after the last valid time 20 \(valid\.txt line 1\)"),
        ({"test.txt": "4\t1\t0\t15\n"}, r"test\.txt: line 1: time 15 is not after the last valid time 20"),
        ({"train.txt": "0\t0\t1\t10\n1\t1\t2\t-5\n"}, r"train\.txt: line 2: time -5 is negative"),
        # int() would read these as 10 and 1
        ({"train.txt": "0\t0\t1\t10\n1\t1_0\t2\t0\n"}, r"train\.txt: line 2: relation id '1_0' is not an integer"),
        ({"valid.txt": "1\t0\t3\t20\n\u0661\t1\t0\t20\n"}, r"valid\.txt: line 2: entity id '\u0661' is not an integer"),
        ({"entity2id.txt": "A\t0\nB\t1\nA\t2\nD\t3\nE\t4\n"}, r"entity2id\.txt: line 3: name 'A' repeats line 1"),
        ({"relation2id.txt": "Consult\t0\nConsult\t1\n"}, r"relation2id\.txt: line 2: name 'Consult' repeats line 1"),
        ({"entity2id.txt": "A\t0\t-\nB\t1\t-\nC\t2\t-\nD\t3\t-\nE\t4\t-\n"},
         r"entity2id\.txt: line 1: expected 2 \(name, id\) or 4 \(name, id, start, end\) tab-separated fields, "
         r"found 3"),
        ({"relation2id.txt": "Make_statement\t0\t-\t-\nConsult\t1\t-\t-\n"},
         r"relation2id\.txt: line 1: expected 2 \(name, id\) tab-separated fields, found 4"),
    ],
)
def test_bad_temporal_input(make_dataset_dir, tiny_temporal_dir, files, pattern):
    assert re.search(pattern, _error(make_dataset_dir(files_of(tiny_temporal_dir) | files)))


def test_temporal_names_without_maps_are_checked_in_time_too(make_dataset_dir):
    folder = make_dataset_dir({"train.txt": "A\tvisit\tB\t2014\n", "valid.txt": "C\tvisit\tA\t2013\n",
                               "test.txt": "D\tmeet\tA\t2016\n"})
    assert re.search(r"valid\.txt: line 1: time 2013 is not after the last train time 2014", _error(folder))


def test_bad_temporal_data_exits_2_naming_file_and_line_and_writes_nothing(make_dataset_dir, tiny_temporal_dir,
                                                                          tmp_path):
    folder = make_dataset_dir(files_of(tiny_temporal_dir) | {"train.txt": "0\t0\t1\t10\n-1\t1\t2\t0\n"})
    before = sorted(p.name for p in folder.iterdir())
    cli = subprocess.run([sys.executable, "-m", "kgsearch.data", str(folder)], capture_output=True, text=True)
    assert cli.returncode == 2 and cli.stdout == ""
    assert cli.stderr == (f"kgsearch: error: {folder / 'train.txt'}: line 2: entity id -1 out of range "
                          "(entity2id.txt has ids 0..4)\n")
    # training on a leaky split stops before its output folder exists
    leaky = make_dataset_dir(files_of(tiny_temporal_dir) | {"valid.txt": "1\t0\t3\t5\n"}, name="leaky")
    run = tmp_path / "run.yaml"
    run.write_text(f"model: dkgr\ndataset: {leaky}\nparams:\n  dim: 8\n  epochs: 1\n", encoding="utf-8")
    out = tmp_path / "out"
    train = subprocess.run([sys.executable, "-m", "kgsearch.train", str(run), "--out", str(out)],
                           capture_output=True, text=True)
    assert train.returncode == 2, train.stderr
    assert train.stderr.strip().splitlines() == [
        f"kgsearch: error: {leaky / 'valid.txt'}: line 1: time 5 is not after the last train time 10 "
        "(train.txt line 1); the extrapolation split needs every train time < every valid time < every test time"]
    assert not out.exists() and sorted(p.name for p in folder.iterdir()) == before


RENET_YAGO = {  # RE-NET's YAGO layout: validity dates in entity2id.txt, a constant 5th column, stat = N, R, T
    "entity2id.txt": "<Getafe_CF>\t1\t1983-07-08\t####-##-##\n<Athletic_Park_(Vancouver)>\t0\t1913-##-##\t####-##-##\n"
                     "<Spain>\t2\t####-##-##\t####-##-##\n",
    "relation2id.txt": "<wasBornIn>\t0\n<isAffiliatedTo>\t1\n",
    "stat.txt": "3\t2\t3",
    "train.txt": "1\t1\t2\t0\t0\n0\t0\t2\t0\t0\n",
    "valid.txt": "1\t0\t2\t1\t0\n",
    "test.txt": "0\t1\t1\t2\t0\n",
}


def test_renet_yago_entity2id_with_validity_dates(make_dataset_dir):
    ds = load(make_dataset_dir(RENET_YAGO, name="YAGO"))
    assert isinstance(ds, TemporalDataset)
    assert ds.entities == ["<Athletic_Park_(Vancouver)>", "<Getafe_CF>", "<Spain>"]
    assert ds.relations == ["<wasBornIn>", "<isAffiliatedTo>"]
    assert ds.train.tolist() == [[1, 1, 2, 0], [0, 0, 2, 0]] and ds.test.tolist() == [[0, 1, 1, 2]]


def test_yago_and_wiki_are_known_temporal_names():
    assert data.known_kind("YAGO") == data.known_kind("wiki") == "temporal"
    assert canonical_name("YAGO") == "yago" and canonical_name("YAGO3-10") == "yago3-10"


def test_temporal_needs_both_maps(make_dataset_dir, tiny_temporal_dir):
    files = files_of(tiny_temporal_dir)
    del files["relation2id.txt"]
    assert "missing relation2id.txt" in _error(make_dataset_dir(files))


def test_bad_split_name(tiny_temporal_dir):
    with pytest.raises(KGSearchError, match="unknown split 'dev'"):
        load(tiny_temporal_dir).snapshots("dev")


# ---------------------------------------------------------------------------------------------- shared copies


def test_shared_copies_resolve_from_the_repository_or_the_env(monkeypatch, tmp_path, shared_datasets):
    from conftest import REPO, SKIP_NO_DATA, shared_dataset_roots

    beside = (REPO.parent / "shared" / "datasets", "beside the checkout")
    assert shared_dataset_roots() == [beside]  # the autouse fixture cleared $KGSEARCH_DATA_ROOT
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(tmp_path))
    assert shared_dataset_roots() == [(tmp_path, "$KGSEARCH_DATA_ROOT"), beside]
    with pytest.raises(pytest.skip.Exception) as skipped:
        shared_datasets("no-such-benchmark")
    reason = str(skipped.value)
    assert SKIP_NO_DATA in reason and str(beside[0]) in reason and "KGSEARCH_DATA_ROOT" in reason


def test_no_machine_specific_dataset_folder_in_tests_configs_or_search_spaces():
    from conftest import REPO

    absolute = re.compile(r"(?<![\w.])/[\w./-]*shared/datasets")  # "../shared/datasets" is fine
    files = [*(REPO / "tests").glob("*.py"), *(REPO / "configs").glob("*.yaml"),
             *(REPO / "search_spaces").glob("*.yaml")]
    named = [f"{p.relative_to(REPO)}: {m.group()}"
             for p in files for m in absolute.finditer(p.read_text(encoding="utf-8"))]
    assert not named


def test_shared_fb15k237_counts(shared_datasets):
    root = shared_datasets("fb15k-237")
    ds = load("fb15k-237", data_root=root)  # train.txt.gz + entities/relations lists; unseen kept
    assert (ds.num_entities, ds.num_relations) == (14541, 237)
    assert [ds.split(s).shape[0] for s in data.SPLITS] == [272115, 17535, 20466]
    assert ds.unseen == {"valid": 9, "test": 28} and ds.dropped == {}  # datasets README: 9 valid / 28 test
    assert ds.seen_only("test").shape[0] == 20438
    with pytest.warns(UnseenEntityWarning):
        dropped = load("fb15k237", data_root=root, unseen="drop")
    assert dropped.dropped == {"valid": 9, "test": 28}
    assert torch.equal(dropped.test, ds.seen_only("test"))


def test_shared_icews18_counts(shared_datasets):
    ds = load("ICEWS18", data_root=shared_datasets("icews18"))
    assert (ds.num_entities, ds.num_relations, ds.num_times) == (23033, 256, 304)
    assert [ds.split(s).shape[0] for s in data.SPLITS] == [373018, 45995, 49545]
    assert ds.times[:2].tolist() == [0, 24]


def test_shared_temporal_copies_pass_the_extrapolation_checks(shared_datasets):
    root = shared_datasets("icews14", "icews05-15")
    for name in ("icews14", "icews05-15"):
        ds = load(name, data_root=root)
        assert ds.train[:, 3].max() < ds.valid[:, 3].min() and ds.valid[:, 3].max() < ds.test[:, 3].min()
