"""The DANS-KGC training module: base scorer + CCD denoiser, whole loss (Eq. 19) in one forward call.

One `forward(anchor, rel, target, ...)` computes L = η·L_KGC1 + L_KGC2 + L_Diff for a batch of
queries (anchor, rel ∈ [0, 2R), target) so the trainable can wrap the module in DDP. Every parameter
receives a gradient in every call (scorer through L_KGC1/L_KGC2, denoiser through L_Diff), so DDP
needs no find_unused_parameters.

Space of the diffusion (our choice; the paper does not settle it): KGE embeddings live at a tiny scale
(±(γ+2)/dim), so an N(0, I) prior would drown them and every generated negative would be trivially far.
The chain therefore runs on embeddings standardised by the current (detached) per-dimension mean and
std of the entity table, and generated negatives are mapped back before scoring.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kgsearch.dans.diffusion import (Denoiser, alpha_bar, beta_max, beta_schedule, diffusion_loss,
                                     reverse_chain, reverse_plan)
from kgsearch.dans.graph import cluster_centroids, neighbour_mean
from kgsearch.dans.margins import NUM_BANDS, band_weights, kgc1_loss, kgc2_loss
from kgsearch.dans.negatives import TrueAnswers, sample_negatives
from kgsearch.models.kge import build_scorer
from kgsearch.precision import autocast


def column_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and (unbiased, floored) std. Same values as x.mean(0), x.std(0) but two plain passes:
    torch's std over dim 0 took 3.3 ms on a 3,007 x 200 table on this CPU, this 0.25 ms (every batch)."""
    mean = x.mean(0)
    var = (x - mean).square().sum(0) / max(x.shape[0] - 1, 1)
    return mean, var.sqrt().clamp(min=1e-8)


