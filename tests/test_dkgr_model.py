"""DKGR-DR modules: R-GCN messages, Relational-GAT attention, angle loss, decoders, ablation switches."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.nn import functional as F

from kgsearch.dkgr.decoders import ConvE, ConvTransE, FCDecoder
from kgsearch.dkgr.cpu_ops import ByteDropout, bucketed_matmul, row_bucket
from kgsearch.dkgr.history import Snapshot, SnapshotHistory, build_history
from kgsearch.dkgr.model import DkgrModel, RelationConv, angle_loss
from kgsearch.dkgr.rgat import RelationalGAT, RelationalGATLayer
from kgsearch.dkgr.rgcn import ScatterRGCNLayer
from kgsearch.dkgr.recipe import DkgrConfig
from kgsearch.dkgr.static_graph import build_static_graph

N, R, D = 6, 3, 8


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread


def tiny_history(m: int = 2) -> SnapshotHistory:
    quads = torch.tensor([[0, 0, 1, 0], [1, 1, 2, 0], [2, 2, 3, 1], [3, 0, 4, 1], [4, 1, 5, 2],
                          [5, 2, 0, 2], [0, 1, 3, 3]])
    return SnapshotHistory(build_history(quads, N, R, 4), history_len=m)


def tiny_model(**overrides) -> DkgrModel:
    cfg = dataclasses.replace(DkgrConfig(dim=D, decoder_channels=4, dropout=0.0, input_dropout=0.0,
                                         hidden_dropout=0.0, feature_dropout=0.0), **overrides)
    cfg.validate()
    names = ["A_(X)", "B_(X)", "C", "D_(Y)", "X", "Y"]
    torch.manual_seed(0)
    return DkgrModel(cfg, N, R, build_static_graph(names) if cfg.static else None)


def test_scatter_rgcn_layer_matches_hand_computation():
    torch.manual_seed(0)
    layer = ScatterRGCNLayer(D, activation=False, dropout=0.0)
    hist = tiny_history()
    snap = hist.snapshot(0)   # (0 -0-> 1), (1 -1-> 2) and inverses
    h, rel = torch.randn(N, D), torch.randn(2 * R, D)
    out = layer(h, rel, snap)
    w1, w_loop, w_iso = layer.w_neighbor, layer.w_loop, layer.w_loop_isolated
    # entity 1 receives (0, r0) and the inverse of (1, r1, 2): (2, r1 + R); in-degree 2
    want1 = ((h[0] + rel[0]) @ w1 + (h[2] + rel[1 + R]) @ w1) / 2 + h[1] @ w_loop
    want5 = h[5] @ w_iso                               # isolated: self-loop only
    assert torch.allclose(out[1], want1, atol=1e-5)
    assert torch.allclose(out[5], want5, atol=1e-5)


def test_relational_gat_attention_sums_to_one_per_receiving_node():
    torch.manual_seed(0)
    layer = RelationalGATLayer(D)
    src = torch.tensor([3, 4, 5, 3, 0, 1])
    dst = torch.tensor([0, 0, 1, 1, 3, 3])
    etype = torch.tensor([0, 1, 2, 0, 3, 3])
    x, rel = torch.randn(6, D), torch.randn(4, D)
    out, rel_out, alpha = layer(x, rel, src, dst, etype)
    sums = torch.zeros(6).index_add(0, dst, alpha)
    assert torch.allclose(sums[[0, 1, 3]], torch.ones(3))
    assert (alpha > 0).all()
    # hand value of Eq. 8 for node 0's first edge
    wx, wr = layer.w(x), layer.w_rel_att(rel)
    def logit(i, j, r):
        return F.leaky_relu(torch.cat([wx[i], wx[j], wr[r]]) @ layer.att.reshape(-1), 0.2)
    l0, l1 = logit(0, 3, 0), logit(0, 4, 1)
    assert torch.allclose(alpha[0], torch.exp(l0) / (torch.exp(l0) + torch.exp(l1)), atol=1e-6)
    # no self-loop: a node without incoming edges gets sigma(0) = 0 (ELU)
    assert torch.equal(out[2], torch.zeros(D))
    assert torch.allclose(rel_out, torch.sigmoid(layer.w_rel_update(rel)))   # Eq. 10
    assert RelationalGAT(D, 2).layers[-1].w_rel_update is None               # nothing to feed


def test_angle_loss_zero_when_aligned_and_hand_value_otherwise():
    static = torch.randn(5, D)
    aligned = [2.0 * static, static.clone(), 0.5 * static]
    assert angle_loss(static, aligned, gamma_deg=10.0).item() == pytest.approx(0.0, abs=1e-6)
    # 2-D example: angle 60 deg at tau = 1 with gamma = 10 -> cos 10 - cos 60
    s = torch.tensor([[1.0, 0.0]])
    e = torch.tensor([[math.cos(math.radians(60)), math.sin(math.radians(60))]])
    want = math.cos(math.radians(10)) - 0.5
    assert angle_loss(s, [e], 10.0).item() == pytest.approx(want, rel=1e-5)
    # tau = 2: theta = 20 deg; at gamma = 50, tau = 2 is capped at 90 deg -> 60 deg is allowed
    assert angle_loss(s, [s, e], 10.0).item() == pytest.approx(math.cos(math.radians(20)) - 0.5, rel=1e-5)
    assert angle_loss(s, [s, e], 50.0).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("cls", [ConvTransE, ConvE, FCDecoder])
def test_decoders_score_every_candidate(cls):
    torch.manual_seed(0)
    dec = cls(D) if cls is FCDecoder else cls(D, 4, 3, 0.0, 0.0, 0.0)
    a, b, cand = torch.randn(5, D), torch.randn(5, D), torch.randn(11, D)
    scores = dec(a, b, cand)
    assert scores.shape == (5, 11)
    scores.sum().backward()
    assert all(p.grad is not None for p in dec.parameters())


def test_convtranse_conv_equals_nn_conv1d():
    torch.manual_seed(0)
    dec = ConvTransE(D, 4, 3, 0.0, 0.0, 0.0).eval()
    conv = torch.nn.Conv1d(2, 4, 3, padding=1)
    with torch.no_grad():   # our [2k, C] weight is Conv1d's [C, 2, k] transposed
        conv.weight.copy_(dec.conv_weight.t().reshape(4, 2, 3))
        conv.bias.copy_(dec.conv_bias)
    x = torch.randn(5, 2, D)
    pad = F.pad(x, (1, 1)).unfold(2, 3, 1).permute(0, 2, 1, 3).reshape(5 * D, 6)
    ours = (pad @ dec.conv_weight + dec.conv_bias).reshape(5, D, 4).permute(0, 2, 1)
    assert torch.allclose(ours, conv(x), atol=1e-5)


def test_byte_dropout_rate_scale_and_eval_identity():
    torch.manual_seed(0)
    drop = ByteDropout(0.2)
    x = torch.ones(200_000)
    y = drop(x)
    assert (y == 0).float().mean().item() == pytest.approx(51 / 256, abs=0.005)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    assert torch.equal(drop.eval()(x), x)


def _batch(hist: SnapshotHistory, t: int = 3):
    return [(hist.steps_for(t), torch.tensor([[0, 1, 3], [2, 0, 1]]))]


def _loss(model: DkgrModel, hist: SnapshotHistory) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return model(_batch(hist))


@pytest.mark.parametrize("switch", [{}, {"rgcn": False}, {"gru": False}, {"decoder": "fc"},
                                    {"decoder": "conve"}, {"static": False}, {"static_init": False},
                                    {"rgcn_impl": "pyg", "num_bases": 2},
                                    {"rgcn_impl": "pyg_fast", "num_bases": 2}])
def test_every_parameter_gets_a_gradient(switch):
    """DDP (find_unused_parameters=False) needs every parameter in the loss, in every ablation."""
    model = tiny_model(**switch)
    loss, parts = _loss(model, tiny_history())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert torch.isfinite(parts).all()


def test_ablation_switches_change_what_they_should():
    hist = tiny_history()
    full = tiny_model()
    assert hasattr(full, "rgcn") and isinstance(full.rel_update, torch.nn.GRUCell)
    assert isinstance(full.entity_decoder, ConvTransE) and full.static

    no_rgcn = tiny_model(rgcn=False).eval()
    assert not hasattr(no_rgcn, "rgcn") and no_rgcn.rand_ent.shape == (N, D)
    empty = Snapshot(**{f.name: torch.zeros(0, dtype=torch.float if f.name == "norm" else torch.long)
                        for f in dataclasses.fields(Snapshot)})
    full.eval()

    def encode(model, steps):
        return model.encode(steps, model.static_embedding())[0]

    # full model: the snapshot's edges shape E_t; -RGCN: they no longer do (E'_t is a table)
    assert not torch.allclose(encode(full, hist.steps_for(3)), encode(full, [empty, empty]))
    assert torch.allclose(encode(no_rgcn, hist.steps_for(3)), encode(no_rgcn, [empty, empty]))

    assert isinstance(tiny_model(gru=False).rel_update, RelationConv)
    assert isinstance(tiny_model(decoder="fc").entity_decoder, FCDecoder)
    assert isinstance(tiny_model(decoder="conve").relation_decoder, ConvE)

    no_static = tiny_model(static=False)
    assert not no_static.static and not hasattr(no_static, "rgat")
    _, parts = _loss(no_static, hist)
    assert parts[2].item() == 0.0               # no L_st
    _, parts = _loss(tiny_model(), hist)
    assert parts[2].item() > 0.0


def test_history_never_reaches_the_predicted_timestamp():
    hist = tiny_history(m=3)
    times = hist.times.tolist()
    for t in range(4):
        assert all(times[s] < t for s in hist.slots_before(t))


def test_row_buckets_bound_the_number_of_matmul_shapes():
    sizes = [row_bucket(n) for n in range(1, 5001)]
    assert all(b >= n and b <= max(16, 1.125 * n) for n, b in zip(range(1, 5001), sizes))
    assert len(set(sizes)) < 100          # vs 5000 distinct shapes (one oneDNN kernel each)
    x, w, bias = torch.randn(37, 5), torch.randn(5, 3), torch.randn(3)
    assert torch.allclose(bucketed_matmul(x, w), x @ w, atol=1e-6)
    assert torch.allclose(bucketed_matmul(x, w, bias), x @ w + bias, atol=1e-6)
    assert torch.allclose(bucketed_matmul(x, w.t(), bias, transpose=True), x @ w + bias, atol=1e-6)
