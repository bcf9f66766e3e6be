"""ANS: difficulty-aware schedule (Eq. 2–3, 6), DDPM step, strided plan and the graded reverse chain."""

from __future__ import annotations

import pytest
import torch

from kgsearch.dans.diffusion import (Denoiser, alpha_bar, band_steps, beta_max, beta_schedule, ddpm_step,
                                     diffusion_loss, forward_noise, reverse_chain, reverse_plan,
                                     timestep_embedding)


def test_beta_max_spans_low_to_global_and_is_monotone_in_difficulty():
    zeta = torch.linspace(0, 1, 11)
    for mu in (0.5, 1.0, 2.0):
        b = beta_max(zeta, beta_low=0.01, beta_global=0.2, mu=mu)
        assert b[0].item() == pytest.approx(0.01) and b[-1].item() == pytest.approx(0.2)
        assert ((b >= 0.01 - 1e-9) & (b <= 0.2 + 1e-9)).all()
        assert (b[1:] > b[:-1]).all()
    # μ = 2 at ζ = 0.5: 0.01 + 0.19·0.25
    assert beta_max(torch.tensor([0.5]), 0.01, 0.2, 2.0).item() == pytest.approx(0.0575)


def test_linear_schedule_and_alpha_bar():
    bmax = torch.tensor([0.1, 0.3])
    betas = beta_schedule(bmax, num_steps=4, beta_init=0.02)
    assert betas.shape == (2, 5) and (betas[:, 0] == 0).all()
    # Eq. 3: β_t = β_init + t/T (β_max − β_init); β_T = β_max
    assert betas[0, 1].item() == pytest.approx(0.02 + 0.25 * 0.08)
    assert torch.allclose(betas[:, 4], bmax)
    abar = alpha_bar(betas)
    assert (abar[:, 0] == 1).all()
    assert abar[0, 2].item() == pytest.approx((1 - 0.04) * (1 - 0.06))
    assert (abar[:, 1:] < abar[:, :-1]).all()          # ᾱ_t strictly decreasing in t
    assert (abar[1, 1:] < abar[0, 1:]).all()           # the harder entity is noised more


def test_forward_noise_closed_form():
    x0, eps = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 1.0]])
    x = forward_noise(x0, torch.tensor([0.64]), eps)
    assert torch.allclose(x, torch.tensor([[0.8 * 2 + 0.6, -0.8 + 0.6]]))


@pytest.mark.parametrize("posterior", [False, True])
def test_ddpm_step_matches_the_stride_one_formula(posterior):
    """Unclipped, the step is DDPM's x_{t-1} = (x_t − β_t/√(1 − ᾱ_t)·ε)/√α_t + σ_t·z, σ_t² = β_t or β̃_t."""
    betas = beta_schedule(torch.tensor([0.2]), 10, 0.01)
    abar = alpha_bar(betas)
    t = 7
    x, eps, z = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, 0.1]]), torch.tensor([[0.3, -0.2]])
    beta_t, alpha_t = betas[0, t], 1 - betas[0, t]
    var = beta_t * (1 - abar[0, t - 1]) / (1 - abar[0, t]) if posterior else beta_t
    expected = (x - beta_t / (1 - abar[0, t]).sqrt() * eps) / alpha_t.sqrt() + var.sqrt() * z
    got = ddpm_step(x, eps, abar[:, t], abar[:, t - 1], z, posterior_variance=posterior)
    assert torch.allclose(got, expected, atol=1e-6)


def test_with_an_exact_denoiser_a_long_jump_lands_on_the_forward_marginal():
    """x_t ~ q(x_t | x_0), jump to s with the true ε: x_s has mean √ᾱ_s·x_0 and variance 1 − ᾱ_s."""
    n = 200_000
    x0 = torch.full((n, 1), 0.7)
    abar_t, abar_s = torch.full((n,), 0.05), torch.full((n,), 0.6)
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(n, 1, generator=g)
    x_t = forward_noise(x0, abar_t, eps)
    x_s = ddpm_step(x_t, eps, abar_t, abar_s, torch.randn(n, 1, generator=g), posterior_variance=True)
    assert x_s.mean().item() == pytest.approx(0.6 ** 0.5 * 0.7, abs=0.01)
    assert x_s.var().item() == pytest.approx(0.4, abs=0.01)


def test_band_steps_and_plans():
    assert band_steps(100) == (5, 10, 20, 50)
    assert band_steps(20) == (1, 2, 4, 10)
    plan = reverse_plan(100, 8)
    assert plan[0] == 100 and plan[-1] == 5
    assert all(a > b for a, b in zip(plan, plan[1:]))
    assert {50, 20, 10, 5} <= set(plan)
    assert len(plan) - 1 == 8
    assert reverse_plan(100, 4) == [100, 50, 20, 10, 5]                  # the minimum: one jump per segment
    assert reverse_plan(100, 1000) == list(range(100, 4, -1))            # full stride-1 chain


