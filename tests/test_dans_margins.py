"""DTM: Eq. 14 band weights, Eq. 16 stage-aware margins, Eq. 15/17 logistic margin losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kgsearch.dans.margins import band_weights, hardness, kgc1_loss, kgc2_loss, margin_loss, stage_margin


def test_band_weights_uniform_at_start_and_normalised():
    assert torch.allclose(band_weights(0.0, lam=5.0, zeta=0.5), torch.full((4,), 0.25))
    for tau in (0.0, 0.1, 0.3, 0.6, 0.9, 1.0):
        w = band_weights(tau, lam=3.0, zeta=0.7)
        assert w.sum().item() == pytest.approx(1.0) and (w > 0).all()


def test_band_weights_ordered_late_with_band_one_heaviest():
    w = band_weights(1.0, lam=5.0, zeta=0.5)
    assert (w[:-1] > w[1:]).all()  # band 1 (T/20, hardest) > band 2 > band 3 > band 4


def test_band_weights_hand_computed():
    # τ = 0.5, λ = 1, ζ = 1: exponents [0.5, 0.25, 0, 0]
    e = torch.tensor([math.exp(0.5), math.exp(0.25), 1.0, 1.0])
    assert torch.allclose(band_weights(0.5, lam=1.0, zeta=1.0), (e / e.sum()).float())


def test_stage_margins_eq16():
    kappa = torch.arange(4)  # 0-based: band 1..4
    assert torch.allclose(hardness(kappa), torch.tensor([1.0, 0.75, 0.5, 0.25]))
    assert torch.allclose(stage_margin(kappa, 1.0, 10.0, 0.5), torch.tensor([15.0, 13.75, 12.5, 11.25]))
    assert torch.allclose(stage_margin(kappa, 0.0, 10.0, 0.5), torch.full((4,), 10.0))
    assert torch.allclose(stage_margin(kappa, 0.5, 8.0, 0.0), torch.full((4,), 8.0))  # β = 0: fixed margin


def test_margin_loss_hand_computed_and_masked():
    pos, neg = torch.tensor([1.0]), torch.tensor([[3.0, 0.0]])
    # −log σ(2 − 1) − mean(log σ(3 − 2), log σ(0 − 2))
    expected = -(F.logsigmoid(torch.tensor(1.0)) + (F.logsigmoid(torch.tensor(1.0)) +
                                                    F.logsigmoid(torch.tensor(-2.0))) / 2)
    assert margin_loss(pos, neg, 2.0).item() == pytest.approx(expected.item(), rel=1e-6)
    # Masking out the second negative leaves only log σ(1).
    masked = margin_loss(pos, neg, 2.0, neg_mask=torch.tensor([[True, False]]))
    assert masked.item() == pytest.approx(-2 * F.logsigmoid(torch.tensor(1.0)).item(), rel=1e-6)
    # Self-adversarial weights favour the closer (harder) negative.
    adv = margin_loss(pos, neg, 2.0, adversarial_temperature=5.0)
    assert adv.item() > margin_loss(pos, neg, 2.0).item()
    assert kgc2_loss(pos, neg, 2.0).item() == pytest.approx(expected.item(), rel=1e-6)


def test_kgc1_weights_and_margins_per_positive():
    pos = torch.tensor([1.0, 1.0])
    gen = torch.tensor([[4.0], [4.0]])
    weights = torch.tensor([0.4, 0.3, 0.2, 0.1])
    kappa = torch.tensor([0, 3])
    loss = kgc1_loss(pos, gen, kappa, weights, tau=1.0, gamma_base=2.0, beta_m=1.0)
    margins = [2.0 * 2.0, 2.0 * 1.25]  # γ(1 + β·hard·τ), hard = 1 and 0.25
    terms = [-(F.logsigmoid(torch.tensor(m - 1.0)) + w * F.logsigmoid(torch.tensor(4.0 - m)))
             for m, w in zip(margins, (0.4, 0.1))]
    assert loss.item() == pytest.approx(((terms[0] + terms[1]) / 2).item(), rel=1e-6)
