"""fit(): checkpoint selection by the metric asked for, early stopping on a plateau, and the hooks."""

from __future__ import annotations

import math

import pytest
import torch

from kgsearch.evaluation import RankAccumulator
from kgsearch.run.loop import FitHooks, TrainingDiverged, fit


class Scripted:
    """A recipe whose validation ranks follow a script: epoch e reports ranks[e - 1]."""

    metric = "mrr"

    def __init__(self, ranks: list[list[float]], loss: float = 1.0):
        self.ranks, self.loss, self.epoch = ranks, loss, 0

    def train_epoch(self, epoch: int) -> dict:
        self.epoch = epoch
        return {"loss": self.loss}

    def evaluate(self, split: str) -> dict:
        return {"": RankAccumulator().add(torch.tensor(self.ranks[self.epoch - 1]))}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch}


def test_the_best_checkpoint_is_chosen_by_the_metric_asked_for():
    # epoch 1: MRR 0.5005, hits@10 0.5; epoch 2: MRR 0.5, hits@10 1.0 -> the two metrics disagree
    ranks = [[1.0, 1000.0], [2.0, 2.0], [50.0, 50.0]]
    by_mrr = fit(Scripted(ranks), epochs=3, eval_every=1, log=None)
    by_hits = fit(Scripted(ranks), epochs=3, eval_every=1, metric="hits@10", log=None)
    assert by_mrr.best_epoch == 1 and by_mrr.best_state == {"epoch": 1}
    assert by_hits.best_epoch == 2 and by_hits.best_state == {"epoch": 2}
    assert fit(Scripted(ranks), epochs=3, eval_every=1, metric="val_hits@10", log=None).best_epoch == 2


def test_a_plateau_stops_the_run_after_patience_validations():
    ranks = [[4.0], [2.0], [1.0], [1.5], [3.0], [1.0], [1.0], [1.0]]  # best at 3, never beaten (ties don't count)
    seen = []

    class Record(FitHooks):
        def after_epoch(self, record, state, improved):
            seen.append(record)

    state = fit(Scripted(ranks), epochs=8, eval_every=1, patience=2, hooks=[Record()], log=None)
    assert state.converged and state.best_epoch == 3 and state.epoch == 5
    assert [r["epoch"] for r in seen] == [1, 2, 3, 4, 5] and seen[-1]["converged"] == 1.0
    assert not fit(Scripted(ranks), epochs=8, eval_every=1, log=None).converged  # patience 0: never


def test_hooks_see_each_stage_and_may_replace_the_training_record():
    calls = []

    class Spy(FitHooks):
        def before_epoch(self, epoch):
            calls.append(("before", epoch))

        def after_train(self, epoch, record):
            calls.append(("train", epoch))
            return {**record, "loss": math.nan} if epoch == 2 else record

    with pytest.raises(TrainingDiverged, match="epoch 2"):
        fit(Scripted([[1.0]] * 3), epochs=3, eval_every=1, hooks=[Spy()], log=None)
    assert calls == [("before", 1), ("train", 1), ("before", 2), ("train", 2)]
