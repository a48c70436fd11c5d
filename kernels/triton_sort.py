"""Stable counting sort of sortLSH keys: the same permutation as lsh.stable_sort_orders, in three passes.

The keys are bucket ranks in [0, 2**num_projs) (128 buckets for the default 7 projections), so a
general radix sort over 16-bit keys (torch.sort) does more than is needed. Per row of keys:
  1. a histogram of each chunk of CHUNK keys (one program per chunk);
  2. one program per row sums the [chunks, buckets] counts over the chunks before each chunk;
  3. one program per chunk finds where its run of each bucket starts in the sorted row (buckets in
     order, chunks in order within a bucket: the row's keys in lower buckets plus the bucket's keys
     in earlier chunks), then walks its keys 32 at a time, in order, keeping the next free slot of
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
# How a chunk's keys reach their sorted positions: "walk" (the in-chunk walk above, CHUNK keys per
# one-warp program) or "sorted" (the chunk sorted by (key, position) first, SORTED_CHUNK keys per
# program of SORTED_WARPS warps, so that equal keys of a chunk are stored by neighbouring lanes
# into neighbouring positions: runs of stores instead of one scattered store per key).
SCATTER = "walk"
SORTED_CHUNK = 1024
SORTED_WARPS = 4


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
def _chunk_prefix_kernel(COUNTS, PREFIX, chunks, NB: tl.constexpr, CR: tl.constexpr):
    """PREFIX[row, c, b] = keys of bucket b in the row's chunks before c, for c = 0 .. chunks."""
    row = tl.program_id(0).to(tl.int64)
    bins = tl.arange(0, NB)
    carry = tl.zeros([NB], dtype=tl.int32)
    for c0 in range(0, chunks, CR):
        c = c0 + tl.arange(0, CR)
        ok = (c < chunks)[:, None]
        tile = tl.load(COUNTS + (row * chunks + c[:, None]) * NB + bins[None, :], mask=ok, other=0)
        before = carry[None, :] + tl.cumsum(tile, axis=0) - tile
        tl.store(PREFIX + (row * (chunks + 1) + c[:, None]) * NB + bins[None, :], before, mask=ok)
        carry += tl.sum(tile, axis=0)
    tl.store(PREFIX + (row * (chunks + 1) + chunks) * NB + bins, carry)


@triton.jit
def _scatter_kernel(KEYS, PREFIX, ORDER, n, chunks, NB: tl.constexpr, CH: tl.constexpr, S: tl.constexpr,
                    ONE_HOT_LOOKUP: tl.constexpr = False, ONE_HOT_COUNT: tl.constexpr = False):
    """PREFIX: _chunk_prefix_kernel's sums.  ONE_HOT_*: the slot lookup and update by one-hot sums
    over the buckets instead of tl.gather and tl.histogram; the same result, 1.3–2× slower on the
    H200 (scripts/gpu_probe.py --parts=sort)."""
    c, row = tl.program_id(0), tl.program_id(1).to(tl.int64)
    bins = tl.arange(0, NB)
    prefix = PREFIX + row * (chunks + 1) * NB
    total = tl.load(prefix + chunks * NB + bins)               # the row's keys per bucket
    # next free sorted position per bucket: keys in lower buckets, then this bucket's in earlier chunks
    slot = tl.cumsum(total, axis=0) - total + tl.load(prefix + c * NB + bins)
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


