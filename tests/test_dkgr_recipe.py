"""DkgrRecipe end to end on a tiny periodic temporal graph: training, evaluation, sharding, state."""

from __future__ import annotations

import dataclasses
import gc

import pytest
import torch

from kgsearch.config import config_from_dict
from kgsearch.data import TemporalDataset
from kgsearch.dkgr.recipe import DkgrConfig, DkgrRecipe
from kgsearch.errors import KGSearchError
from kgsearch.precision import use_bf16
from kgsearch.recipe import get_recipe

from contract import RecipeContract

N, R, T = 12, 3, 20


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread


def periodic_dataset() -> TemporalDataset:
    """At time t every even entity e has (e, t % 3, e + 1 + t % 3): the past predicts the future."""
    rows = [(e, t % R, (e + 1 + t % R) % N, t) for t in range(T) for e in range(0, N, 2)]
    quads = torch.tensor(rows)
    split = lambda lo, hi: quads[(quads[:, 3] >= lo) & (quads[:, 3] < hi)]  # noqa: E731
    names = [f"Actor_{i}_(Country_{i % 3})" if i % 2 else f"Country_{i}" for i in range(N)]
    return TemporalDataset(name="periodic", entities=names, relations=["a", "b", "c"],
                           times=torch.arange(T), train=split(0, 14), valid=split(14, 17),
                           test=split(17, 20))


def tiny_config(**overrides) -> DkgrConfig:
    base = dict(dim=16, decoder_channels=4, history_len=3, lr=0.01, epochs=2, precision="fp32",
                eval_batch_size=5, seed=3)
    base.update(overrides)
    cfg = DkgrConfig(**base)
    cfg.validate()
    return cfg


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KGSEARCH_CACHE", str(tmp_path / "cache"))


def make(cfg=None, **kw) -> DkgrRecipe:
    ds = periodic_dataset()
    cfg = cfg or tiny_config()
    return DkgrRecipe(cfg, ds, DkgrRecipe.prepare(cfg, ds), **kw)


def test_registry_and_prepare_cache(tmp_path):
    assert get_recipe("dkgr") is DkgrRecipe
    ds, cfg = periodic_dataset(), tiny_config()
    first = DkgrRecipe.prepare(cfg, ds)
    assert any((tmp_path / "cache" / "dkgr_history").iterdir())    # stored once...
    again = DkgrRecipe.prepare(dataclasses.replace(cfg, history_len=5), ds)
    assert torch.equal(first["history"]["src"], again["history"]["src"])  # ...and m-independent


def test_loss_decreases_and_metrics_improve_on_a_periodic_graph():
    # d = 16 is too small for dropout 0.2 to leave a fast-learning model; switch it off here
    # without the copy head, which answers a periodic graph before any training
    recipe = make(tiny_config(dropout=0.0, input_dropout=0.0, hidden_dropout=0.0, feature_dropout=0.0,
                              global_history=False))
    before = recipe.evaluate("valid")["tf"].result()["mrr"]
    losses = [recipe.train_epoch(e)["loss_entity"] for e in range(1, 16)]
    assert all(b < a for a, b in zip(losses[::5], losses[5::5])) and losses[-1] < 0.3 * losses[0]
    after = recipe.evaluate("valid")["tf"].result()["mrr"]
    assert before < 0.4 and after > 0.9


def test_evaluate_counts_both_directions_and_shards_add_up():
    recipe = make()
    recipe.train_epoch(1)
    full = recipe.evaluate("test")
    n_test = len(periodic_dataset().test)
    assert set(full) == {"raw", "tf", "rel", "rel_raw"}
    assert all(acc.result()["count"] == 2 * n_test for acc in full.values())
    parts = [make(rank=r, world_size=2) for r in (0, 1)]
    for p in parts:
        p.load_state_dict(recipe.state_dict())
    merged = parts[0].evaluate("test")["tf"].merge(parts[1].evaluate("test")["tf"])
    assert torch.allclose(merged.to_tensor(), full["tf"].to_tensor())


