"""Filtered link-prediction ranking: filters, realistic ranks, MRR / Hits@k, shard-exact accumulation.

Conventions (docs/architecture.md): scores are higher = more plausible; a head query (?, r, t) is asked
as the tail query (t, r + R, ?), so one scorer `score_fn(anchor, rel) -> [B, num_entities]` serves both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from kgsearch.progress import ProgressFactory, silent
HITS_AT = (1, 3, 10)


@dataclass
class FilterIndex:
    """Integer key -> set of true answers, stored CSR-style so a batch lookup is a few tensor ops."""

    keys: torch.Tensor  # [K] sorted distinct keys
    offsets: torch.Tensor  # [K + 1] start of each key's answers in `answers`
    answers: torch.Tensor  # [n] answers grouped by key

    @classmethod
    def build(cls, keys: torch.Tensor, answers: torch.Tensor) -> "FilterIndex":
        keys, answers = keys.long().flatten(), answers.long().flatten()
        # Sort by (key, answer) and drop duplicate pairs: a fact listed twice must be filtered once.
        pair = torch.stack([keys, answers], 1).unique(dim=0)
        uniq, counts = torch.unique_consecutive(pair[:, 0], return_counts=True)
        offsets = torch.zeros(len(uniq) + 1, dtype=torch.long)
        offsets[1:] = counts.cumsum(0)
        return cls(uniq, offsets, pair[:, 1].contiguous())

    def to(self, device: torch.device | str) -> "FilterIndex":
        return FilterIndex(self.keys.to(device), self.offsets.to(device), self.answers.to(device))

    def lookup(self, query_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All (query position, true answer) pairs for a batch of query keys (absent keys give none)."""
        device = query_keys.device
        keys, offsets, answers = self.keys.to(device), self.offsets.to(device), self.answers.to(device)
        pos = torch.searchsorted(keys, query_keys).clamp(max=max(len(keys) - 1, 0))
        if len(keys) == 0:
            empty = torch.empty(0, dtype=torch.long, device=device)
            return empty, empty
        found = keys[pos] == query_keys
        start = offsets[pos]
        count = torch.where(found, offsets[pos + 1] - start, torch.zeros_like(start))
        rows = torch.repeat_interleave(torch.arange(len(query_keys), device=device), count)
        # Index of each pair within its query's run: global position minus the run's first position.
        run_start = torch.repeat_interleave(count.cumsum(0) - count, count)
        within = torch.arange(len(rows), device=device) - run_start
        cols = answers[torch.repeat_interleave(start, count) + within]
        return rows, cols


def realistic_ranks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    filter_rows: torch.Tensor | None = None,
    filter_cols: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rank of each target among all candidates, other true answers removed.

    Ties get the mean of the optimistic and the pessimistic rank: 1 + #greater + #equal / 2,
    where #equal counts the other candidates with exactly the target's score.
    """
    scores = scores.float()
    rows = torch.arange(len(targets), device=scores.device)
    target_scores = scores[rows, targets].unsqueeze(1)
    if filter_rows is not None and len(filter_rows):
        scores = scores.clone()
        scores[filter_rows, filter_cols] = float("-inf")  # the target itself is restored below
    greater = (scores > target_scores).sum(1)
    equal = (scores == target_scores).sum(1)
    # The target's own slot: equal to itself unless it was filtered to -inf just above.
    equal = equal - (scores[rows, targets] == target_scores.squeeze(1)).long()
    return 1.0 + greater.double() + equal.double() / 2.0


class RankAccumulator:
    """Sums of reciprocal ranks and hits; exact under sharding (sum the tensors, then divide)."""

    FIELDS = ("count", "rr") + tuple(f"hits@{k}" for k in HITS_AT)

    def __init__(self) -> None:
        self.sums = torch.zeros(len(self.FIELDS), dtype=torch.float64)

    def add(self, ranks: torch.Tensor) -> "RankAccumulator":
        ranks = ranks.detach().double().cpu()
        hits = [(ranks <= k).sum() for k in HITS_AT]
        self.sums += torch.stack([torch.tensor(float(len(ranks)), dtype=torch.float64),
                                  (1.0 / ranks).sum(), *[h.double() for h in hits]])
        return self

    def merge(self, other: "RankAccumulator") -> "RankAccumulator":
        self.sums += other.sums
        return self

    def to_tensor(self) -> torch.Tensor:
        return self.sums.clone()

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> "RankAccumulator":
        acc = cls()
        acc.sums = t.detach().double().cpu().clone()
        return acc

    def result(self) -> dict[str, float]:
        n = float(self.sums[0])
        out = {"count": int(n)}
        out["mrr"] = float(self.sums[1]) / n if n else 0.0
        for i, k in enumerate(HITS_AT):
            out[f"hits@{k}"] = float(self.sums[2 + i]) / n if n else 0.0
        return out


def both_directions(triples: torch.Tensor, num_relations: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(anchor, rel, target) for tail queries followed by head queries posed with inverse relations."""
    h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
    return torch.cat([h, t]), torch.cat([r, r + num_relations]), torch.cat([t, h])


