"""DAM (structural features, Eq. 1 MLP, targets), K-means types and the graph conditions of CCD."""

from __future__ import annotations

import networkx as nx
import numpy as np
import torch

from kgsearch.dans.difficulty import (STRUCTURAL_FEATURES, capped_queries, degree_target, fit_difficulty, kmeans_types,
                                      mean_rank_target, sampled_closeness, structural_features,
                                      undirected_graph)
from kgsearch.dans.graph import cluster_centroids, neighbour_csr, neighbour_mean
from kgsearch.dans.negatives import TrueAnswers, sample_negatives
from kgsearch.models import build_scorer

# A star: centre 0 linked to 1..5 (relation 0), plus a tail 5 -> 6 -> 7 (relation 1) and a duplicate edge.
STAR = torch.tensor([[0, 0, 1], [0, 0, 2], [0, 0, 3], [0, 0, 4], [0, 0, 5], [5, 1, 6], [6, 1, 7], [1, 1, 0]])


def test_structural_features_shape_range_and_hub():
    feats = structural_features(STAR, 9, exact_max_nodes=100)  # entity 8 is isolated
    assert feats.shape == (9, len(STRUCTURAL_FEATURES))
    assert feats.min() >= 0 and feats.max() <= 1
    col = {name: i for i, name in enumerate(STRUCTURAL_FEATURES)}
    assert feats[:, col["betweenness"]].argmax() == 0        # the hub carries every shortest path
    assert feats[:, col["triple_count"]].argmax() == 0        # 6 triples, the duplicate edge counted
    assert feats[8].sum() == 0                                # isolated: minimum everywhere


def test_sampled_features_on_a_large_graph_are_seeded():
    g = nx.barabasi_albert_graph(60, 2, seed=0)
    train = torch.tensor([[a, 0, b] for a, b in g.edges()])
    a = structural_features(train, 60, exact_max_nodes=10, samples=16, seed=1)
    b = structural_features(train, 60, exact_max_nodes=10, samples=16, seed=1)
    assert torch.equal(a, b) and a.shape == (60, 6)


def test_sampled_closeness_with_all_pivots_is_proportional_to_exact():
    graph = undirected_graph(STAR[:7], 8)  # connected: 0..7
    exact = nx.closeness_centrality(graph)
    est = sampled_closeness(graph, list(range(8)))
    ratio = est / np.array([exact[v] for v in range(8)])
    assert np.allclose(ratio, ratio[0])  # same ordering and spacing, only the scale differs


def test_difficulty_mlp_regresses_its_target():
    torch.manual_seed(0)
    sem, struct = torch.randn(30, 4), torch.rand(30, 6)
    target = torch.sigmoid(2 * sem[:, 0]).clamp(0.05, 0.95)
    zeta = fit_difficulty(sem, struct, target, hidden=16, epochs=300, lr=0.01)
    assert zeta.shape == (30,) and ((zeta > 0) & (zeta < 1)).all()
    assert torch.corrcoef(torch.stack([zeta, target]))[0, 1] > 0.9


def test_difficulty_targets():
    torch.manual_seed(0)
    scorer = build_scorer("transe", 9, 2, 4)
    value = mean_rank_target(scorer, STAR)
    assert value.shape == (9,) and value.min() >= 0 and value.max() <= 1
    deg = degree_target(scorer, STAR)
    assert deg[0] == 0 and deg[8] == 1  # the hub is easiest, the isolated entity hardest


def test_mean_rank_target_is_zero_for_a_perfect_scorer():
    # TransE with e_i = i·u and r = u: (i, r, i + 1) is an exact translation, every answer ranks first.
    train = torch.tensor([[i, 0, i + 1] for i in range(5)])
    scorer = build_scorer("transe", 6, 1, 1)
    with torch.no_grad():
        scorer.entity.copy_(torch.arange(6.0).unsqueeze(1))
        scorer.relation.fill_(1.0)
    assert torch.allclose(mean_rank_target(scorer, train), torch.zeros(6))


def test_capped_queries_caps_frequent_answers_and_keeps_every_answer():
    target = torch.tensor([0] * 50 + [1] * 20 + [2] * 3 + [3])          # 74 queries; entity 4 answers none
    keep = capped_queries(target, 5, max_queries=30, seed=1)
    counts = torch.bincount(target[keep], minlength=5)
    assert counts.tolist() == [13, 13, 3, 1, 0]        # c = 13: 13 + 13 + 3 + 1 = 30, c = 14 would be 32
    assert len(set(keep.tolist())) == len(keep)
    assert capped_queries(target, 5, max_queries=74) is None and capped_queries(target, 5, 0) is None
    assert not torch.equal(keep, capped_queries(target, 5, max_queries=30, seed=2))   # a seeded sample


def test_mean_rank_target_with_a_query_budget():
    torch.manual_seed(0)
    hub = [[1 + i % 11, i % 2, 0] for i in range(40)]                  # entity 0 answers 40 tail queries
    ring = [[1 + i, 1, 1 + (i + 1) % 11] for i in range(11)]
    train = torch.tensor(hub + ring)                                     # 102 queries, both directions
    scorer = build_scorer("transe", 12, 2, 4)
    full = mean_rank_target(scorer, train)
    assert torch.equal(mean_rank_target(scorer, train, max_queries=102), full)
    capped = mean_rank_target(scorer, train, max_queries=60)
    assert not torch.allclose(capped[0], full[0])                        # the hub's estimate is a sample
    # an entity that answers no more queries than the cap keeps all of them: its value is exact
    answers = torch.cat([train[:, 2], train[:, 0]])
    kept = torch.bincount(answers[capped_queries(answers, 12, 60)], minlength=12)
    whole = kept == torch.bincount(answers, minlength=12)
    assert whole[1:].sum() >= 3 and not whole[0]
    assert torch.allclose(capped[whole], full[whole])


