"""Path-based GNN scorer (kgsearch/models/nbfnet.py): shapes, exact batching, query-edge removal,
entity-permutation equivariance, gradients, the factorised propagation against an edge-wise
reference (DistMult / TransE messages, sum / mean aggregation), progressive = full, and a 2-hop rule
that 2 layers learn and 1 layer cannot."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch_geometric.utils import scatter

from kgsearch.models.nbfnet import NBFNet, RelGraph
from kgsearch.models.nbfnet_progressive import choose_propagation

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors, one thread

N, R = 9, 3


def _triples(seed: int = 0, n: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.stack([torch.randint(0, N, (n,), generator=g), torch.randint(0, R, (n,), generator=g),
                     torch.randint(0, N, (n,), generator=g)], 1)
    return torch.unique(t, dim=0)  # no duplicate triples


PROPAGATIONS = pytest.mark.parametrize("propagation", ["full", "progressive"])
AGGREGATES = pytest.mark.parametrize("aggregate", ["sum", "mean"])
# Every supported (propagation, message, aggregate): progressive takes DistMult only.
VARIANTS = pytest.mark.parametrize("propagation, message, aggregate", [
    (p, m, a) for p in ("full", "progressive") for m in ("distmult", "transe") for a in ("sum", "mean")
    if not (p == "progressive" and m == "transe")])


def _model(triples, layers=3, dim=8, dependent=True, seed=0, propagation="full", message="distmult",
           aggregate="sum") -> NBFNet:
    torch.manual_seed(seed)
    return NBFNet(N, R, dim, layers, triples=triples, dependent=dependent, propagation=propagation,
                  message=message, aggregate=aggregate).double().eval()


def _graph_without(triples, drop: torch.Tensor) -> RelGraph:
    keep = ~(triples == drop).all(1)
    return RelGraph.from_triples(triples[keep], N, R)


@VARIANTS
def test_shapes(propagation, message, aggregate):
    triples = _triples()
    model = _model(triples, propagation=propagation, message=message, aggregate=aggregate)
    anchor, rel = torch.tensor([0, 3, 5]), torch.tensor([1, 4, 2])
    h = model.encode(anchor, rel)
    assert h.shape == (3, N, 8)
    assert model.score(h, rel).shape == (3, N)
    assert model.score(torch.randn(3, 5, 8, dtype=torch.float64), rel).shape == (3, 5)  # generated vectors
    assert model.score_all(anchor, rel).shape == (3, N)
    assert model(anchor, rel, triples[:3, 2]).shape == (3, N)


@VARIANTS
def test_a_batch_scores_as_its_queries_one_by_one(propagation, message, aggregate):
    triples = _triples()
    model = _model(triples, propagation=propagation, message=message, aggregate=aggregate)
    anchor, rel, target = triples[:6, 0], triples[:6, 1] + torch.tensor([0, R] * 3), triples[:6, 2]
    for tgt in (None, target):  # evaluation, and training with each query's own edge removed
        batch = model(anchor, rel, tgt)
        alone = torch.cat([model(anchor[i:i + 1], rel[i:i + 1], None if tgt is None else tgt[i:i + 1])
                           for i in range(6)])
        torch.testing.assert_close(batch, alone, rtol=1e-10, atol=1e-10)


@VARIANTS
@pytest.mark.parametrize("head_query", [False, True])
def test_training_removes_exactly_the_query_edge_and_its_inverse(head_query, propagation, message, aggregate):
    triples = _triples()
    model = _model(triples, propagation=propagation, message=message, aggregate=aggregate)
    h, r, t = triples[4]
    # (h, r, t) as a tail query, or as the head query (t, r + R, ?) with answer h: the same fact.
    anchor, rel, target = (t, r + R, h) if head_query else (h, r, t)
    a, q = anchor.view(1), rel.view(1)
    removed = model(a, q, target.view(1))
    full = model.score_all(a, q)
    without = model.forward(a, q, graph=_graph_without(triples, triples[4]))
    without_other = model.forward(a, q, graph=_graph_without(triples, triples[5]))
    torch.testing.assert_close(removed, without, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(removed, full)
    assert not torch.allclose(removed, without_other)
    # A weight-0 edge is the same as no edge; a target that is no edge of the graph removes nothing.
    weight = (~(triples == triples[4]).all(1)).double().repeat(2)
    torch.testing.assert_close(model.forward(a, q, graph=model.graph.with_weights(weight)), without)
    absent = next(e for e in range(N) if not ((triples[:, 0] == h) & (triples[:, 1] == r) & (triples[:, 2] == e)).any()
                  and not ((triples[:, 0] == e) & (triples[:, 1] == r) & (triples[:, 2] == h)).any())
    torch.testing.assert_close(model(h.view(1), r.view(1), torch.tensor([absent])), model.score_all(h.view(1), r.view(1)))


@VARIANTS
def test_relabelling_entities_permutes_the_scores(propagation, message, aggregate):
    triples = _triples()
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(3))  # old id -> new id
    moved = torch.stack([perm[triples[:, 0]], triples[:, 1], perm[triples[:, 2]]], 1)
    model = _model(triples, propagation=propagation, message=message, aggregate=aggregate)
    # same seed: same parameters (none is tied to an entity id)
    relabelled = _model(moved, propagation=propagation, message=message, aggregate=aggregate)
    anchor, rel = torch.tensor([0, 2, 7]), torch.tensor([0, 4, 2])
    torch.testing.assert_close(relabelled.score_all(perm[anchor], rel)[:, perm], model.score_all(anchor, rel))


@VARIANTS
@pytest.mark.parametrize("dependent", [True, False])
def test_gradients_reach_every_parameter(dependent, propagation, message, aggregate):
    triples = _triples()
    model = _model(triples, dependent=dependent, propagation=propagation, message=message,
                   aggregate=aggregate).train()
    anchor, rel, target = triples[:8, 0], triples[:8, 1], triples[:8, 2]
    F.cross_entropy(model(anchor, rel, target), target).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_factorised_layer_equals_edgewise_message_passing():
    # Reference: every edge's DistMult message x_j ⊙ w_r(q) summed into its destination with PyG's scatter.
    triples = _triples()
    model = _model(triples, layers=2)
    g = model.graph
    anchor, rel = torch.tensor([1, 4]), torch.tensor([2, 3])
    q = model.query(rel)
    b = len(anchor)
    x = torch.zeros(N, b, 8, dtype=torch.float64)
    x[anchor, torch.arange(b)] = q
    for layer in model.layers:
        w = layer.relation_vectors(q)                               # [2R, B, d]
        msg = x[g.src] * w[g.rel]                                   # [E, B, d]
        agg = scatter(msg, g.dst, dim=0, dim_size=N, reduce="sum")
        agg[anchor, torch.arange(b)] += q                           # boundary condition
        x = x + F.relu(layer.norm(layer.self_weight(x) + layer.agg_weight(agg)))
    torch.testing.assert_close(model.encode(anchor, rel), x.transpose(0, 1))


@pytest.mark.parametrize("message", ["distmult", "transe"])
@AGGREGATES
@pytest.mark.parametrize("weighted", [False, True])
def test_factorised_layers_equal_per_edge_messages_with_query_edges_removed(message, aggregate, weighted):
    # Reference: per query its own graph (edge weights, its edge and inverse at weight 0), every edge's
    # message summed into its destination with index_add, mean dividing by the summed weights into each
    # entity (0 where none), then the boundary q_b at (a_b, b).
    triples = _triples()
    model = _model(triples, layers=2, message=message, aggregate=aggregate)
    g = model.graph
    e = torch.arange(g.num_edges)
    weight = (e % 3).double() / 2 if weighted else torch.ones(g.num_edges, dtype=torch.float64)  # 0, 0.5, 1
    if weighted:
        weight[g.dst == 8] = 0.0                                      # entity 8: in-degree 0
    graph = g.with_weights(weight)
    h, r, t = triples[[0, 3, 7, 11]].unbind(1)
    head = torch.tensor([False, True, False, True])                 # (t, r + R, ?) with answer h
    anchor, rel, target = torch.where(head, t, h), r + R * head, torch.where(head, h, t)
    b = len(anchor)
    inv = (rel + R) % (2 * R)
    own = ((g.src[:, None] == anchor) & (g.rel[:, None] == rel) & (g.dst[:, None] == target)) | \
          ((g.src[:, None] == target) & (g.rel[:, None] == inv) & (g.dst[:, None] == anchor))   # [E, B]
    assert (own.sum(0) == 2).all()                                  # each query's edge and its inverse exist
    w_eb = weight[:, None] * (~own).double()                          # [E, B]: query b's graph
    degree = torch.zeros(N, b, dtype=torch.float64).index_add_(0, g.dst, w_eb)
    assert (degree[anchor, torch.arange(b)] > 1).any() and (degree[target, torch.arange(b)] > 0).all()
    assert (degree == 0).any() == weighted
    q = model.query(rel)
    x = torch.zeros(N, b, 8, dtype=torch.float64)
    x[anchor, torch.arange(b)] = q
    for layer in model.layers:
        w = layer.relation_vectors(q)                                 # [2R, B, d]
        msg = x[g.src] * w[g.rel] if message == "distmult" else x[g.src] + w[g.rel]
        agg = torch.zeros_like(x).index_add_(0, g.dst, msg * w_eb[..., None])
        if aggregate == "mean":
            agg = torch.where(degree[..., None] > 0, agg / degree[..., None], 0.0)
        agg[anchor, torch.arange(b)] += q                             # boundary condition, after the mean
        x = x + F.relu(layer.norm(layer.self_weight(x) + layer.agg_weight(agg)))
    torch.testing.assert_close(model.encode(anchor, rel, graph, target), x.transpose(0, 1), rtol=1e-10, atol=1e-10)


@PROPAGATIONS
def test_mean_gives_agg_zero_to_an_entity_whose_only_in_edges_are_the_query_edges(propagation):
    # The self-loop (3, r1, 3) is entity 3's only fact: query (3, r1, ?) with answer 3 removes both its
    # edges, 3's only in-edges. 0.1 + 0.2 − 0.1 − 0.2 is not 0 in floating point; agg must still be 0.
    triples = torch.tensor([[3, 1, 3], [0, 0, 1], [1, 2, 2]])
    model = _model(triples, layers=2, propagation=propagation, aggregate="mean")
    g = model.graph
    weight = torch.ones(g.num_edges, dtype=torch.float64)
    weight[(g.src == 3) & (g.rel == 1)], weight[(g.src == 3) & (g.rel == 1 + R)] = 0.1, 0.2  # the loop's edges
    removed = model.encode(torch.tensor([3]), torch.tensor([1]), g.with_weights(weight), torch.tensor([3]))
    without = model.encode(torch.tensor([3]), torch.tensor([1]), _graph_without(triples, triples[0]))
    torch.testing.assert_close(removed, without, rtol=1e-10, atol=1e-10)


@PROPAGATIONS
@AGGREGATES
def test_entities_beyond_reach_keep_a_zero_state(propagation, aggregate):
    # A path 0 -> 1 -> 2 -> 3 -> 4 plus an island 5 - 6: from 0 with 2 layers only 0, 1, 2 are reached.
    triples = torch.tensor([[0, 0, 1], [1, 1, 2], [2, 0, 3], [3, 2, 4], [5, 1, 6]])
    model = _model(triples, layers=2, propagation=propagation, aggregate=aggregate)
    h = model.encode(torch.tensor([0]), torch.tensor([0]))[0]
    assert (h[:3].abs().sum(1) > 0).all()
    assert (h[3:] == 0).all()
    # TransE messages from a zero state are w_r: every entity with an in-edge leaves zero (no frontier).
    transe = _model(triples, layers=2, message="transe", aggregate=aggregate)
    assert (transe.encode(torch.tensor([0]), torch.tensor([0]))[0][3:7].abs().sum(1) > 0).all()  # 7, 8: no edges


def _two_hop_world(chains: int = 12):
    """x_i -r0-> y_i -r1-> z_i and a distractor y_i -r2-> w_i; the fact to learn is (x_i, r3, z_i)."""
    x, y, z, w = (torch.arange(chains) + k * chains for k in range(4))
    rel = lambda k: torch.full((chains,), k)  # noqa: E731
    paths = torch.cat([torch.stack([x, rel(0), y], 1), torch.stack([y, rel(1), z], 1),
                       torch.stack([y, rel(2), w], 1)])
    facts = torch.stack([x, rel(3), z], 1)
    return 4 * chains, paths, facts[:8], facts[8:]


def _train_and_rank(layers: int) -> torch.Tensor:
    n, paths, train, test = _two_hop_world()
    torch.manual_seed(0)
    model = NBFNet(n, 4, 16, layers, triples=torch.cat([paths, train]), propagation="full")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(train[:, 0], train[:, 1], train[:, 2]), train[:, 2])  # query edges removed
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    scores = model.score_all(test[:, 0], test[:, 1])  # held-out facts: not in the graph
    true = scores.gather(1, test[:, 2:3])
    return 1 + (scores > true).sum(1) + ((scores == true).sum(1) - 1) / 2  # ties ranked in the middle


def test_a_two_hop_rule_needs_two_layers():
    assert (_train_and_rank(2) == 1).all()
    assert (_train_and_rank(1) > 10).all()  # z_i is out of 1-hop reach: tied with every other unreached entity


@AGGREGATES
@pytest.mark.parametrize("dependent", [True, False])
def test_progressive_propagation_equals_the_full_pass(dependent, aggregate):
    triples = _triples(seed=1, n=14)  # sparse: some entities are out of 2-hop reach
    full = _model(triples, layers=3, dependent=dependent, aggregate=aggregate)
    prog = _model(triples, layers=3, dependent=dependent, propagation="progressive",
                  aggregate=aggregate)  # same seed, same weights
    anchor, rel, target = triples[:6, 0], triples[:6, 1] + torch.tensor([0, R] * 3), triples[:6, 2]
    e = torch.arange(full.graph.num_edges)
    dropped = full.graph.with_weights((e % 3 != 0).double())       # 0/1 weights: edges dropped
    weighted = full.graph.with_weights((e % 3).double() / 2)       # general weights 0, 0.5, 1
    for tgt in (None, target):
        for graph in (None, dropped, weighted):
            torch.testing.assert_close(prog.encode(anchor, rel, graph, tgt), full.encode(anchor, rel, graph, tgt),
                                       rtol=1e-10, atol=1e-10)
    assert (prog.encode(anchor, rel) == 0).all(-1).any()  # the test graph really leaves entities unreached


def test_auto_propagation_picks_full_on_a_dense_graph_and_progressive_on_a_sparse_one():
    n = 12
    src, dst = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    complete = torch.stack([src.flatten(), torch.zeros(n * n, dtype=torch.long), dst.flatten()], 1)
    path = torch.stack([torch.arange(n - 1), torch.zeros(n - 1, dtype=torch.long), torch.arange(1, n)], 1)
    dense, sparse = (RelGraph.from_triples(t, n, 1) for t in (complete, path))
    assert choose_propagation(dense, 3) == "full"
    assert choose_propagation(sparse, 3) == "progressive"
    assert NBFNet(n, 1, 4, 3, triples=complete).propagation == "full"
    assert NBFNet(n, 1, 4, 3, triples=path).propagation == "progressive"


def test_transe_messages_refuse_progressive_propagation_and_auto_picks_full():
    n = 12
    path = torch.stack([torch.arange(n - 1), torch.zeros(n - 1, dtype=torch.long), torch.arange(1, n)], 1)
    with pytest.raises(ValueError, match="progressive.*distmult"):
        NBFNet(n, 1, 4, 3, triples=path, message="transe", propagation="progressive")
    assert NBFNet(n, 1, 4, 3, triples=path).propagation == "progressive"  # what auto picks for DistMult here
    assert NBFNet(n, 1, 4, 3, triples=path, message="transe").propagation == "full"
    assert NBFNet(n, 1, 4, 3, message="transe").propagation == "full"  # also before any graph is set
    late = NBFNet(n, 1, 4, 3, message="transe")
    late.set_graph(path)
    assert late.propagation == "full"
    assert NBFNet(n, 1, 4, 3, triples=path, aggregate="mean").propagation == "progressive"  # mean: exact there


@pytest.mark.parametrize("keyword, allowed", [("message", "'distmult' or 'transe'"), ("aggregate", "'sum' or 'mean'")])
def test_unknown_message_or_aggregate_is_refused(keyword, allowed):
    with pytest.raises(ValueError, match=f"{keyword} must be {allowed}, not 'max'"):
        NBFNet(N, R, 4, 2, **{keyword: "max"})
