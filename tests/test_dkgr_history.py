"""DKGR-DR snapshot histories: construction, inverse edges, normalisers, and no future leakage."""

from __future__ import annotations

import pytest
import torch

from kgsearch.data import TemporalDataset
from kgsearch.dkgr.history import SnapshotHistory, all_quadruples, build_history
from kgsearch.errors import KGSearchError

N, R = 5, 2


def four_step_dataset() -> TemporalDataset:
    """Time indices 0..4; index 2 has no fact (a gap), train = {0, 1}, valid = {3}, test = {4}."""
    train = torch.tensor([[0, 0, 1, 0], [2, 1, 1, 0],            # t=0
                          [1, 0, 2, 1]])                          # t=1
    valid = torch.tensor([[3, 1, 4, 3], [0, 0, 4, 3]])            # t=3
    test = torch.tensor([[4, 0, 0, 4]])                           # t=4
    return TemporalDataset(name="tiny", entities=[f"e{i}" for i in range(N)], relations=["a", "b"],
                           times=torch.arange(5) * 24, train=train, valid=valid, test=test)


@pytest.fixture()
def tables():
    ds = four_step_dataset()
    return build_history(all_quadruples(ds), N, R, ds.num_times)


def test_history_is_strictly_before_t_and_at_most_m(tables):
    times = tables["times"].tolist()
    assert times == [0, 1, 3, 4]  # slots are time indices with facts; 2 is a gap
    hist = SnapshotHistory(tables, history_len=2)
    expected = {0: [], 1: [0], 2: [0, 1], 3: [0, 1], 4: [1, 3]}
    for t, want in expected.items():
        got = [times[s] for s in hist.slots_before(t)]
        assert got == want, (t, got)
        assert all(x < t for x in got)  # never t itself, never the future
    # m larger than the available past: everything before t, oldest first
    assert [times[s] for s in SnapshotHistory(tables, history_len=10).slots_before(4)] == [0, 1, 3]


def test_snapshot_edges_have_inverses_and_in_degree_norm(tables):
    hist = SnapshotHistory(tables, history_len=3)
    snap = hist.snapshot(0)  # t = 0: (0, 0, 1), (2, 1, 1)
    edges = sorted(zip(snap.src.tolist(), snap.rel.tolist(), snap.dst.tolist()))
    assert edges == sorted([(0, 0, 1), (2, 1, 1), (1, 0 + R, 0), (1, 1 + R, 2)])
    # entity 1 receives two edges -> norm 1/2; entities 0 and 2 one each -> 1
    norm = {d: n for d, n in zip(snap.dst.tolist(), snap.norm.tolist())}
    assert norm == {1: 0.5, 0: 1.0, 2: 1.0}
    assert sorted(snap.nodes.tolist()) == [0, 1, 2]
    assert torch.equal(snap.nodes[snap.dst_pos], snap.dst)
    # each relation (and its inverse) is linked to both entities of its facts
    pairs = sorted(zip(snap.pair_rel.tolist(), snap.pair_ent.tolist()))
    assert pairs == [(0, 0), (0, 1), (1, 1), (1, 2), (2, 0), (2, 1), (3, 1), (3, 2)]


def test_valid_and_test_history_never_contains_their_own_facts(tables):
    ds = four_step_dataset()
    hist = SnapshotHistory(tables, history_len=3)
    for split in ("valid", "test"):
        for t, facts in ds.snapshots(split):
            seen = set()
            for snap in hist.steps_for(t):
                seen |= set(zip(snap.src.tolist(), snap.rel.tolist(), snap.dst.tolist()))
            for s, r, o in facts.tolist():
                assert (s, r, o) not in seen


def test_bad_history_len_is_a_user_error(tables):
    with pytest.raises(KGSearchError, match="history_len"):
        SnapshotHistory(tables, history_len=0)
