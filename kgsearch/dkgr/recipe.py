"""DKGR-DR as a kgsearch Recipe: config, once-per-dataset preparation, training epoch, evaluation.

Training follows RE-GCN: one optimisation step per training timestamp t (in a seeded per-epoch
permutation), predicting all facts of t from the m snapshots before it. `timestamps_per_step` > 1
averages the loss of several timestamps in one step (E_s is then computed once per step, which saves
CPU time); the paper's "batch size = 64" has no counterpart in this snapshot-wise scheme.
`share_history` makes such a step take k consecutive timestamps and evolve their histories once
(a change of the training semantics, see `_window`); `timestamps_per_epoch` trains on a seeded
subset of the timestamps each epoch. Measured effects: docs/benchmarks_dkgr.md, "Speed".

Evaluation (extrapolation protocol): for every timestamp of the split, the history is the m latest
earlier snapshots with their ground truth (`eval_history: ground_truth`, single-step), or, with
`multi_step`, with the split's own earlier days replaced by the model's predictions for them
(kgsearch/dkgr/multistep.py); entity queries in both directions (head queries as
(o, r + R, ?)) give raw and time-aware filtered ranks, relation queries (s, ?, o) and (o, ?, s) over
all 2R relations give time-aware filtered ("rel") and raw ("rel_raw") ranks. With `global_history`
the entity ranks are those of the mixture with the copy distribution (kgsearch/dkgr/global_history.py),
whose earlier answers are ground truth of every day before the predicted one (single-step; in
multi-step mode the split's earlier days are predicted facts there too).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Literal

import torch

from kgsearch.cache import cached
from kgsearch.dkgr.history import SnapshotHistory, all_quadruples, build_history, facts_digest
from kgsearch.dkgr.model import DkgrModel
from kgsearch.dkgr.multistep import MultiStepHistory
from kgsearch.dkgr.recurrency import RecurrencyIndex
from kgsearch.dkgr.static_graph import build_static_graph
from kgsearch.errors import KGSearchError
from kgsearch.evaluation import (RankAccumulator, both_directions, entity_query_keys, raw_and_filtered_ranks,
                                 relation_query_keys, temporal_entity_filter, temporal_relation_filter)
from kgsearch.precision import autocast, use_bf16
from kgsearch.progress import ProgressFactory, silent
from kgsearch.sharding import epoch_order, epoch_seed, epoch_shard

PREPARE_VERSION = 1  # bump when the prepared tables change shape/meaning (invalidates the cache)


@dataclass
class DkgrConfig:
    # --- model (paper Sec. 4, 5.1.4) ---
    dim: int = 200                       # d, embedding dimension of entities, relations, words
    history_len: int = 3                 # m, snapshots of history (3 / 6 / 10 for ICEWS14 / 18 / 05-15)
    rgcn_layers: int = 2                 # omega, R-GCN layers per evolution unit (Eq. 3)
    gat_layers: int = 2                  # n, Relational-GAT layers on the static graph (Eq. 8-10)
    gat_self_loops: bool = False         # each static node also attends to itself (own relation type). The
                                         # entity-word graph is bipartite: without self-loops an entity's state
                                         # after an even number of layers (2, the default) is made of its words'
                                         # states, which were made of entity inputs only, so the word embeddings
                                         # reach E_s through attention logits alone (rgat.py)
    decoder: Literal["convtranse", "conve", "fc"] = "convtranse"   # prediction module; "fc" = -ConvE
    decoder_channels: int = 50           # convolution channels of ConvTransE (ConvE uses 32)
    kernel_size: int = 3                 # convolution kernel width of the decoders
    dropout: float = 0.2                 # dropout inside R-GCN / Relational-GAT
    input_dropout: float = 0.2           # decoder input dropout
    hidden_dropout: float = 0.2          # decoder hidden dropout
    feature_dropout: float = 0.2         # decoder feature-map dropout
    layer_norm: bool = True              # L2-normalise R_t and E'_t (R-GCN output) at each step; the
                                         # gated E_t is not renormalised (model.py docstring)
    final_norm: bool = False             # L2-normalise the final E_t before the decoders (RE-GCN)
    angle_deg: float = 10.0              # gamma, growth of the angle threshold per step, degrees (Eq. 11)
    lambda_entity: float = 0.6           # lambda_1, weight of the entity loss L_e (Eq. 17)
    lambda_relation: float = 0.2         # lambda_2, weight of the relation loss L_r
    lambda_static: float = 0.2           # lambda_3, weight of the static angle loss L_st
    loss_reduction: Literal["mean", "sum", "regcn"] = "mean"  # mean: L_e, L_r per query, L_st per entity;
                                         # sum: Eq. 13/15/16 as printed; regcn: CE mean, L_st sum (RE-GCN)
    # --- ablations (paper Sec. 5.3) ---
    rgcn: bool = True                    # False = -RGCN: learned random entity table instead of R-GCN
    gru: bool = True                     # False = -GRU: 1-D convolution instead of the relation GRU
    static: bool = True                  # False = -S: no static attribute graph, no L_st
    static_init: bool = True             # E_{t-m} = normalised E_s (RE-GCN's use of the static view)
    # --- global-history head (TiRGN-style copy mechanism, kgsearch/dkgr/global_history.py) ---
    global_history: bool = True          # p = alpha * copy + (1 - alpha) * decoder, the copy distribution over
                                         # the entities that answered (s, r) at any earlier time. On by default
                                         # (not in the paper): +10.8 / +7.8 ICEWS14 validation MRR after epoch 1 /
                                         # 2, ICEWS18 test 33.81; without it the model loses to the
                                         # recurrency baseline on recurrent graphs (docs/benchmarks_dkgr.md)
    history_weight: float = 0.3          # alpha (TiRGN's history_rate); fixed unless learn_history_weight
    learn_history_weight: bool = False   # learn alpha (initialised at history_weight) instead of searching it
    rgcn_impl: Literal["scatter", "pyg", "pyg_fast"] = "scatter"   # Eq. 3 layer: ours, PyG RGCNConv,
                                         # PyG FastRGCNConv (speed: bench/dkgr_speed.py, rgcn.py)
    num_bases: int = 100                 # basis count of the PyG layers (W_r = sum_b a_rb V_b)
    precision: Literal["auto", "fp32", "bf16"] = "auto"   # decoder matmuls in training (the evolution
                                         # stays fp32); auto = bf16 where the hardware has it (CPU
                                         # avx512_bf16/AMX, CUDA), else fp32
    # --- optimisation (paper Sec. 5.1.4) ---
    lr: float = 1e-3                     # Adam learning rate
    weight_decay: float = 1e-5           # Adam L2 penalty (RE-GCN)
    grad_clip: float = 1.0               # max gradient norm
    timestamps_per_step: int = 1         # target timestamps per optimisation step (RE-GCN: 1)
    share_history: bool = False          # with timestamps_per_step = k > 1: the step's k timestamps are
                                         # consecutive and evolve one shared window (m + k - 1 snapshots
                                         # instead of k * m; later ones see a longer history)
    timestamps_per_epoch: int = 0        # > 0: train on this many timestamps per epoch, a seeded
                                         # subset that changes every epoch (0 = all)
    epochs: int = 30                     # training epochs (the paper's 500 with early stopping)
    eval_every: int = 1                  # validate every k epochs
    eval_batch_size: int = 1024          # queries scored at once in evaluation (memory = B x N)
    # --- evaluation history (valid and test; training is unaffected; kgsearch/dkgr/multistep.py) ---
    eval_history: Literal["ground_truth", "multi_step"] = "ground_truth"   # ground_truth: a day sees the
                                         # true facts of the m snapshots before it (single-step, RE-GCN's and
                                         # TiRGN's default); multi_step: the split's own earlier days are the
                                         # model's predictions (earlier splits stay ground truth, as RE-GCN's)
    multi_step_topk: int = 1             # multi_step: entities per query forming a predicted day (RE-GCN's
                                         # --topk, default 10 there); 0 feeds nothing back (RE-GCN README's
                                         # --topk 0: the history stays the last m days before the split)
    seed: int = 0                        # seeds parameters, dropout and the timestamp order

    def validate(self) -> None:
        positive = ("dim", "history_len", "rgcn_layers", "gat_layers", "decoder_channels", "kernel_size",
                    "num_bases", "timestamps_per_step", "epochs", "eval_every", "eval_batch_size")
        if self.eval_history not in ("ground_truth", "multi_step"):
            raise ValueError(f"key 'eval_history' must be 'ground_truth' or 'multi_step', "
                             f"got {self.eval_history!r}")
        if self.multi_step_topk < 0:
            raise ValueError(f"key 'multi_step_topk' must be >= 0, got {self.multi_step_topk}")
        if self.timestamps_per_epoch < 0:
            raise ValueError(f"key 'timestamps_per_epoch' must be >= 0, got {self.timestamps_per_epoch}")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"key {name!r} must be >= 1, got {getattr(self, name)}")
        for name in ("dropout", "input_dropout", "hidden_dropout", "feature_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"key {name!r} must be in [0, 1), got {getattr(self, name)}")
        for name in ("lambda_entity", "lambda_relation", "lambda_static", "weight_decay", "angle_deg"):
            if getattr(self, name) < 0:
                raise ValueError(f"key {name!r} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.history_weight < 1.0:
            raise ValueError(f"key 'history_weight' must be in (0, 1), got {self.history_weight}")
        if self.lambda_entity + self.lambda_relation == 0:
            raise ValueError("lambda_entity and lambda_relation are both 0: nothing to predict")
        if self.lr <= 0 or self.grad_clip <= 0:
            raise ValueError("keys 'lr' and 'grad_clip' must be > 0")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"key 'kernel_size' must be odd (same-length convolution), got {self.kernel_size}")
        if self.static and not self.static_init and self.lambda_static == 0:
            raise ValueError("static=true with static_init=false and lambda_static=0 leaves the static "
                             "graph unused; set static=false")


class DkgrRecipe:
    name: ClassVar[str] = "dkgr"
    Config: ClassVar[type] = DkgrConfig
    data_kind: ClassVar[str] = "temporal"
    metric: ClassVar[str] = "tf_mrr"     # what fit() / the sweep maximise by default: time-aware filtered MRR
    # entity ranks raw and time-aware filtered, relation ranks filtered and raw
    metric_groups: ClassVar[tuple[str, ...]] = ("raw", "tf", "rel", "rel_raw")
    prepare_fields: ClassVar[frozenset[str]] = frozenset()  # prepare() reads no config field

    # ------------------------------------------------------------------ preparation
    @classmethod
    def prepare(cls, config: DkgrConfig, dataset: Any, progress: ProgressFactory = silent) -> dict:
        """Snapshot edge tables (independent of m) and the static attribute graph, cached on disk."""
        if not hasattr(dataset, "num_times"):
            raise KGSearchError(f"dataset {getattr(dataset, 'name', '?')!r} is not temporal; "
                                "model 'dkgr' needs quadruples (head, relation, tail, time)")
        quads = all_quadruples(dataset)
        dims = dict(N=dataset.num_entities, R=dataset.num_relations, T=dataset.num_times)
        history = cached("dkgr_history", {"v": PREPARE_VERSION, "facts": facts_digest(quads), **dims},
                         lambda: build_history(quads, dataset.num_entities, dataset.num_relations,
                                               dataset.num_times))
        # The static graph and the answer index of the global-history head are built whatever `static`
        # and `global_history` say (~10 ms / ~0.1 s), so prepare() reads no config field and a sweep
        # may search both (the -S ablation, the head's switch).
        recurrency = cached("dkgr_recurrency", {"v": PREPARE_VERSION, "facts": facts_digest(quads), **dims},
                            lambda: RecurrencyIndex.of_dataset(dataset).tables())
        return {"history": history, "static_graph": build_static_graph(dataset.entities),
                "recurrency": recurrency}

    # ------------------------------------------------------------------ construction
    def __init__(self, config: DkgrConfig, dataset: Any, prepared: dict, device: Any = "cpu",
                 rank: int = 0, world_size: int = 1):
        self.config, self.dataset = config, dataset
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        if prepared is None or "history" not in prepared:
            prepared = self.prepare(config, dataset)
        if config.static and "static_graph" not in prepared:
            prepared = {**prepared, "static_graph": build_static_graph(dataset.entities)}
        self.history = SnapshotHistory(prepared["history"], config.history_len, self.device)
        self.num_entities, self.num_relations = dataset.num_entities, dataset.num_relations

        index = None
        if config.global_history:   # prepared data from before the head existed has no index: build it
            tables = prepared.get("recurrency")
            index = (RecurrencyIndex.from_tables(tables) if tables is not None
                     else RecurrencyIndex.of_dataset(dataset))
        torch.manual_seed(config.seed)
        self.model = DkgrModel(config, self.num_entities, self.num_relations,
                               prepared.get("static_graph") if config.static else None, self.device,
                               history_index=index)
        self.model.to(self.device)
        self.forward_model: torch.nn.Module = self.model   # the trainable swaps in DDP(model)
        self.progress: ProgressFactory = silent  # kgsearch.train sets a console one
        # fused Adam: one kernel over all parameters (7x faster than the per-tensor loop on CPU).
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr,
                                          weight_decay=config.weight_decay,
                                          fused=self.device.type in ("cpu", "cuda"))
        self.bf16 = use_bf16(config.precision, self.device)

        # With the global-history head a snapshot's facts carry their time index as a 4th column: the
        # training loss looks up each target's earlier answers (both_directions reads columns 0-2).
        stamp = (lambda t, f: torch.cat([f, f.new_full((len(f), 1), t)], 1)) if config.global_history else (
            lambda t, f: f)
        self._snapshots = {split: [(t, stamp(t, f).to(self.device)) for t, f in dataset.snapshots(split)]
                           for split in ("train", "valid", "test")}
        # Timestamps with no earlier snapshot have nothing to reason from (RE-GCN skips them too).
        self.train_times = [(t, f) for t, f in self._snapshots["train"] if self.history.slots_before(t)]
        if not self.train_times:
            raise KGSearchError(f"dataset {dataset.name!r}: no training timestamp has any history")
        self._entity_filter = None
        self._relation_filter = None

    # ------------------------------------------------------------------ training
    def epoch_shard(self, epoch: int) -> torch.Tensor:
        """Indices into `train_times` (timestamps with history) this rank trains on in `epoch`."""
        return torch.cat([torch.tensor(g, dtype=torch.long) for g in self._epoch_steps(epoch)]
                         + [torch.zeros(0, dtype=torch.long)])

    def _epoch_steps(self, epoch: int) -> list[list[int]]:
        """This rank's optimisation steps in `epoch`, each a list of indices into `train_times`.

        Without `share_history`: the seeded permutation of the timestamps, sharded, in chunks of
        `timestamps_per_step`. With it: blocks of k consecutive timestamps (the block boundaries move by
        a seeded offset each epoch, so a timestamp is not always first or last in its block), the blocks
        permuted and sharded. `timestamps_per_epoch` keeps a prefix of the permutation: every rank
        takes the same number of steps, and the subset differs between epochs.
        """
        cfg, n = self.config, len(self.train_times)
        k = cfg.timestamps_per_step
        if cfg.share_history and k > 1:
            offset = int(epoch_order(k, cfg.seed, epoch)[0])
            cuts = sorted({0, *range(offset, n, k), n})
            units = [list(range(a, b)) for a, b in zip(cuts, cuts[1:])]
            per_unit = k
        else:
            units, per_unit = [[i] for i in range(n)], 1
        order = epoch_shard(len(units), cfg.seed, epoch, self.rank, self.world_size).tolist()
        if cfg.timestamps_per_epoch:
            order = order[:max(1, -(-cfg.timestamps_per_epoch // (per_unit * self.world_size)))]
        if per_unit > 1:
            return [units[u] for u in order]
        return [[units[u][0] for u in order[i:i + k]] for i in range(0, len(order), k)]

    def _window(self, group: list[int]) -> tuple[list, list]:
        """One shared history window for consecutive training timestamps `group` (share_history).

        The window runs from the history start of the first timestamp (its m latest earlier snapshots)
        to the last one's history end, and is evolved once; timestamp j is decoded from the state before
        its own snapshot. So the j-th timestamp of a block has m + j history snapshots, all starting at
        the same point, where evaluation (and training without share_history) uses exactly m: this
        changes the training semantics, for (m + k - 1) / k instead of m evolution steps per timestamp.
        """
        times = [self.train_times[j][0] for j in group]
        first = self.history.slots_before(times[0])
        start, end = (first[0] if first else 0), self.history.before[times[-1]]
        steps = [self.history.snapshot(s) for s in range(start, end)]
        targets = [(self.history.before[t] - start, self.train_times[j][1]) for t, j in zip(times, group)]
        return steps, targets

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.config
        self.model.train()
        # The global RNG (dropout) is reseeded per epoch and rank, so a resumed run repeats the same epochs.
        torch.manual_seed(epoch_seed(cfg.seed, epoch, self.rank))
        sums, steps = torch.zeros(4), 0
        groups = self._epoch_steps(epoch)
        bar = self.progress(f"epoch {epoch}, timestamps", len(groups))
        for group in groups:
            if cfg.share_history and cfg.timestamps_per_step > 1:
                batch = [self._window(group)]
            else:
                batch = [(self.history.steps_for(self.train_times[j][0]), self.train_times[j][1])
                         for j in group]
            with autocast(self.device, self.bf16):
                loss, parts = self.forward_model(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            sums += torch.cat([loss.detach().reshape(1), parts]).cpu()
            steps += 1
            bar.advance()
        bar.close()
        mean = (sums / max(steps, 1)).tolist()
        return {"loss": mean[0], "loss_entity": mean[1], "loss_relation": mean[2], "loss_static": mean[3]}

    # ------------------------------------------------------------------ evaluation
    def _filters(self):
        if self._entity_filter is None:
            self._entity_filter = temporal_entity_filter(self.dataset).to(self.device)
            self._relation_filter = temporal_relation_filter(self.dataset).to(self.device)
        return self._entity_filter, self._relation_filter

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, RankAccumulator]:
        """This rank's timestamps (round-robin) of `split`: {"raw", "tf", "rel", "rel_raw"} ranks."""
        accs = {k: RankAccumulator() for k in ("raw", "tf", "rel", "rel_raw")}
        for _, ranks in self.day_ranks(split):
            for group, r in ranks.items():
                accs[group].add(r)
        return accs

    @torch.no_grad()
    def day_ranks(self, split: str) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """(time index, {"raw", "tf", "rel", "rel_raw": ranks}) per batch of queries of this rank's days
        of `split`, in time order. Each day's history is evolved once and all its queries are scored
        from that state; `eval_history` says what that history is (module docstring)."""
        if split not in self._snapshots:
            raise KGSearchError(f"unknown split {split!r} (expected train, valid or test)")
        ent_filter, rel_filter = self._filters()
        N, R, B = self.num_entities, self.num_relations, self.config.eval_batch_size
        model = self.model
        model.eval()
        head = model.global_head
        e_static = model.static_embedding() if model.static else None
        days = self._snapshots[split]
        multi = None
        if self.config.eval_history == "multi_step" and days:
            # Multi-step: the split's earlier days are this pass's predictions, so every rank walks every
            # day (kgsearch/dkgr/multistep.py) and ranks its own; earlier splits stay ground truth.
            multi = MultiStepHistory(self.history, days[0][0], self.config.multi_step_topk,
                                     head.index if head is not None else None, self.device)
        index = multi.answers if multi is not None else None
        walked = days if multi else days[self.rank::self.world_size]
        bar = self.progress(f"{split} evaluation, days", len(walked))
        for day, (t, facts) in enumerate(days):
            own = day % self.world_size == self.rank
            if multi is None and not own:
                continue
            bar.advance()
            h, r, _ = model.encode(multi.steps_for(t) if multi else self.history.steps_for(t), e_static)
            ent = torch.tanh(h)
            subj, rels, obj = both_directions(facts, R)
            time = torch.full_like(subj, t)
            predicted = []
            for i in range(0, len(subj), B):
                a, q, b, tt = subj[i:i + B], rels[i:i + B], obj[i:i + B], time[i:i + B]
                scores = model.entity_scores(h, r, a, q, ent)
                if head is not None:   # rank by the mixture with the copy distribution
                    scores = head.log_probs(scores, a, q, tt, index)
                if multi is not None:  # the unfiltered scores: the filter is the day's ground truth
                    predicted.append(multi.predict(a, q, scores))
                if not own:
                    continue
                rows, cols = ent_filter.lookup(entity_query_keys(a, q, tt, N, R))
                raw, tf = raw_and_filtered_ranks(scores, b, rows, cols)
                # Relation (a, ?, b) over 2R: r is true if (a, r, b) holds at t, r + R if (b, r, a) does.
                rel_scores = model.relation_scores(h, r, a, b, ent)
                rows1, cols1 = rel_filter.lookup(relation_query_keys(a, b, tt, N))
                rows2, cols2 = rel_filter.lookup(relation_query_keys(b, a, tt, N))
                rel_raw, rel_tf = raw_and_filtered_ranks(rel_scores, q, torch.cat([rows1, rows2]),
                                                         torch.cat([cols1, cols2 + R]))
                yield t, {"raw": raw, "tf": tf, "rel_raw": rel_raw, "rel": rel_tf}
            if multi is not None and day + 1 < len(days):
                multi.add_day(t, torch.cat(predicted))
        bar.close()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            # Adam's load keeps same-device tensors by reference: copy so two recipes never share moments.
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
