"""Stable counting sort of sortLSH keys: the same permutation as lsh.stable_sort_orders, by three passes.

The keys are bucket ranks in [0, 2**num_projs) (128 buckets for the default 7 projections), so a
general radix sort over 16-bit keys (torch.sort) does more than is needed. Here, per row of keys:
  1. histogram of each chunk of CHUNK keys (one program per chunk);
  2. where each (chunk, bucket) run starts in the sorted row: an exclusive scan over buckets, then
     chunks (PyTorch, on a [rows, chunks, buckets] tensor of a few hundred thousand counts);
  3. each chunk sorts its (key, position) pairs in registers, so equal keys keep their order, and
     writes every position to its run's start plus its rank in the chunk's run.
Off by default (kernels/hyper_attention.py, SORT): slower than torch.sort
on the GPU (scripts/gpu_kernel_check.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

CHUNK = 2048
MAX_PROJS = 8          # 256 buckets at most: the histogram and the run table stay small


@triton.jit
def _histogram_kernel(KEYS, COUNTS, n, chunks, NB: tl.constexpr, CH: tl.constexpr):
    c, row = tl.program_id(0), tl.program_id(1).to(tl.int64)
    pos = c * CH + tl.arange(0, CH)
    ok = pos < n
    keys = tl.load(KEYS + row * n + pos, mask=ok, other=0).to(tl.int32)
    hist = tl.histogram(keys, NB)
    # masked slots were counted as bucket 0: take them out again
    bins = tl.arange(0, NB)
    hist -= tl.where(bins == 0, CH - tl.sum(ok.to(tl.int32), axis=0), 0)
    tl.store(COUNTS + (row * chunks + c) * NB + bins, hist)


@triton.jit
def _scatter_kernel(KEYS, START, ORDER, n, chunks, NB: tl.constexpr, CH: tl.constexpr):
    c, row = tl.program_id(0), tl.program_id(1).to(tl.int64)
    local = tl.arange(0, CH)
    pos = c * CH + local
    ok = pos < n
    keys = tl.load(KEYS + row * n + pos, mask=ok, other=NB).to(tl.int32)   # padding sorts last
    packed = tl.sort(keys * CH + local)             # by key, then by position: stable
    key = packed // CH
    src = packed % CH
    real = key < NB
    # START[row, c, b] = sorted position of chunk c's first key b, minus where b's run begins in
    # the chunk's own sorted order; so sorted slot p of the chunk lands at START[key] + p.
    dest = tl.load(START + (row * chunks + c) * NB + key, mask=real, other=0) + local
    tl.store(ORDER + row * n + dest, (c * CH + src).to(tl.int64), mask=real)


def counting_sort_orders(keys: torch.Tensor, num_projs: int, chunk: int | None = None) -> torch.Tensor:
    """Stable sort permutation of keys [..., n] (ints in [0, 2**num_projs)): order[..., r] is the
    original index of the row at sorted position r (int64), as torch.sort(stable=True) gives.
    `chunk` (a power of two, default CHUNK): keys per program; the tests use small ones (the
    interpreter is slow at sorting)."""
    if num_projs > MAX_PROJS:
        raise ValueError(f"counting sort takes at most {MAX_PROJS} projections, got {num_projs}")
    *lead, n = keys.shape
    flat = keys.reshape(-1, n).contiguous()
    rows, nb = flat.shape[0], max(16, 2 ** num_projs)
    chunk = chunk or CHUNK
    chunks = triton.cdiv(n, chunk)
    counts = torch.empty(rows, chunks, nb, dtype=torch.int32, device=keys.device)
    _histogram_kernel[(chunks, rows)](flat, counts, n, chunks, NB=nb, CH=chunk, num_warps=4)
    # run starts: buckets in order, chunks in order within a bucket (exclusive scan)
    by_bucket = counts.transpose(1, 2).reshape(rows, -1)
    starts = (by_bucket.cumsum(-1) - by_bucket).reshape(rows, nb, chunks).transpose(1, 2)
    within = counts.cumsum(-1) - counts            # where each bucket's run begins in the chunk
    start = (starts - within).to(torch.int32).contiguous()
    order = torch.empty(rows, n, dtype=torch.int64, device=keys.device)
    _scatter_kernel[(chunks, rows)](flat, start, order, n, chunks, NB=nb, CH=chunk, num_warps=8)
    return order.view(*lead, n)