def test_time_aware_filter_removes_answers_of_the_query_timestamp_only(monkeypatch):
    """(0, r0, ?) at test time 3 has answers 1 and 2; entity 3 answers it only at time 1. With fixed
    scores 3 > 1 > 2 > 0 > 4 > 5, the filtered rank of target 2 drops 1 (true at 3) but keeps 3."""
    quads = torch.tensor([[4, 1, 5, 0], [0, 0, 3, 1], [4, 1, 5, 2], [0, 0, 1, 3], [0, 0, 2, 3]])
    ds = TemporalDataset(name="filter", entities=["A", "B", "C", "D", "E", "F"], relations=["r0", "r1"],
                         times=torch.arange(4), train=quads[:2], valid=quads[2:3], test=quads[3:])
    cfg = tiny_config(history_len=2)
    recipe = DkgrRecipe(cfg, ds, DkgrRecipe.prepare(cfg, ds))
    base = torch.tensor([6.0, 8.0, 7.0, 9.0, 1.0, 0.0])    # score of each candidate entity 0..5
    monkeypatch.setattr(recipe.model, "entity_scores",
                        lambda h, r, anchors, rels, ent=None: base.expand(len(anchors), -1).clone())
    out = recipe.evaluate("test")
    # tail queries: target 1 (rank 2 raw and filtered: 3 stays), target 2 (raw 3: 3 and 1 above it;
    # filtered 2: 1 removed). Head queries (1, r0^-1, ?), (2, r0^-1, ?): target 0 at rank 4 both ways.
    raw, tf = out["raw"].result(), out["tf"].result()
    assert raw["count"] == tf["count"] == 4
    assert raw["mrr"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 4 + 1 / 4) / 4)
    assert tf["mrr"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 4 + 1 / 4) / 4)
    assert (raw["hits@1"], raw["hits@3"], tf["hits@1"], tf["hits@3"]) == (0.0, 0.5, 0.0, 0.5)


def test_state_dict_round_trip_and_seeded_epochs():
    a, b = make(), make()
    a.train_epoch(1)
    b.train_epoch(1)
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(pa, pb), name     # same seed -> same permutation, dropout, parameters
    c = make(tiny_config(seed=4))
    c.load_state_dict(a.state_dict())
    assert torch.allclose(c.evaluate("valid")["tf"].to_tensor(), a.evaluate("valid")["tf"].to_tensor())


def test_world_size_shards_training_timestamps():
    recipe = make(rank=1, world_size=2)
    seen = []
    recipe.forward_model = lambda batch, _m=recipe.model: seen.append(len(batch)) or _m(batch)
    recipe.train_epoch(1)
    assert len(seen) == (len(recipe.train_times)) // 2


def test_runs_under_ddp_with_one_process():
    import socket

    import torch.distributed as dist

    with socket.socket() as sock:   # a free port: other test files may run a process group too
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        recipe = make(tiny_config(timestamps_per_step=2))
        recipe.forward_model = torch.nn.parallel.DistributedDataParallel(recipe.model)
        for epoch in (1, 2):   # unused parameters would fail in the second step's reduction
            out = recipe.train_epoch(epoch)
        assert torch.isfinite(torch.tensor(out["loss"]))
    finally:
        recipe = None  # free DDP's reducer before its process group (the other order can hang in gloo)
        gc.collect()
        dist.destroy_process_group()


def test_bf16_training_keeps_the_evolution_in_fp32(monkeypatch):
    recipe = make(tiny_config(precision="bf16"))
    assert recipe.bf16 and use_bf16("fp32", torch.device("cpu")) is False
    seen = set()   # dtypes of the evolved states and of the decoder queries during a bf16 epoch

    def record(owner, attr, name):
        fn = getattr(owner, attr)

        def wrapped(*args):
            out = fn(*args)
            first = out[0] if isinstance(out, tuple) else out
            seen.add((name, (first[0] if isinstance(first, list) else first).dtype))
            return out
        monkeypatch.setattr(owner, attr, wrapped)

    record(recipe.model, "evolve", "encode")
    record(recipe.model.entity_decoder, "query", "decode")
    assert torch.isfinite(torch.tensor(recipe.train_epoch(1)["loss"]))
    assert seen == {("encode", torch.float32), ("decode", torch.bfloat16)}


def test_config_errors_name_the_key():
    with pytest.raises(KGSearchError, match="unknown key 'histroy_len'"):
        config_from_dict(DkgrConfig, {"histroy_len": 3}, source="run.yaml")
    with pytest.raises(KGSearchError, match="'history_len' must be >= 1"):
        config_from_dict(DkgrConfig, {"history_len": 0}, source="run.yaml")
    with pytest.raises(KGSearchError, match="key 'decoder': input should be 'convtranse', 'conve' or 'fc'"):
        config_from_dict(DkgrConfig, {"decoder": "transe"}, source="run.yaml")
    with pytest.raises(KGSearchError, match="'dropout' must be in"):
        config_from_dict(DkgrConfig, {"dropout": 1.5}, source="run.yaml")


def test_static_dataset_is_rejected():
    from kgsearch.data import StaticDataset

    ds = StaticDataset("s", ["a", "b"], ["r"], torch.tensor([[0, 0, 1]]), torch.zeros(0, 3).long(),
                       torch.zeros(0, 3).long())
    with pytest.raises(KGSearchError, match="not temporal"):
        DkgrRecipe.prepare(tiny_config(), ds)


class TestDkgrContract(RecipeContract):
    recipe = "dkgr"

    def make_dataset(self):
        return periodic_dataset()

    def params(self):
        return dict(dim=16, decoder_channels=4, history_len=3, lr=0.01, epochs=2, precision="fp32",
                    eval_batch_size=5, seed=3)
