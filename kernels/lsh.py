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
from collections.abc import Sequence

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
                     device: torch.device, rounded: bool = True) -> torch.Tensor:
    """Random hyperplane normals [head_dim, num_projs], shared by all batches and heads (as published).

    Rounded to bfloat16 values (kept in fp32): a product with a bf16 or fp16 input is then exact in
    every precision, so the GPU kernel may project on the tensor cores and still agree with this
    fp32 reference up to the order of summation.  rounded=False: the fp32 draws before rounding,
    for a consumer that rounds them itself (kernels/triton_lsh.py, two launches less).
    """
    normals = torch.randn(head_dim, num_projs, generator=generator, device=device, dtype=torch.float32)
    return normals.to(torch.bfloat16).to(torch.float32) if rounded else normals


@functools.lru_cache(maxsize=None)
def _tables(num_projs: int, device: torch.device):
    """Bit weights 2^i and the Gray-rank lookup table, made once per device."""
    weights = (2 ** torch.arange(num_projs, dtype=torch.int32)).to(device)
    return weights, gray_rank(num_projs).to(device)


def bucket_rank(x: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """Gray rank of each row's bucket: x [..., n, d] -> int64 [..., n] in [0, 2**num_projs).

    Projections in fp32 (the sign of a product must not depend on the input dtype's rounding).
    kernels/triton_lsh.py computes the same keys in one pass on the GPU.
    """
    weights, rank = _tables(projections.shape[1], x.device)
    bits = (x.float() @ projections) > 0
    bucket = (bits.to(torch.int32) * weights).sum(-1)
    return rank[bucket]


def key_dtype(num_projs: int) -> torch.dtype:
    """The narrowest integer type that holds a bucket rank (a radix sort makes one pass a byte)."""
    return torch.int16 if num_projs <= 15 else torch.int32


def stable_sort_orders(keys: torch.Tensor, num_projs: int) -> torch.Tensor:
    """torch.sort(stable=True)'s permutation of keys [..., n] along the last dimension."""
    return torch.sort(keys.to(key_dtype(num_projs)), dim=-1, stable=True).indices


def flat_sort_orders(keys: torch.Tensor, num_projs: int, key_dtype: torch.dtype = torch.int16) -> torch.Tensor:
    """stable_sort_orders by one radix sort over many rows at once: the same permutation. On the
    H200 at n = 131072 (64 rows) it took 0.31–0.49 ms against torch.sort's 0.39
    (kernels/NOTES_BY_VERSION.md, v9), so the triton backend's default is the counting sort of
    kernels/triton_sort.py.

    torch.sort sorts a batch of rows as segments; below 128 segments it does so by two full sorts
    (values, then segment), and above by a segmented sort. Here row r's keys become r·2^p + key, so
    one stable sort of all rows as a single flat vector keeps every row in its own range of
    positions, in key order, ties in original order; subtracting r·n gives the row's permutation.
    key_dtype int16 makes the radix sort two byte passes, so a group holds 2^15 / 2^p rows (256 for
    the default 7 projections) and larger batches take a few groups; int32 puts every row in one sort
    of four passes."""
    *lead, n = keys.shape
    rows = keys.reshape(-1, n)
    buckets = 2 ** num_projs
    per_group = (torch.iinfo(key_dtype).max + 1) // buckets
    if per_group < 2 or n == 0:
        return stable_sort_orders(keys, num_projs)
    order = torch.empty(rows.shape, dtype=torch.int64, device=keys.device)
    for g0 in range(0, rows.shape[0], per_group):
        group = rows[g0:g0 + per_group]
        r = group.shape[0]
        offsets = torch.arange(r, device=keys.device, dtype=key_dtype)[:, None] * buckets
        flat = torch.sort((group.to(key_dtype) + offsets).view(-1), stable=True).indices.view(r, n)
        row_start = torch.arange(r, device=keys.device, dtype=torch.int64)[:, None] * n
        torch.sub(flat, row_start, out=order[g0:g0 + r])
    return order.view(*lead, n)


def sort_orders(keys: Sequence[torch.Tensor] | torch.Tensor, num_projs: int, sort=stable_sort_orders) -> list[torch.Tensor]:
    """Stable sort permutation of each key tensor [..., n]: order[..., r] = original index of the
    row at sorted position r; ties keep their original order. Keys of equal shape share one sort
    (keys stacked already, [k, ..., n], are sorted as they are).
    `sort(keys, num_projs)` does the sorting (kernels/triton_sort.py has a counting sort)."""
    if isinstance(keys, torch.Tensor):
        return list(sort(keys, num_projs).unbind(0))
    if len({tuple(k.shape) for k in keys}) != 1:
        return [sort(k, num_projs) for k in keys]
    return list(sort(torch.stack(keys), num_projs).unbind(0))


def sort_order(x: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """Permutation that sorts rows by bucket rank (see sort_orders)."""
    return sort_orders([bucket_rank(x, projections)], projections.shape[1])[0]