class Recording(torch.nn.Module):
    """Stand-in denoiser: records (t, x_t) it is called with and predicts zero noise."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, abar_t, cond_proj):
        self.calls.append((int(t[0]), x.clone()))
        return torch.zeros_like(x)


def test_reverse_chain_returns_the_four_bands_from_the_right_steps():
    n, dim, T = 3, 4, 40
    abar = alpha_bar(beta_schedule(torch.full((n,), 0.1), T, 1e-3))
    plan = reverse_plan(T, 10)
    stub = Recording()
    out = reverse_chain(stub, torch.randn(n, dim), abar, torch.zeros(n, 1), plan,
                        torch.Generator().manual_seed(0))
    assert out.shape == (4, n, dim)
    assert [t for t, _ in stub.calls] == plan[:-1]
    states = dict(stub.calls)                  # the state x_t the chain held when it stood at step t
    bands = band_steps(T)                      # (2, 4, 8, 20)
    for k in (1, 2, 3):                        # bands 2..4 are states the chain went on from
        assert torch.equal(out[k], states[bands[k]])
    assert torch.isfinite(out[0]).all()


def test_reverse_chain_is_seeded():
    torch.manual_seed(0)
    den = Denoiser(entity_dim=6, cond_dim=5, hidden=8, time_dim=4)
    abar = alpha_bar(beta_schedule(torch.tensor([0.05, 0.2]), 20, 1e-3))
    x0, cond = torch.randn(2, 6), den.project_condition(torch.randn(2, 5))
    plan = reverse_plan(20, 6)
    a = reverse_chain(den, x0, abar, cond, plan, torch.Generator().manual_seed(3))
    b = reverse_chain(den, x0, abar, cond, plan, torch.Generator().manual_seed(3))
    c = reverse_chain(den, x0, abar, cond, plan, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_denoiser_and_diffusion_loss():
    torch.manual_seed(0)
    den = Denoiser(entity_dim=6, cond_dim=5, hidden=8, time_dim=4)
    cond = den.project_condition(torch.randn(3, 5))
    x_t, t = torch.randn(3, 6), torch.tensor([1, 5, 9])
    eps = den(x_t, t, torch.tensor([0.9, 0.5, 0.1]), cond)
    assert eps.shape == (3, 6)
    # the entity's own noise level is an input: same x_t and t, other ᾱ_t -> another prediction
    assert not torch.allclose(eps, den(x_t, t, torch.tensor([0.2, 0.5, 0.9]), cond))
    assert torch.allclose(eps.mean(-1), torch.zeros(3), atol=1e-5)  # LayerNorm output (Eq. 10)
    emb = timestep_embedding(torch.tensor([0, 3]), 5)
    assert emb.shape == (2, 5) and torch.allclose(emb[0, :2], torch.zeros(2))
    abar = alpha_bar(beta_schedule(torch.full((3,), 0.1), 20, 1e-3))
    loss = diffusion_loss(den, torch.randn(3, 6), abar, cond, torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and loss.item() > 0
    loss.backward()
    assert all(p.grad is not None for p in den.parameters())


def test_with_an_exact_denoiser_band_one_lies_closest_to_the_answer():
    """Graded hardness (Eq. 12-13): the chain stopped at T/20 (band 1) is nearer x_0 than at T/2 (band 4)."""
    n, dim, T = 256, 8, 100
    x0 = torch.randn(n, dim)

    class Exact(torch.nn.Module):  # predicts the noise that is really in x_t
        def forward(self, x, t, abar_t, cond_proj):
            a = abar_t.unsqueeze(-1)
            return (x - a.sqrt() * x0) / (1 - a).sqrt()

    abar = alpha_bar(beta_schedule(torch.full((n,), 0.1), T, 1e-3))
    out = reverse_chain(Exact(), x0, abar, torch.zeros(n, 1), reverse_plan(T, 20), torch.Generator().manual_seed(0))
    dist = (out - x0).norm(dim=-1).mean(-1)  # mean distance per band
    assert dist[0] < dist[1] < dist[2] < dist[3], dist


def test_ddpm_step_clips_the_implied_answer_so_a_long_jump_cannot_blow_up():
    """x̂_0 outside ±clip is clipped: a wrong ε at ᾱ_t ≈ 1e-9 must not give a state of size 1/√α'."""
    x, eps, z = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, 0.1]]), torch.zeros(1, 2)
    abar_t, abar_s = torch.tensor([1e-9]), torch.tensor([0.5])
    free = ddpm_step(x, eps, abar_t, abar_s, z)
    clipped = ddpm_step(x, eps, abar_t, abar_s, z, clip=3.0)
    assert free.abs().max() > 1e3                        # the unclipped step amplifies the error
    assert clipped.abs().max() <= 3.0 + x.abs().max()    # c_0·x̂_0 + c_t·x_t with c_0, c_t <= 1
    # within the clip the step is unchanged
    small = ddpm_step(x, eps, torch.tensor([0.3]), abar_s, z)
    assert torch.allclose(ddpm_step(x, eps, torch.tensor([0.3]), abar_s, z, clip=1e6), small)


@pytest.mark.parametrize("step,bound", [("posterior", 3.0), ("ddpm", 30.0)])
def test_reverse_chain_of_an_untrained_denoiser_stays_near_the_answers_scale_under_heavy_noise(step, bound):
    """β_global 0.3, T 150, four jumps: the regime where the unclipped bands once reached ~1e4 times the
    entity scale. The posterior step stays within a few times the answers' range, DDPM's within its 10x clip."""
    torch.manual_seed(0)
    n, dim, T = 64, 16, 150
    den = Denoiser(entity_dim=dim, cond_dim=3, hidden=32, time_dim=8)  # untrained: ε_θ is wrong
    abar = alpha_bar(beta_schedule(torch.full((n,), 0.3), T, 1e-4))
    x0 = torch.randn(n, dim)
    out = reverse_chain(den, x0, abar, den.project_condition(torch.randn(n, 3)), reverse_plan(T, 4),
                        torch.Generator().manual_seed(0), step=step)
    rms = out.square().mean(-1).sqrt().max()
    assert torch.isfinite(out).all() and rms < bound * x0.abs().max(), rms
