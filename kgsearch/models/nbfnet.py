"""Path-based GNN base scorer: NBFNet-style generalized Bellman–Ford (Zhu et al. 2021).

For a batch of queries (anchor a_b, relation q_b ∈ [0, 2R)) the boundary state is the query vector
q_b = query[q_b] at a_b and zero elsewhere; each of L layers computes, for every entity i,

    agg_i = Σ_{(j, r, i) ∈ G} x_j ⊙ w_r(q_b) + boundary_i          (DistMult message, sum aggregation)
    x_i  ← x_i + relu(LN(W_self x_i + W_agg agg_i))                   (residual + layer norm)

over the training graph with inverse edges (relation r + R); w_r is a projection of the query vector
per layer (`dependent=True`, NBFNet's query-conditioned relations) or a free table per layer. The
output h_q(e) = x_L(e) ∈ R^d is the representation DANS works in; S(e) = MLP([h_q(e); q]).
`message="transe"` sends x_j + w_r(q_b) instead; `aggregate="mean"` divides the messages into i by i's
weighted in-degree in the query's graph (in-degree 0: agg 0) before the boundary term is added.

How the propagation is computed (one layer's message passing, forward + backward, B = 64 queries,
d = 32, one thread on this 2-core CPU; `python bench/nbfnet_umls.py --compare-kernels`): sum
aggregation factorises over the graph's distinct (relation, destination) pairs,
Σ_r w_r ⊙ (Σ_{j:(j,r,i)} x_j), so the inner sum is one sparse CSR matmul A [P, N] @ X [N, B·d] and
only P rows, not E, ever meet a relation vector. UMLS: E = 10,654 edges, P = 1,569 pairs, 15 ms
against 301 ms for PyG's `MessagePassing` (gather x_j, multiply, scatter-add over E rows) and 285 ms
for the same by hand with `index_select` / `index_add_`; Family (E = 46,966, P = 21,007): 643 ms
against 1,412 ms and 1,245 ms. Hence torch's sparse CSR matmul rather than PyG's scatter.
PNA (max / min / std) does not factorise and would need that E-row message tensor (≈ 20× the cost
on UMLS), hence sum. TransE messages factorise too, Σ_j w_e (x_j + w_r) = (Σ_j w_e x_j) + (Σ_j w_e) w_r
(the pair weight sums adj @ 1, once per encode), and mean is the sum times a per-(entity, query) 1/degree.

Query edge removal (NBFNet's `remove_easy_edges`): while training, (a, q, t) and its inverse
(t, q⁻¹, a) are removed from query b's graph only. With sum aggregation that is exact and cheap: their
two messages are subtracted from agg at (t, b) and (a, b), B·d numbers per layer instead of a new
graph per query, so a batch scores exactly as its queries one by one; with mean their weights also
leave the two in-degrees.

Every layer maps a zero state to zero (no biases in W or the layer norm): an entity the query cannot
reach within L hops keeps h_q = 0, Bellman–Ford's "unreachable". The score MLP gives those entities
one learned per-query logit. So propagating only over the anchor's growing frontier
(`propagation="progressive"`, kgsearch/models/nbfnet_progressive.py) gives the same numbers as the
full pass, at a fraction of its cost on sparse graphs such as Family; `"auto"` (the default) picks
the cheaper of the two for the training graph. A TransE message from a zero state is w_r, not zero, so
unreached entities do not stay zero: with `message="transe"` progressive is refused and "auto" is "full".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from kgsearch.models.nbfnet_progressive import choose_propagation, progressive_encode


def csr_tensor(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape) -> torch.Tensor:
    with warnings.catch_warnings():  # torch warns that sparse CSR is "beta" on every construction
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, tuple(shape), check_invariants=False)


def _csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]):
    """CSR matrix and the permutation that puts edge values in its order (so new weights reuse the structure)."""
    order = torch.argsort(rows * shape[1] + cols)
    crow = torch.zeros(shape[0] + 1, dtype=torch.long)
    crow[1:] = torch.bincount(rows, minlength=shape[0]).cumsum(0)
    return csr_tensor(crow, cols[order], values[order], shape), order


@dataclass(frozen=True)
class RelGraph:
    """A multi-relational graph with inverse edges, in the pair-factorised form the layers use.

    Edges (src, rel, dst), rel ∈ [0, 2R): the n distinct triples in sorted order, then their n
    inverses in the same order. `adj` [P, N] sums sources into (relation, destination) pairs
    (`pair_rel`, `pair_dst`), `adj_t` is its transpose for the backward pass. `weight` [E] is each
    edge's weight (1, or 0 for an edge dropped from this graph).
    """

    num_entities: int
    num_relations: int
    src: torch.Tensor
    rel: torch.Tensor
    dst: torch.Tensor
    weight: torch.Tensor
    pair_rel: torch.Tensor
    pair_dst: torch.Tensor
    adj: torch.Tensor
    adj_t: torch.Tensor
    order: torch.Tensor     # edge positions in adj's value order
    order_t: torch.Tensor   # ... in adj_t's
    keys: torch.Tensor      # sorted edge keys (src·2R + rel)·N + dst, for removing query edges
    key_edge: torch.Tensor  # edge id of each sorted key
    out_ptr: torch.Tensor   # [N + 1] CSR by source over `out_edges` (progressive propagation)
    out_edges: torch.Tensor  # edge ids sorted by source

    @classmethod
    def from_triples(cls, triples: torch.Tensor, num_entities: int, num_relations: int) -> "RelGraph":
        """Graph of the distinct (h, r, t) triples [n, 3] plus their inverses (t, r + R, h)."""
        h, r, t = torch.unique(triples.long(), dim=0).unbind(1)  # a fact listed twice is one edge
        src, rel, dst = torch.cat([h, t]), torch.cat([r, r + num_relations]), torch.cat([t, h])
        n = num_entities
        pairs, pair_of_edge = torch.unique(rel * n + dst, return_inverse=True)
        p = len(pairs)
        weight = torch.ones(len(src))
        adj, order = _csr(pair_of_edge, src, weight, (p, n))
        adj_t, order_t = _csr(src, pair_of_edge, weight, (n, p))
        keys, key_edge = torch.sort((src * (2 * num_relations) + rel) * n + dst)
        out_ptr = torch.zeros(n + 1, dtype=torch.long)
        out_ptr[1:] = torch.bincount(src, minlength=n).cumsum(0)
        return cls(n, num_relations, src, rel, dst, weight, pairs // n, pairs % n, adj, adj_t,
                   order, order_t, keys, key_edge, out_ptr, torch.argsort(src, stable=True))

    @property
    def num_edges(self) -> int:
        return len(self.src)

    def with_weights(self, weight: torch.Tensor) -> "RelGraph":
        """The same graph with new edge weights [E] (0 drops an edge); the CSR structure is shared."""
        if weight.shape != self.weight.shape:
            raise ValueError(f"expected {self.num_edges} edge weights, got {tuple(weight.shape)}")
        adj = csr_tensor(self.adj.crow_indices(), self.adj.col_indices(), weight[self.order], self.adj.shape)
        adj_t = csr_tensor(self.adj_t.crow_indices(), self.adj_t.col_indices(), weight[self.order_t],
                            self.adj_t.shape)
        return replace(self, weight=weight, adj=adj, adj_t=adj_t)

    def to(self, device: torch.device | str) -> "RelGraph":
        """This graph on `device` (every tensor field moved)."""
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return replace(self, **moved)

    def edge_ids(self, src: torch.Tensor, rel: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Id of each edge (src, rel, dst) in this graph, −1 where there is none."""
        key = (src * (2 * self.num_relations) + rel) * self.num_entities + dst
        pos = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        return torch.where(self.keys[pos] == key, self.key_edge[pos], -1)

    def edge_weight(self, src: torch.Tensor, rel: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """Weight of each edge (src, rel, dst) in this graph, 0 where there is none."""
        ids = self.edge_ids(src, rel, dst)
        return torch.where(ids >= 0, self.weight[ids.clamp(min=0)], torch.zeros((), dtype=self.weight.dtype))


MESSAGES, AGGREGATES = ("distmult", "transe"), ("sum", "mean")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be " + " or ".join(map(repr, allowed)) + f", not {value!r}")


def pair_weights(graph: RelGraph) -> torch.Tensor:
    """[P] the summed weight of each (relation, destination) pair's edges (adj @ 1): TransE's Σ_j w_e."""
    return torch.sparse.mm(graph.adj, graph.weight.new_ones(graph.num_entities, 1)).squeeze(1)


def inverse_in_degree(graph: RelGraph, b: int, removed: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
    """[N, B] 1 / (weighted in-degree of entity i in query b's graph), 0 where no edge of weight ≠ 0 enters i.

    `removed` = (a, q, t, q⁻¹, w_fwd, w_inv) as `BellmanFordLayer.forward` takes it: query b's graph
    lacks a_b -> t_b and t_b -> a_b. The count of live edges decides "in-degree 0", not the weight sum,
    which the subtraction can leave a rounding error above 0 for weights such as 0.1.
    """
    edge = torch.stack([graph.weight, (graph.weight != 0).to(graph.weight.dtype)], 1)  # (weight, count)
    deg = edge.new_zeros(graph.num_entities, 2).index_add_(0, graph.dst, edge)[:, None].repeat(1, b, 1)
    if removed is not None:
        a, _, t, _, w_fwd, w_inv = removed
        cols = torch.arange(b, device=a.device)
        for node, w in ((t, w_fwd), (a, w_inv)):
            deg.index_put_((node, cols), -torch.stack([w, (w != 0).to(w.dtype)], 1), accumulate=True)
    weight, count = deg.unbind(-1)
    has = count > 0
    return has.to(weight.dtype) / torch.where(has, weight, torch.ones_like(weight))


class _PairSum(torch.autograd.Function):
    """Y = adj @ X with the backward adj_t @ dY from the stored transpose (no transpose per step)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, adj: torch.Tensor, adj_t: torch.Tensor) -> torch.Tensor:
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return torch.sparse.mm(ctx.adj_t, grad.contiguous()), None, None


class BellmanFordLayer(nn.Module):
    """One generalized Bellman–Ford step on states [N, B, d] (node-major: a source row is B·d contiguous numbers)."""

    def __init__(self, dim: int, num_relations: int, dependent: bool, dropout: float,
                 message: str = "distmult", aggregate: str = "sum") -> None:
        super().__init__()
        _check_choice("message", message, MESSAGES)
        _check_choice("aggregate", aggregate, AGGREGATES)
        self.message, self.aggregate = message, aggregate
        self.dim, self.num_rel2 = dim, 2 * num_relations
        self.dependent = dependent
        if dependent:  # w_r(q) = reshape(W_l q): each layer's relation vectors depend on the query relation
            self.relation = nn.Linear(dim, self.num_rel2 * dim)
        else:
            self.relation = nn.Parameter(torch.randn(self.num_rel2, dim) / dim ** 0.5)
        self.self_weight = nn.Linear(dim, dim, bias=False)  # no biases: zero state stays zero (module docstring)
        self.agg_weight = nn.Linear(dim, dim, bias=False)
        self.norm = nn.LayerNorm(dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def relation_vectors(self, query: torch.Tensor) -> torch.Tensor:
        """[2R, B, d] relation vectors for query vectors [B, d]."""
        b = query.shape[0]
        if self.dependent:
            return self.relation(query).view(b, self.num_rel2, self.dim).transpose(0, 1)
        return self.relation.unsqueeze(1).expand(-1, b, -1)

    def edge_message(self, x_src: torch.Tensor, w_rel: torch.Tensor) -> torch.Tensor:
        """One edge's message from its source state and relation vector (DistMult or TransE)."""
        return x_src * w_rel if self.message == "distmult" else x_src + w_rel

    def forward(self, x: torch.Tensor, query: torch.Tensor, boundary_rows: torch.Tensor, graph: RelGraph,
                removed: tuple[torch.Tensor, ...] | None, pair_weight: torch.Tensor | None = None,
                inv_degree: torch.Tensor | None = None) -> torch.Tensor:
        """`pair_weight` [P] (`pair_weights`, TransE) and `inv_degree` [N, B] (`inverse_in_degree`, mean)
        depend on the graph and queries only: `NBFNet.encode` computes them once for all layers."""
        n, b, d = x.shape
        w = self.relation_vectors(query)                                   # [2R, B, d]
        pair_x = _PairSum.apply(x.reshape(n, b * d), graph.adj, graph.adj_t)   # [P, B·d]: Σ_j w_e x_j per (r, i)
        pair_w = w.reshape(-1, b * d).index_select(0, graph.pair_rel)
        if self.message == "distmult":
            msg = pair_x * pair_w
        else:  # Σ_j w_e (x_j + w_r) = Σ_j w_e x_j + (Σ_j w_e) w_r
            pair_weight = pair_weights(graph) if pair_weight is None else pair_weight
            msg = torch.addcmul(pair_x, pair_weight[:, None], pair_w)
        agg = msg.new_zeros(n, b * d).index_add_(0, graph.pair_dst, msg).view(n * b, d)
        rows, vals = boundary_rows, query                                  # boundary: q_b at (a_b, b)
        if removed is not None:  # subtract the query edges' own messages (exact: sum, mean alike)
            cols = torch.arange(b, device=x.device)
            (a, rel, t, rel_inv, w_fwd, w_inv) = removed
            fwd = self.edge_message(x[a, cols], w[rel, cols]) * w_fwd[:, None]      # a --q--> t, into t
            inv = self.edge_message(x[t, cols], w[rel_inv, cols]) * w_inv[:, None]  # t --q⁻¹--> a, into a
            rows = torch.cat([rows, t * b + cols, a * b + cols])
            vals = torch.cat([vals, -fwd, -inv])
        if self.aggregate == "mean":  # the boundary is no message: it is added after the division
            inv_degree = inverse_in_degree(graph, b, removed) if inv_degree is None else inv_degree
            agg = agg.index_add(0, rows[b:], vals[b:]) * inv_degree.reshape(n * b, 1)
            rows, vals = rows[:b], vals[:b]
        return self.update(x, agg.index_add(0, rows, vals).view(n, b, d))

    def update(self, x: torch.Tensor, agg: torch.Tensor) -> torch.Tensor:
        """x + relu(LN(W_self x + W_agg agg)) for states and aggregated messages of any leading shape."""
        return x + self.dropout(F.relu(self.norm(self.self_weight(x) + self.agg_weight(agg))))


class NBFNet(nn.Module):
    """Query-conditioned path encoder h_q(e) [B, N, d] and its score MLP([h_q(e); q]) (higher = better).

    `graph` is the training graph (built from `triples`) that `score_all` propagates over; `encode`
    takes any `RelGraph` on the same entities (e.g. one with edges dropped). Trained with 1-vs-all
    cross-entropy over all entities (`loss = "softmax"`), the query edge removed (`encode(..., target=)`).
    """

    name: ClassVar[str] = "nbfnet"
    loss: ClassVar[str] = "softmax"

    def __init__(self, num_entities: int, num_relations: int, dim: int = 32, layers: int = 6,
                 triples: torch.Tensor | None = None, dependent: bool = True, dropout: float = 0.0,
                 mlp_hidden: int | None = None, propagation: str = "auto", message: str = "distmult",
                 aggregate: str = "sum") -> None:
        super().__init__()
        if num_entities <= 0 or num_relations <= 0 or dim <= 0 or layers <= 0:
            raise ValueError("num_entities, num_relations, dim and layers must be positive")
        _check_choice("propagation", propagation, ("auto", "full", "progressive"))
        _check_choice("message", message, MESSAGES)
        _check_choice("aggregate", aggregate, AGGREGATES)
        if message == "transe" and propagation == "progressive":
            raise ValueError("propagation='progressive' needs message='distmult': a TransE message from a zero "
                             "state is w_r, so unreached entities do not stay zero; use 'full' or 'auto'")
        # "full": every entity every layer (factorised sparse matmul; best on dense graphs such as UMLS);
        # "progressive": only the anchor's frontier, same numbers (kgsearch/models/nbfnet_progressive.py);
        # "auto": whichever `choose_propagation` expects cheaper on the graph given to `set_graph`
        # ("full" for TransE, the only pass that is exact for it).
        if message == "transe" and propagation == "auto":
            propagation = "full"
        self.propagation_setting = self.propagation = propagation
        self.message, self.aggregate = message, aggregate
        self.num_entities, self.num_relations, self.dim = num_entities, num_relations, dim
        self.query = nn.Embedding(2 * num_relations, dim)  # r and r⁻¹ each get their own query vector
        self.layers = nn.ModuleList(BellmanFordLayer(dim, num_relations, dependent, dropout, message, aggregate)
                                    for _ in range(layers))
        hidden = mlp_hidden or 2 * dim
        self.mlp_state = nn.Linear(dim, hidden)            # MLP([x; q]) = W2 relu(W_x x + W_q q + b),
        self.mlp_query = nn.Linear(dim, hidden, bias=False)  # split so q is projected once per query
        self.mlp_out = nn.Linear(hidden, 1, bias=False)  # a constant shift cancels in the softmax: no bias
        # Plain attribute, not a buffer: the graph is data, rebuilt from the triples, never checkpointed.
        self.graph: RelGraph | None = None
        if triples is not None:
            self.set_graph(triples)

    def set_graph(self, triples: torch.Tensor) -> None:
        """Use the (h, r, t) triples [n, 3] (with inverses) as the graph `score_all` propagates over."""
        self.graph = RelGraph.from_triples(triples, self.num_entities, self.num_relations)
        if self.propagation_setting == "auto":
            self.propagation = choose_propagation(self.graph, len(self.layers))

    def _apply(self, fn, *args, **kwargs):  # the graph follows the parameters' device
        super()._apply(fn, *args, **kwargs)
        if self.graph is not None:
            self.graph = self.graph.to(self.query.weight.device)
        return self

    def _removed(self, graph: RelGraph, anchor, rel, target):
        """The full pass's (a, q, t, q⁻¹, w_fwd, w_inv) and the progressive pass's two edge ids (−1: none)."""
        rel_inv = (rel + self.num_relations) % (2 * self.num_relations)
        ids = graph.edge_ids(anchor, rel, target), graph.edge_ids(target, rel_inv, anchor)
        zero = torch.zeros((), dtype=graph.weight.dtype)  # the weight of an absent edge (as `edge_weight`)
        w_fwd, w_inv = (torch.where(i >= 0, graph.weight[i.clamp(min=0)], zero) for i in ids)
        return (anchor, rel, target, rel_inv, w_fwd, w_inv), ids

    def encode(self, anchor: torch.Tensor, rel: torch.Tensor, graph: RelGraph | None = None,
               target: torch.Tensor | None = None) -> torch.Tensor:
        """h_q [B, N, d] for queries (anchor [B], rel [B] ∈ [0, 2R)) over `graph` (default: self.graph).

        With `target` [B] (training), the edge (anchor, rel, target) and its inverse are removed from
        query b's graph, each query its own (edges absent from the graph are left alone).
        """
        graph = graph if graph is not None else self.graph
        if graph is None:
            raise ValueError("no graph: pass one or call set_graph(train_triples)")
        anchor, rel = anchor.long(), rel.long()
        b = len(anchor)
        q = self.query(rel)
        if graph.weight.dtype != q.dtype:  # e.g. a float64 model in tests
            graph = graph.with_weights(graph.weight.to(q.dtype))
        if self.propagation == "auto":
            raise ValueError("propagation 'auto' is decided by set_graph(train_triples); call it first")
        removed, ids = (None, None) if target is None else self._removed(graph, anchor, rel, target.long())
        # Per graph and batch, not per layer: TransE's pair weight sums, mean's 1 / in-degree.
        inv_degree = inverse_in_degree(graph, b, removed) if self.aggregate == "mean" else None
        if self.propagation == "progressive":
            return progressive_encode(self.layers, q, anchor, graph, ids, inv_degree)
        pair_weight = pair_weights(graph) if self.message == "transe" else None
        boundary_rows = anchor * b + torch.arange(b, device=anchor.device)
        x = q.new_zeros(self.num_entities * b, self.dim).index_add(0, boundary_rows, q)
        x = x.view(self.num_entities, b, self.dim)
        for layer in self.layers:
            x = layer(x, q, boundary_rows, graph, removed, pair_weight, inv_degree)
        return x.transpose(0, 1)

    def score(self, h: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        """MLP([h; q]) for representation vectors h [B, m, d] (h_q from `encode`, or generated ones) -> [B, m]."""
        hidden = self.mlp_state(h) + self.mlp_query(self.query(rel.long())).unsqueeze(1)
        return self.mlp_out(F.relu(hidden)).squeeze(-1)

    def forward(self, anchor: torch.Tensor, rel: torch.Tensor, target: torch.Tensor | None = None,
                graph: RelGraph | None = None) -> torch.Tensor:
        """All-entity scores [B, N]; the training call passes `target` so the query edge is removed."""
        return self.score(self.encode(anchor, rel, graph, target), rel)

    @torch.no_grad()
    def score_all(self, anchor: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        """Scores [B, N] on the full graph (evaluation: nothing removed); rel >= R poses (?, rel − R, anchor)."""
        return self.forward(anchor, rel)