@triton.jit
def _sorted_chunk(KEYS, row, n, p0, NB: tl.constexpr, CH: tl.constexpr):
    """The CH keys of a row from p0 in (key, position) order: each one's key (NB - 1 for padding
    past n, which sorts last), its position in the row, and its rank among the chunk's equal
    keys (its index in that order less the chunk's keys of lower buckets)."""
    local = tl.arange(0, CH)
    ok = p0 + local < n
    keys = tl.load(KEYS + row * n + p0 + local, mask=ok, other=0).to(tl.int32)
    packed = tl.sort(tl.where(ok, keys, NB) * CH + local)
    key = tl.minimum(packed // CH, NB - 1)
    hist = tl.histogram(keys, NB)
    hist -= tl.where(tl.arange(0, NB) == 0, CH - tl.sum(ok.to(tl.int32), axis=0), 0)   # padding counted as 0
    first = tl.cumsum(hist, axis=0) - hist
    return key, p0 + packed % CH, local - tl.gather(first, key, axis=0)


@triton.jit
def _sorted_scatter_kernel(KEYS, PREFIX, ORDER, n, chunks, NB: tl.constexpr, CH: tl.constexpr):
    """_scatter_kernel's result, with the chunk sorted in registers first (SCATTER = "sorted")."""
    c, row = tl.program_id(0), tl.program_id(1).to(tl.int64)
    key, pos, rank = _sorted_chunk(KEYS, row, n, c * CH, NB, CH)
    bins = tl.arange(0, NB)
    prefix = PREFIX + row * (chunks + 1) * NB
    total = tl.load(prefix + chunks * NB + bins)
    slot = tl.cumsum(total, axis=0) - total + tl.load(prefix + c * NB + bins)
    tl.store(ORDER + row * n + tl.gather(slot, key, axis=0) + rank, pos.to(tl.int64), mask=pos < n)


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
    sorted_chunks = SCATTER == "sorted"
    chunk = chunk or (SORTED_CHUNK if sorted_chunks else CHUNK)
    chunks = cdiv(n, chunk)
    order = torch.empty(rows, n, dtype=torch.int64, device=keys.device)
    if order.numel() == 0:
        return order.view(*lead, n)
    prefix = chunk_prefix(flat, chunk, nb)
    if sorted_chunks:
        _sorted_scatter_kernel[(chunks, rows)](flat, prefix, order, n, chunks, NB=nb, CH=chunk,
                                               num_warps=SORTED_WARPS)
    else:
        _scatter_kernel[(chunks, rows)](flat, prefix, order, n, chunks, NB=nb, CH=chunk, S=SUB, num_warps=1)
    return order.view(*lead, n)


def chunk_prefix(flat: torch.Tensor, chunk: int, nb: int) -> torch.Tensor:
    """Keys [rows, n] -> [rows, chunks + 1, nb] int32: per bucket, the row's keys in the chunks
    before each chunk (the last entry: the row's total)."""
    rows, n = flat.shape
    chunks = cdiv(n, chunk)
    counts = torch.empty(rows, chunks, nb, dtype=torch.int32, device=flat.device)
    prefix = torch.empty(rows, chunks + 1, nb, dtype=torch.int32, device=flat.device)
    _histogram_kernel[(chunks, rows)](flat, counts, n, chunks, NB=nb, CH=chunk, num_warps=4)
    _chunk_prefix_kernel[(rows,)](counts, prefix, chunks, NB=nb, CR=SCAN_ROWS, num_warps=4)
    return prefix


# ----------------------------------------------------------------------------------------------
# Every level of the causal recursion at once
# ----------------------------------------------------------------------------------------------
# Level l of the recursion (kernels/causal_triton.py) cuts each row of n keys into segments of
# s = n / 2^l and sorts, within every segment, the bottom half's query keys and the top half's key
# keys on their own.  The LSH keys are the same at every level (one set of hyperplanes), so one
# histogram of the rows' chunks serves all levels: a chunk's keys go to the run of their bucket in
# their half-segment, at (keys of lower buckets in the half) + (keys of the bucket in the half's
# earlier chunks) + (equal keys before them in the chunk).  Only the last term needs the walk, and
# it is the same at every level, so one walk writes every level's positions.

@triton.jit
def _levels_scatter_kernel(KEYS, PREFIX, STARTS, ORDERS, n, chunks, query_rows,
                           NB: tl.constexpr, CH: tl.constexpr, S: tl.constexpr, LEVELS: tl.constexpr,
                           LP: tl.constexpr):
    """Chunk c of row `row` (query rows first, then key rows) into the orders of every level it
    takes part in: ORDERS[l, row, j·h + r] = the original index within its half of the key at
    sorted position r of half-segment j (h = n / 2^(l+1)).  STARTS: scratch for the chunk's run
    starts per level, read back by gathers (L1) in the walk."""
    c, row = tl.program_id(0), tl.program_id(1).to(tl.int64)
    bins = tl.arange(0, NB)
    lvl = tl.arange(0, LP)
    p0 = c * CH
    half = n >> (lvl + 1)                                 # [LP] half-segment length per level
    seg = p0 // half                                      # half-segments before this chunk
    c_lo = (seg * half) // CH                             # first chunk of the chunk's half
    c_hi = c_lo + half // CH
    prefix = PREFIX + row * (chunks + 1) * NB
    real = (lvl < LEVELS)[:, None]
    lo = tl.load(prefix + c_lo[:, None] * NB + bins[None, :], mask=real, other=0)
    hi = tl.load(prefix + c_hi[:, None] * NB + bins[None, :], mask=real, other=0)
    here = tl.load(prefix + c * NB + bins)
    in_half = hi - lo
    start = tl.cumsum(in_half, axis=1) - in_half + (here[None, :] - lo)    # [LP, NB]
    table = STARTS + (row * chunks + c) * (LEVELS * NB)
    tl.store(table + lvl[:, None] * NB + bins[None, :], start, mask=real)
    tl.debug_barrier()                                    # the table is read back by other lanes
    is_query = row < query_rows
    local = tl.arange(0, S)
    before = local[None, :] < local[:, None]
    seen = tl.zeros([NB], dtype=tl.int32)                 # keys of each bucket so far in the chunk
    for s0 in range(0, CH, S):
        pos = p0 + s0 + local
        keys = tl.load(KEYS + row * n + pos).to(tl.int32)
        same = (keys[:, None] == keys[None, :]) & before
        rank = tl.gather(seen, keys, axis=0) + tl.sum(same.to(tl.int32), axis=1)
        for l in tl.static_range(LEVELS):
            h = n >> (l + 1)
            if ((p0 // h) % 2 == 1) == is_query:          # queries: bottom halves; keys: top
                where = tl.load(table + l * NB + keys) + rank
                dst = ORDERS + (l * 2 * query_rows + row) * (n // 2) + (p0 // h) // 2 * h
                tl.store(dst + where, (pos % h).to(tl.int64))
        seen += tl.histogram(keys, NB)


@triton.jit
def _levels_sorted_kernel(KEYS, PREFIX, ORDERS, n, chunks, query_rows, NB: tl.constexpr, CH: tl.constexpr,
                          LEVELS: tl.constexpr):
    """_levels_scatter_kernel's result, with the chunk sorted in registers first (SCATTER = "sorted"):
    each level's start of every bucket run, then one store per key and level."""
    c, row = tl.program_id(0), tl.program_id(1).to(tl.int64)
    p0 = c * CH
    key, pos, rank = _sorted_chunk(KEYS, row, n, p0, NB, CH)
    bins = tl.arange(0, NB)
    prefix = PREFIX + row * (chunks + 1) * NB
    here = tl.load(prefix + c * NB + bins)
    is_query = row < query_rows
    for l in tl.static_range(LEVELS):
        h = n >> (l + 1)
        seg = p0 // h
        if (seg % 2 == 1) == is_query:                    # queries: bottom halves; keys: top
            lo = tl.load(prefix + (seg * h // CH) * NB + bins)
            in_half = tl.load(prefix + ((seg + 1) * h // CH) * NB + bins) - lo
            start = tl.cumsum(in_half, axis=0) - in_half + (here - lo)
            dst = ORDERS + (l * 2 * query_rows + row) * (n // 2) + seg // 2 * h
            tl.store(dst + tl.gather(start, key, axis=0) + rank, (pos % h).to(tl.int64))


def recursion_levels(n: int, min_seq_len: int) -> int:
    """How many levels of the causal recursion on n rows sort their lower-left piece: those whose
    halves have at least min_seq_len rows (shorter pieces are exact attention)."""
    levels = 0
    while n > min_seq_len and n % 2 == 0 and n // 2 >= min_seq_len:
        levels, n = levels + 1, n // 2
    return levels


def recursion_orders(ranks: torch.Tensor, num_projs: int, levels: int, chunk: int | None = None):
    """The sort orders of the causal recursion's first `levels` levels from one pass over the keys,
    or None where the halves of the deepest level are not whole chunks (then each level sorts its
    own, counting_sort_orders).  ranks [2, B, H, n]: the queries' and keys' LSH keys.  Returns, per
    level l, (query order, key order), each [B, H·2^l, n / 2^(l+1)] int64: the same permutations
    as a stable sort of each bottom half's query keys and each top half's key keys."""
    sorted_chunks = SCATTER == "sorted"
    chunk = chunk or (SORTED_CHUNK if sorted_chunks else CHUNK)
    _, B, H, n = ranks.shape
    if num_projs > MAX_PROJS or levels < 1 or n % (chunk << levels):
        return None
    rows, nb, chunks = 2 * B * H, max(16, 2 ** num_projs), n // chunk
    flat = ranks.reshape(rows, n).contiguous()
    prefix = chunk_prefix(flat, chunk, nb)
    orders = torch.empty(levels, 2, B * H, n // 2, dtype=torch.int64, device=ranks.device)
    if sorted_chunks:
        _levels_sorted_kernel[(chunks, rows)](flat, prefix, orders, n, chunks, B * H, NB=nb, CH=chunk, LEVELS=levels,
                                              num_warps=SORTED_WARPS)
    else:
        starts = torch.empty(rows, chunks, levels, nb, dtype=torch.int32, device=ranks.device)
        _levels_scatter_kernel[(chunks, rows)](flat, prefix, starts, orders, n, chunks, B * H, NB=nb, CH=chunk,
                                               S=SUB, LEVELS=levels, LP=max(2, 1 << (levels - 1).bit_length()),
                                               num_warps=1)
    return [(orders[l, 0].view(B, H << l, n >> (l + 1)), orders[l, 1].view(B, H << l, n >> (l + 1)))
            for l in range(levels)]
