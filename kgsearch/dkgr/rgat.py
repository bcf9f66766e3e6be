"""Relational-GAT over the static attribute graph (paper Eq. 8-10); its entity rows are E_s.

Eq. 8   alpha_ij = softmax_{j in N_i}( LeakyReLU( a^T [W e_i || W e_j || W_r r_ij] ) )
Eq. 9   e_i^{l+1} = sigma( sum_{j in N_i} alpha_ij W e_j^l )   (N_i has i itself only with gat_self_loops)

The static graph is bipartite (entities - words). Without self-loops, layer l's entity rows are sums over
words of layer l - 1 and vice versa, so after 2 layers E_s is built from entity inputs only and a word's own
embedding enters it through the attention logits alone (for a word of one entity: not at all, its softmax
has a single edge). `gat_self_loops` (DkgrConfig) adds each node to its own neighbourhood.
Eq. 10  r^{l+1}   = sigmoid( W_b r^l )

a^T [x || y || z] = a_i.x + a_j.y + a_r.z, so the logit of an edge is a sum of one scalar per receiving
node, one per sending node and one per relation: computed once per node / relation and gathered per
edge, then normalised with PyG's scatter softmax over each node's incoming edges. Eq. 9 uses the same W
as Eq. 8 (standard GAT; the paper names it W_e once). Its sigma is ELU as in GAT: the paper's sigmoid
would confine E_s to the positive orthant, where the angle constraint (Eq. 12) would pull every
dynamic entity embedding towards one direction.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from torch_geometric.utils import softmax as scatter_softmax

from kgsearch.dkgr.cpu_ops import ByteDropout


class RelationalGATLayer(nn.Module):
    def __init__(self, dim: int, dropout: float = 0.0, negative_slope: float = 0.2,
                 update_relations: bool = True):
        super().__init__()
        self.w = nn.Linear(dim, dim, bias=False)            # W of Eq. 8-9
        self.w_rel_att = nn.Linear(dim, dim, bias=False)    # W_r of Eq. 8
        self.att = nn.Parameter(torch.empty(3, dim))        # a = [a_i ; a_j ; a_r]
        # W_b of Eq. 10. The last layer's updated relations would feed nothing, so it has none: an
        # unused parameter would also break DDP's gradient reduction.
        self.w_rel_update = nn.Linear(dim, dim) if update_relations else None
        nn.init.xavier_uniform_(self.att)
        self.dropout = ByteDropout(dropout)
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor, rel: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                etype: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [V, d] nodes, rel [K, d] relations, edges src -> dst of type etype; returns (x', rel', alpha)."""
        wx = self.w(self.dropout(x))
        node_terms = wx @ self.att[:2].t()                      # [V, 2]: a_i . W e  and  a_j . W e
        rel_term = self.w_rel_att(rel) @ self.att[2]            # [K]
        logits = F.leaky_relu(node_terms[dst, 0] + node_terms[src, 1] + rel_term[etype],
                              self.negative_slope)              # Eq. 8 numerator (log-space)
        alpha = scatter_softmax(logits, dst, num_nodes=x.shape[0])
        msg = alpha[:, None] * wx.index_select(0, src)
        out = msg.new_zeros(wx.shape).index_add(0, dst, msg)
        if self.w_rel_update is not None:
            rel = torch.sigmoid(self.w_rel_update(rel))                       # Eq. 10
        return F.elu(out), rel, alpha                                         # Eq. 9


class RelationalGAT(nn.Module):
    """`num_layers` Relational-GAT layers; returns node states and the last layer's attention."""

    def __init__(self, dim: int, num_layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(
            RelationalGATLayer(dim, dropout, update_relations=i < num_layers - 1) for i in range(num_layers))

    def forward(self, x: torch.Tensor, rel: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                etype: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = x.new_zeros(0)
        for layer in self.layers:
            x, rel, alpha = layer(x, rel, src, dst, etype)
        return x, alpha
