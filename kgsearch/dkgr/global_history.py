"""Global-history head (TiRGN-style copy mechanism, config `global_history`): the entity distribution
of a query (s, r, ?, t) becomes the mixture

    p(o) = alpha * p_copy(o) + (1 - alpha) * p_dec(o),      p_dec = softmax(z), z the decoder's logits,

where p_copy is a softmax restricted to H(s, r, t), the entities that were an answer of (s, r) at any
time index < t (kgsearch.dkgr.recurrency: ground truth of every earlier day, valid/test days included
when a valid/test day is predicted, strictly earlier training days for a training target; with
`eval_history: multi_step` the evaluated split's earlier days are the model's predicted facts instead,
kgsearch/dkgr/multistep.py). Outside H, p_copy is exactly 0; a query with an empty H keeps p_dec alone
(the copy distribution is undefined).
Training minimises the NLL of the mixture, -log p(target).

The copy score is linear in three features of each candidate o in H:

    c(o) = w_0 * z(o) + w_1 * (-log(t - t_last(o))) + w_2 * log(n(o))

with n(o) the number of earlier timestamps of (s, r, o). w = (1, 0, 0) at the start: the decoder's own
logits restricted to H (TiRGN's second decoder with a history mask, without the second decoder: no
extra [B, N] matmul). w_1 and w_2 learn how much recency and frequency matter -- with w_1 large the
head ranks H the way the strict recurrency baseline does, which TiRGN's mask alone cannot express for
answers older than the m history snapshots. Unlike TiRGN, which multiplies the logits by the 0/1 mask
(exp(0) leaves mass on every entity), the mask here is -inf.

alpha (`history_weight`) is fixed during training and chosen by validation in a sweep, as TiRGN's
`history_rate` is: the mixture weight that maximises the training likelihood is not the one that
generalises best, since the decoder fits its training days better than unseen ones. With
`learn_history_weight` it is learned instead (sigmoid of a parameter initialised at history_weight),
for graphs nobody sweeps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kgsearch.dkgr.cpu_ops import cross_entropy
from kgsearch.dkgr.recurrency import HistoryPairs, RecurrencyIndex


class GlobalHistoryHead(nn.Module):
    def __init__(self, index: RecurrencyIndex, alpha: float, learn_alpha: bool = False):
        super().__init__()
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"history weight alpha must be in (0, 1), got {alpha}")
        self.index = index          # data, not state: rebuilt from the dataset, never saved
        self.copy_weight = nn.Parameter(torch.tensor([1.0, 0.0, 0.0]))   # w_0, w_1, w_2
        self.alpha_logit = nn.Parameter(torch.tensor(math.log(alpha / (1 - alpha)))) if learn_alpha else None
        self.alpha = alpha

    def log_alphas(self) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """(log alpha, log(1 - alpha))."""
        if self.alpha_logit is None:
            return math.log(self.alpha), math.log1p(-self.alpha)
        return nn.functional.logsigmoid(self.alpha_logit), nn.functional.logsigmoid(-self.alpha_logit)

    def history(self, anchor: torch.Tensor, rel: torch.Tensor, time: torch.Tensor, index=None) -> HistoryPairs:
        """Earlier answers from `index` (anything with RecurrencyIndex's `lookup`; default: the head's own,
        the ground truth of every earlier day; multi-step evaluation passes kgsearch.dkgr.multistep's)."""
        return (self.index if index is None else index).lookup(anchor, rel, time)

    def copy_log_probs(self, logits: torch.Tensor, pairs: HistoryPairs, time: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p_copy of each pair [P], whether each query has any history [B])."""
        with torch.autocast(logits.device.type, enabled=False):
            dt = (time.long()[pairs.rows] - pairs.last).clamp(min=1).float()
            feats = torch.stack([logits[pairs.rows, pairs.ents].float(), -dt.log(), pairs.count.float().log()], 1)
            c = feats @ self.copy_weight
            lse, has = _segment_logsumexp(c, pairs.rows, len(time))
            return c - lse[pairs.rows], has

    def copy_distribution(self, logits: torch.Tensor, anchor: torch.Tensor, rel: torch.Tensor,
                          time: torch.Tensor) -> torch.Tensor:
        """Dense [B, N] p_copy (rows without history are all 0): for inspection and tests."""
        pairs = self.history(anchor, rel, time)
        log_p, _ = self.copy_log_probs(logits, pairs, time)
        out = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device)
        out[pairs.rows, pairs.ents] = log_p.exp()
        return out

    def log_probs(self, logits: torch.Tensor, anchor: torch.Tensor, rel: torch.Tensor,
                  time: torch.Tensor, index=None) -> torch.Tensor:
        """[B, N] log of the mixture (rows without history: log p_dec + a constant, same ranking)."""
        pairs = self.history(anchor, rel, time, index)
        log_copy, _ = self.copy_log_probs(logits, pairs, time)
        log_a, log_1a = self.log_alphas()
        with torch.autocast(logits.device.type, enabled=False):
            out = torch.log_softmax(logits.float(), dim=1) + log_1a
            at = out[pairs.rows, pairs.ents]
            out[pairs.rows, pairs.ents] = torch.logaddexp(at, log_copy + log_a)
        return out

    def loss(self, logits: torch.Tensor, anchor: torch.Tensor, rel: torch.Tensor, target: torch.Tensor,
             time: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """NLL of the mixture, -log(alpha p_copy(target) + (1 - alpha) p_dec(target)), mean or sum."""
        pairs = self.history(anchor, rel, time)
        log_copy, has = self.copy_log_probs(logits, pairs, time)
        log_a, log_1a = self.log_alphas()
        log_dec = -cross_entropy(logits, target, "none")          # [B], without a [B, N] fp32 copy
        with torch.autocast(logits.device.type, enabled=False):
            hit = pairs.ents == target[pairs.rows]                # at most one pair per row
            log_copy_t = log_dec.new_full(log_dec.shape, float("-inf"))      # target outside H: p_copy 0
            log_copy_t = log_copy_t.index_put((pairs.rows[hit],), log_copy[hit])
            mixed = torch.logaddexp(log_dec + log_1a, log_copy_t + log_a)
            nll = -torch.where(has, mixed, log_dec)
        return nll.mean() if reduction == "mean" else nll.sum()


def _segment_logsumexp(values: torch.Tensor, rows: torch.Tensor,
                       num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(logsumexp of `values` per row [num_rows], whether the row has any value); empty rows give 0
    (never used: callers mask them with the second output), so no inf - inf reaches a gradient."""
    has = torch.bincount(rows, minlength=num_rows) > 0
    peak = values.new_full((num_rows,), float("-inf")).scatter_reduce(0, rows, values.detach(), "amax")
    peak = torch.where(has, peak, 0.0)
    total = values.new_zeros(num_rows).index_add(0, rows, (values - peak[rows]).exp())
    return torch.where(has, total, 1.0).log() + peak, has
