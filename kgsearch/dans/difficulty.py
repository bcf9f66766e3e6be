"""DAM: structural features, the difficulty MLP of Eq. 1, and K-means entity types.

ζ(e) = sigmoid(W2·ReLU(W1·[e_sem; e_str] + b1) + b2) ∈ (0, 1).

The paper does not say what supervises the MLP. Our choice: the default target is each
entity's normalised mean filtered rank *as the answer* of training queries under the pre-trained
scorer ("hard" = "the model ranks it badly"); `DIFFICULTY_TARGETS` holds the swappable choices.
"""

from __future__ import annotations

import math
from typing import Callable

import networkx as nx
import numpy as np
import torch
from torch import nn

from kgsearch.evaluation import FilterIndex, both_directions, realistic_ranks
from kgsearch.models.kge import KGEModel
from kgsearch.progress import ProgressFactory, silent

STRUCTURAL_FEATURES = ("betweenness", "closeness", "clustering", "triple_count", "avg_neighbour_degree",
                       "pagerank")


def undirected_graph(train: torch.Tensor, num_entities: int) -> nx.Graph:
    """Simple undirected training graph over all entity ids (parallel edges and self-loops collapsed)."""
    graph = nx.Graph()
    graph.add_nodes_from(range(num_entities))
    h, t = train[:, 0].tolist(), train[:, 2].tolist()
    graph.add_edges_from((a, b) for a, b in zip(h, t) if a != b)
    return graph


def sampled_closeness(graph: nx.Graph, pivots: list[int]) -> np.ndarray:
    """Closeness estimated from BFS at `pivots` (Eppstein–Wang): exact networkx closeness costs one BFS per
    node (≈ N·E, hours at 40k nodes), so on large graphs we average distances to k sampled pivots.

    c(v) = (r_v / k) · r_v / Σ_{pivots s reaching v} d(s, v), with r_v the pivots reaching v (v excluded),
    i.e. the inverse mean distance scaled by the reached fraction like networkx's wf_improved.
    """
    n = graph.number_of_nodes()
    dist_sum = np.zeros(n)
    reached = np.zeros(n)
    for s in pivots:
        for v, d in nx.single_source_shortest_path_length(graph, s).items():
            if v != s:
                dist_sum[v] += d
                reached[v] += 1
    k = max(len(pivots), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        closeness = np.where(dist_sum > 0, (reached / k) * reached / dist_sum, 0.0)
    return closeness


def structural_features(train: torch.Tensor, num_entities: int, *, exact_max_nodes: int = 2000,
                        samples: int = 256, seed: int = 0) -> torch.Tensor:
    """The six structural features of DAM on the undirected training graph, min-max normalised -> [N, 6].

    Column order = STRUCTURAL_FEATURES. Graphs with more than `exact_max_nodes` nodes use k-sampled
    betweenness (k = min(N, samples), seeded) and pivot-sampled closeness (same pivots count).
    Count-like columns (triple count, average neighbour degree) are log1p-scaled before normalising
    because they are heavy-tailed.
    """
    graph = undirected_graph(train, num_entities)
    n = num_entities
    exact = n <= exact_max_nodes
    k = min(n, samples)
    betweenness = nx.betweenness_centrality(graph, k=None if exact else k, seed=seed)
    if exact:
        closeness = nx.closeness_centrality(graph)
        closeness = np.array([closeness[v] for v in range(n)])
    else:
        pivots = np.random.default_rng(seed).choice(n, size=k, replace=False).tolist()
        closeness = sampled_closeness(graph, pivots)
    clustering = nx.clustering(graph)
    avg_nbr = nx.average_neighbor_degree(graph)
    pagerank = nx.pagerank(graph)
    count = torch.bincount(torch.cat([train[:, 0], train[:, 2]]).long(), minlength=n).double()
    columns = [
        torch.tensor([betweenness[v] for v in range(n)], dtype=torch.float64),
        torch.as_tensor(closeness, dtype=torch.float64),
        torch.tensor([clustering[v] for v in range(n)], dtype=torch.float64),
        torch.log1p(count),
        torch.log1p(torch.tensor([avg_nbr[v] for v in range(n)], dtype=torch.float64)),
        torch.tensor([pagerank[v] for v in range(n)], dtype=torch.float64),
    ]
    return min_max(torch.stack(columns, dim=1)).float()


def min_max(x: torch.Tensor) -> torch.Tensor:
    """Column-wise min-max scaling to [0, 1]; constant columns become 0."""
    lo, hi = x.min(0).values, x.max(0).values
    return (x - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))


# -- supervision targets for the MLP (the paper leaves this open) ------------------------------

@torch.no_grad()
def capped_queries(target: torch.Tensor, num_entities: int, max_queries: int, seed: int = 0) -> torch.Tensor | None:
    """Indices of at most `max_queries` queries (None: keep all): every entity keeps up to c of the queries
    it answers (a seeded choice), c the largest cap that fits. Frequent answers lose queries first and no
    entity that answers a query loses all of them, so each still gets its own mean-rank estimate (with
    more entities than `max_queries`, c = 1 exceeds the budget). Ranking a query costs O(N), which is
    what makes the full target dominate the preparation on FB15k-237 (docs/benchmarks_dans.md)."""
    if max_queries <= 0 or len(target) <= max_queries:
        return None
    counts = torch.bincount(target, minlength=num_entities)
    low, high = 1, int(counts.max())
    while low < high:                      # largest c with sum(min(count, c)) <= max_queries
        mid = (low + high + 1) // 2
        if int(counts.clamp(max=mid).sum()) <= max_queries:
            low = mid
        else:
            high = mid - 1
    perm = torch.randperm(len(target), generator=torch.Generator().manual_seed(seed))
    order = perm[torch.argsort(target[perm], stable=True)]   # grouped by answer, shuffled within
    grouped = target[order]
    position = torch.arange(len(order)) - torch.searchsorted(grouped, grouped)
    return order[position < low].sort().values


