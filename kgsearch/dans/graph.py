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
    answer); `keys` = neighbour_keys(rowptr, cols). `row_offset` [len(nodes)]: entity e of node i is
    row `row_offset[i] + e` of `emb` (one table per query, e.g. a GNN's h_q flattened to [B·N, D]).
    The sums are one sparse product over the batch's CSR rows (or over the whole graph when those hold
    more edges than it has, as on UMLS): 8-35x cheaper per edge on CPU than a gather plus index_add.
    """
    count = rowptr[nodes + 1] - rowptr[nodes]
    total = int(count.sum())
    work = emb if emb.dtype in (torch.float32, torch.float64) else emb.float()  # the CPU kernel's dtypes
    if row_offset is None and total > len(cols):
        n = len(rowptr) - 1
        ones = torch.ones(len(cols), dtype=work.dtype, device=emb.device)
        out = (csr_tensor(rowptr, cols, ones, (n, n)) @ work).index_select(0, nodes)
    else:
        crow = torch.zeros(len(nodes) + 1, dtype=torch.long, device=nodes.device)
        crow[1:] = count.cumsum(0)
        position = torch.repeat_interleave(rowptr[nodes] - crow[:-1], count) + torch.arange(total, device=nodes.device)
        nbr = cols[position]
        if row_offset is not None:
            nbr = nbr + torch.repeat_interleave(row_offset, count)
        ones = torch.ones(total, dtype=work.dtype, device=emb.device)
        out = csr_tensor(crow, nbr, ones, (len(nodes), len(emb))) @ work
    out = out.to(emb.dtype)
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
