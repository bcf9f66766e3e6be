"""Graph-side conditions of the CCD denoiser: neighbour means (x_nbr) and K-means type centroids (x_type).

Both are recomputed from the *current* (detached) embeddings every batch, so they follow training
and work for any embedding dimension; only the neighbour lists and cluster labels are fixed.
"""

from __future__ import annotations

import torch

from kgsearch.models.nbfnet import csr_tensor


def neighbour_csr(train: torch.Tensor, num_entities: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct neighbours of each entity in the undirected training graph (self-loops dropped), CSR.

    Returns (rowptr [N + 1], cols [nnz]).
    """
    h, t = train[:, 0].long(), train[:, 2].long()
    src, dst = torch.cat([h, t]), torch.cat([t, h])
    keep = src != dst
    pairs = torch.unique(src[keep] * num_entities + dst[keep])  # sorted by source, then neighbour
    src, cols = pairs // num_entities, pairs % num_entities
    rowptr = torch.zeros(num_entities + 1, dtype=torch.long)
    rowptr[1:] = torch.bincount(src, minlength=num_entities).cumsum(0)
    return rowptr, cols


def neighbour_keys(rowptr: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Sorted keys node·N + neighbour of every CSR entry (for membership tests)."""
    n = len(rowptr) - 1
    src = torch.repeat_interleave(torch.arange(n, device=cols.device), rowptr[1:] - rowptr[:-1])
    return src * n + cols


def neighbour_mean(emb: torch.Tensor, nodes: torch.Tensor, rowptr: torch.Tensor, cols: torch.Tensor,
                   fill: torch.Tensor | None = None, exclude: torch.Tensor | None = None,
                   keys: torch.Tensor | None = None, row_offset: torch.Tensor | None = None) -> torch.Tensor:
    """Mean embedding of each node's neighbours [len(nodes), D]; nodes without neighbours get `fill` (or 0).

    `exclude` [len(nodes)]: one entity per node left out of its mean when it is a neighbour (the CCD
    condition must not contain the answer it is noising: for a degree-1 anchor the mean *is* the
    answer); `keys` = neighbour_keys(rowptr, cols). Gathers only the batch's CSR rows, unless those
    hold more than an eighth of the graph's edges (dense graphs such as UMLS, big batches): then one
    sparse product over all edges computes every node's sum, ~8-35x cheaper per edge than a gather plus
    index_add on CPU (measured at 135 / 3k / 15k nodes). `row_offset` [len(nodes)]: entity e of node i is
    row `row_offset[i] + e` of `emb` (one table per query, e.g. a GNN's h_q flattened to [B·N, D]).
    """
    count = rowptr[nodes + 1] - rowptr[nodes]
    if row_offset is None and emb.dtype in (torch.float32, torch.float64) and 8 * int(count.sum()) > len(cols):
        n = len(rowptr) - 1
        adj = csr_tensor(rowptr, cols, torch.ones(len(cols), dtype=emb.dtype, device=emb.device), (n, n))
        out = (adj @ emb).index_select(0, nodes)
    else:
        start = rowptr[nodes]
        row = torch.repeat_interleave(torch.arange(len(nodes), device=nodes.device), count)
        offset = torch.arange(len(row), device=nodes.device) - torch.repeat_interleave(count.cumsum(0) - count, count)
        nbr = cols[torch.repeat_interleave(start, count) + offset]
        out = torch.zeros(len(nodes), emb.shape[1], dtype=emb.dtype, device=emb.device)
        if row_offset is not None:
            nbr = nbr + row_offset[row]
        out.index_add_(0, row, emb.index_select(0, nbr))  # index_select: ~3x faster than emb[nbr] on CPU
    if exclude is not None:
        key = nodes * (len(rowptr) - 1) + exclude
        pos = torch.searchsorted(keys, key).clamp(max=max(len(keys) - 1, 0))
        member = (keys[pos] == key) if len(keys) else torch.zeros_like(nodes, dtype=torch.bool)
        out = out - member.unsqueeze(-1).to(emb.dtype) * emb.index_select(
            0, exclude if row_offset is None else exclude + row_offset)
        count = count - member.long()
    out = out / count.clamp(min=1).unsqueeze(-1).to(emb.dtype)
    if fill is not None:
        out = torch.where((count > 0).unsqueeze(-1), out, fill.expand_as(out))
    return out


def cluster_centroids(emb: torch.Tensor, labels: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """Centroid of each K-means cluster in the current embedding space -> [K, D]."""
    sums = torch.zeros(num_clusters, emb.shape[1], dtype=emb.dtype, device=emb.device)
    sums.index_add_(0, labels, emb)
    counts = torch.bincount(labels, minlength=num_clusters).clamp(min=1).to(emb.dtype)
    return sums / counts.unsqueeze(-1)
