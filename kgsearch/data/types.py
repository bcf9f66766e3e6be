"""Dataset containers: static triples and temporal quadruples as integer id tensors, with their counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import torch

from kgsearch.errors import KGSearchError

SPLITS = ("train", "valid", "test")


class UnseenEntityWarning(UserWarning):
    """Valid/test triples were dropped (``unseen="drop"``) because an entity or relation does not occur in train."""


def seen_in_train(train: torch.Tensor, triples: torch.Tensor, num_entities: int, num_relations: int) -> torch.Tensor:
    """Bool [n, 3]: whether each head / relation / tail of `triples` occurs in `train`."""
    ent = torch.zeros(num_entities, dtype=torch.bool)
    ent[train[:, 0]] = True
    ent[train[:, 2]] = True
    rel = torch.zeros(num_relations, dtype=torch.bool)
    rel[train[:, 1]] = True
    return torch.stack([ent[triples[:, 0]], rel[triples[:, 1]], ent[triples[:, 2]]], dim=1)


@dataclass(eq=False, repr=False)
class StaticDataset:
    name: str
    entities: list[str]  # id -> name
    relations: list[str]  # id -> name
    train: torch.Tensor  # LongTensor [n, 3]: (head, relation, tail)
    valid: torch.Tensor
    test: torch.Tensor
    path: str | None = None  # folder it was read from
    dropped: dict[str, int] = field(default_factory=dict)  # split -> triples removed by unseen="drop"
    # split -> valid/test triples in the files with an entity or relation absent from train (kept by the
    # default unseen="keep"; `seen_only` gives the split without them, for a labelled "dropped" variant)
    unseen: dict[str, int] = field(default_factory=dict)

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    def split(self, split: str) -> torch.Tensor:
        return _get_split(self, split)

    def seen_only(self, split: str) -> torch.Tensor:
        """`split` without the triples whose entity or relation does not occur in train."""
        triples = _get_split(self, split)
        return triples[seen_in_train(self.train, triples, self.num_entities, self.num_relations).all(dim=1)]

    def __str__(self) -> str:
        return describe(self)

    __repr__ = __str__


@dataclass(eq=False, repr=False)
class TemporalDataset:
    name: str
    entities: list[str]  # id -> name (DKGR-DR derives its static attribute graph from these)
    relations: list[str]
    times: torch.Tensor  # LongTensor [T]: sorted distinct raw timestamps over all splits
    train: torch.Tensor  # LongTensor [n, 4]: (head, relation, tail, index into `times`)
    valid: torch.Tensor
    test: torch.Tensor
    path: str | None = None

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    @property
    def num_times(self) -> int:
        return int(self.times.numel())

    def split(self, split: str) -> torch.Tensor:
        return _get_split(self, split)

    def snapshots(self, split: str) -> list[tuple[int, torch.Tensor]]:
        """Time-ordered ``(time_index, LongTensor[k, 3])`` per timestamp present in `split`.

        One stable sort and one split (file order is kept inside a snapshot); the chunks are
        contiguous views of a single sorted copy.
        """
        quads = _get_split(self, split)
        if quads.shape[0] == 0:
            return []
        ordered = quads[torch.argsort(quads[:, 3], stable=True)]
        time_ids, counts = torch.unique_consecutive(ordered[:, 3], return_counts=True)
        chunks = torch.split(ordered[:, :3].contiguous(), counts.tolist())
        return list(zip(time_ids.tolist(), chunks))

    def __str__(self) -> str:
        return describe(self)

    __repr__ = __str__


Dataset = Union[StaticDataset, TemporalDataset]


def _get_split(dataset: Dataset, split: str) -> torch.Tensor:
    if split not in SPLITS:
        raise KGSearchError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    return getattr(dataset, split)


def describe(dataset: Dataset) -> str:
    """One line with the counts, e.g. ``umls: static KG, 135 entities, 46 relations, 5,327 / 569 / 633 ...``."""
    sizes = " / ".join(f"{_get_split(dataset, s).shape[0]:,}" for s in SPLITS)
    if isinstance(dataset, TemporalDataset):
        text = (
            f"{dataset.name}: temporal KG, {dataset.num_entities:,} entities, {dataset.num_relations:,} relations, "
            f"{dataset.num_times:,} timestamps, {sizes} train/valid/test quadruples"
        )
    else:
        text = (
            f"{dataset.name}: static KG, {dataset.num_entities:,} entities, {dataset.num_relations:,} relations, "
            f"{sizes} train/valid/test triples"
        )
        if dataset.dropped:
            parts = ", ".join(f"{n:,} {s}" for s, n in dataset.dropped.items())
            text += f" (dropped as unseen in train: {parts})"
        elif dataset.unseen:
            parts = ", ".join(f"{n:,} {s}" for s, n in dataset.unseen.items())
            text += f" (kept with an entity or relation unseen in train: {parts})"
    return text
