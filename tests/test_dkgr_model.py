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
                                         hidden_dropout=0.0, feature_dropout=0.0,
                                         global_history=False), **overrides)  # the paper's model
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
    # tau = 2: theta = 20 deg
    assert angle_loss(s, [s, e], 10.0).item() == pytest.approx(math.cos(math.radians(20)) - 0.5, rel=1e-5)


def test_angle_threshold_is_capped_at_90_degrees():
    # gamma = 50: tau = 1 allows 50 deg, tau = 2 would allow 100 deg but is capped at 90. An angle of
    # 95 deg at tau = 2 is penalised by cos 90 - cos 95 = 0.087; uncapped (cos 100 < cos 95) it would be 0.
    s = torch.tensor([[1.0, 0.0]])
    e95 = torch.tensor([[math.cos(math.radians(95)), math.sin(math.radians(95))]])
    e60 = torch.tensor([[0.5, math.sin(math.radians(60))]])
    assert angle_loss(s, [s, e95], 50.0).item() == pytest.approx(-math.cos(math.radians(95)), rel=1e-5)
    assert angle_loss(s, [s, e60], 50.0).item() == pytest.approx(0.0, abs=1e-7)   # within the cap
    # tau = 1 is not capped: 95 deg against theta = 50 deg
    assert angle_loss(s, [e95], 50.0).item() == pytest.approx(
        math.cos(math.radians(50)) - math.cos(math.radians(95)), rel=1e-5)


def _decoder(cls):
    torch.manual_seed(0)
    return cls(D, 0.0) if cls is FCDecoder else cls(D, 4, 3, 0.0, 0.0, 0.0)   # no dropout


@pytest.mark.parametrize("cls", [ConvTransE, ConvE, FCDecoder])
def test_decoders_score_every_candidate(cls):
    dec = _decoder(cls)   # training mode: BatchNorm on batch statistics
    a, b, cand = torch.randn(5, D), torch.randn(5, D), torch.randn(11, D)
    scores = dec(a, b, cand)
    assert scores.shape == (5, 11)
    # each candidate's column is its own score: the same when it is scored alone
    for j in range(11):
        assert torch.allclose(dec(a, b, cand[j:j + 1])[:, 0], scores[:, j], atol=1e-5)


@pytest.mark.filterwarnings("ignore:Input #")   # gradcheck's advice to use float64
@pytest.mark.parametrize("cls", [ConvTransE, ConvE, FCDecoder])
def test_decoder_gradients_match_finite_differences(cls):
    """Backward of every decoder w.r.t. every parameter and input is the derivative of its forward,
    in training mode: for ConvTransE that checks the BatchNorm folded into the convolution, gradients
    through the batch statistics included. fp32 (the fold computes in fp32 by design), so the check is
    gradcheck's fast mode (random directions) with fp32 tolerances."""
    dec = _decoder(cls)
    if cls is ConvTransE:
        with torch.no_grad():   # away from BN's initial identity affine
            dec.bn1.weight.uniform_(0.5, 1.5)
            dec.bn1.bias.uniform_(-0.5, 0.5)
    a, b, cand = (torch.randn(n, D, requires_grad=True) for n in (5, 5, 7))
    names, params = zip(*dec.named_parameters())

    def scores(*args):
        return torch.func.functional_call(dec, dict(zip(names, args[:len(names)])), args[len(names):])

    assert torch.autograd.gradcheck(scores, (*params, a, b, cand), eps=1e-3, atol=1e-2, rtol=1e-2,
                                    fast_mode=True)


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
    missing = [n for n, p in model.named_parameters() if p.grad is None]   # what DDP's reducer needs
    assert not missing
    assert torch.isfinite(parts).all() and all(torch.isfinite(p.grad).all() for p in model.parameters())


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


