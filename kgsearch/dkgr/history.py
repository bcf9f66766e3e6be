"""Snapshot histories for extrapolation: the m snapshots before each timestamp, as edge tensors.

Everything is built once per dataset (vectorised, no loop over facts) and stored as flat CSR-style
tensors so the result is picklable, cacheable with `kgsearch.cache` and cheap to slice per step:

* snapshot slots `0..S-1` are the time indices that contain at least one fact (train+valid+test);
* each slot's graph has both directions of every fact: (s, r, o) and the inverse (o, r + R, s);
* `before[t]` = number of slots with time index < t, so the history of t for any m is the slot range
  [before[t] - m, before[t]) -- the tables do not depend on m, and a sweep that searches m shares them.

Using valid/test facts as history is the standard extrapolation protocol (RE-NET / RE-GCN): when
snapshot t is predicted, the ground truth of every earlier timestamp is known. Since the splits are
consecutive time ranges, the history of a training timestamp only ever contains training facts, and
the history of any timestamp never contains t or a later time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from kgsearch.errors import KGSearchError

_KEYS = ("times", "edge_ptr", "src", "dst", "dst_pos", "rel", "norm", "node_ptr", "nodes",
         "pair_ptr", "pair_rel", "pair_ent", "before")


@dataclass
class Snapshot:
    """One history snapshot: its edges (both directions) and the incidence needed by the GRU pool."""

    src: torch.Tensor       # [E] message source entity
    dst: torch.Tensor       # [E] receiving entity
    dst_pos: torch.Tensor   # [E] position of dst in `nodes` (aggregate on the active rows only)
    rel: torch.Tensor       # [E] relation in [0, 2R)
    norm: torch.Tensor      # [E] 1 / in-degree(dst) within the snapshot (c_{i,r} of Eq. 3, RE-GCN style)
    nodes: torch.Tensor     # [A] entities with in-degree > 0 (they take the "active" self-loop weight)
    pair_rel: torch.Tensor  # [P] relation of each unique (relation, entity) incidence pair (Eq. 4 pool)
    pair_ent: torch.Tensor  # [P] entity of each pair


def all_quadruples(dataset: Any) -> torch.Tensor:
    """train + valid + test quadruples [n, 4] (head, relation, tail, time index)."""
    parts = [getattr(dataset, split) for split in ("train", "valid", "test")]
    quads = torch.cat([p.long().reshape(-1, 4) for p in parts if p is not None and p.numel()], dim=0)
    if quads.numel() == 0:
        raise KGSearchError(f"dataset {getattr(dataset, 'name', '?')!r}: no temporal facts")
    return quads


def facts_digest(quads: torch.Tensor) -> str:
    """Content hash of the facts, so the on-disk cache never serves a history of different data."""
    return hashlib.sha256(quads.contiguous().numpy().tobytes()).hexdigest()[:16]


def build_history(quads: torch.Tensor, num_entities: int, num_relations: int,
                  num_times: int) -> dict[str, torch.Tensor]:
    """Precompute every snapshot's edge tensors and the per-time history offsets (module docstring)."""
    quads = quads.long()
    s, r, o, t = quads.unbind(1)
    if int(t.min()) < 0 or int(t.max()) >= num_times:
        raise KGSearchError(f"time index out of range [0, {num_times}) in the quadruples")
    R, N = num_relations, num_entities

    times, slot = torch.unique(t, sorted=True, return_inverse=True)   # slot of each fact
    S = times.numel()

    # Edges of both directions, grouped by slot (stable sort keeps the file order inside a slot).
    e_slot = torch.cat([slot, slot])
    e_src, e_dst, e_rel = torch.cat([s, o]), torch.cat([o, s]), torch.cat([r, r + R])
    order = torch.argsort(e_slot, stable=True)
    e_slot, e_src, e_dst, e_rel = e_slot[order], e_src[order], e_dst[order], e_rel[order]
    edge_ptr = _ptr(e_slot, S)

    # In-degree of each receiving entity within its snapshot -> per-edge normaliser 1/deg.
    node_key = e_slot * N + e_dst
    uniq_nodes, node_inv, node_deg = torch.unique(node_key, return_inverse=True, return_counts=True)
    norm = 1.0 / node_deg[node_inv].float()
    node_slot = torch.div(uniq_nodes, N, rounding_mode="floor")
    nodes = uniq_nodes % N
    node_ptr = _ptr(node_slot, S)
    dst_pos = node_inv - node_ptr[e_slot]  # unique() is sorted, so a slot's nodes are contiguous

    # Unique (slot, relation, entity) incidences: each relation (and its inverse) is linked to both of
    # its facts' entities, as RE-GCN's r2e does; the GRU input mean-pools E_{t-1} over them (Eq. 4).
    p_slot = torch.cat([slot] * 4)
    p_rel = torch.cat([r, r, r + R, r + R])
    p_ent = torch.cat([s, o, s, o])
    pair_key = torch.unique((p_slot * (2 * R) + p_rel) * N + p_ent)
    pair_ent = pair_key % N
    pair_sr = torch.div(pair_key, N, rounding_mode="floor")
    pair_rel = pair_sr % (2 * R)
    pair_ptr = _ptr(torch.div(pair_sr, 2 * R, rounding_mode="floor"), S)

    # before[t] = #slots with time index < t: the history of t ends there (never t, nothing later).
    before = torch.searchsorted(times, torch.arange(num_times), right=False)

    return {"times": times, "edge_ptr": edge_ptr, "src": e_src, "dst": e_dst, "dst_pos": dst_pos,
            "rel": e_rel,
            "norm": norm, "node_ptr": node_ptr, "nodes": nodes, "pair_ptr": pair_ptr,
            "pair_rel": pair_rel, "pair_ent": pair_ent, "before": before,
            "num_entities": N, "num_relations": R}


