"""A seeded k-core subgraph of a static dataset, GraSH-style (Kochsiek et al. 2022, "Start Small, Think Big"):
the low-fidelity graph a multi-fidelity search (kgsearch.sweep.grash) trains its lower rungs on.

Entities are ordered by their core number in the undirected simple graph of the training triples (the
densest core first; ties in an order drawn from `seed`), and the shortest prefix of that order whose induced
training triples come closest to `fraction` of them is taken. The subgraph keeps the training triples with
both entities in it, its entities are those of these triples, its relations those they use, and valid/test
keep the triples that fall wholly inside, all re-indexed compactly (in the original id order): a model on it
has fewer embeddings, not only fewer triples. Unlike GraSH's fixed k-cores, any fraction can be asked for,
and the result is exact to one entity's triples.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import torch

from kgsearch.data.types import StaticDataset
from kgsearch.errors import KGSearchError


def core_numbers(train: torch.Tensor, num_entities: int) -> np.ndarray:
    """Core number of every entity id in the undirected simple graph of `train` (0: not in train)."""
    pairs = train[:, [0, 2]].numpy()
    pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1), axis=0)  # core_number refuses self-loops
    graph = nx.Graph()
    graph.add_nodes_from(range(num_entities))
    graph.add_edges_from(pairs.tolist())
    core = nx.core_number(graph)
    return np.fromiter(map(core.__getitem__, range(num_entities)), dtype=np.int64, count=num_entities)


def core_order(train: torch.Tensor, num_entities: int, seed: int) -> np.ndarray:
    """Entity ids, highest core number first, ties in a random order drawn from `seed`."""
    tiebreak = np.random.default_rng(seed).permutation(num_entities)
    return np.lexsort((tiebreak, -core_numbers(train, num_entities)))


def prefix_size(train: np.ndarray, order: np.ndarray, fraction: float) -> int:
    """How many entities of `order` to take so that the training triples among them come closest to
    `fraction` of `train` (at least one triple)."""
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    needed = np.maximum(position[train[:, 0]], position[train[:, 2]])  # a triple is in once both ends are
    held = np.cumsum(np.bincount(needed, minlength=len(order)))  # held[m - 1]: triples among the first m
    target = max(1.0, fraction * len(train))
    k = int(np.searchsorted(held, target))  # the first prefix holding at least the target
    if k > 0 and held[k - 1] >= 1 and target - held[k - 1] < held[k] - target:
        return k  # one entity fewer is closer
    return k + 1


def _compact(ids: np.ndarray, size: int) -> np.ndarray:
    """Old id -> new id (-1: dropped), new ids in the old order."""
    new = np.full(size, -1, dtype=np.int64)
    new[ids] = np.arange(len(ids))
    return new


def kcore_subgraph(dataset: StaticDataset, fraction: float, seed: int = 0) -> StaticDataset:
    """The subgraph of `dataset` holding about `fraction` of its training triples (module docstring);
    `fraction` 1 returns `dataset` itself. Deterministic for a seed."""
    if not 0 < fraction <= 1:
        raise KGSearchError(f"subgraph fraction {fraction!r}: expected 0 < fraction <= 1")
    if fraction == 1:
        return dataset
    if len(dataset.train) == 0:
        raise KGSearchError(f"{dataset.name}: no training triples to take a subgraph of")
    train = dataset.train.numpy()
    order = core_order(dataset.train, dataset.num_entities, seed)
    chosen = np.zeros(dataset.num_entities, dtype=bool)
    chosen[order[:prefix_size(train, order, fraction)]] = True
    train = train[chosen[train[:, 0]] & chosen[train[:, 2]]]
    # An entity of the prefix whose triples all reach outside it is left out: it would only add an
    # embedding that never trains.
    entities = np.unique(train[:, [0, 2]])
    relations = np.unique(train[:, 1])
    new_entity = _compact(entities, dataset.num_entities)
    new_relation = _compact(relations, dataset.num_relations)

    def restrict(triples: np.ndarray) -> torch.Tensor:
        mapped = np.stack([new_entity[triples[:, 0]], new_relation[triples[:, 1]], new_entity[triples[:, 2]]], axis=1)
        return torch.from_numpy(mapped[(mapped >= 0).all(axis=1)]).to(dataset.train.dtype)

    return StaticDataset(
        name=f"{dataset.name}-kcore{len(train) / len(dataset.train):.3f}-seed{seed}",
        entities=[dataset.entities[i] for i in entities.tolist()],
        relations=[dataset.relations[i] for i in relations.tolist()],
        train=restrict(train), valid=restrict(dataset.valid.numpy()), test=restrict(dataset.test.numpy()))


def train_share(subgraph: StaticDataset, dataset: StaticDataset) -> float:
    """The share of `dataset`'s training triples `subgraph` holds."""
    return len(subgraph.train) / max(1, len(dataset.train))


__all__ = ["core_numbers", "core_order", "kcore_subgraph", "prefix_size", "train_share"]