def test_one_evolution_step_matches_a_hand_computation():
    """Eq. 3-7 for one snapshot, written out with the model's own weights: pool, GRU, 2-layer R-GCN, gate."""
    model = tiny_model().eval()                  # defaults: static_init, layer_norm, omega = 2, GRU
    snap = tiny_history().snapshot(0)            # time 0: facts (0 -r0-> 1), (1 -r1-> 2)
    with torch.no_grad():
        e_static = model.static_embedding()
        (h1,), (r1,) = model.evolve([snap], e_static)

        h0 = e_static / e_static.norm(dim=1, keepdim=True)       # E_{t-m}: the normalised E_s
        rel = model.rel_emb                                       # r_RI, and R_{t-m}
        # Eq. 4: relation k mean-pools E_{t-1} over both entities of its facts (r and its inverse r + R)
        pooled = torch.zeros(2 * R, D)
        for k, ents in {0: [0, 1], 1: [1, 2], R: [0, 1], 1 + R: [1, 2]}.items():
            pooled[k] = h0[ents].mean(0)
        x = torch.cat([pooled, rel], dim=1)
        # Eq. 5: a GRU cell by hand (PyTorch's gate order: reset, update, new), then L2-normalised
        g = model.rel_update
        xr, xz, xn = (x @ g.weight_ih.t() + g.bias_ih).chunk(3, dim=1)
        hr, hz, hn = (rel @ g.weight_hh.t() + g.bias_hh).chunk(3, dim=1)
        reset, update = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        new = torch.tanh(xn + reset * hn)
        r_want = (1 - update) * new + update * rel
        r_want = r_want / r_want.norm(dim=1, keepdim=True)
        # Eq. 3: edges (src, rel, dst) with inverses; message W_1 (h_j + R_t[rel]) averaged over the
        # receiver's in-degree, plus its self-loop; entities without incoming edges: isolated self-loop
        edges = [(0, 0, 1), (1, 1, 2), (1, R, 0), (2, 1 + R, 1)]

        def layer(h, lay, act):
            out = h @ lay.w_loop_isolated
            for i in {dst for _, _, dst in edges}:
                incoming = [(j, k) for j, k, dst in edges if dst == i]
                msg = sum((h[j] + r_want[k]) @ lay.w_neighbor for j, k in incoming) / len(incoming)
                out[i] = h[i] @ lay.w_loop + msg
            return F.leaky_relu(out, (1 / 8 + 1 / 3) / 2) if act else out   # RReLU's mean slope

        first, last = model.rgcn.layers
        e_struct = layer(layer(h0, first, True), last, False)               # last layer linear
        e_struct = e_struct / e_struct.norm(dim=1, keepdim=True)
        # Eq. 6-7: gate from E'_t, E_t = U * E'_t + (1 - U) * E_{t-1}
        u = torch.sigmoid(e_struct @ model.gate.weight.t() + model.gate.bias)
        h_want = u * e_struct + (1 - u) * h0
    assert torch.allclose(r1, r_want, atol=1e-5)
    assert torch.allclose(h1, h_want, atol=1e-5)


@pytest.mark.parametrize("final_norm", [False, True])
def test_the_decoders_get_a_normalised_final_state_only_with_final_norm(final_norm):
    """With `layer_norm`, R_t and E'_t are L2-normalised but E_t, the gate's mix of E'_t and E_{t-1}, is
    not; the decoders score tanh(E_t) of that state, or of E_t normalised once more with `final_norm`
    (RE-GCN), in training and in evaluation alike."""
    model = tiny_model(decoder="fc", final_norm=final_norm)
    hist = tiny_history()
    seen = []
    decoder_forward = model.entity_decoder.forward
    model.entity_decoder.forward = lambda a, b, cand: seen.append(cand.detach()) or decoder_forward(a, b, cand)
    model(_batch(hist))                                     # the training loss (Eq. 17)
    with torch.no_grad():
        h, r, hs = model.encode(hist.steps_for(3), model.static_embedding())
    assert torch.allclose(r.norm(dim=1), torch.ones(2 * R), atol=1e-5)
    assert (hs[-1].norm(dim=1) - 1).abs().max() > 0.05      # the gated E_t itself is not renormalised
    want = hs[-1] / hs[-1].norm(dim=1, keepdim=True) if final_norm else hs[-1]
    assert torch.allclose(h, want, atol=1e-6)               # what evaluation decodes
    assert len(seen) == 1 and torch.allclose(seen[0], torch.tanh(want), atol=1e-6)   # and training


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


@pytest.mark.parametrize("layers, loops, reaches", [(2, False, False), (2, True, True), (1, False, True),
                                                    (3, False, True)])
def test_a_words_embedding_reaches_its_entity_unless_two_layers_run_without_self_loops(layers, loops, reaches):
    """The static graph is bipartite: after 2 layers without self-loops E_s(C) is built from entity inputs
    only, and "C", a word no other entity names, has a single-edge attention softmax, so its gradient is
    exactly zero; 1 or 3 layers, or `gat_self_loops`, let it through."""
    model = tiny_model(gat_self_loops=loops, gat_layers=layers)
    words = build_static_graph(["A_(X)", "B_(X)", "C", "D_(Y)", "X", "Y"])["words"]
    model.static_embedding()[2].square().sum().backward()
    grad = model.word_emb.grad[words.index("C")]
    assert bool(grad.abs().sum() > 0) == reaches