def _all_facts(dataset) -> torch.Tensor:
    return torch.cat([dataset.train, dataset.valid, dataset.test]).long()


def static_filter(dataset) -> FilterIndex:
    """Filter from train+valid+test, both directions; key = anchor * 2R + rel."""
    anchor, rel, target = both_directions(_all_facts(dataset), dataset.num_relations)
    return FilterIndex.build(anchor * (2 * dataset.num_relations) + rel, target)


def shard_slice(n: int, shard: tuple[int, int]) -> slice:
    """Contiguous block of `n` items for worker `rank` of `world` (blocks differ in size by at most 1)."""
    rank, world = shard
    return slice(n * rank // world, n * (rank + 1) // world)


@torch.no_grad()
def evaluate_static(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    triples: torch.Tensor,
    num_entities: int,
    num_relations: int,
    filter_index: FilterIndex | None,
    batch_size: int = 256,
    shard: tuple[int, int] = (0, 1),
    device: torch.device | str = "cpu",
    progress: ProgressFactory = silent,
) -> RankAccumulator:
    """Filtered (or raw, when filter_index is None) ranking of both directions of `triples`.

    Work is in chunks of `batch_size` queries, so memory is batch_size x num_entities scores.
    `shard` selects this worker's block of queries; summing the accumulators over workers is exact.
    """
    anchor, rel, target = both_directions(triples.long(), num_relations)
    part = shard_slice(len(anchor), shard)
    anchor, rel, target = anchor[part].to(device), rel[part].to(device), target[part].to(device)
    if filter_index is not None:
        filter_index = filter_index.to(device)
    acc = RankAccumulator()
    bar = progress("evaluation", -(-len(anchor) // batch_size))
    for i in range(0, len(anchor), batch_size):
        a, r, t = anchor[i:i + batch_size], rel[i:i + batch_size], target[i:i + batch_size]
        scores = score_fn(a, r)
        rows = cols = None
        if filter_index is not None:
            rows, cols = filter_index.lookup(a * (2 * num_relations) + r)
        acc.add(realistic_ranks(scores, t, rows, cols))
        bar.advance()
    bar.close()
    return acc


def temporal_entity_filter(dataset) -> FilterIndex:
    """Time-aware filter: only true facts of the same timestamp; key = (time*N + anchor)*2R + rel."""
    quads = _all_facts(dataset)
    anchor, rel, target = both_directions(quads[:, :3], dataset.num_relations)
    time = torch.cat([quads[:, 3], quads[:, 3]])
    keys = entity_query_keys(anchor, rel, time, dataset.num_entities, dataset.num_relations)
    return FilterIndex.build(keys, target)


def entity_query_keys(anchor, rel, time, num_entities: int, num_relations: int) -> torch.Tensor:
    return (time * num_entities + anchor) * (2 * num_relations) + rel


def temporal_relation_filter(dataset) -> FilterIndex:
    """Time-aware filter for relation prediction (s, ?, o) at t; key = (time*N + s)*N + o."""
    q = _all_facts(dataset)
    return FilterIndex.build(relation_query_keys(q[:, 0], q[:, 2], q[:, 3], dataset.num_entities), q[:, 1])


def relation_query_keys(s, o, time, num_entities: int) -> torch.Tensor:
    return (time * num_entities + s) * num_entities + o


def raw_and_filtered_ranks(scores: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor,
                           cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(realistic_ranks(scores, targets), realistic_ranks(scores, targets, rows, cols)) in one pass.

    `realistic_ranks` makes two passes over [B, C] for the raw ranks and a copy plus
    two more for the filtered ones. The filtered counts are the raw ones minus the filtered pairs'
    own (FilterIndex pairs are distinct, so none is subtracted twice); the target itself is never
    removed, as there. Ties: 1 + #greater + #equal / 2.
    """
    scores = scores.float()
    target_scores = scores.gather(1, targets[:, None])
    greater = (scores > target_scores).sum(1)
    equal = (scores == target_scores).sum(1) - (target_scores == target_scores).long()[:, 0]  # own slot
    raw = 1.0 + greater.double() + equal.double() / 2.0
    pair_scores, pair_target = scores[rows, cols], target_scores[rows, 0]
    other = cols != targets[rows]
    greater = greater.index_add(0, rows, (pair_scores > pair_target).long(), alpha=-1)
    equal = equal.index_add(0, rows, ((pair_scores == pair_target) & other).long(), alpha=-1)
    return raw, 1.0 + greater.double() + equal.double() / 2.0