def mean_rank_target(scorer: KGEModel, train: torch.Tensor, batch_size: int = 512, max_queries: int = 0,
                     seed: int = 0, progress: ProgressFactory = silent) -> torch.Tensor:
    """log(mean filtered rank of e as the answer of training queries, both directions) / log N, in [0, 1].

    Filtered by the training facts only. The log keeps the heavy tail of ranks from squashing most
    entities to 0; entities that answer no training query get the mean target. `max_queries` > 0 ranks
    only a per-entity capped sample of the queries (`capped_queries`).
    """
    n, num_rel = scorer.num_entities, scorer.num_relations
    device = scorer.entity.device
    anchor, rel, target = both_directions(train.long(), num_rel)
    index = FilterIndex.build(anchor * (2 * num_rel) + rel, target).to(device)   # filter: all training facts
    keep = capped_queries(target, n, max_queries, seed)
    if keep is not None:
        anchor, rel, target = anchor[keep], rel[keep], target[keep]
    ranks = torch.empty(len(anchor), dtype=torch.float64)
    bar = progress("DAM target, ranking training queries", len(anchor))  # ~15 CPU-min on FB15k-237
    for i in range(0, len(anchor), batch_size):
        a, r, t = (x[i:i + batch_size].to(device) for x in (anchor, rel, target))
        rows, cols = index.lookup(a * (2 * num_rel) + r)
        ranks[i:i + batch_size] = realistic_ranks(scorer.score_all(a, r), t, rows, cols).cpu()
        bar.advance(len(a))
    bar.close()
    total = torch.zeros(n, dtype=torch.float64).index_add_(0, target, ranks)
    hits = torch.bincount(target, minlength=n).double()
    mean_rank = total / hits.clamp(min=1)
    value = torch.log(mean_rank.clamp(min=1.0)) / math.log(max(n, 2))
    seen = hits > 0
    value[~seen] = value[seen].mean() if seen.any() else 0.5
    return value.clamp(0.0, 1.0).float()


def degree_target(scorer: KGEModel, train: torch.Tensor, batch_size: int = 512, **_) -> torch.Tensor:
    """Alternative target: 1 − normalised log triple count (rarely seen entities are hard)."""
    count = torch.bincount(torch.cat([train[:, 0], train[:, 2]]).long(), minlength=scorer.num_entities)
    return 1.0 - min_max(torch.log1p(count.double()).unsqueeze(1)).squeeze(1).float()


def rescale_target(target: torch.Tensor, how: str) -> torch.Tensor:
    """Spread a difficulty target over (0, 1) before the MLP regresses it.

    On a well-fitted training set the log mean rank spans only ~[0, 0.2], so ζ(x)^μ, and with it
    β_max(x) (Eq. 2), would barely leave β_low: DFS would do nothing. "quantile" (default) maps each
    entity to the mid-rank quantile of its target ((rank − ½)/N, ties share their mean rank), so ζ
    covers the whole β_low → β_global range; "minmax" rescales linearly; "none" keeps the raw target.
    """
    if how == "none":
        return target
    if how == "minmax":
        return min_max(target.double().unsqueeze(1)).squeeze(1).float()
    n = len(target)
    order = torch.argsort(target.double(), stable=True)
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = torch.arange(1, n + 1, dtype=torch.float64)
    # ties: the mean rank of their group
    values, inverse = torch.unique(target.double(), return_inverse=True)
    mean_rank = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, ranks)
    mean_rank /= torch.bincount(inverse, minlength=len(values)).double()
    return ((mean_rank[inverse] - 0.5) / n).float()


DIFFICULTY_RESCALES = ("quantile", "minmax", "none")

DIFFICULTY_TARGETS: dict[str, Callable[..., torch.Tensor]] = {
    "mean_rank": mean_rank_target,
    "degree": degree_target,
}


class DifficultyMLP(nn.Module):
    """Eq. 1: ζ(e) = sigmoid(W2·ReLU(W1·e^d + b1) + b2) with e^d = [e_sem; e_str]."""

    def __init__(self, in_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.layer1 = nn.Linear(in_dim, hidden)
        self.layer2 = nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.layer2(torch.relu(self.layer1(features)))).squeeze(-1)


def fit_difficulty(semantic: torch.Tensor, structural: torch.Tensor, target: torch.Tensor, *,
                   hidden: int = 64, epochs: int = 300, lr: float = 0.01, seed: int = 0) -> torch.Tensor:
    """Train the Eq. 1 MLP (full batch, MSE) to regress `target`; return ζ [N] in (0, 1).

    e_sem is z-scored per dimension (pre-trained embeddings are tiny), e_str is already min-max scaled.
    """
    torch.manual_seed(seed)
    sem = (semantic - semantic.mean(0)) / semantic.std(0).clamp(min=1e-8)
    features = torch.cat([sem, structural], dim=1).float()
    mlp = DifficultyMLP(features.shape[1], hidden)
    opt = torch.optim.Adam(mlp.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        loss = (mlp(features) - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return mlp(features)


def kmeans_types(embeddings: torch.Tensor, num_clusters: int, seed: int = 0) -> torch.Tensor:
    """K-means entity types on pre-trained embeddings -> LongTensor [N] of cluster labels."""
    from sklearn.cluster import KMeans

    k = min(num_clusters, embeddings.shape[0])
    model = KMeans(n_clusters=k, n_init=4, random_state=seed)
    return torch.as_tensor(model.fit_predict(embeddings.double().numpy()), dtype=torch.long)
