"""The DANS-KGC training module: base scorer + CCD denoiser, whole loss (Eq. 19) in one forward call.

One `forward(anchor, rel, target, ...)` computes L = η·L_KGC1 + L_KGC2 + L_Diff for a batch of
queries (anchor, rel ∈ [0, 2R), target) so the trainable can wrap the module in DDP. Every parameter
receives a gradient in every call (scorer through L_KGC1/L_KGC2, denoiser through L_Diff), so DDP
needs no find_unused_parameters. With a softmax base (`complex_n3`) L_KGC1 + L_KGC2 become one
1-vs-all cross-entropy whose candidates are every entity plus the generated negatives
(kgsearch/dans/margins.py, `softmax_loss`), and the N3 regulariser is added.

Space of the diffusion (our choice; the paper does not settle it): KGE embeddings live at a tiny scale
(±(γ+2)/dim), so an N(0, I) prior would drown them and every generated negative would be trivially far.
The chain therefore runs on embeddings standardised by the current (detached) per-dimension mean and
std of the entity table, and generated negatives are mapped back before scoring.

On the path-based GNN base (`scorer: nbfnet`, kgsearch/models/nbfnet.py) there is no entity table: an
entity's representation h_q(e) depends on the query. DANS then works in that space, per query: x_0 is
h_q(answer) (detached), the condition is [h_q(anchor) ⊕ q (; type centroid of h_q; mean h_q over the
anchor's other neighbours)], the statistics of the standardisation are those of the batch's reached
h_q rows, and a generated x̂ is scored by the GNN's own MLP([x̂; q]) as an extra softmax candidate
(docs/architecture.md, "DANS-KGC on its bases").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from kgsearch.dans.diffusion import (Denoiser, alpha_bar, beta_max, beta_schedule, diffusion_loss,
                                     matched_beta_max, reverse_chain, reverse_plan)
from kgsearch.dans.graph import cluster_centroids, neighbour_keys, neighbour_mean
from kgsearch.dans.margins import (NUM_BANDS, band_weights, kgc1_loss, kgc2_loss, mean_expected_weight,
                                   extended_cross_entropy, softmax_loss)
from kgsearch.dans.negatives import TrueAnswers, sample_negatives
from kgsearch.models.kge import build_scorer
from kgsearch.models.nbfnet import NBFNet
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
                 bf16: bool = False, train: torch.Tensor | None = None, score_bf16: bool = False) -> None:
        super().__init__()
        self.config = config
        # bf16 autocast for the denoiser only (its matmuls are most of the diffusion overhead; the chain
        # carries no gradient and L_Diff tolerates it); the scorer and its losses stay fp32.
        self.bf16 = bf16
        self.score_bf16 = score_bf16  # the softmax bases' [B, N] score matmul in training (score_precision)
        self.truth = truth  # training facts masked out of the random negatives (None: no filtering)
        self.scorer = build_base(config, num_entities, num_relations, train)
        self.gnn = isinstance(self.scorer, NBFNet)
        self.denoiser: Denoiser | None = None
        if config.dans:
            if graph is None:
                raise ValueError("dans=true needs the prepared difficulty, cluster labels and neighbour index")
            # the GNN's representations and query vectors are both `dim` wide
            ent, rel = (config.dim, config.dim) if self.gnn else (self.scorer.entity_dim, self.scorer.relation_dim)
            cond_dim = ent + rel + (2 * ent if config.ccd else 0)  # [h ⊕ r] (+ [x_type; x_nbr] with CCD)
            # hidden 0 = auto: at least the entity width (a narrower MLP cannot carry x_t through)
            hidden = config.denoiser_hidden or max(128, ent)
            self.denoiser = Denoiser(ent, cond_dim, hidden, config.time_dim)
            self.plan = reverse_plan(config.diffusion_steps, config.sampling_steps)
            # Fixed per-entity inputs, kept as plain tensors (not buffers): nothing to checkpoint and
            # nothing for DDP to broadcast every step.
            self.difficulty = graph["difficulty"].float()
            self.labels = graph["cluster_labels"].long()
            self.num_clusters = int(graph["num_clusters"])
            self.rowptr = graph["neighbour_rowptr"].long()
            self.cols = graph["neighbour_cols"].long()
            self.nbr_keys = neighbour_keys(self.rowptr, self.cols)
            # Matched ablations: each removes one idea, not the amount of negative pressure.
            # w/o DFS: one β_max for all with the same mean ᾱ_T as DFS gives (the same total noise).
            dfs_bmax = beta_max(self.difficulty, config.beta_low, config.beta_global, config.mu)
            self.shared_beta_max = matched_beta_max(dfs_bmax, config.diffusion_steps, config.beta_init)
            # w/o DTM: Eq. 15 weights a negative by w^(κ) with κ ~ Cat(w), so its expected weight is
            # Σ_k w_k²; the fixed uniform weights get DTM's run average of it instead of 1/4.
            self.uniform_weight = mean_expected_weight(config.epochs, config.curriculum_lambda,
                                                       config.curriculum_zeta)

    def _apply(self, fn, *args, **kwargs):  # keep the plain tensors on the module's device
        super()._apply(fn, *args, **kwargs)
        device = next(self.scorer.parameters()).device
        if self.truth is not None:
            self.truth.to(device)
        if self.denoiser is not None:
            for name in ("difficulty", "labels", "rowptr", "cols", "nbr_keys"):
                setattr(self, name, getattr(self, name).to(device))
        return self

    # -- conditions ---------------------------------------------------------------------------
    def _condition(self, anchor: torch.Tensor, rel: torch.Tensor, target: torch.Tensor, mean: torch.Tensor,
                   std: torch.Tensor) -> torch.Tensor:
        """[x_h ⊕ x_r (; x_type; x_nbr)] for each query, all detached and standardised; x_nbr leaves
        out the target being noised (an anchor with no other neighbour gets the fill value)."""
        entity = self.scorer.entity.detach()
        rel_table = self.scorer.relation_vector(
            torch.arange(2 * self.scorer.num_relations, device=entity.device)).detach()
        rel_scale = column_stats(rel_table)[1]
        parts = [(entity.index_select(0, anchor) - mean) / std, self.scorer.relation_vector(rel).detach() / rel_scale]
        if self.config.ccd:
            centroids = cluster_centroids(entity, self.labels, self.num_clusters)
            parts.append((centroids[self.labels[anchor]] - mean) / std)
            nbr = neighbour_mean(entity, anchor, self.rowptr, self.cols, fill=mean, exclude=target,
                                 keys=self.nbr_keys)
            parts.append((nbr - mean) / std)
        return torch.cat(parts, dim=-1)

    def _alpha_bar(self, target: torch.Tensor) -> torch.Tensor:
        """Per-entity ᾱ_t (Eq. 2–3, 6); w/o DFS every entity shares the matched β_max."""
        c = self.config
        if c.dfs:
            bmax = beta_max(self.difficulty[target], c.beta_low, c.beta_global, c.mu)
        else:
            bmax = torch.full(target.shape, self.shared_beta_max, device=target.device)
        return alpha_bar(beta_schedule(bmax, c.diffusion_steps, c.beta_init))

    def band_weights(self, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities κ is drawn with, loss weight of a negative of each band): Eq. 14's w for both;
        w/o DTM uniform draws, each weighted by DTM's average expected weight."""
        c = self.config
        if not c.dtm:
            return torch.full((NUM_BANDS,), 1.0 / NUM_BANDS), torch.full((NUM_BANDS,), self.uniform_weight)
        w = band_weights(tau, c.curriculum_lambda, c.curriculum_zeta)
        return w, w

    # -- the loss -----------------------------------------------------------------------------
    def forward(self, anchor: torch.Tensor, rel: torch.Tensor, target: torch.Tensor, tau: float = 0.0,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        c, scorer = self.config, self.scorer
        if self.gnn:
            return self._gnn_forward(anchor, rel, target, tau, generator)
        query = scorer.query(anchor, rel)  # [B, D], shared by every score below
        if scorer.loss == "softmax":
            return self._softmax_forward(anchor, rel, target, query, tau, generator)
        pos = scorer.match(query, scorer.embed(target))
        neg_ids, neg_mask = sample_negatives(anchor, rel, scorer.num_entities, c.negatives, self.truth,
                                             generator)
        kgc2 = kgc2_loss(pos, scorer.match(query.unsqueeze(1), scorer.embed(neg_ids)), c.gamma,
                         c.adversarial_temperature, neg_mask)
        zero = pos.new_zeros(())
        if self.denoiser is None:  # dans=false: the plain base scorer with random negatives
            return {"loss": kgc2, "kgc1": zero, "kgc2": kgc2.detach(), "diff": zero}
        diff, generated, kappa, weights = self._generate(anchor, rel, target, tau, generator)
        g = len(kappa)
        gen_dist = scorer.match(query[:g].unsqueeze(1), generated)
        beta_m = c.margin_increment if c.dtm else 0.0  # w/o DTM: fixed margin γ_base
        kgc1 = kgc1_loss(pos[:g], gen_dist, kappa, weights, tau, c.gamma, beta_m)
        loss = c.eta * kgc1 + kgc2 + diff  # Eq. 18–19
        return {"loss": loss, "kgc1": kgc1.detach(), "kgc2": kgc2.detach(), "diff": diff.detach()}

    def _softmax_forward(self, anchor, rel, target, query, tau, generator) -> dict[str, torch.Tensor]:
        """1-vs-all cross-entropy + N3 (ComplEx-N3); generated negatives join the softmax (margins.softmax_loss)."""
        c, scorer = self.config, self.scorer
        reg = c.n3_weight * scorer.n3(anchor, rel, target)
        if self.denoiser is None:
            plain = F.cross_entropy(self._logits(query), target)
            zero = plain.new_zeros(())
            return {"loss": plain + reg, "kgc1": zero, "kgc2": plain.detach(), "diff": zero}
        diff, generated, kappa, weights = self._generate(anchor, rel, target, tau, generator)
        g = len(kappa)
        # The rows that get generated negatives and the rest have a logit matrix each: two slices of one [B, N]
        # matrix would each back-propagate a zero-filled gradient of the full size (~60 ms a FB15k-237 batch).
        head, rest = self._logits(query[:g]), self._logits(query[g:])
        gen_logits = -scorer.match(query[:g].unsqueeze(1), generated)
        beta_m = c.margin_increment if c.dtm else 0.0
        rest_sum = F.cross_entropy(rest, target[g:], reduction="sum")
        mixed = (extended_cross_entropy(head, target[:g], gen_logits, kappa, weights, tau, beta_m, c.eta)
                 + rest_sum) / len(target)
        with torch.no_grad():  # the plain loss, logged as kgc2
            plain = (F.cross_entropy(head, target[:g], reduction="sum") + rest_sum) / len(target)
        return {"loss": mixed + reg + diff, "kgc1": mixed.detach(), "kgc2": plain, "diff": diff.detach()}

    def _logits(self, query: torch.Tensor) -> torch.Tensor:
        """Similarities to every entity as fp32 logits (the matmul in bf16 with score_precision: bf16)."""
        with autocast(query.device, self.score_bf16):
            logits = self.scorer.similarity_all(query)
        return logits.float()  # the softmax and its gradient in fp32

    def _gnn_forward(self, anchor, rel, target, tau, generator) -> dict[str, torch.Tensor]:
        """Softmax over all entities of the GNN's scores, with the query edge (and, with `edge_drop`, a
        random share of all edges, NBFNet's / RED-GNN's regulariser) removed; generated h_q vectors join it."""
        c, scorer = self.config, self.scorer
        graph = scorer.graph
        if c.edge_drop:  # one dropped-edge graph per batch, shared by its queries
            keep = torch.rand(graph.num_edges, generator=generator, device=graph.weight.device) >= c.edge_drop
            graph = graph.with_weights(keep.to(graph.weight.dtype))
        h = scorer.encode(anchor, rel, graph, target)  # [B, N, d]
        logits = scorer.score(h, rel)
        plain = softmax_loss(logits, target)
        zero = plain.new_zeros(())
        if self.denoiser is None:
            return {"loss": plain, "kgc1": zero, "kgc2": plain.detach(), "diff": zero}
        h = h.detach()
        mean, std, x0, cond = self._gnn_condition(h, anchor, rel, target)
        n, g = self._diffusion_rows(len(target))
        diff, generated, kappa, weights = self._diffuse(x0[:n], cond[:n], target[:n], g, tau, generator, mean, std)
        gen_logits = scorer.score(generated, rel[:len(kappa)])  # [g, m]: MLP([x̂; q])
        beta_m = c.margin_increment if c.dtm else 0.0
        mixed = softmax_loss(logits, target, gen_logits, kappa, weights, tau, beta_m, c.eta)
        return {"loss": mixed + diff, "kgc1": mixed.detach(), "kgc2": plain.detach(), "diff": diff.detach()}

    def _gnn_condition(self, h, anchor, rel, target):
        """(mean, std, standardised x_0 [B, d], condition [B, ·]) in the GNN's per-query space h [B, N, d].

        An entity the query does not reach has h_q = 0 (kgsearch/models/nbfnet.py), so the statistics and
        the type centroid use reached rows only; neither the centroid nor x_nbr contains the answer."""
        b, n, d = h.shape
        rows = torch.arange(b, device=h.device)
        reached = h.abs().sum(-1) > 0                                        # [B, N]
        mean, std = column_stats(h[reached] if bool(reached.any()) else h.reshape(-1, d))
        x0 = (h[rows, target] - mean) / std
        query_scale = column_stats(self.scorer.query.weight.detach())[1]
        parts = [(h[rows, anchor] - mean) / std, self.scorer.query(rel).detach() / query_scale]
        if self.config.ccd:
            same = (self.labels.unsqueeze(0) == self.labels[anchor].unsqueeze(1)) & reached
            same[rows, target] = False
            count = same.sum(1, keepdim=True)
            centroid = torch.einsum("bn,bnd->bd", same.to(h.dtype), h) / count.clamp(min=1)
            centroid = torch.where(count > 0, centroid, mean)
            nbr = neighbour_mean(h.reshape(b * n, d), anchor, self.rowptr, self.cols, fill=mean, exclude=target,
                                 keys=self.nbr_keys, row_offset=rows * n)
            parts += [(centroid - mean) / std, (nbr - mean) / std]
        return mean, std, x0, torch.cat(parts, dim=-1)

    def _diffusion_rows(self, batch: int) -> tuple[int, int]:
        """(rows L_Diff is taken on, rows that get generated negatives), both the batch's first ones (a batch
        is a random permutation): the whole batch and its first gen_fraction, or with `diffusion_rows:
        generated` the latter for both."""
        g = max(1, round(self.config.gen_fraction * batch))
        return (g if self.config.diffusion_rows == "generated" else batch), g

    def _generate(self, anchor, rel, target, tau, generator):
        """`_diffuse` in a KGE scorer's entity-embedding space (no condition for rows the denoiser never sees)."""
        entity = self.scorer.entity.detach()
        mean, std = column_stats(entity)
        n, g = self._diffusion_rows(len(target))
        anchor, rel, target = anchor[:n], rel[:n], target[:n]
        x0 = (entity.index_select(0, target) - mean) / std
        cond = self._condition(anchor, rel, target, mean, std)
        return self._diffuse(x0, cond, target, g, tau, generator, mean, std)

    def _diffuse(self, x0, cond, target, g, tau, generator, mean, std):
        """L_Diff on the rows given, and graded negatives for the first `g` of them:
        (L_Diff, generated [g, m, D] mapped back by mean / std, κ [g], loss weight per band)."""
        c, device = self.config, target.device
        abar = self._alpha_bar(target)
        with autocast(device, self.bf16):
            cond_proj = self.denoiser.project_condition(cond)
            diff = diffusion_loss(self.denoiser, x0, abar, cond_proj, generator).float()  # Eq. 11
        rows = torch.arange(g, device=device).repeat_interleave(c.gen_negatives)
        with autocast(device, self.bf16):  # the chain carries no gradient
            bands = reverse_chain(self.denoiser, x0[rows], abar[rows], cond_proj.detach()[rows], self.plan,
                                  generator, c.reverse_step)  # [4, g·m, D], fp32 (the update mixes x_t in fp32)
        bands = bands.view(NUM_BANDS, g, c.gen_negatives, -1)
        probs, weights = (w.to(device) for w in self.band_weights(tau))
        kappa = torch.multinomial(probs, g, replacement=True, generator=generator)  # κ ~ Cat(w), 0-based
        generated = bands[kappa, torch.arange(g, device=device)] * std + mean  # [g, m, D]; only the drawn band
        return diff, generated, kappa, weights


def build_base(config: Any, num_entities: int, num_relations: int, train: torch.Tensor | None) -> nn.Module:
    """The base scorer a DansConfig names: a KGE model, or the path-based GNN over the `train` triples."""
    if config.scorer == NBFNet.name:
        if train is None:
            raise ValueError("scorer nbfnet propagates over the training graph: pass train=")
        return NBFNet(num_entities, num_relations, config.dim, config.layers, triples=train,
                      dependent=config.dependent, dropout=config.gnn_dropout, propagation=config.propagation,
                      message=config.message, aggregate=config.aggregate)
    extra = {"init_scale": config.init_scale} if config.scorer == "complex_n3" else {}
    return build_scorer(config.scorer, num_entities, num_relations, config.dim, gamma=config.gamma, **extra)
