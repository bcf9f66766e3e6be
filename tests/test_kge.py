"""Base scorers: hand-computed distances, broadcasting, and distance() == −score_all() both ways."""

from __future__ import annotations

import math

import pytest
import torch

from kgsearch.errors import KGSearchError
from kgsearch.models import SCORERS, build_scorer, kge


def _set(model, entity, relation):
    with torch.no_grad():
        model.entity.copy_(torch.tensor(entity, dtype=torch.float32))
        model.relation.copy_(torch.tensor(relation, dtype=torch.float32))
    return model


def test_hand_computed_distances():
    transe = _set(build_scorer("transe", 2, 1, 2), [[1.0, 2.0], [1.0, 1.0]], [[0.5, -1.0]])
    # |1 + .5 − 1| + |2 − 1 − 1| = 0.5
    assert transe.query_distance(torch.tensor([0]), torch.tensor([0]), transe.entity[[1]]).item() == \
        pytest.approx(0.5)
    # Head query (?, r, e1) with candidate e0: same triple, same distance.
    assert transe.score_all(torch.tensor([1]), torch.tensor([1]))[0, 0].item() == pytest.approx(-0.5)

    rotate = build_scorer("rotate", 2, 1, 1)
    quarter = rotate.embedding_range / 2  # raw value that maps to a phase of π/2
    _set(rotate, [[1.0, 0.0], [0.0, 1.0]], [[quarter]])  # e0 = 1, e1 = i, rotation by i
    assert rotate.relation_vector(torch.tensor([0])).item() == pytest.approx(math.pi / 2)
    assert rotate.query_distance(torch.tensor([0]), torch.tensor([0]), rotate.entity[[1]]).item() == \
        pytest.approx(0.0, abs=1e-6)
    # |1·i − 1| = √2
    assert rotate.query_distance(torch.tensor([0]), torch.tensor([0]), rotate.entity[[0]]).item() == \
        pytest.approx(math.sqrt(2), rel=1e-6)

    distmult = _set(build_scorer("distmult", 2, 1, 2), [[1.0, 2.0], [3.0, -1.0]], [[2.0, 0.5]])
    assert distmult.query_distance(torch.tensor([0]), torch.tensor([0]), distmult.entity[[1]]).item() == \
        pytest.approx(-(1 * 2 * 3 + 2 * 0.5 * -1))

    complex_ = _set(build_scorer("complex", 2, 1, 1), [[1.0, 1.0], [0.0, 2.0]], [[0.0, 1.0]])
    # Re((1+i)·i·conj(2i)) = Re((−1+i)(−2i)) = Re(2 + 2i) = 2
    assert complex_.query_distance(torch.tensor([0]), torch.tensor([0]), complex_.entity[[1]]).item() == \
        pytest.approx(-2.0)


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_distance_broadcasts_generated_tails(name):
    torch.manual_seed(0)
    model = build_scorer(name, 7, 3, 4)
    h = model.entity[:2].unsqueeze(1)                                # [B, 1, D]
    r = model.relation_vector(torch.tensor([0, 2])).unsqueeze(1)     # [B, 1, Dr]
    generated = torch.randn(2, 5, model.entity_dim)                  # [B, n, D] embeddings, not ids
    d = model.distance(h, r, generated)
    assert d.shape == (2, 5)
    assert torch.allclose(d[1, 3], model.distance(h[1, 0], r[1, 0], generated[1, 3]))


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_score_all_agrees_with_distance_in_both_directions(name):
    torch.manual_seed(1)
    n_ent, n_rel = 9, 4
    model = build_scorer(name, n_ent, n_rel, 6)
    anchor = torch.tensor([0, 3, 8, 5])
    rel = torch.tensor([0, 1, 3, 2])
    ent, rv = model.entity, model.relation_vector(rel)
    with torch.no_grad():
        tail = model.score_all(anchor, rel)                   # (anchor, r, ?)
        head = model.score_all(anchor, rel + n_rel)           # (?, r, anchor)
        for i in range(len(anchor)):
            for e in range(n_ent):
                d_tail = model.distance(ent[anchor[i]], rv[i], ent[e])
                d_head = model.distance(ent[e], rv[i], ent[anchor[i]])  # the original-direction triple
                assert tail[i, e].item() == pytest.approx(-d_tail.item(), abs=1e-4)
                assert head[i, e].item() == pytest.approx(-d_head.item(), abs=1e-4)


def test_score_all_chunking_does_not_change_scores(monkeypatch):
    torch.manual_seed(2)
    model = build_scorer("rotate", 11, 2, 3)
    anchor, rel = torch.tensor([1, 2, 3]), torch.tensor([0, 3, 1])
    with torch.no_grad():
        full = model.score_all(anchor, rel)
        monkeypatch.setattr(kge, "_CHUNK_ELEMENTS", 7)  # a few entities per chunk
        chunked = model.score_all(anchor, rel)
    assert torch.allclose(full, chunked)


def test_dimensions_and_registry():
    assert build_scorer("rotate", 3, 2, 5).entity.shape == (3, 10)   # complex dim -> 2·dim reals
    assert build_scorer("rotate", 3, 2, 5).relation.shape == (2, 5)  # phases
    assert build_scorer("complex", 3, 2, 5).relation.shape == (2, 10)
    assert build_scorer("transe", 3, 2, 5).entity.shape == (3, 5)
    with pytest.raises(KGSearchError, match="unknown scorer 'quate'"):
        build_scorer("quate", 3, 2, 5)


def test_rotate_gradient_is_finite_when_query_hits_candidate():
    model = build_scorer("rotate", 2, 1, 2)
    with torch.no_grad():
        model.relation.zero_()  # identity rotation: (e0, r, e0) has distance exactly 0
    d = model.query_distance(torch.tensor([0]), torch.tensor([0]), model.entity[[0]])
    d.sum().backward()
    assert d.item() == 0.0 and torch.isfinite(model.entity.grad).all()
