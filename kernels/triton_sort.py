"""Stable counting sort of sortLSH keys: the same permutation as lsh.stable_sort_orders, in three passes.

The keys are bucket ranks in [0, 2**num_projs) (128 buckets for the default 7 projections), so a
general radix sort over 16-bit keys (torch.sort) does more than is needed. Per row of keys:
  1. a histogram of each chunk of CHUNK keys (one program per chunk);
  2. one program per row turns the [chunks, buckets] counts into where each (chunk, bucket) run
     starts in the sorted row: buckets in order, chunks in order within a bucket;
  3. one program per chunk walks its keys 32 at a time, in order, keeping the next free slot of
     every bucket: a key goes to its bucket's slot plus the number of equal keys before it among
     the 32, so equal keys keep their order (stable).
Each key is read three times and each position written once, so the sort costs about what moving
those bytes costs, where torch.sort makes several radix passes over keys and 64-bit values.
On the H200 at n = 131072 (q and k of 32 heads, 8.4 M keys): 0.232 ms against 0.391 for torch.sort
(7624739); the walk is most of it, and it is bound by its instructions, not memory (writing the
orders once takes 0.037 ms). v1 of this module sorted each chunk's (key, position) pairs with tl.sort
instead of the walk: 0.410 ms. The triton backend sorts with this (kernels/hyper_attention.py, SORT).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import cdiv

CHUNK = 256          # chunk 256 walked in 0.169 ms, 1024 in 0.248, 4096 in 0.287 (gpu_probe.py --parts=sort)
SUB = 32               # keys per step of the walk: one per thread of the program's single warp
SCAN_ROWS = 64         # chunks per step of the scan (16 took 0.066 ms for 512 chunks a row)
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
def _run_start_kernel(COUNTS, START, chunks, NB: tl.constexpr, CR: tl.constexpr):
    """START[row, c, b] = sorted position of the first key b of chunk c (exclusive scans)."""
    row = tl.program_id(0).to(tl.int64)
    bins = tl.arange(0, NB)
    base = COUNTS + row * chunks * NB
    total = tl.zeros([NB], dtype=tl.int32)
    for c0 in range(0, chunks, CR):
        c = c0 + tl.arange(0, CR)
        tile = tl.load(base + c[:, None] * NB + bins[None, :], mask=(c < chunks)[:, None], other=0)
        total += tl.sum(tile, axis=0)
    carry = tl.cumsum(total, axis=0) - total            # where each bucket's keys begin
    for c0 in range(0, chunks, CR):
        c = c0 + tl.arange(0, CR)
        ok = (c < chunks)[:, None]
        tile = tl.load(base + c[:, None] * NB + bins[None, :], mask=ok, other=0)
        start = carry[None, :] + tl.cumsum(tile, axis=0) - tile
        tl.store(START + row * chunks * NB + c[:, None] * NB + bins[None, :], start, mask=ok)
        carry += tl.sum(tile, axis=0)


@triton.jit
def _scatter_kernel(KEYS, START, ORDER, n, chunks, NB: tl.constexpr, CH: tl.constexpr, S: tl.constexpr,
                    ONE_HOT_LOOKUP: tl.constexpr = False, ONE_HOT_COUNT: tl.constexpr = False):
    """ONE_HOT_*: the slot lookup and update by one-hot sums over the buckets instead of tl.gather
    and tl.histogram; the same result, 1.3–2× slower on the H200 (scripts/gpu_probe.py --parts=sort)."""
    c, row = tl.program_id(0), tl.program_id(1).to(tl.int64)
    bins = tl.arange(0, NB)
    slot = tl.load(START + (row * chunks + c) * NB + bins)     # next free sorted position per bucket
    local = tl.arange(0, S)
    before = local[None, :] < local[:, None]
    for s0 in range(0, CH, S):
        pos = c * CH + s0 + local
        ok = pos < n
        keys = tl.load(KEYS + row * n + pos, mask=ok, other=0).to(tl.int32)
        # equal keys earlier among these S (padding never counts: only the chunk's tail has it)
        same = (keys[:, None] == keys[None, :]) & before & ok[None, :]
        hit = keys[:, None] == bins[None, :]
        if ONE_HOT_LOOKUP:
            base = tl.sum(tl.where(hit, slot[None, :], 0), axis=1)
        else:
            base = tl.gather(slot, keys, axis=0)
        tl.store(ORDER + row * n + base + tl.sum(same.to(tl.int32), axis=1), pos.to(tl.int64), mask=ok)
        # padding adds to bucket 0 only after the last real key
        if ONE_HOT_COUNT:
            slot += tl.sum(hit.to(tl.int32), axis=0)
        else:
            slot += tl.histogram(keys, NB)


def counting_sort_orders(keys: torch.Tensor, num_projs: int, chunk: int | None = None) -> torch.Tensor:
    """Stable sort permutation of keys [..., n] (ints in [0, 2**num_projs)): order[..., r] is the
    original index of the row at sorted position r (int64), as torch.sort(stable=True) gives.
    `chunk` (a power of two, at least SUB; default CHUNK): keys per program; the tests use small
    ones so that a few hundred keys cross several chunks."""
    if num_projs > MAX_PROJS:
        raise ValueError(f"counting sort takes at most {MAX_PROJS} projections, got {num_projs}")
    *lead, n = keys.shape
    flat = keys.reshape(-1, n).contiguous()
    rows, nb = flat.shape[0], max(16, 2 ** num_projs)
    chunk = chunk or CHUNK
    chunks = cdiv(n, chunk)
    order = torch.empty(rows, n, dtype=torch.int64, device=keys.device)
    if order.numel() == 0:
        return order.view(*lead, n)
    counts = torch.empty(rows, chunks, nb, dtype=torch.int32, device=keys.device)
    start = torch.empty_like(counts)
    _histogram_kernel[(chunks, rows)](flat, counts, n, chunks, NB=nb, CH=chunk, num_warps=4)
    _run_start_kernel[(rows,)](counts, start, chunks, NB=nb, CR=SCAN_ROWS, num_warps=4)
    _scatter_kernel[(chunks, rows)](flat, start, order, n, chunks, NB=nb, CH=chunk, S=SUB, num_warps=1)
    return order.view(*lead, n)
