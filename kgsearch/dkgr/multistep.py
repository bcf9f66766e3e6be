"""Multi-step evaluation (config `eval_history: multi_step`): the model's own predictions as history.

In the default single-step setting (`ground_truth`, RE-GCN's and TiRGN's default) every evaluated day
is predicted from the ground truth of the m snapshots before it, earlier days of the evaluated split
included. In multi-step mode the evaluated split's own earlier days are replaced by what the model
predicted for them, in time order:

* The history of the split's first day is the ground truth of the m latest snapshots before it, as
  in single-step; earlier splits stay ground truth (for test: train + valid; for valid: train).
  That is RE-GCN's `--multi-step` (src/main.py test(): the input list starts as the last m snapshots
  of train + valid for test, of train for valid, and only the evaluated days are fed back).
* After a day is scored, each of its entity queries (s, r, ?) and (o, r + R, ?) -- the queries are
  given, their answers are not -- contributes its `multi_step_topk` highest-scored entities as facts
  (inverse queries turned back into (x, r, o)); the distinct facts form the predicted snapshot of that
  day, which joins the history window in place of the day's ground truth. The scores are the ones
  the ranks are computed from (the copy-head mixture with `global_history`), unfiltered: the
  time-aware filter is ground truth of the day. RE-GCN keeps duplicate facts (a fact predicted from
  both directions enters twice, and counts twice in the in-degree normaliser); here a snapshot is a
  set. Relation predictions are not fed back (RE-GCN's `--relation-evaluation` variant is not built).
* `multi_step_topk: 0` feeds nothing back: every day of the split is predicted from the last m ground-
  truth snapshots before the split. That is what RE-GCN's README multi-step command runs (`--topk 0`
  makes its predicted snapshot empty, and an empty one never replaces the window); its argparse
  default is `--topk 10`. The default here, 1, makes a predicted day about the size of a true one
  (at most two facts per true fact).
* With the global-history head, its answer index must not hold ground truth of the split's earlier
  days either: `PredictedAnswers` answers its look-ups from the ground truth before the split's first
  day plus the predicted facts of the split's earlier days (each stamped with its day).

Days are sequential by nature: with world_size > 1 every rank predicts every day of the split (to
build the history) and ranks only its own days, so sharding divides the ranking work, not the
evolution.
"""

from __future__ import annotations

import torch

from kgsearch.dkgr.history import Snapshot, SnapshotHistory, snapshot_of
from kgsearch.dkgr.recurrency import HistoryPairs, RecurrencyIndex


def predicted_facts(anchor: torch.Tensor, rel: torch.Tensor, scores: torch.Tensor, k: int,
                    num_relations: int) -> torch.Tensor:
    """[B * k, 3] facts (s, r, o): the k best-scored entities of each query (anchor, rel, ?), rel in
    [0, 2R); an inverse query (o, r + R, ?) with answer x gives (x, r, o). k is capped at the entity count."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices                       # [B, k], best first
    a = anchor[:, None].expand_as(top)
    q = rel[:, None].expand_as(top)
    inverse = q >= num_relations
    facts = torch.stack([torch.where(inverse, top, a), torch.where(inverse, q - num_relations, q),
                         torch.where(inverse, a, top)], dim=-1)
    return facts.reshape(-1, 3)


class PredictedAnswers:
    """The copy head's answer index in multi-step evaluation (a `RecurrencyIndex.lookup` stand-in):
    ground truth strictly before the split's first day `start`, plus the predicted facts so far."""

    def __init__(self, truth: RecurrencyIndex, start: int):
        self.truth, self.start = truth, start
        self.predicted: RecurrencyIndex | None = None
        self._quads: list[torch.Tensor] = []

    def add(self, time_index: int, facts: torch.Tensor) -> None:
        quads = torch.cat([facts, facts.new_full((len(facts), 1), time_index)], dim=1)
        self._quads.append(quads)
        t = self.truth
        self.predicted = RecurrencyIndex.build(torch.cat(self._quads), t.num_entities, t.num_relations,
                                               t.num_times)

    def lookup(self, anchor: torch.Tensor, rel: torch.Tensor, time: torch.Tensor) -> HistoryPairs:
        """As `RecurrencyIndex.lookup`; a pair's `last` / `count` combine both sources (`occ` is -1: it
        points into no single index)."""
        a = self.truth.lookup(anchor, rel, time.clamp(max=self.start))
        if self.predicted is None:
            return a
        b = self.predicted.lookup(anchor, rel, time)
        N = self.truth.num_entities
        key, inv = torch.unique(torch.cat([a.rows * N + a.ents, b.rows * N + b.ents]), return_inverse=True)
        last = key.new_full(key.shape, -1).scatter_reduce(0, inv, torch.cat([a.last, b.last]), "amax")
        count = key.new_zeros(key.shape).index_add(0, inv, torch.cat([a.count, b.count]))
        return HistoryPairs(torch.div(key, N, rounding_mode="floor"), key % N, last, count,
                            key.new_full(key.shape, -1))


class MultiStepHistory:
    """The history windows of one multi-step pass over a split whose first day is `start`: call
    `steps_for(t)`, then `add_day(t, facts)` with the day's predicted facts, day after day in time order."""

    def __init__(self, history: SnapshotHistory, start: int, topk: int,
                 answer_index: RecurrencyIndex | None = None, device: torch.device | str = "cpu"):
        self.history_len, self.topk, self.device = history.history_len, topk, device
        self.num_entities, self.num_relations = history.num_entities, history.num_relations
        self.window: list[Snapshot] = history.steps_for(start)   # ground truth before the split
        self.answers = PredictedAnswers(answer_index, start) if answer_index is not None else None
        self.last_time = start - 1

    def steps_for(self, time_index: int) -> list[Snapshot]:
        if time_index <= self.last_time:
            raise ValueError(f"multi-step history: day {time_index} asked after day {self.last_time}")
        return list(self.window)

    def predict(self, anchor: torch.Tensor, rel: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """This batch's contribution to the day's predicted snapshot ([0, 3] when topk is 0)."""
        if self.topk == 0:
            return anchor.new_zeros((0, 3))
        return predicted_facts(anchor, rel, scores, self.topk, self.num_relations)

    def add_day(self, time_index: int, facts: torch.Tensor) -> None:
        """Make the distinct `facts` [n, 3] the snapshot of day `time_index` (nothing when n = 0)."""
        if time_index <= self.last_time:
            raise ValueError(f"multi-step history: day {time_index} added after day {self.last_time}")
        self.last_time = time_index
        if len(facts) == 0:
            return
        facts = torch.unique(facts.long(), dim=0)
        self.window = (self.window + [snapshot_of(facts, self.num_entities, self.num_relations,
                                                  self.device)])[-self.history_len:]
        if self.answers is not None:
            self.answers.add(time_index, facts)
