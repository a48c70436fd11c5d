"""Sorted LSH (sortLSH) for HyperAttention: random hyperplanes, buckets in Gray-code order.

A row's bucket is the sign pattern of its projections on `num_projs` random directions. Sorting rows
by the *rank of their bucket in the Gray sequence* puts buckets that differ in exactly one bit next to
each other, so rows that are close in angle land in the same or a neighbouring block.

Direction matters: the Gray sequence g(i) = i ^ (i >> 1) lists buckets in one-bit-apart order, so the
sort key of bucket b must be g⁻¹(b), the position of b in that sequence. Using g(b) itself as the key
(as the public implementation does) puts buckets that differ in up to four bits side by side.
"""

from __future__ import annotations

import functools

import torch


def gray_sequence(num_bits: int) -> torch.Tensor:
    """Buckets in Gray-code order: consecutive entries differ in exactly one bit."""
    i = torch.arange(2**num_bits, dtype=torch.int64)
    return i ^ (i >> 1)


def gray_rank(num_bits: int) -> torch.Tensor:
    """rank[b] = position of bucket b in the Gray sequence (the inverse permutation)."""
    seq = gray_sequence(num_bits)
    rank = torch.empty_like(seq)
    rank[seq] = torch.arange(seq.numel(), dtype=torch.int64)
    return rank


def draw_projections(head_dim: int, num_projs: int, *, generator: torch.Generator | None,
                     device: torch.device) -> torch.Tensor:
    """Random hyperplane normals [head_dim, num_projs], shared by all batches and heads (as published)."""
    return torch.randn(head_dim, num_projs, generator=generator, device=device, dtype=torch.float32)


@functools.lru_cache(maxsize=None)
def _tables(num_projs: int, device: torch.device):
    """Bit weights 2^i and the Gray-rank lookup table, made once per device."""
    weights = (2 ** torch.arange(num_projs, dtype=torch.int32)).to(device)
    return weights, gray_rank(num_projs).to(device)


def bucket_rank(x: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """Gray rank of each row's bucket: x [..., n, d] -> int64 [..., n] in [0, 2**num_projs).

    The projection runs in x's dtype (no fp32 copy of x: at n = 131072 that copy alone is a GB).
    """
    weights, rank = _tables(projections.shape[1], x.device)
    bits = (x @ projections.to(x.dtype)) > 0
    bucket = (bits.to(torch.int32) * weights).sum(-1)
    return rank[bucket]


def sort_order(x: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """Permutation that sorts rows by bucket rank: order[..., r] = original index of sorted row r.

    Stable, so rows of one bucket keep their original order and the result is deterministic. The
    key is sorted in the narrowest integer type that holds it (a radix sort makes one pass a byte).
    """
    key = bucket_rank(x, projections)
    key = key.to(torch.int16 if projections.shape[1] <= 15 else torch.int32)
    return torch.sort(key, dim=-1, stable=True).indices
