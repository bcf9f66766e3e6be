"""DKGR-DR speed paths: each fast op equals the torch op it replaces; shared history windows, the
per-epoch subset of timestamps and the one-pass evaluation ranks do what they say."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from kgsearch.dkgr import cpu_ops
from kgsearch.dkgr.cpu_ops import ByteDropout, cross_entropy, l2_normalize
from kgsearch.dkgr.decoders import ConvTransE
from kgsearch.dkgr.model import angle_loss
from kgsearch.dkgr.recipe import raw_and_filtered_ranks
from kgsearch.evaluation import realistic_ranks

from test_dkgr_recipe import make, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KGSEARCH_CACHE", str(tmp_path / "cache"))


def _grads(fn, *inputs):
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*inputs)
    torch.manual_seed(0)
    out.backward(torch.randn_like(out))
    return out.detach(), [x.grad for x in inputs]


def test_l2_normalize_matches_f_normalize_including_a_zero_row():
    x = torch.randn(7, 5, dtype=torch.float64)
    x[3] = 0.0
    ours, g_ours = _grads(l2_normalize, x)
    ref, g_ref = _grads(lambda v: F.normalize(v, dim=1), x)
    assert torch.allclose(ours, ref) and torch.allclose(g_ours[0], g_ref[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_blocked_cross_entropy_matches_f_cross_entropy(monkeypatch, dtype, reduction):
    monkeypatch.setattr(cpu_ops, "_block_rows", lambda cols: 2)   # 5 rows: three blocks, a short last
    logits = (3 * torch.randn(5, 11)).to(dtype)
    target = torch.tensor([0, 3, 10, 3, 7])
    ours, (g_ours,) = _grads(lambda z: cross_entropy(z, target, reduction), logits)
    ref, (g_ref,) = _grads(lambda z: F.cross_entropy(z.float(), target, reduction=reduction), logits)
    assert g_ours.dtype == dtype
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(g_ours.float(), g_ref.float(), atol=1e-6 if dtype == torch.float32 else 1e-2)


def test_angle_loss_equals_the_cosine_similarity_form():
    static, steps = torch.randn(9, 4), [torch.randn(9, 4) for _ in range(3)]

    def ref(s, *e):
        total = s.new_zeros(())
        for tau, emb in enumerate(e, start=1):
            cos_theta = torch.cos(torch.deg2rad(torch.tensor(min(30.0 * tau, 90.0))))
            total = total + (cos_theta - F.cosine_similarity(s, emb, dim=1)).clamp(min=0).sum()
        return total

    ours, g_ours = _grads(lambda s, *e: angle_loss(s, e, 30.0), static, *steps)
    want, g_want = _grads(ref, static, *steps)
    assert ours.item() > 0 and torch.allclose(ours, want, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_ours, g_want))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_byte_dropout_masks_forward_and_backward_alike(dtype):
    drop = ByteDropout(0.25)
    x = torch.rand(64, 33).add(0.5).to(dtype).requires_grad_()
    torch.manual_seed(0)
    y = drop(x)
    y.backward(torch.ones_like(y))
    kept = y != 0
    assert 0.15 < 1 - kept.float().mean().item() < 0.35
    want = (x.float() * drop.scale).to(dtype)   # one rounding of x * scale, in x's dtype
    assert torch.equal(y[kept], want[kept].detach())
    assert torch.equal(x.grad != 0, kept)


def test_convtranse_training_bn_fold_equals_conv_then_batchnorm():
    torch.manual_seed(0)
    dec = ConvTransE(16, 4, 3, 0.0, 0.0, 0.0).train()
    with torch.no_grad():
        dec.bn1.weight.uniform_(0.5, 1.5)
        dec.bn1.bias.uniform_(-0.5, 0.5)
    ref = copy.deepcopy(dec)

    def ref_scores(a, b, cand):   # the unfolded layer: conv, then nn.BatchNorm1d in training mode
        x = ref.bn0(torch.stack([a, b], dim=1))
        windows = F.pad(x, (1, 1)).unfold(2, 3, 1).permute(0, 2, 1, 3).reshape(a.shape[0] * 16, -1)
        feats = F.relu(ref.bn1(windows @ ref.conv_weight + ref.conv_bias))
        return F.relu(ref.bn2(ref.fc(feats.reshape(a.shape[0], -1)))) @ cand.t()

    a, b, cand = torch.randn(7, 16), torch.randn(7, 16), torch.randn(9, 16)
    for _ in range(2):   # the second step also sees the first one's parameter-free state (running stats)
        ours, want = dec(a, b, cand), ref_scores(a, b, cand)
        assert torch.allclose(ours, want, atol=1e-5)
        g = torch.randn_like(ours)
        ours.backward(g)
        want.backward(g)
    for (name, p), q in zip(dec.named_parameters(), ref.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-4, rtol=1e-4), name
    for (name, buf), want_buf in zip(dec.named_buffers(), ref.buffers()):
        assert torch.allclose(buf.float(), want_buf.float(), atol=1e-6), name
    dec.eval(), ref.eval()
    assert torch.allclose(dec(a, b, cand), ref_scores(a, b, cand), atol=1e-5)


def test_one_pass_ranks_equal_realistic_ranks_with_ties_and_filters():
    torch.manual_seed(0)
    scores = torch.randint(0, 4, (40, 9)).float()          # many ties
    targets = torch.randint(0, 9, (40,))
    pairs = torch.rand(40, 9) < 0.3
    pairs[torch.arange(0, 40, 3), targets[::3]] = True      # the target itself is often a filtered answer
    rows, cols = pairs.nonzero(as_tuple=True)
    raw, tf = raw_and_filtered_ranks(scores, targets, rows, cols)
    assert torch.equal(raw, realistic_ranks(scores, targets))
    assert torch.equal(tf, realistic_ranks(scores, targets, rows, cols))
    assert (tf < raw).any()


def test_shared_window_states_equal_evolving_each_history_prefix():
    recipe = make(tiny_config(timestamps_per_step=3, share_history=True, history_len=2))
    model = recipe.model.eval()
    steps, targets = recipe._window([4, 5, 6])
    hist = recipe.history
    start = hist.slots_before(recipe.train_times[4][0])[0]
    assert [end for end, _ in targets] == [2, 3, 4] and len(steps) == 4
    e_static = model.static_embedding()
    hs, rs = model.evolve(steps, e_static)
    for (end, facts), j in zip(targets, (4, 5, 6)):
        t, own_facts = recipe.train_times[j]
        assert facts is own_facts
        prefix = [hist.snapshot(s) for s in range(start, hist.before[t])]   # m + (j - 4) snapshots
        h, r, _ = model.encode(prefix, e_static)
        assert torch.allclose(hs[end - 1], h, atol=1e-6) and torch.allclose(rs[end - 1], r, atol=1e-6)
    # the first target's history is exactly its own m snapshots
    h0, _, _ = model.encode(hist.steps_for(recipe.train_times[4][0]), e_static)
    assert torch.allclose(hs[1], h0, atol=1e-6)

    # The window's loss: mean L_e, L_r over its targets; L_st over its 4 states scaled to m = 2 steps.
    torch.manual_seed(0)
    _, parts = model([(steps, targets)])
    want_ce = torch.stack([model._prediction_losses(hs[e - 1], rs[e - 1], f) for e, f in targets]).mean(0)
    want_st = angle_loss(e_static, hs, recipe.config.angle_deg) * 2 / 4 / recipe.num_entities
    assert torch.allclose(parts[:2], want_ce, atol=1e-6) and torch.allclose(parts[2], want_st, atol=1e-6)


def test_one_target_windows_keep_the_old_loss():
    """(steps, facts) and (steps, [(len(steps), facts)]) are the same window: the unshared loss."""
    recipe = make()
    model = recipe.model.eval()
    t, facts = recipe.train_times[5]
    steps = recipe.history.steps_for(t)
    plain, _ = model([(steps, facts)])
    explicit, _ = model([(steps, [(len(steps), facts)])])
    h, r, evolved = model.encode(steps, model.static_embedding())
    ce = model._prediction_losses(h, r, facts)
    st = angle_loss(model.static_embedding(), evolved, recipe.config.angle_deg) / recipe.num_entities
    cfg = recipe.config
    want = cfg.lambda_entity * ce[0] + cfg.lambda_relation * ce[1] + cfg.lambda_static * st
    assert torch.allclose(plain, explicit) and torch.allclose(plain, want, atol=1e-6)


def test_shared_history_steps_are_consecutive_blocks_covering_the_epoch():
    recipe = make(tiny_config(timestamps_per_step=3, share_history=True))
    n = len(recipe.train_times)
    firsts = set()
    for epoch in (1, 2, 3, 4):
        steps = recipe._epoch_steps(epoch)
        assert sorted(i for g in steps for i in g) == list(range(n))        # every timestamp once
        assert all(g == list(range(g[0], g[0] + len(g))) and len(g) <= 3 for g in steps)
        assert recipe.epoch_shard(epoch).tolist() == [i for g in steps for i in g]
        firsts.add(tuple(sorted(g[0] for g in steps)))
    assert len(firsts) > 1                                                   # boundaries move
    shards = [make(tiny_config(timestamps_per_step=3, share_history=True), rank=r, world_size=2)
              ._epoch_steps(1) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])                                  # same number of steps
    flat = [i for s in shards for g in s for i in g]
    assert len(flat) == len(set(flat))
    out = recipe.train_epoch(1)
    assert torch.isfinite(torch.tensor(out["loss"]))


def test_timestamps_per_epoch_is_a_seeded_subset_that_changes_by_epoch():
    cfg = tiny_config(timestamps_per_epoch=5)
    a, b = make(cfg), make(cfg)
    e1, e2 = a.epoch_shard(1).tolist(), a.epoch_shard(2).tolist()
    assert len(e1) == 5 and len(set(e1)) == 5 and e1 == b.epoch_shard(1).tolist()
    assert set(e1) != set(e2)
    seen = []
    a.forward_model = lambda batch, _m=a.model: seen.append(len(batch)) or _m(batch)
    a.train_epoch(1)
    assert len(seen) == 5
    ranks = [make(cfg, rank=r, world_size=2).epoch_shard(1).tolist() for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3 and not set(ranks[0]) & set(ranks[1])
    with pytest.raises(ValueError, match="timestamps_per_epoch"):
        tiny_config(timestamps_per_epoch=-1)


def test_eval_every_skips_validation_between_due_epochs():
    from kgsearch.run.loop import fit

    recipe = make(tiny_config(eval_every=2, epochs=3))
    calls = []
    evaluate = recipe.evaluate
    recipe.evaluate = lambda split: calls.append(split) or evaluate(split)
    fit(recipe, epochs=3, eval_every=recipe.config.eval_every, log=None)
    assert calls == ["valid", "valid"]          # epochs 2 and 3 (the last), not 1
