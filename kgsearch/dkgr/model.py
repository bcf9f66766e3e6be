"""DKGR-DR: evolution unit (Eq. 3-7), static fusion (Eq. 8-14) and the training loss (Eq. 15-17).

Per target timestamp t the model starts from E_{t-m} (learned; with the static graph, RE-GCN style,
the normalised Relational-GAT output E_s) and R_{t-m} = r_RI, and runs one evolution unit per history
snapshot, oldest first:

    r'_t = [ meanpool(E_{t-1} over the entities linked by r at t) ; r_RI ]     Eq. 4
    R_t  = GRU(R'_t, R_{t-1})                                                   Eq. 5
    E'_t = R-GCN_omega(E_{t-1}, R_t, G_t)                                       Eq. 3
    U_t  = sigmoid(W_U E'_t + b_U);  E_t = U_t * E'_t + (1 - U_t) * E_{t-1}    Eq. 6-7

Entity / relation prediction decode (tanh(E_t), R_t) after the last step. With `layer_norm` (RE-GCN's
--layer-norm) R_t and E'_t are L2-normalised at every step, and E_{t-m} is normalised too; E_t itself,
the gate's mix of E'_t and E_{t-1}, is not, so the decoders get an un-normalised state unless
`final_norm` normalises it once more before decoding, as RE-GCN does.

Ablation switches (config): rgcn=False replaces E'_t by a learned, randomly initialised embedding
table (paper "-RGCN": "replaced ... with randomly initialized embedding vectors"); gru=False replaces
the relation GRU by a 1-D convolution over the three rows [pool ; r_RI ; R_{t-1}] (paper "-GRU":
"replaced ... with a convolutional operation"; no gates); decoder="fc" is "-ConvE"; static=False
drops the static graph, Relational-GAT and L_st ("-S").

Loss (Eq. 17): L = lambda_1 L_e + lambda_2 L_r + lambda_3 L_st with softmax cross-entropy for L_e, L_r
(Eq. 15-16). `loss_reduction` says how the printed sums are normalised (see `DkgrModel.forward`).
With `global_history` (not in the paper; TiRGN's copy mechanism) L_e is the NLL of the mixture of the
decoder's entity distribution with a copy distribution over the earlier answers (global_history.py).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from kgsearch.dkgr.cpu_ops import cross_entropy, l2_normalize
from kgsearch.dkgr.decoders import make_decoder
from kgsearch.dkgr.global_history import GlobalHistoryHead
from kgsearch.dkgr.history import Snapshot
from kgsearch.dkgr.recurrency import RecurrencyIndex
from kgsearch.dkgr.rgat import RelationalGAT
from kgsearch.dkgr.rgcn import RGCN
from kgsearch.dkgr.static_graph import NUM_STATIC_RELATIONS


def angle_loss(static: torch.Tensor, evolved: Sequence[torch.Tensor], gamma_deg: float) -> torch.Tensor:
    """L_st = sum_tau sum_i max(cos theta_tau - cos(e_s,i, e_{t-m+tau,i}), 0),  theta_tau = min(gamma*tau, 90 deg).

    Eq. 11-14 with the sign the printed text garbles: penalise angles wider than theta_tau. tau runs
    over the evolution steps 1..m (E_{t-m+1} .. E_t): tau = 0 would be the initial state, which RE-GCN's
    implementation of the same loss skips as well.

    cos is F.cosine_similarity's (x1 / max(|x1|, eps)) . (x2 / max(|x2|, eps)) with the static side
    normalised once for all m steps instead of inside every call.
    """
    eps = 1e-8   # F.cosine_similarity's
    static_unit = static / torch.linalg.vector_norm(static, dim=1, keepdim=True).clamp_min(eps)
    loss = static.new_zeros(())
    for tau, emb in enumerate(evolved, start=1):
        cos_theta = math.cos(math.radians(min(gamma_deg * tau, 90.0)))
        cos = (static_unit * emb).sum(1) / torch.linalg.vector_norm(emb, dim=1).clamp_min(eps)
        loss = loss + (cos_theta - cos).clamp(min=0).sum()
    return loss


class RelationConv(nn.Module):
    """-GRU ablation: R_t = tanh(Conv1d([pool ; r_RI ; R_{t-1}])), a gate-free convolutional update."""

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(3, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        d = prev.shape[1]
        rows = torch.stack([x[:, :d], x[:, d:], prev], dim=1)          # [K, 3, d]
        return torch.tanh(self.conv(rows).squeeze(1))


class DkgrModel(nn.Module):
    def __init__(self, cfg: Any, num_entities: int, num_relations: int, static_graph: dict | None,
                 device: torch.device | str = "cpu", history_index: RecurrencyIndex | None = None):
        super().__init__()
        d, N, R2 = cfg.dim, num_entities, 2 * num_relations
        self.cfg, self.num_entities, self.num_relations = cfg, N, num_relations

        self.ent_emb = nn.Parameter(torch.empty(N, d))        # E_{t-m} (and static entity node features)
        self.rel_emb = nn.Parameter(torch.empty(R2, d))       # r_RI of Eq. 4 and R_{t-m}; r + R = inverse
        nn.init.normal_(self.ent_emb)
        nn.init.xavier_normal_(self.rel_emb)

        if cfg.rgcn:
            self.rgcn = RGCN(d, cfg.rgcn_layers, R2, cfg.dropout, cfg.rgcn_impl, cfg.num_bases)
        else:
            self.rand_ent = nn.Parameter(torch.empty(N, d))   # -RGCN: E'_t = a learned random table
            nn.init.normal_(self.rand_ent)
        self.rel_update = nn.GRUCell(2 * d, d) if cfg.gru else RelationConv()   # Eq. 5 / -GRU
        self.gate = nn.Linear(d, d)                                              # W_U, b_U of Eq. 6
        nn.init.xavier_uniform_(self.gate.weight, gain=nn.init.calculate_gain("relu"))
        nn.init.zeros_(self.gate.bias)

        dec = dict(dim=d, channels=cfg.decoder_channels, kernel_size=cfg.kernel_size,
                   input_dropout=cfg.input_dropout, hidden_dropout=cfg.hidden_dropout,
                   feature_dropout=cfg.feature_dropout)
        self.entity_decoder = make_decoder(cfg.decoder, **dec)
        self.relation_decoder = make_decoder(cfg.decoder, **dec)

        # Global-history head (cfg.global_history): the copy distribution mixed into L_e and the ranks.
        self.global_head = None
        if getattr(cfg, "global_history", False):
            if history_index is None:
                raise ValueError("global_history needs the answer index (kgsearch.dkgr.recurrency)")
            self.global_head = GlobalHistoryHead(history_index.to(device), cfg.history_weight,
                                                 cfg.learn_history_weight)

        self.static = bool(cfg.static) and static_graph is not None
        if self.static:
            num_words = len(static_graph["words"])
            self.word_emb = nn.Parameter(torch.empty(num_words, d))
            loops = bool(getattr(cfg, "gat_self_loops", False))
            self.static_rel = nn.Parameter(torch.empty(2 * NUM_STATIC_RELATIONS + loops, d))
            nn.init.normal_(self.word_emb)
            nn.init.xavier_normal_(self.static_rel)
            self.rgat = RelationalGAT(d, cfg.gat_layers, cfg.dropout)
            # Both directions: an entity attends over its words (isA / country / is) and a word over
            # the entities naming it (inverse types 3..5), so entities sharing a word meet at layer 2.
            # Without the inverse edges word nodes would receive nothing and go to zero after layer 1.
            ent, word, rel = (static_graph[k].long() for k in ("ent", "word", "rel"))
            word = word + N
            src, dst, etype = torch.cat([word, ent]), torch.cat([ent, word]), torch.cat([rel, rel + NUM_STATIC_RELATIONS])
            if loops:  # a node's own state joins its update, so layer 2 passes on what layer 1 took from the words
                every = torch.arange(N + num_words)
                src, dst = torch.cat([src, every]), torch.cat([dst, every])
                etype = torch.cat([etype, torch.full_like(every, 2 * NUM_STATIC_RELATIONS)])
            self._static_edges = (src.to(device), dst.to(device), etype.to(device))

    # ------------------------------------------------------------------ encoder
    def static_embedding(self) -> torch.Tensor:
        """E_s: Relational-GAT (Eq. 8-10) over entity + word nodes; entity rows."""
        src, dst, etype = self._static_edges
        nodes = torch.cat([self.ent_emb, self.word_emb])
        out, _ = self.rgat(nodes, self.static_rel, src, dst, etype)
        return out[: self.num_entities]

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return l2_normalize(x) if self.cfg.layer_norm else x

    def evolve(self, steps: Sequence[Snapshot], e_static: torch.Tensor | None = None
               ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Evolve over the history snapshots, oldest first: ([E after each step], [R after each step]).

        `e_static` is `static_embedding()`, computed once by the caller for all timestamps of a batch.
        """
        if e_static is not None and self.cfg.static_init:
            h = l2_normalize(e_static)   # RE-GCN: the static view seeds the evolution
        else:
            h = self._norm(self.ent_emb)
        r = self.rel_emb
        hs, rs = [], []
        num_rel2 = self.rel_emb.shape[0]
        for snap in steps:   # sequential: step i needs E and R of step i - 1
            # Eq. 4: mean of E_{t-1} over the entities each relation touches at t (0 if absent).
            pooled = h.new_zeros(num_rel2, h.shape[1]).index_add(0, snap.pair_rel,
                                                                 h.index_select(0, snap.pair_ent))
            count = torch.bincount(snap.pair_rel, minlength=num_rel2).clamp(min=1).to(h.dtype)
            x = torch.cat([pooled / count[:, None], self.rel_emb], dim=1)
            r = self._norm(self.rel_update(x, r))                             # Eq. 5
            e_struct = self.rgcn(h, r, snap) if self.cfg.rgcn else self.rand_ent   # Eq. 3
            e_struct = self._norm(e_struct)
            u = torch.sigmoid(self.gate(e_struct))                            # Eq. 6
            h = torch.lerp(h, e_struct, u)          # Eq. 7: u * E'_t + (1 - u) * E_{t-1}, one pass
            hs.append(h)
            rs.append(r)
        return hs, rs

    def encode(self, steps: Sequence[Snapshot], e_static: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, list]:
        """(E_t, R_t, [E after each step]) after the history `steps` (at least one)."""
        hs, rs = self.evolve(steps, e_static)
        return self._decoded_state(hs[-1]), rs[-1], hs

    def _decoded_state(self, h: torch.Tensor) -> torch.Tensor:
        """The entity state the decoders see: E_t, or with `final_norm` E_t L2-normalised (RE-GCN)."""
        return l2_normalize(h) if getattr(self.cfg, "final_norm", False) else h

    # ------------------------------------------------------------------ decoders
    # `ent` is tanh(h) -- RE-GCN's ConvTransE squashes the entity matrix before decoding. Callers that
    # decode several batches from one state pass it in so that it is computed (and differentiated) once.
    def entity_scores(self, h: torch.Tensor, r: torch.Tensor, anchors: torch.Tensor,
                      rels: torch.Tensor, ent: torch.Tensor | None = None) -> torch.Tensor:
        """[B, N] scores for (anchor, rel, ?), rel in [0, 2R) (head queries use r + R)."""
        ent = torch.tanh(h) if ent is None else ent
        return self.entity_decoder(ent[anchors], r[rels], ent)

    def relation_scores(self, h: torch.Tensor, r: torch.Tensor, subj: torch.Tensor,
                        obj: torch.Tensor, ent: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 2R] scores for (subj, ?, obj); (o, r + R, s) is the inverse of (s, r, o)."""
        ent = torch.tanh(h) if ent is None else ent
        return self.relation_decoder(ent[subj], ent[obj], r)

    # ------------------------------------------------------------------ training loss
    def forward(self, batch: Sequence[tuple[Sequence[Snapshot], Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole training loss (Eq. 17) of a batch of history windows, averaged over them.

        A window is (steps, targets): its snapshots, evolved once, and targets = [(end, facts [k, 3])],
        the timestamps decoded from the state after the window's first `end` steps. (steps, facts) is
        one target after all steps -- the usual window of one timestamp and its m snapshots; the
        recipe builds several-target windows only with `share_history`. One call is one DDP forward;
        E_s (static graph) is computed once and shared by the batch. Returns (loss, detached
        [L_e, L_r, L_st]).
        """
        # The evolution (Relational-GAT + the m-step recurrence) always runs in fp32; bf16 autocast, when
        # the caller enables it, covers the decoders only. Evolving in bf16 cost 1.1 / 1.9 / 2.4 points
        # of validation tf MRR after ICEWS14 epochs 2 / 3 / 4; bf16 decoders cost nothing measurable
        # (docs/benchmarks_dkgr.md, "Precision").
        with torch.autocast(self.ent_emb.device.type, enabled=False):
            e_static = self.static_embedding() if self.static else None
            evolved = [self.evolve(steps, e_static) for steps, _ in batch]
        parts = []
        for (hs, rs), (steps, targets) in zip(evolved, batch):
            if torch.is_tensor(targets):
                targets = [(len(steps), targets)]
            ce = torch.stack([self._prediction_losses(hs[end - 1], rs[end - 1], facts)
                              for end, facts in targets]).mean(0)
            if e_static is not None:
                # Eq. 14 over the window's states. A one-target window has at most m of them and the
                # factor is 1; a shared window (m + k - 1 states) is scaled to the weight of m steps.
                n = len(hs)
                loss_st = angle_loss(e_static, hs, self.cfg.angle_deg) * (min(n, self.cfg.history_len) / n)
            else:
                loss_st = ce.new_zeros(())
            if self.cfg.loss_reduction == "mean":
                loss_st = loss_st / self.num_entities
            parts.append(torch.cat([ce, loss_st.reshape(1)]))
        mean = torch.stack(parts).mean(0)
        cfg = self.cfg
        loss = cfg.lambda_entity * mean[0] + cfg.lambda_relation * mean[1] + cfg.lambda_static * mean[2]
        return loss, mean.detach()

    def _prediction_losses(self, h: torch.Tensor, r: torch.Tensor, facts: torch.Tensor) -> torch.Tensor:
        """[L_e, L_r] (Eq. 15-16) of one timestamp's facts, both directions, decoded from (h, r)."""
        s, rel, o = facts[:, 0], facts[:, 1], facts[:, 2]
        subj = torch.cat([s, o])                              # both directions via inverse relations
        rels = torch.cat([rel, rel + self.num_relations])
        obj = torch.cat([o, s])
        # Eq. 13/15/16 print sums (over queries, over entities). Taken literally ("sum"), or as RE-GCN
        # does (CE mean + L_st sum, "regcn"), the angle loss over all |E| entities swamps L_e early on
        # under grad-norm clipping: after 150 ICEWS14 steps the time-aware filtered MRR was 0.18
        # ("sum") and 0.12 ("regcn") against 0.22 with both averaged ("mean", the default) -- and
        # 0.21 with no static graph at all (docs/benchmarks_dkgr.md).
        ce = "mean" if self.cfg.loss_reduction in ("mean", "regcn") else "sum"
        h = self._decoded_state(h)
        ent = torch.tanh(h)
        # cpu_ops.cross_entropy = F.cross_entropy in fp32, without materialising fp32 [B, N] copies.
        scores = self.entity_scores(h, r, subj, rels, ent)
        if self.global_head is None:
            loss_e = cross_entropy(scores, obj, ce)                                       # Eq. 15
        else:   # NLL of the mixture with the copy distribution; facts carry their time as column 3
            if facts.shape[1] < 4:
                raise ValueError("global_history: the target facts need their time index (column 3)")
            loss_e = self.global_head.loss(scores, subj, rels, obj, facts[:, 3].repeat(2), ce)
        loss_r = cross_entropy(self.relation_scores(h, r, subj, obj, ent), rels, ce)    # Eq. 16
        return torch.stack([loss_e, loss_r])