def _ptr(sorted_group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """CSR offsets [G+1] of a sorted group-id vector."""
    counts = torch.bincount(sorted_group, minlength=num_groups)
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])


class SnapshotHistory:
    """Read access to a `build_history` result: slot -> `Snapshot`, time index -> its m history slots."""

    def __init__(self, tables: dict[str, Any], history_len: int, device: torch.device | str = "cpu"):
        if history_len < 1:
            raise KGSearchError(f"history_len must be >= 1, got {history_len}")
        missing = [k for k in _KEYS if k not in tables]
        if missing:
            raise KGSearchError(f"prepared DKGR history lacks {missing} (stale cache? delete it)")
        self.num_entities = int(tables["num_entities"])
        self.num_relations = int(tables["num_relations"])
        self.history_len = history_len
        self.times = tables["times"]
        self.before = tables["before"].tolist()
        self._ptr = {k: tables[k].tolist() for k in ("edge_ptr", "node_ptr", "pair_ptr")}
        # Move the flat tables to the device once; per-step slicing is then a free view.
        self._t = {k: tables[k].to(device) for k in ("src", "dst", "dst_pos", "rel", "norm", "nodes",
                                                      "pair_rel", "pair_ent")}
        self._cache: dict[int, Snapshot] = {}

    @property
    def num_snapshots(self) -> int:
        return self.times.numel()

    def snapshot(self, slot: int) -> Snapshot:
        snap = self._cache.get(slot)
        if snap is None:
            e0, e1 = self._ptr["edge_ptr"][slot], self._ptr["edge_ptr"][slot + 1]
            n0, n1 = self._ptr["node_ptr"][slot], self._ptr["node_ptr"][slot + 1]
            p0, p1 = self._ptr["pair_ptr"][slot], self._ptr["pair_ptr"][slot + 1]
            t = self._t
            snap = Snapshot(t["src"][e0:e1], t["dst"][e0:e1], t["dst_pos"][e0:e1], t["rel"][e0:e1],
                            t["norm"][e0:e1],
                            t["nodes"][n0:n1], t["pair_rel"][p0:p1], t["pair_ent"][p0:p1])
            self._cache[slot] = snap
        return snap

    def slots_before(self, time_index: int) -> list[int]:
        """Slots of the (up to) m latest snapshots with time index < `time_index`, oldest first."""
        end = self.before[time_index]
        return list(range(max(0, end - self.history_len), end))

    def steps_for(self, time_index: int) -> list[Snapshot]:
        return [self.snapshot(s) for s in self.slots_before(time_index)]


def snapshot_of(facts: torch.Tensor, num_entities: int, num_relations: int,
                device: torch.device | str = "cpu") -> Snapshot:
    """One snapshot of the facts [k >= 1, 3], built as `build_history` builds each slot (multi-step
    evaluation: a day's predicted facts). The same facts in the same order give the same tensors."""
    facts = facts[:, :3].long().cpu()
    quads = torch.cat([facts, torch.zeros(len(facts), 1, dtype=torch.long)], dim=1)
    return SnapshotHistory(build_history(quads, num_entities, num_relations, 1), 1, device).snapshot(0)
