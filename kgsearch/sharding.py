"""Which training units (queries, timestamps) each DDP rank takes in an epoch, and the seed of its draws."""

from __future__ import annotations

import torch


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one rank's random draws in one epoch (noise, dropout): a run resumed at an epoch boundary
    draws what the uninterrupted run drew."""
    return (seed * 1_000_003 + epoch) * 1_009 + rank


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of range(n) that depends on (seed, epoch) only, so every rank computes the same."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def epoch_shard(n: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """This rank's strided share of the epoch's permutation.

    Every rank gets the same number of units (DDP all-reduces once per step, so all ranks must take
    the same number of steps): the remainder, fewer than world_size units, is left out, a different
    one each epoch.
    """
    order = epoch_order(n, seed, epoch)
    usable = n - n % world_size
    return order[rank:usable:world_size]
