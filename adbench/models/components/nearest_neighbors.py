"""Exact nearest neighbours in blocks: Euclidean distances without an N x M matrix in memory."""

from __future__ import annotations

import torch
from torch import Tensor

#: Elements of one block's distance matrix (queries x bank rows): 8M floats, 32 MB.
BLOCK_ELEMENTS = 2**23


def squared_distances(query: Tensor, bank: Tensor, bank_sq_norms: Tensor | None = None) -> Tensor:
    """Squared Euclidean distances ``||q||^2 - 2 q.b + ||b||^2``, clamped at 0.

    Args:
        query: (N, D).
        bank: (M, D).
        bank_sq_norms: (M,) precomputed ``||b||^2`` (optional).

    Returns:
        (N, M).
    """
    if bank_sq_norms is None:
        bank_sq_norms = bank.pow(2).sum(1)
    distances = torch.addmm(bank_sq_norms.unsqueeze(0), query, bank.T, alpha=-2.0)
    distances += query.pow(2).sum(1, keepdim=True)
    return distances.clamp_min_(0.0)


def nearest_neighbors(
    query: Tensor, bank: Tensor, k: int = 1, block_elements: int = BLOCK_ELEMENTS
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest bank rows of every query row (Euclidean), computed block by block.

    Peak extra memory is about ``block_elements`` floats whatever N and M are: queries and bank are both
    cut into blocks, and a running top-k is merged across bank blocks.

    Args:
        query: (N, D).
        bank: (M, D), M >= k.
        k: neighbours per query.
        block_elements: size of one block of the distance matrix.

    Returns:
        distances (N, k) ascending (not squared) and indices (N, k) into ``bank``.
    """
    n, m = query.shape[0], bank.shape[0]
    k = min(k, m)
    bank_rows = max(k, min(m, block_elements // max(1, min(n, 4096))))
    query_rows = max(1, block_elements // bank_rows)
    bank_norms = bank.pow(2).sum(1)
    out_dist = torch.empty(n, k, dtype=query.dtype, device=query.device)
    out_index = torch.empty(n, k, dtype=torch.long, device=query.device)
    for q0 in range(0, n, query_rows):
        q = query[q0 : q0 + query_rows]
        best_d: Tensor | None = None
        best_i: Tensor | None = None
        for b0 in range(0, m, bank_rows):
            d = squared_distances(q, bank[b0 : b0 + bank_rows], bank_norms[b0 : b0 + bank_rows])
            d, i = d.topk(min(k, d.shape[1]), dim=1, largest=False)
            i += b0
            if best_d is not None:
                d, pick = torch.cat([best_d, d], 1).topk(k, dim=1, largest=False)
                i = torch.cat([best_i, i], 1).gather(1, pick)
            best_d, best_i = d, i
        out_dist[q0 : q0 + query_rows] = best_d.sqrt()
        out_index[q0 : q0 + query_rows] = best_i
    return out_dist, out_index
