"""DANS-KGC on the path-based GNN base (`scorer: nbfnet`): the recipe contract, the per-query condition,
edge dropout and the generated candidates (kgsearch/dans/model.py, kgsearch/models/nbfnet.py)."""

from __future__ import annotations

import pytest
import torch

from contract import RecipeContract
from kgsearch.config import ConfigError
from kgsearch.dans import model as dans_model
from kgsearch.dans.recipe import DansRecipe
from kgsearch.models.nbfnet import NBFNet
from test_dans_recipe import TINY, make_config, periodic_dataset

GNN = dict(TINY, scorer="nbfnet", dim=8, layers=3, lr=0.01, edge_drop=0.25)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KGSEARCH_CACHE", str(tmp_path / "cache"))


def gnn_recipe(**overrides) -> DansRecipe:
    config = make_config(**{**GNN, **overrides})
    data = periodic_dataset()
    return DansRecipe(config, data, DansRecipe.prepare(config, data))


class TestDansGnnContract(RecipeContract):
    recipe = "dans"

    def make_dataset(self):
        return periodic_dataset()

    def params(self):
        return dict(GNN)


def test_the_config_names_the_gnn_and_checks_its_knobs():
    assert isinstance(gnn_recipe(dans=False).model.scorer, NBFNet)
    for key, bad in (("edge_drop", 1.0), ("layers", 0), ("gnn_dropout", -0.1), ("scorer", "gnn"),
                     ("message", "max"), ("aggregate", "pna")):
        with pytest.raises(ConfigError, match=key):
            make_config(**{**GNN, key: bad})
    with pytest.raises(ConfigError, match="transe.*full"):
        make_config(**{**GNN, "message": "transe", "propagation": "progressive"})


def test_one_forward_gives_every_parameter_a_gradient():
    recipe = gnn_recipe()
    q = recipe.queries[:10]
    recipe.forward_model(q[:, 0], q[:, 1], q[:, 2], tau=0.5, generator=recipe.noise)["loss"].backward()
    assert not [n for n, p in recipe.model.named_parameters() if p.grad is None]


def test_generated_candidates_enter_the_softmax_scored_by_the_gnn(monkeypatch):
    recipe = gnn_recipe(gen_fraction=1.0)
    q = recipe.queries[:8]
    seen = []
    score = NBFNet.score

    def spy(self, h, rel):
        seen.append(h.shape)
        return score(self, h, rel)

    monkeypatch.setattr(NBFNet, "score", spy)
    out = recipe.model(q[:, 0], q[:, 1], q[:, 2], tau=1.0, generator=recipe.noise)
    n, d, m = recipe.dataset.num_entities, recipe.config.dim, recipe.config.gen_negatives
    assert seen == [torch.Size([8, n, d]), torch.Size([8, m, d])]  # all entities, then x̂ in h_q space
    assert out["kgc1"] > out["kgc2"]  # extra candidates can only add to the cross-entropy


def test_training_batches_drop_edges_and_evaluation_uses_the_whole_graph(monkeypatch):
    recipe = gnn_recipe(dans=False, edge_drop=0.5)
    graphs = []
    encode = NBFNet.encode

    def spy(self, anchor, rel, graph=None, target=None):
        graphs.append(graph if graph is not None else self.graph)
        return encode(self, anchor, rel, graph, target)

    monkeypatch.setattr(NBFNet, "encode", spy)
    recipe.train_epoch(1)
    kept = torch.stack([g.weight for g in graphs]).mean(0)
    assert 0.2 < float(kept.mean()) < 0.8 and not torch.equal(graphs[0].weight, graphs[1].weight)
    graphs.clear()
    recipe.evaluate("valid")
    assert graphs and all(bool((g.weight == 1).all()) for g in graphs)


def test_the_gnn_condition_leaves_out_the_answer():
    """Changing h_q(answer) changes x_0 and nothing in the condition (neither the type centroid nor x_nbr)."""
    model = gnn_recipe(num_clusters=1).model  # one type: the answer would be in its anchor's centroid
    b, n, d = 2, model.scorer.num_entities, model.config.dim
    anchor, rel, target = torch.tensor([0, 4]), torch.tensor([0, 1]), torch.tensor([1, 7])
    h = torch.randn(b, n, d)
    moved = h.clone()
    moved[torch.arange(b), target] += 5.0
    (m1, s1, x1, c1), (m2, s2, x2, c2) = (model._gnn_condition(x, anchor, rel, target) for x in (h, moved))
    ccd = slice(2 * d, 4 * d)  # [h_q(anchor); q; centroid; x_nbr], each standardised but q
    unit = lambda cond, mean, std: cond[:, ccd].reshape(b, 2, d) * std + mean  # noqa: E731
    assert torch.allclose(unit(c1, m1, s1), unit(c2, m2, s2), atol=1e-4)
    assert not torch.allclose(x1 * s1 + m1, x2 * s2 + m2)


def test_the_gnn_neighbour_condition_is_the_mean_over_the_anchors_other_neighbours():
    model = gnn_recipe().model
    n, d = model.scorer.num_entities, model.config.dim
    h = torch.randn(1, n, d)
    anchor, target = torch.tensor([0]), torch.tensor([1])
    mean, std, _, cond = model._gnn_condition(h, anchor, torch.tensor([0]), target)
    x_nbr = cond[0, -d:] * std + mean
    nbrs = [e for e in model.cols[model.rowptr[0]:model.rowptr[1]].tolist() if e != 1]
    assert nbrs and torch.allclose(x_nbr, h[0, nbrs].mean(0), atol=1e-5)


def test_unreached_entities_do_not_enter_the_statistics():
    model = gnn_recipe().model
    n, d = model.scorer.num_entities, model.config.dim
    h = torch.zeros(1, n, d)
    h[0, :4] = torch.randn(4, d) + 3.0  # four reached entities, the rest zero (beyond reach)
    mean, std, _, _ = model._gnn_condition(h, torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    ref_mean, ref_std = dans_model.column_stats(h[0, :4])
    assert torch.allclose(mean, ref_mean) and torch.allclose(std, ref_std)
