"""Progressive propagation for the path-based GNN (kgsearch/models/nbfnet.py): only the anchor's frontier.

The layers map a zero state to zero, so after l layers only entities within l hops of the anchor can
be non-zero; this pass keeps exactly those (query, entity) pairs, the RED-GNN / AdaProp way, and gives
the same h_q as the full pass over every entity (tests/test_nbfnet.py checks it), for sum or mean
aggregation of DistMult messages (a TransE message from a zero state is w_r, not zero: not supported).
Work per query is the edges leaving its (l−1)-hop set at layer l instead of every edge at every
layer: on Family (E = 46,966; mean 1/2/3/4-hop sets of 10/33/83/172 entities) far less; on UMLS (every
entity within 2 hops) none, so there the full pass with its factorised sparse matmul is the faster one.

The states are ragged, one row per reached (query b, entity e) pair, with key b·N + e. A step expands
each pair's out-edges through the source CSR (`RelGraph.out_ptr`), drops the query's own edges and
weight-0 edges, gathers x_j ⊙ w_r(q) per edge and sums it into the destination pairs with
`index_add_`. The reached set is a [B·N] boolean mask (no sort): its cumulative sum numbers the pairs.
Mean divides by the in-degree in the whole query graph, unreached sources included (as the full pass
does), so it comes from `inverse_in_degree`, not from the expanded edges.
No pruning of the frontier (AdaProp's top-k) is applied: the exact pass fits the budget measured in
docs/benchmarks_dans.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from kgsearch.models.nbfnet import BellmanFordLayer, RelGraph


def _expand(keys: torch.Tensor, graph: "RelGraph", n: int):
    """Every out-edge of every active pair: (index of its pair, edge id)."""
    node = keys % n
    start, deg = graph.out_ptr[node], graph.out_ptr[node + 1] - graph.out_ptr[node]
    pair = torch.repeat_interleave(torch.arange(len(keys), device=keys.device), deg)
    first = torch.repeat_interleave(deg.cumsum(0) - deg, deg)
    offset = torch.arange(len(pair), device=keys.device) - first
    return pair, graph.out_edges[start[pair] + offset]


def progressive_encode(layers: "list[BellmanFordLayer]", query: torch.Tensor, anchor: torch.Tensor,
                       graph: "RelGraph", removed_ids: tuple[torch.Tensor, torch.Tensor] | None,
                       inv_degree: torch.Tensor | None = None) -> torch.Tensor:
    """h_q [B, N, d] (zero where unreached) for query vectors [B, d] at anchors [B].

    `removed_ids`: per query the edge ids of its own edge and of the inverse (−1: none) left out of
    its graph, as `NBFNet.encode(..., target=)` asks. `inv_degree` [N, B] (mean aggregation):
    `inverse_in_degree` of that graph; None for sum.
    """
    if any(layer.message != "distmult" for layer in layers):
        raise ValueError("progressive propagation needs message='distmult' (a zero state must stay zero)")
    n, b, d = graph.num_entities, len(anchor), query.shape[1]
    r2 = 2 * graph.num_relations
    boundary_key = torch.arange(b, device=anchor.device) * n + anchor
    # 0/1 weights (present / dropped) need no multiply once weight-0 edges are skipped: it was a quarter
    # of the per-edge multiplies, the largest cost of this pass on Family.
    unit = bool(((graph.weight == 0) | (graph.weight == 1)).all())
    if inv_degree is not None:
        inv_degree = inv_degree.t().reshape(b * n)  # by key b·N + e
    keys, x = boundary_key, query  # layer 0: one pair per query, (b, a_b) with state q_b (sorted: b-major)
    for layer in layers:
        pair, edge = _expand(keys, graph, n)
        qb = keys[pair] // n
        weight = graph.weight[edge]
        if removed_ids is not None:
            weight = weight * ((edge != removed_ids[0][qb]) & (edge != removed_ids[1][qb])).to(weight.dtype)
        live = weight != 0
        pair, edge, qb, weight = pair[live], edge[live], qb[live], weight[live]
        dst_key = qb * n + graph.dst[edge]
        reached = torch.zeros(b * n, dtype=torch.bool, device=anchor.device)
        reached[keys] = True
        reached[dst_key] = True
        number = reached.cumsum(0) - 1  # pair index of each reached key
        new_keys = reached.nonzero().squeeze(1)
        w = layer.relation_vectors(query).transpose(0, 1).reshape(b * r2, d)  # [B·2R, d]
        msg = x.index_select(0, pair) * w.index_select(0, qb * r2 + graph.rel[edge])
        if not unit:
            msg = msg * weight[:, None]
        agg = msg.new_zeros(len(new_keys), d).index_add_(0, number[dst_key], msg)
        if inv_degree is not None:  # mean, before the boundary term (no message)
            agg = agg * inv_degree[new_keys, None]
        agg = agg.index_add(0, number[boundary_key], query)  # boundary condition q_b at (a_b, b)
        old = x.new_zeros(len(new_keys), d).index_copy(0, number[keys], x)
        x, keys = layer.update(old, agg), new_keys
    return x.new_zeros(b * n, d).index_copy(0, keys, x).view(b, n, d)


def frontier_edges(graph: "RelGraph", layers: int, samples: int = 256, seed: int = 0) -> float:
    """Mean number of edges a progressive pass expands per query: Σ_l out-edges of the l-hop set, l < layers,
    over `samples` seeded anchors (the graph with all its edges)."""
    n = graph.num_entities
    anchors = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:samples]
    reached = torch.zeros(len(anchors), n)
    reached[torch.arange(len(anchors)), anchors] = 1.0
    out_degree = (graph.out_ptr[1:] - graph.out_ptr[:-1]).float()
    step = torch.sparse_coo_tensor(torch.stack([graph.src, graph.dst]), torch.ones(graph.num_edges), (n, n),
                                   check_invariants=False)
    total = 0.0
    for layer in range(layers):
        total += float((reached @ out_degree).sum())
        if layer + 1 < layers:
            reached = ((reached + torch.sparse.mm(step.t(), reached.t()).t()) > 0).float()
    return total / len(anchors)


def choose_propagation(graph: "RelGraph", layers: int) -> str:
    """"progressive" where it expands fewer edge rows per query than the full pass's `layers` × P pair
    rows, else "full": a rough proxy (per row the two cost alike in bench/nbfnet_umls.py
    --compare-kernels) that ranks the measured cases right. UMLS, 6 layers: 48k frontier edges
    against 9.4k pair rows -> full (measured 9× faster); Family: 17.7k against 126k -> progressive
    (measured 7.9× faster)."""
    return "progressive" if frontier_edges(graph, layers) < layers * len(graph.pair_rel) else "full"
