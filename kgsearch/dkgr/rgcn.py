"""Structural-dependency module (Eq. 3): an omega-layer R-GCN over one history snapshot.

Two interchangeable layer implementations:

* `ScatterRGCNLayer` (default) -- RE-GCN's union form of Eq. 3: one W_1 for all relations instead of
  W_r, edge (j -r-> i) sending W_1 (h_j + r) with r the GRU's evolving relation embedding, averaged over
  i's in-degree, plus a self-loop W_2 h_i. Chosen so that the evolving relations shape the entity
  update, and 14-500x faster than the per-relation PyG layers (timings below).
  As in RE-GCN, entities with no incoming edge in the snapshot use a separate self-loop weight, so an
  isolated entity still evolves (the paper: "even isolated entities ... self-loop").
* `PygRGCNLayer` -- PyG's `RGCNConv` ("pyg") or `FastRGCNConv` ("pyg_fast"): per-relation weights
  W_r with basis decomposition, mean aggregation per relation = the literal Eq. 3. They cannot take
  evolving relation embeddings, so relations then only evolve through the GRU and enter the decoders.
  Measured on ICEWS14 snapshots, d = 200, one CPU thread (bench/dkgr_speed.py layers), per layer call:
  scatter 10.6 ms forward / 31.6 ms forward+backward; FastRGCNConv 143 / 358 ms; RGCNConv 5425 ms
  forward (without pyg-lib it loops over the 460 relation types on all 7128 entities; its backward
  would keep 2.4 GiB). Hence scatter is the default; the PyG layers are options.

Both take the full entity matrix [B*N, d] and a `Snapshot` whose node ids already carry the batch
offset; the vectorised path never loops over edges or relations.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from kgsearch.dkgr.cpu_ops import ByteDropout

from kgsearch.dkgr.history import Snapshot


class ScatterRGCNLayer(nn.Module):
    """h_i' = act( sum_{(j,r)->i} W_1 (h_j + r) / in_deg(i) + W_2 h_i )   (RE-GCN's union form of Eq. 3)."""

    def __init__(self, dim: int, activation: bool, dropout: float):
        super().__init__()
        self.w_neighbor = nn.Parameter(torch.empty(dim, dim))
        self.w_loop = nn.Parameter(torch.empty(dim, dim))           # entities with incoming edges
        self.w_loop_isolated = nn.Parameter(torch.empty(dim, dim))  # entities absent from the snapshot
        for w in (self.w_neighbor, self.w_loop, self.w_loop_isolated):
            nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain("relu"))
        self.activation = activation
        self.dropout = ByteDropout(dropout)

    def forward(self, h: torch.Tensor, rel_emb: torch.Tensor, snap: Snapshot) -> torch.Tensor:
        # Isolated entities: self-loop only, one [N, d] x [d, d] matmul (the unavoidable cost).
        out = h @ self.w_loop_isolated
        if snap.nodes.numel():
            # W_1 is linear, so sum_j W_1(h_j + r)/deg = W_1 * (sum_j (h_j + r)/deg): aggregate the
            # edge inputs onto the active rows first, then transform A rows instead of E edges.
            edge_in = (h.index_select(0, snap.src) + rel_emb.index_select(0, snap.rel)) * snap.norm[:, None]
            agg = edge_in.new_zeros(snap.nodes.numel(), h.shape[1]).index_add(0, snap.dst_pos, edge_in)
            # The evolution runs in fp32 (model.py), so no shape bucketing is needed here (cpu_ops).
            active = h.index_select(0, snap.nodes) @ self.w_loop + agg @ self.w_neighbor
            # In place: mm does not keep its output for backward, so this saves a copy of [N, d].
            out = out.index_copy_(0, snap.nodes, active.to(out.dtype))
        if self.activation:
            out = _rrelu_mean(out, inplace=True)
        return self.dropout(out)


def _rrelu_mean(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """RE-GCN's RReLU with its slope fixed at the mean of U(1/8, 1/3) (= RReLU in eval mode).

    Sampling a slope per element in training costs more than the layer's matmul on CPU (measured
    14 ms vs 11 ms per 7128 x 200 call) for a regulariser that dropout already provides.
    """
    return F.leaky_relu(x, (1.0 / 8 + 1.0 / 3) / 2, inplace=inplace)


class PygRGCNLayer(nn.Module):
    """PyG RGCNConv variant of Eq. 3 (per-relation weights, basis decomposition, mean per relation)."""

    def __init__(self, dim: int, num_relations: int, num_bases: int, activation: bool, dropout: float,
                 fast: bool = False):
        super().__init__()
        from torch_geometric.nn import FastRGCNConv, RGCNConv  # lazily: only these options need PyG

        conv = FastRGCNConv if fast else RGCNConv
        self.conv = conv(dim, dim, num_relations, num_bases=min(num_bases, num_relations),
                         aggr="mean", root_weight=True, bias=False)
        self.num_relations = num_relations
        self.activation = activation
        self.dropout = ByteDropout(dropout)

    def forward(self, h: torch.Tensor, rel_emb: torch.Tensor, snap: Snapshot) -> torch.Tensor:
        # Batched snapshots carry relation ids offset by b * 2R; RGCNConv wants raw ids.
        edge_type = snap.rel % self.num_relations
        out = self.conv(h, torch.stack([snap.src, snap.dst]), edge_type)
        if self.activation:
            out = _rrelu_mean(out)
        return self.dropout(out)


class RGCN(nn.Module):
    """omega stacked layers; their output is E'_t of Eq. 6-7.

    The last layer has no activation. Eq. 3 (and RE-GCN's code, RReLU on every layer) activates all
    of them; doing so measured 0.9-1.2 points lower validation tf MRR over the first three ICEWS14
    epochs (0.2622 / 0.3122 / 0.3345 vs 0.2738 / 0.3211 / 0.3438; docs/benchmarks_dkgr.md), in the
    abandoned all-bf16 setup: not yet re-measured with the fp32 evolution.
    """

    def __init__(self, dim: int, num_layers: int, num_relations: int, dropout: float,
                 impl: str = "scatter", num_bases: int = 100):
        super().__init__()
        layers = []
        for i in range(num_layers):
            act = i < num_layers - 1
            if impl == "scatter":
                layers.append(ScatterRGCNLayer(dim, act, dropout))
            elif impl in ("pyg", "pyg_fast"):
                layers.append(PygRGCNLayer(dim, num_relations, num_bases, act, dropout, impl == "pyg_fast"))
            else:
                raise ValueError(f"unknown rgcn_impl {impl!r}")
        self.layers = nn.ModuleList(layers)

    def forward(self, h: torch.Tensor, rel_emb: torch.Tensor, snap: Snapshot) -> torch.Tensor:
        for layer in self.layers:
            h = layer(h, rel_emb, snap)
        return h