class DansModel(nn.Module):
    """Base scorer (`self.scorer`) plus, unless `dans=false`, the conditional denoiser (`self.denoiser`)."""

    def __init__(self, config: Any, num_entities: int, num_relations: int,
                 graph: dict[str, torch.Tensor] | None = None, truth: TrueAnswers | None = None,
                 bf16: bool = False) -> None:
        super().__init__()
        self.config = config
        # bf16 autocast for the denoiser only (its matmuls are most of the diffusion overhead; the chain
        # carries no gradient and L_Diff tolerates it); the scorer and its losses stay fp32.
        self.bf16 = bf16
        self.truth = truth  # training facts masked out of the random negatives (None: no filtering)
        self.scorer = build_scorer(config.scorer, num_entities, num_relations, config.dim, gamma=config.gamma)
        self.denoiser: Denoiser | None = None
        if config.dans:
            if graph is None:
                raise ValueError("dans=true needs the prepared difficulty, cluster labels and neighbour index")
            ent, rel = self.scorer.entity_dim, self.scorer.relation_dim
            cond_dim = ent + rel + (2 * ent if config.ccd else 0)  # [h ⊕ r] (+ [x_type; x_nbr] with CCD)
            self.denoiser = Denoiser(ent, cond_dim, config.denoiser_hidden, config.time_dim)
            self.plan = reverse_plan(config.diffusion_steps, config.sampling_steps)
            # Fixed per-entity inputs, kept as plain tensors (not buffers): nothing to checkpoint and
            # nothing for DDP to broadcast every step.
            self.difficulty = graph["difficulty"].float()
            self.labels = graph["cluster_labels"].long()
            self.num_clusters = int(graph["num_clusters"])
            self.rowptr = graph["neighbour_rowptr"].long()
            self.cols = graph["neighbour_cols"].long()

    def _apply(self, fn, *args, **kwargs):  # keep the plain tensors on the module's device
        super()._apply(fn, *args, **kwargs)
        if self.truth is not None:
            self.truth.to(self.scorer.entity.device)
        if self.denoiser is not None:
            device = self.scorer.entity.device
            for name in ("difficulty", "labels", "rowptr", "cols"):
                setattr(self, name, getattr(self, name).to(device))
        return self

    # -- conditions ---------------------------------------------------------------------------
    def _condition(self, anchor: torch.Tensor, rel: torch.Tensor, mean: torch.Tensor,
                   std: torch.Tensor) -> torch.Tensor:
        """[x_h ⊕ x_r (; x_type; x_nbr)] for each query, all detached and standardised."""
        entity = self.scorer.entity.detach()
        rel_table = self.scorer.relation_vector(
            torch.arange(2 * self.scorer.num_relations, device=entity.device)).detach()
        rel_scale = column_stats(rel_table)[1]
        parts = [(entity.index_select(0, anchor) - mean) / std, self.scorer.relation_vector(rel).detach() / rel_scale]
        if self.config.ccd:
            centroids = cluster_centroids(entity, self.labels, self.num_clusters)
            parts.append((centroids[self.labels[anchor]] - mean) / std)
            nbr = neighbour_mean(entity, anchor, self.rowptr, self.cols, fill=mean)
            parts.append((nbr - mean) / std)
        return torch.cat(parts, dim=-1)

    def _alpha_bar(self, target: torch.Tensor) -> torch.Tensor:
        """Per-entity ᾱ_t (Eq. 2–3, 6); w/o DFS every entity shares β_max = β_global."""
        c = self.config
        if c.dfs:
            bmax = beta_max(self.difficulty[target], c.beta_low, c.beta_global, c.mu)
        else:
            bmax = torch.full(target.shape, c.beta_global, device=target.device)
        return alpha_bar(beta_schedule(bmax, c.diffusion_steps, c.beta_init))

    def band_weights(self, tau: float) -> torch.Tensor:
        """Eq. 14 weights; w/o DTM fixed equal weights."""
        c = self.config
        if not c.dtm:
            return torch.full((NUM_BANDS,), 1.0 / NUM_BANDS)
        return band_weights(tau, c.curriculum_lambda, c.curriculum_zeta)

    # -- the loss -----------------------------------------------------------------------------
    def forward(self, anchor: torch.Tensor, rel: torch.Tensor, target: torch.Tensor, tau: float = 0.0,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        c, scorer = self.config, self.scorer
        device = anchor.device
        query = scorer.query(anchor, rel)  # [B, D], shared by every distance below
        pos = scorer.match(query, scorer.embed(target))
        neg_ids, neg_mask = sample_negatives(anchor, rel, scorer.num_entities, c.negatives, self.truth,
                                             generator)
        kgc2 = kgc2_loss(pos, scorer.match(query.unsqueeze(1), scorer.embed(neg_ids)), c.gamma,
                         c.adversarial_temperature, neg_mask)
        zero = pos.new_zeros(())
        if self.denoiser is None:  # dans=false: the plain base scorer with random negatives
            return {"loss": kgc2, "kgc1": zero, "kgc2": kgc2.detach(), "diff": zero}

        entity = scorer.entity.detach()
        mean, std = column_stats(entity)
        x0 = (entity.index_select(0, target) - mean) / std
        abar = self._alpha_bar(target)
        with autocast(device, self.bf16):
            cond_proj = self.denoiser.project_condition(self._condition(anchor, rel, mean, std))
            diff = diffusion_loss(self.denoiser, x0, abar, cond_proj, generator).float()  # Eq. 11, whole batch

        # Graded negatives for the first `g` queries (the batch is already a random permutation),
        # `gen_negatives` parallel chains each; the chain itself carries no gradient.
        g = max(1, round(c.gen_fraction * len(anchor)))
        m = c.gen_negatives
        rows = torch.arange(g, device=device).repeat_interleave(m)
        with autocast(device, self.bf16):
            bands = reverse_chain(self.denoiser, x0[rows], abar[rows], cond_proj.detach()[rows], self.plan,
                                  generator)  # [4, g·m, D], fp32 (the update mixes x_t in fp32)
        bands = bands.view(NUM_BANDS, g, m, -1) * std + mean
        weights = self.band_weights(tau).to(device)
        kappa = torch.multinomial(weights, g, replacement=True, generator=generator)  # κ ~ Cat(w), 0-based
        generated = bands[kappa, torch.arange(g, device=device)]  # [g, m, D]
        gen_dist = scorer.match(query[:g].unsqueeze(1), generated)
        beta_m = c.margin_increment if c.dtm else 0.0  # w/o DTM: fixed margin γ_base
        kgc1 = kgc1_loss(pos[:g], gen_dist, kappa, weights, tau, c.gamma, beta_m)
        loss = c.eta * kgc1 + kgc2 + diff  # Eq. 18–19
        return {"loss": loss, "kgc1": kgc1.detach(), "kgc2": kgc2.detach(), "diff": diff.detach()}
