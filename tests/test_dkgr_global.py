"""DKGR-DR's global-history head (config `global_history`, kgsearch/dkgr/global_history.py): the copy
distribution's support, no future in its mask, the mixture's loss and gradients, end to end."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from kgsearch.config import config_from_dict
from kgsearch.data import TemporalDataset
from kgsearch.dkgr.global_history import GlobalHistoryHead
from kgsearch.dkgr.recipe import DkgrConfig, DkgrRecipe
from kgsearch.dkgr.recurrency import RecurrencyIndex
from kgsearch.errors import KGSearchError
from kgsearch.evaluation import both_directions

from contract import RecipeContract

N, R, T = 10, 2, 16
TINY = dict(dim=16, decoder_channels=4, history_len=3, lr=0.01, epochs=2, precision="fp32", eval_batch_size=7,
            seed=3, global_history=True, history_weight=0.4)

pytestmark = pytest.mark.usefixtures("one_thread")


def recurrent_dataset(extra: list[tuple[int, int, int, int]] = ()) -> TemporalDataset:
    """Every even e has (e, t % 2, e + 1 + (t // 2) % 3) at t, so (s, r) has up to three earlier answers,
    of different ages and counts; a seeded sprinkle of other facts; train 0-10, valid 11-13, test 14-15."""
    gen = torch.Generator().manual_seed(0)
    rows = [(e, t % R, (e + 1 + (t // 2) % 3) % N, t) for t in range(T) for e in range(0, N, 2)]
    rand = torch.randint(0, N, (40, 3), generator=gen).tolist()
    when = torch.randint(0, T, (40,), generator=gen).tolist()
    rows += [(s, r % R, o, t) for (s, r, o), t in zip(rand, when) if s != o]
    quads = torch.tensor(sorted(set(rows) | set(extra)))
    split = lambda lo, hi: quads[(quads[:, 3] >= lo) & (quads[:, 3] < hi)]  # noqa: E731
    names = [f"Actor_{i}_(Country_{i % 3})" if i % 2 else f"Country_{i}" for i in range(N)]
    return TemporalDataset(name="recurrent", entities=names, relations=["a", "b"], times=torch.arange(T),
                           train=split(0, 11), valid=split(11, 14), test=split(14, T))


def all_quads(ds) -> torch.Tensor:
    return torch.cat([ds.train, ds.valid, ds.test])


def earlier_answers(ds, anchor: int, rel: int, t: int) -> set[int]:
    """H(anchor, rel, t) by brute force: answers of (anchor, rel) at any time < t, both directions."""
    out = set()
    for s, r, o, u in all_quads(ds).tolist():
        if u < t and (s, r) == (anchor, rel):
            out.add(o)
        if u < t and (o, r + R) == (anchor, rel):
            out.add(s)
    return out


def tiny(**overrides) -> DkgrConfig:
    cfg = DkgrConfig(**{**TINY, **overrides})
    cfg.validate()
    return cfg


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KGSEARCH_CACHE", str(tmp_path / "cache"))


def make(ds=None, **overrides) -> DkgrRecipe:
    ds = ds if ds is not None else recurrent_dataset()
    cfg = tiny(**overrides)
    return DkgrRecipe(cfg, ds, DkgrRecipe.prepare(cfg, ds))


def day_queries(recipe, split: str, i: int):
    t, facts = recipe._snapshots[split][i]
    a, q, b = both_directions(facts, R)
    return t, a, q, b, torch.full_like(a, t)


# ------------------------------------------------------------------------------------------------ support


def test_copy_distribution_has_mass_only_on_the_earlier_answers():
    ds = recurrent_dataset()
    recipe = make(ds)
    head = recipe.model.global_head
    assert isinstance(head, GlobalHistoryHead)
    seen_rows = 0
    for split, i in (("train", 3), ("valid", 0), ("test", 1)):
        t, a, q, _, time = day_queries(recipe, split, i)
        logits = torch.randn(len(a), N) * 3
        with torch.no_grad():
            copy = head.copy_distribution(logits, a, q, time)
            mixed = head.log_probs(logits, a, q, time).exp()
        for row in range(len(a)):
            hist = earlier_answers(ds, int(a[row]), int(q[row]), t)
            outside = [o for o in range(N) if o not in hist]
            assert copy[row, outside].abs().sum() == 0               # exactly zero, not just small
            if hist:
                seen_rows += 1
                assert bool((copy[row, sorted(hist)] > 0).all())
                assert float(copy[row].sum()) == pytest.approx(1.0, abs=1e-5)
                assert float(mixed[row].sum()) == pytest.approx(1.0, abs=1e-5)   # a distribution
                # outside H the mixture is (1 - alpha) p_dec
                dec = torch.softmax(logits[row], 0)
                assert torch.allclose(mixed[row, outside], 0.6 * dec[outside], atol=1e-6)
            else:
                assert float(copy[row].sum()) == 0
    assert seen_rows > 10


def test_future_facts_never_enter_the_mask_in_training():
    """The training loss of a target day is the same with an index of only the strictly earlier days,
    and changes when the target day's own facts are made to look earlier (what a leak would do)."""
    ds = recurrent_dataset()
    recipe = make(ds, dropout=0.0, input_dropout=0.0, hidden_dropout=0.0, feature_dropout=0.0)
    model, head = recipe.model, recipe.model.global_head
    model.eval()   # BatchNorm on running statistics: the same function in every call
    with torch.no_grad():
        head.copy_weight.copy_(torch.tensor([1.0, 0.5, 0.3]))   # recency and frequency count too
    quads = all_quads(ds)
    leaked = 0
    for j in (2, 5, 8):
        t, facts = recipe.train_times[j]
        assert facts.shape[1] == 4 and bool((facts[:, 3] == t).all())
        batch = [(recipe.history.steps_for(t), facts)]
        with torch.no_grad():
            loss_e = model(batch)[1][0]
            head.index = RecurrencyIndex.build(quads[quads[:, 3] < t], N, R, T)
            assert float(model(batch)[1][0]) == float(loss_e)
            leak = quads[quads[:, 3] <= t].clone()
            leak[leak[:, 3] == t, 3] = t - 1       # the target day's facts passed off as history
            head.index = RecurrencyIndex.build(leak, N, R, T)
            leaked += float(model(batch)[1][0]) != float(loss_e)
            head.index = RecurrencyIndex.of_dataset(ds)
        pairs = head.history(*both_directions(facts, R)[:2], facts[:, 3].repeat(2))
        assert bool((pairs.last < t).all())
    assert leaked == 3   # the check above can fail


def test_future_days_do_not_change_earlier_evaluations():
    """Facts added on the last test day, for queries that valid days ask, leave the valid ranks alone."""
    base = make(recurrent_dataset())
    base.train_epoch(1)
    valid_queries = {(s, r) for s, r, _, _ in base.dataset.valid.tolist()}
    extra = [(s, r, (s + 5) % N, T - 1) for s, r in sorted(valid_queries)]
    more = make(recurrent_dataset(extra))
    more.load_state_dict(base.state_dict())
    index = more.model.global_head.index
    s, r = extra[0][:2]
    in_future = index.lookup(torch.tensor([s]), torch.tensor([r]), torch.tensor([T]))
    assert extra[0][2] in in_future.ents.tolist()          # the index holds them...
    got, want = more.evaluate("valid"), base.evaluate("valid")
    for group in ("raw", "tf"):                              # ...but no valid day sees them
        assert torch.equal(got[group].to_tensor(), want[group].to_tensor())


# ------------------------------------------------------------------------------------------------ loss


def _manual_nll(head, logits, a, q, b, ds, t, alpha):
    """-mean log(alpha p_copy + (1 - alpha) p_dec) at the targets, every distribution built densely."""
    w = head.copy_weight
    rows = []
    for row in range(len(a)):
        p_dec = torch.softmax(logits[row], 0)
        cand = sorted(earlier_answers(ds, int(a[row]), int(q[row]), t))
        if not cand:
            rows.append(-torch.log(p_dec[b[row]]))
            continue
        times = [_times(ds, int(a[row]), int(q[row]), o, t) for o in cand]
        dt = torch.tensor([t - max(x) for x in times], dtype=torch.float32)
        count = torch.tensor([len(x) for x in times], dtype=torch.float32)
        c = w[0] * logits[row, cand] - w[1] * dt.log() + w[2] * count.log()
        p_copy = torch.zeros(N).index_put((torch.tensor(cand),), torch.softmax(c, 0))
        rows.append(-torch.log(alpha * p_copy[b[row]] + (1 - alpha) * p_dec[b[row]]))
    return torch.stack(rows).mean()


def _times(ds, x, rel, y, t) -> list[int]:
    out = set()
    for s, r, o, u in all_quads(ds).tolist():
        if u < t and ((s, r, o) == (x, rel, y) or (o, r + R, s) == (x, rel, y)):
            out.add(u)
    return sorted(out)


def test_mixture_loss_and_its_gradient_match_the_dense_formula():
    ds = recurrent_dataset()
    head = make(ds).model.global_head
    with torch.no_grad():
        head.copy_weight.copy_(torch.tensor([0.7, 0.5, 0.3]))   # every feature in play
    t, a, q, b, time = day_queries(make(ds), "valid", 1)
    logits = (torch.randn(len(a), N, generator=torch.Generator().manual_seed(1)) * 2).requires_grad_()
    got = head.loss(logits, a, q, b, time)
    (g_logits, g_w) = torch.autograd.grad(got, [logits, head.copy_weight])
    want = _manual_nll(head, logits, a, q, b, ds, t, 0.4)
    (w_logits, w_w) = torch.autograd.grad(want, [logits, head.copy_weight])
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    assert torch.allclose(g_logits, w_logits, atol=1e-6) and torch.allclose(g_w, w_w, atol=1e-6)
    assert float(g_w.abs().min()) > 0          # recency and frequency weights are trained
    # and the mixture is not plain cross-entropy: the head changes the loss and its gradient
    ce = torch.nn.functional.cross_entropy(logits, b)
    (g_ce,) = torch.autograd.grad(ce, [logits])
    assert abs(float(ce.detach()) - float(got.detach())) > 1e-3 and not torch.allclose(g_ce, g_logits, atol=1e-4)


def test_cross_entropy_backward_leaves_fp32_logits_alone():
    """cpu_ops.cross_entropy's backward used to subtract in place from fp32 logits (`.float()` is no copy)."""
    from kgsearch.dkgr.cpu_ops import cross_entropy

    logits = torch.randn(5, 7, requires_grad=True)
    before = logits.detach().clone()
    per_row = cross_entropy(logits, torch.tensor([0, 1, 2, 3, 4]), "none")
    per_row.sum().backward()
    assert torch.equal(logits.detach(), before)
    assert torch.allclose(per_row, torch.nn.functional.cross_entropy(before, torch.arange(5), reduction="none"))


def test_the_head_changes_the_models_loss_and_every_head_parameter_learns():
    on = make(dropout=0.0, input_dropout=0.0, hidden_dropout=0.0, feature_dropout=0.0, learn_history_weight=True)
    off = make(dropout=0.0, input_dropout=0.0, hidden_dropout=0.0, feature_dropout=0.0, global_history=False)
    shared = {k: v for k, v in on.model.state_dict().items() if not k.startswith("global_head.")}
    off.model.load_state_dict(shared)       # the same weights; only the head differs
    t, facts = on.train_times[6]
    loss_on, parts_on = on.model([(on.history.steps_for(t), facts)])
    loss_off, parts_off = off.model([(off.history.steps_for(t), facts[:, :3])])
    assert abs(float(parts_on[0]) - float(parts_off[0])) > 1e-3      # L_e is the mixture's NLL
    assert float(parts_on[1]) == pytest.approx(float(parts_off[1]))   # L_r is untouched
    loss_on.backward()
    head = on.model.global_head
    assert float(head.copy_weight.grad.abs().min()) > 0 and float(head.alpha_logit.grad.abs()) > 0
    loss_off.backward()
    dec_on = on.model.entity_decoder.conv_weight.grad
    dec_off = off.model.entity_decoder.conv_weight.grad
    assert not torch.allclose(dec_on, dec_off)
    # a fixed alpha is no parameter, and is what the config says
    fixed = make().model.global_head
    assert fixed.alpha_logit is None and fixed.log_alphas()[0] == pytest.approx(math.log(0.4))
    assert {n for n, _ in fixed.named_parameters()} == {"copy_weight"}


def test_config_checks_the_history_weight():
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(KGSearchError, match="'history_weight' must be in"):
            config_from_dict(DkgrConfig, {"global_history": True, "history_weight": bad}, source="run.yaml")
    assert config_from_dict(DkgrConfig, {}, source="run.yaml").global_history is True  # the default (recipe.py)


def test_prepared_data_without_the_index_still_builds_it():
    ds = recurrent_dataset()
    cfg = tiny()
    prepared = DkgrRecipe.prepare(cfg, ds)
    assert "recurrency" in prepared
    old = {k: v for k, v in prepared.items() if k != "recurrency"}
    a, b = DkgrRecipe(cfg, ds, prepared), DkgrRecipe(cfg, ds, old)
    assert torch.equal(a.model.global_head.index.occ_key, b.model.global_head.index.occ_key)


# ------------------------------------------------------------------------------------------------ end to end


def test_train_cli_with_the_switch_on_trains_checkpoints_and_evaluates(tiny_temporal_dir, tmp_path, capsys):
    from kgsearch.train import main

    run = tmp_path / "run.yaml"
    run.write_text(f"model: dkgr\ndataset: {tiny_temporal_dir}\nparams:\n  dim: 8\n  decoder_channels: 4\n"
                   "  history_len: 2\n  epochs: 3\n  precision: fp32\n", encoding="utf-8")
    out = tmp_path / "out"
    main([str(run), "--out", str(out), "--set", "params.global_history=true", "--set", "params.epochs=1",
          "--set", "params.history_weight=0.5"])
    printed = capsys.readouterr().out
    assert "test:" in printed and "tf_mrr" in printed
    blob = torch.load(out / "best.pt", weights_only=False)
    assert blob["config"]["params"]["global_history"] is True and blob["epoch"] == 1
    assert "global_head.copy_weight" in blob["state"]["recipe"]["model"]
    main(["--eval", str(out / "best.pt")])
    assert "tf_mrr" in capsys.readouterr().out


class TestDkgrGlobalHistoryContract(RecipeContract):
    recipe = "dkgr"

    def make_dataset(self):
        return recurrent_dataset()

    def params(self):
        return dict(TINY)
