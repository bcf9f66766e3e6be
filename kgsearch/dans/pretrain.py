"""Short pre-training of a base scorer: the semantic embeddings e_sem used by DAM (Eq. 1) and K-means.

Loss: RotatE's self-adversarial negative-sampling loss (logistic margin loss, negatives weighted by
softmax(−α·S)). Results are cached on disk by dataset content and settings, so a sweep pre-trains
once, not once per trial.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

import torch

from kgsearch.cache import cached, one_thread
from kgsearch.dans.margins import kgc2_loss
from kgsearch.dans.negatives import TrueAnswers
from kgsearch.evaluation import both_directions
from kgsearch.models.kge import KGEModel, build_scorer
from kgsearch.progress import ProgressFactory, silent


@dataclass(frozen=True)
class PretrainSettings:
    scorer: str = "rotate"
    dim: int = 64
    gamma: float = 6.0
    lr: float = 0.005
    epochs: int = 30
    batch_size: int = 512
    negatives: int = 64
    adversarial_temperature: float = 1.0
    seed: int = 0


def dataset_fingerprint(dataset) -> str:
    """Content hash of a static dataset (train/valid/test triples and vocabulary sizes)."""
    digest = hashlib.sha256()
    digest.update(f"{dataset.num_entities}:{dataset.num_relations}".encode())
    for split in (dataset.train, dataset.valid, dataset.test):
        digest.update(split.long().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def train_random_negatives(scorer: KGEModel, train: torch.Tensor, *, epochs: int, batch_size: int,
                           negatives: int, gamma: float, lr: float, adversarial_temperature: float,
                           generator: torch.Generator, progress: ProgressFactory = silent) -> list[float]:
    """Train `scorer` on both query directions of `train` with uniform random answer replacement
    (corruptions that are training facts masked out)."""
    device = scorer.entity.device
    anchor, rel, target = (x.to(device) for x in both_directions(train.long(), scorer.num_relations))
    truth = TrueAnswers(train, scorer.num_entities, scorer.num_relations).to(device)
    opt = torch.optim.Adam(scorer.parameters(), lr=lr)
    losses = []
    bar = progress("pre-training (for DAM and K-means), epochs", epochs)
    for _ in range(epochs):
        order = torch.randperm(len(anchor), generator=generator).to(device)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            q = scorer.query(anchor[idx], rel[idx])
            neg = torch.randint(0, scorer.num_entities, (len(idx), negatives), generator=generator).to(device)
            mask = ~truth.contains(anchor[idx], rel[idx], neg)
            loss = kgc2_loss(scorer.match(q, scorer.entity[target[idx]]),
                             scorer.match(q.unsqueeze(1), scorer.entity[neg]), gamma, adversarial_temperature,
                             mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(anchor))
        bar.advance()
    bar.close()
    return losses


def pretrain(dataset, settings: PretrainSettings, device: str | torch.device = "cpu",
             use_cache: bool = True, progress: ProgressFactory = silent) -> dict:
    """Pre-trained embeddings {"entity": [N, D], "relation": [R, ·], "loss": [...], "seconds"}, cached."""

    def build() -> dict:
        torch.manual_seed(settings.seed)
        generator = torch.Generator().manual_seed(settings.seed)
        scorer = build_scorer(settings.scorer, dataset.num_entities, dataset.num_relations, settings.dim,
                              gamma=settings.gamma).to(device)
        start = time.perf_counter()
        with one_thread():  # the same embeddings whatever the caller's thread count (kgsearch/cache.py)
            losses = train_random_negatives(
                scorer, dataset.train, epochs=settings.epochs, batch_size=settings.batch_size,
                negatives=settings.negatives, gamma=settings.gamma, lr=settings.lr,
                adversarial_temperature=settings.adversarial_temperature, generator=generator, progress=progress)
        return {"entity": scorer.entity.detach().cpu(), "relation": scorer.relation.detach().cpu(),
                "loss": losses, "seconds": time.perf_counter() - start}

    # "threads": entries built before training was pinned to one thread differ by the builder's thread count
    key = {"dataset": dataset.name, "content": dataset_fingerprint(dataset), **asdict(settings), "threads": 1}
    return cached("dans_pretrain", key, build, enabled=use_cache)


def load_pretrained(dataset, settings: PretrainSettings, blob: dict) -> KGEModel:
    """Rebuild the pre-trained scorer from `pretrain`'s output (e.g. to rank for the DAM target)."""
    scorer = build_scorer(settings.scorer, dataset.num_entities, dataset.num_relations, settings.dim,
                          gamma=settings.gamma)
    with torch.no_grad():
        scorer.entity.copy_(blob["entity"])
        scorer.relation.copy_(blob["relation"])
    return scorer