def test_kmeans_types_separates_blobs():
    x = torch.cat([torch.randn(10, 3) * 0.01, torch.randn(10, 3) * 0.01 + 5])
    labels = kmeans_types(x, 2, seed=0)
    assert labels.dtype == torch.long and len(set(labels[:10].tolist())) == 1
    assert labels[0] != labels[10]


def test_neighbour_mean_both_paths_match_dense():
    rowptr, cols = neighbour_csr(STAR, 9)
    assert (rowptr[1:] - rowptr[:-1]).tolist() == [5, 1, 1, 1, 1, 2, 2, 1, 0]  # distinct, undirected
    emb = torch.randn(9, 3)
    adj = torch.zeros(9, 9)
    adj[torch.repeat_interleave(torch.arange(9), rowptr[1:] - rowptr[:-1]), cols] = 1
    dense = adj @ emb / adj.sum(1, keepdim=True).clamp(min=1)
    fill = torch.full((3,), 7.0)
    few = torch.tensor([6, 8])                    # a product over the batch's rows (2 of the graph's 14 edges)
    many = torch.tensor([0, 0, 0, 5, 8, 1])        # over the whole graph (the batch's rows hold 18)
    for nodes in (few, many):
        out = neighbour_mean(emb, nodes, rowptr, cols, fill=fill)
        expected = torch.where((adj[nodes].sum(1) > 0).unsqueeze(1), dense[nodes], fill)
        assert torch.allclose(out, expected, atol=1e-6)


def test_cluster_centroids():
    emb = torch.tensor([[0.0, 2.0], [2.0, 0.0], [5.0, 5.0]])
    cent = cluster_centroids(emb, torch.tensor([0, 0, 2]), 3)
    assert torch.allclose(cent, torch.tensor([[1.0, 1.0], [0.0, 0.0], [5.0, 5.0]]))


def test_true_answers_mask_known_facts_in_both_directions():
    truth = TrueAnswers(STAR, 9, 2)
    anchor, rel = torch.tensor([0, 1]), torch.tensor([0, 2])   # (0, r0, ?) and (?, r0, 1) posed as (1, r0+R, ?)
    cand = torch.tensor([[1, 6, 5], [0, 2, 1]])
    assert truth.contains(anchor, rel, cand).tolist() == [[True, False, True], [True, False, False]]
    neg, mask = sample_negatives(anchor, rel, 9, 50, truth, torch.Generator().manual_seed(0))
    assert neg.shape == (2, 50) and torch.equal(mask, ~truth.contains(anchor, rel, neg))
    assert sample_negatives(anchor, rel, 9, 5, None)[1] is None


def test_fitted_difficulty_spans_the_unit_interval_on_umls(tmp_path, monkeypatch):
    """The raw log-mean-rank target spans ~[0, 0.2] on a fitted training set, which left DFS inert;
    the rescaled target makes the fitted ζ use (nearly) the whole range that Eq. 2 maps to β_max."""
    from kgsearch.dans.recipe import DansConfig, DansRecipe
    from kgsearch.data import load

    monkeypatch.setenv("KGSEARCH_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    data = load("umls")
    zeta = DansRecipe.prepare(DansConfig(pretrain_epochs=5), data)["difficulty"]
    assert zeta.min() <= 0.05 and zeta.max() >= 0.95, (float(zeta.min()), float(zeta.max()))
    raw = DansRecipe.prepare(DansConfig(pretrain_epochs=5, difficulty_rescale="none"), data)["difficulty"]
    assert raw.max() - raw.min() < 0.5  # what the rescaling fixes


def test_quantile_rescale_is_uniform_and_keeps_ties_together():
    from kgsearch.dans.difficulty import rescale_target

    out = rescale_target(torch.tensor([0.3, 0.1, 0.1, 0.2]), "quantile")
    assert torch.allclose(out, torch.tensor([0.875, 0.25, 0.25, 0.625]))  # (mean rank - 1/2) / n
    assert torch.allclose(rescale_target(torch.tensor([1.0, 3.0, 2.0]), "minmax"), torch.tensor([0.0, 1.0, 0.5]))


def test_mean_rank_target_reports_progress_over_its_ranked_queries():
    seen = []

    class Bar:
        def __init__(self, what, total):
            seen.append([what, total, 0, False])

        def advance(self, n=1):
            seen[-1][2] += n

        def close(self):
            seen[-1][3] = True

    train = torch.tensor([[1 + i % 11, i % 2, 0] for i in range(40)])   # 80 queries, both directions
    mean_rank_target(build_scorer("transe", 12, 2, 4), train, batch_size=16, max_queries=60, progress=Bar)
    assert len(seen) == 1 and "DAM" in seen[0][0]
    assert seen[0][1] == seen[0][2] == 60 and seen[0][3]                 # the capped count, all advanced, closed
