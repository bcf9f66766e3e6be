"""Random-replacement negatives (L_KGC2, Eq. 17) with known training answers masked out.

Like RotatE's reference sampler, a corrupted triple that is itself a training fact is not used as a
negative (on 1-to-N relations uniform corruption hits true answers often, e.g. UMLS). Instead of
resampling (a Python loop), such negatives get a False mask and drop out of the loss.
"""

from __future__ import annotations

import torch

from kgsearch.evaluation import both_directions


class TrueAnswers:
    """Sorted keys (anchor·2R + rel)·N + answer of every training fact, both directions."""

    def __init__(self, train: torch.Tensor, num_entities: int, num_relations: int) -> None:
        anchor, rel, target = both_directions(train.long(), num_relations)
        self.num_entities, self.num_relations = num_entities, num_relations
        self.keys = torch.unique(self._key(anchor, rel, target))

    def _key(self, anchor: torch.Tensor, rel: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        return (anchor * (2 * self.num_relations) + rel) * self.num_entities + answer

    def to(self, device: torch.device | str) -> "TrueAnswers":
        self.keys = self.keys.to(device)
        return self

    def contains(self, anchor: torch.Tensor, rel: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """Bool [B, n]: is (anchor_i, rel_i, cand_ij) a training fact? anchor, rel [B]; cand [B, n]."""
        key = self._key(anchor.unsqueeze(1), rel.unsqueeze(1), cand)
        pos = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == key


def sample_negatives(anchor: torch.Tensor, rel: torch.Tensor, num_entities: int, count: int,
                     truth: TrueAnswers | None, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Uniform candidate ids [B, count] and a validity mask (None when nothing is filtered)."""
    neg = torch.randint(0, num_entities, (len(anchor), count), device=anchor.device, generator=generator)
    if truth is None:
        return neg, None
    return neg, ~truth.contains(anchor, rel, neg)
