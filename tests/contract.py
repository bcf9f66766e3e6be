"""The contract every recipe keeps, as a test base class: each recipe's tests subclass `RecipeContract`.

A subclass sets `recipe` (the registry name) and implements `make_dataset()` and `params()` (a tiny
config). The meta-test in tests/test_meta.py fails when a registered recipe has no subclass.
"""

from __future__ import annotations

import gc
import socket
from typing import Any

import pytest
import torch

from kgsearch.config import config_from_dict, field_names
from kgsearch.evaluation import RankAccumulator
from kgsearch.recipe import check_metric, get_recipe
from kgsearch.run.loop import seed_everything


class RecipeContract:
    recipe: str  # registry name

    # -- what a subclass provides ------------------------------------------------------------------
    def make_dataset(self) -> Any:
        raise NotImplementedError

    def params(self) -> dict:
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _contract_env(self, tmp_path, monkeypatch):
        monkeypatch.setenv("KGSEARCH_CACHE", str(tmp_path / "cache"))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: a second thread only adds barrier waits
        yield
        torch.set_num_threads(threads)

    @property
    def cls(self) -> type:
        return get_recipe(self.recipe)

    def config(self, **overrides):
        return config_from_dict(self.cls.Config, {**self.params(), **overrides}, source="contract")

    def build(self, dataset=None, prepared=None, rank: int = 0, world_size: int = 1, **overrides):
        dataset = dataset if dataset is not None else self.make_dataset()
        config = self.config(**overrides)
        if prepared is None:
            seed_everything(config.seed)
            prepared = self.cls.prepare(config, dataset)
        seed_everything(config.seed)  # as kgsearch.run.runfile.build and the trial engine do
        return self.cls(config, dataset, prepared, rank=rank, world_size=world_size)

    @staticmethod
    def metrics(accs: dict) -> dict:
        return {group: acc.result() for group, acc in accs.items()}

    # -- the contract ------------------------------------------------------------------------------
    def test_declares_its_facts(self):
        cls = self.cls
        assert cls.name == self.recipe and cls.data_kind in ("static", "temporal")
        assert cls.metric_groups and check_metric(cls, cls.metric) == cls.metric
        assert {"epochs", "eval_every", "seed"} <= set(field_names(cls.Config))
        assert set(cls.prepare_fields) <= set(field_names(cls.Config)), "prepare_fields names unknown fields"
        accs = self.build().evaluate("valid")
        assert set(accs) == set(cls.metric_groups)  # the groups it declares are the ones it reports

    def test_constructor_uses_the_prepared_data(self, monkeypatch):
        dataset, config = self.make_dataset(), self.config()
        prepared = self.cls.prepare(config, dataset)

        def refuse(*_args, **_kwargs):
            raise AssertionError("the constructor ran prepare() although it was given prepared data")

        monkeypatch.setattr(self.cls, "prepare", classmethod(refuse))
        self.cls(config, dataset, prepared)

    def test_state_dict_round_trip_continues_the_same_run(self):
        dataset = self.make_dataset()
        a = self.build(dataset)
        a.train_epoch(1)
        b = self.build(dataset)
        b.train_epoch(5)  # weights and optimizer moments elsewhere than a's
        assert self.metrics(b.evaluate("valid")) != self.metrics(a.evaluate("valid"))
        b.load_state_dict(a.state_dict())
        assert self.metrics(b.evaluate("valid")) == self.metrics(a.evaluate("valid"))
        torch.manual_seed(0)
        loss_a = a.train_epoch(2)["loss"]
        torch.manual_seed(0)
        loss_b = b.train_epoch(2)["loss"]
        assert loss_a == pytest.approx(loss_b, rel=1e-6)

    def test_same_seed_same_epoch_other_seed_differs(self):
        dataset = self.make_dataset()
        first, again = self.build(dataset).train_epoch(1), self.build(dataset).train_epoch(1)
        assert first["loss"] == again["loss"]
        other = self.build(dataset, seed=self.config().seed + 1).train_epoch(1)  # the same epoch
        assert other["loss"] != first["loss"]

    def test_training_shards_partition_the_epoch(self):
        dataset = self.make_dataset()
        single = self.build(dataset)
        whole = single.epoch_shard(3)
        assert sorted(whole.tolist()) == list(range(len(whole)))  # one rank: every unit once
        shards = [self.build(dataset, rank=r, world_size=3).epoch_shard(3) for r in range(3)]
        sizes = {len(s) for s in shards}
        assert len(sizes) == 1, "ranks must take the same number of steps"
        union = torch.cat(shards).tolist()
        assert len(set(union)) == len(union) and set(union) <= set(whole.tolist())
        assert len(whole) - len(union) < 3  # at most the remainder is left out

    def test_evaluation_shards_add_up_to_the_whole(self):
        dataset = self.make_dataset()
        single = self.build(dataset)
        whole = single.evaluate("valid")
        parts = [self.build(dataset, rank=r, world_size=2) for r in range(2)]
        for p in parts:
            p.load_state_dict(single.state_dict())
        summed = [p.evaluate("valid") for p in parts]
        for group, acc in whole.items():
            total = RankAccumulator.from_tensor(summed[0][group].to_tensor() + summed[1][group].to_tensor())
            assert total.result() == pytest.approx(acc.result())

    def test_one_process_ddp_trains_like_plain(self):
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        dataset = self.make_dataset()
        plain = self.build(dataset).train_epoch(1)["loss"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
        try:
            recipe = self.build(dataset)
            recipe.forward_model = DistributedDataParallel(recipe.model, find_unused_parameters=True)
            wrapped = recipe.train_epoch(1)["loss"]
        finally:
            # Free DDP's reducer while its process group is alive: the other order can hang in gloo.
            recipe = None
            gc.collect()
            dist.destroy_process_group()
        assert wrapped == pytest.approx(plain, rel=1e-5)


__all__ = ["RecipeContract"]
