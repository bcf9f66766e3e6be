"""Ranking metrics hand-computed on a 5-entity graph: ties, filtered answers, both directions, shards."""

from types import SimpleNamespace

import pytest
import torch

from kgsearch.evaluation import (
    FilterIndex,
    RankAccumulator,
    evaluate_static,
    realistic_ranks,
    relation_query_keys,
    static_filter,
    temporal_entity_filter,
    temporal_relation_filter,
)


def test_realistic_rank_counts_ties_as_mean_of_optimistic_and_pessimistic():
    scores = torch.tensor([[5.0, 3.0, 3.0, 3.0, 1.0]])
    # target 1 ties with entities 2 and 3: optimistic rank 2, pessimistic 4 -> 3
    assert realistic_ranks(scores, torch.tensor([1])).tolist() == [3.0]
    assert realistic_ranks(scores, torch.tensor([0])).tolist() == [1.0]
    assert realistic_ranks(scores, torch.tensor([4])).tolist() == [5.0]


def test_filter_removes_other_true_answers_but_not_the_target():
    scores = torch.tensor([[5.0, 3.0, 3.0, 4.0, 1.0]])
    rows, cols = torch.tensor([0, 0, 0]), torch.tensor([0, 1, 2])  # true answers 0, 1, 2 (target 1)
    # raw: 0 and 3 above, 2 ties -> 1 + 2 + 0.5
    assert realistic_ranks(scores, torch.tensor([1])).tolist() == [3.5]
    # filtered: 0 and the tie 2 removed; only 3 above
    assert realistic_ranks(scores, torch.tensor([1]), rows, cols).tolist() == [2.0]


def test_filter_index_lookup_returns_every_pair_once():
    idx = FilterIndex.build(torch.tensor([7, 3, 7, 7, 3]), torch.tensor([1, 0, 2, 1, 4]))
    rows, cols = idx.lookup(torch.tensor([3, 5, 7]))
    pairs = sorted(zip(rows.tolist(), cols.tolist()))
    assert pairs == [(0, 0), (0, 4), (2, 1), (2, 2)]  # key 5 absent; duplicate (7, 1) once


def test_accumulator_metrics_and_exact_merge():
    acc = RankAccumulator().add(torch.tensor([1.0, 2.0, 4.0, 20.0]))
    res = acc.result()
    assert res["count"] == 4
    assert res["mrr"] == pytest.approx((1 + 0.5 + 0.25 + 0.05) / 4)
    assert (res["hits@1"], res["hits@3"], res["hits@10"]) == (0.25, 0.5, 0.75)
    a = RankAccumulator().add(torch.tensor([1.0, 2.0]))
    b = RankAccumulator().add(torch.tensor([4.0, 20.0]))
    assert RankAccumulator.from_tensor(a.to_tensor() + b.to_tensor()).result() == res


def _toy():
    # 5 entities, 2 relations
    train = torch.tensor([[0, 0, 1], [0, 0, 2], [1, 1, 3]])
    valid = torch.tensor([[2, 1, 4]])
    test = torch.tensor([[0, 0, 3]])
    return SimpleNamespace(train=train, valid=valid, test=test, num_entities=5, num_relations=2)


def test_evaluate_static_both_directions_by_hand():
    data = _toy()
    # score(anchor, rel) = fixed table; entity scores independent of the query except by direction
    tail_scores = torch.tensor([0.0, 9.0, 8.0, 7.0, 7.0])  # tail query (0, 0, ?): target 3
    head_scores = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0])  # head query (?, 0, 3) as (3, 0+R, ?): target 0

    def score_fn(anchor, rel):
        return torch.stack([tail_scores if r < data.num_relations else head_scores for r in rel.tolist()])

    flt = static_filter(data)
    acc = evaluate_static(score_fn, data.test, 5, 2, flt)
    # tail: 1 and 2 are true answers of (0,0,?) -> filtered; 4 ties with target 3 -> rank 1.5
    # head: true heads of (?,0,3) = {0}; entity 1 ties -> 1.5
    assert acc.result()["mrr"] == pytest.approx(1 / 1.5)
    raw = evaluate_static(score_fn, data.test, 5, 2, None).result()
    # raw tail: 1, 2 above, 4 ties -> 3.5; raw head: 1 ties -> 1.5
    assert raw["mrr"] == pytest.approx((1 / 3.5 + 1 / 1.5) / 2)


def test_evaluate_static_shards_sum_to_the_whole():
    torch.manual_seed(0)
    emb = torch.randn(5, 4)
    data = _toy()
    triples = torch.cat([data.train, data.valid, data.test])

    def score_fn(anchor, rel):
        return emb[anchor] @ emb.T + rel.unsqueeze(1).float()

    flt = static_filter(data)
    whole = evaluate_static(score_fn, triples, 5, 2, flt, batch_size=3)
    parts = [evaluate_static(score_fn, triples, 5, 2, flt, batch_size=2, shard=(k, 3)) for k in range(3)]
    merged = RankAccumulator()
    for p in parts:
        merged.merge(p)
    assert merged.result() == pytest.approx(whole.result())


def test_time_aware_filter_only_filters_the_same_timestamp():
    quads = torch.tensor([[0, 0, 1, 0], [0, 0, 2, 1], [0, 0, 3, 1]])
    data = SimpleNamespace(train=quads[:1], valid=quads[1:2], test=quads[2:], num_entities=4, num_relations=1)
    flt = temporal_entity_filter(data)
    key = lambda a, r, t: torch.tensor([(t * 4 + a) * 2 + r])
    assert sorted(flt.lookup(key(0, 0, 1))[1].tolist()) == [2, 3]  # time 1 only: not entity 1 (time 0)
    assert flt.lookup(key(3, 1, 1))[1].tolist() == [0]  # inverse direction
    rel = temporal_relation_filter(data)
    assert rel.lookup(relation_query_keys(torch.tensor([0]), torch.tensor([2]), torch.tensor([1]), 4))[1].tolist() == [0]
