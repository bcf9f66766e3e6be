"""DTM: curriculum band weights (Eq. 14), stage-aware margins (Eq. 16) and the KGC losses (Eq. 15, 17).

Bands k = 1..4 are the reverse-chain steps T/20, T/10, T/5, T/2; band 1 (T/20) is the hardest.
Band indices are 0-based in tensors (0 = band 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NUM_BANDS = 4
STAGE_BOUNDS = (0.0, 0.25, 0.5, 0.75, 1.0)  # b_0..b_4 of Eq. 14


def band_weights(tau: float, lam: float, zeta: float) -> torch.Tensor:
    """Eq. 14: w^(k) = softmax_k(λ·[τ − b_{k−1}]_+^ζ), k = 1..4 -> FloatTensor [4], sums to 1.

    At τ = 0 every band gets 1/4; as τ grows, bands with earlier stage bounds (band 1 = hardest)
    accumulate the largest exponent, so the hard bands dominate late in training.
    """
    bounds = torch.tensor(STAGE_BOUNDS[:NUM_BANDS], dtype=torch.float64)
    gap = (tau - bounds).clamp(min=0.0)
    # 0^ζ must be 0 (a band whose stage has not begun gets no boost), also for ζ -> 0.
    boost = torch.where(gap > 0, gap.pow(zeta), torch.zeros_like(gap))
    return torch.softmax(lam * boost, dim=0).float()


def mean_expected_weight(epochs: int, lam: float, zeta: float) -> float:
    """DTM's run average of Σ_k w_k(τ)² over τ = e/E, e = 1..E: a negative's expected loss weight when
    κ ~ Cat(w) and it is weighted by w^(κ) (Eq. 15 uses w twice)."""
    return sum(float(band_weights(e / epochs, lam, zeta).square().sum()) for e in range(1, epochs + 1)) / epochs


def hardness(kappa: torch.Tensor) -> torch.Tensor:
    """hard_κ = (5 − κ)/4 for 1-based κ; here `kappa` is 0-based, so (4 − kappa)/4 ∈ {1, .75, .5, .25}."""
    return (NUM_BANDS - kappa).to(torch.float32) / NUM_BANDS


def stage_margin(kappa: torch.Tensor, tau: float, gamma_base: float, beta_m: float) -> torch.Tensor:
    """Eq. 16: γ_κ(τ) = γ_base·(1 + β_m·hard_κ·τ), per 0-based band index."""
    return gamma_base * (1.0 + beta_m * hardness(kappa) * tau)


def margin_loss(pos_dist: torch.Tensor, neg_dist: torch.Tensor, margin: torch.Tensor | float,
                neg_weight: torch.Tensor | float = 1.0, adversarial_temperature: float = 0.0,
                neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Logistic margin loss per positive (Eq. 15 / 17), averaged over the batch.

    −log σ(γ − S(x⁺)) − weight · mean_j log σ(S(x̃_j) − γ); pos_dist [B], neg_dist [B, n],
    margin scalar or [B], neg_weight scalar or [B]. adversarial_temperature > 0 replaces the plain
    mean over negatives by RotatE's self-adversarial weights softmax(−α·S(x̃)) (detached); 0 is the
    paper's uniform mean. neg_mask [B, n] (True = use) drops negatives, e.g. known true answers.
    """
    margin = torch.as_tensor(margin, dtype=pos_dist.dtype, device=pos_dist.device)
    pos_term = F.logsigmoid(margin - pos_dist)
    neg_margin = margin.unsqueeze(-1) if margin.dim() else margin
    neg_logp = F.logsigmoid(neg_dist - neg_margin)
    if adversarial_temperature > 0:
        logits = -adversarial_temperature * neg_dist.detach()
        if neg_mask is not None:
            logits = logits.masked_fill(~neg_mask, float("-inf"))
        attn = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # a row with no valid negative adds nothing
        neg_term = (attn * neg_logp).sum(-1)
    elif neg_mask is not None:
        keep = neg_mask.to(neg_logp.dtype)
        neg_term = (keep * neg_logp).sum(-1) / keep.sum(-1).clamp(min=1.0)
    else:
        neg_term = neg_logp.mean(-1)
    return -(pos_term + neg_weight * neg_term).mean()


def kgc1_loss(pos_dist: torch.Tensor, gen_dist: torch.Tensor, kappa: torch.Tensor, weights: torch.Tensor,
              tau: float, gamma_base: float, beta_m: float) -> torch.Tensor:
    """Eq. 15 on generated negatives: each positive's negatives come from its drawn band κ, carry weight
    weights[κ] (w^(κ) under DTM) and are separated with the stage-aware margin γ_κ(τ).
    pos_dist [G], gen_dist [G, m], kappa [G]."""
    margin = stage_margin(kappa, tau, gamma_base, beta_m).to(pos_dist)
    return margin_loss(pos_dist, gen_dist, margin, weights.to(pos_dist)[kappa])


def softmax_loss(logits: torch.Tensor, target: torch.Tensor, gen_logits: torch.Tensor | None = None,
                 kappa: torch.Tensor | None = None, weights: torch.Tensor | None = None, tau: float = 0.0,
                 beta_m: float = 0.0, eta: float = 1.0) -> torch.Tensor:
    """1-vs-all cross-entropy (the ComplEx-N3 base), with generated negatives as extra candidates.

    logits [B, N] over every entity; gen_logits [G, m] for the first G rows (`extended_cross_entropy`).
    """
    if gen_logits is None:
        return F.cross_entropy(logits, target)
    g = gen_logits.shape[0]
    total = extended_cross_entropy(logits[:g], target[:g], gen_logits, kappa, weights, tau, beta_m, eta)
    if g < len(target):
        total = total + F.cross_entropy(logits[g:], target[g:], reduction="sum")
    return total / len(target)


def extended_cross_entropy(logits: torch.Tensor, target: torch.Tensor, gen_logits: torch.Tensor,
                           kappa: torch.Tensor, weights: torch.Tensor, tau: float, beta_m: float,
                           eta: float) -> torch.Tensor:
    """Summed cross-entropy of G rows whose generated negatives gen_logits [G, m] join logits [G, N].

    In softmax form Eq. 15's negative weight becomes a log-weight on the candidate's logit (η·4·weights[κ]:
    1 for uniform bands and η = 1) and the stage-aware margin an additive logit margin β_m·hard_κ·τ
    (harder bands push harder late in training), our adaptation of the paper's margin losses to a softmax base.
    """
    shift = beta_m * hardness(kappa).to(logits) * tau + torch.log(eta * NUM_BANDS * weights.to(logits)[kappa])
    extended = torch.cat([logits, gen_logits + shift.unsqueeze(-1)], dim=1)
    return F.cross_entropy(extended, target, reduction="sum")


def kgc2_loss(pos_dist: torch.Tensor, neg_dist: torch.Tensor, gamma_base: float,
              adversarial_temperature: float = 0.0, neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 17: random-replacement negatives with the fixed margin γ_base."""
    return margin_loss(pos_dist, neg_dist, gamma_base, 1.0, adversarial_temperature, neg_mask)
