"""Stable counting sort of sortLSH keys: the same permutation as lsh.stable_sort_orders, in three passes.

The keys are bucket ranks in [0, 2**num_projs) (128 buckets for the default 7 projections), so a
general radix sort over 16-bit keys (torch.sort) does more than is needed. Per row of keys:
  1. a histogram of each chunk of CHUNK keys (one program per chunk);
  2. one program per row sums the [chunks, buckets] counts over the chunks before each chunk;
  3. one program per chunk sorts its keys by (key, position) in registers, which gives each key's
     rank among the chunk's equal keys, and stores each key's position at its bucket's start in
     the sorted row (the row's keys in lower buckets plus the bucket's keys in earlier chunks) plus
     that rank. Equal keys keep their order (stable), and since the chunk is in sorted order when
     it is stored, neighbouring lanes store neighbouring positions of a bucket's run.
Each key is read twice (passes 1 and 3) and each position written once, where torch.sort makes several radix
passes over keys and 64-bit values. The stores are what pass 3 waits on: written one key per lane
in the chunk's own order (v9-v15's in-chunk walk, 32 keys a step), each lane's position was a
sector of its own. On the H200 at n = 131072 (q and k of 32 heads, 8.4 M keys; gpu_probe.py
--parts=scatter at bf78a3f): the whole sort 0.180 ms against 0.215 for the walk and 0.391 for
torch.sort; every causal level's in one pass (below) 0.238 ms against 0.628. Chunks of 256 keys
sorted 0.172 / 0.343 ms, 1024 0.224 / 0.272, 2048 (8 warps) 0.341 / 0.387. The triton backend
sorts with this (kernels/hyper_attention.py, SORT). Since v24 the driver's hashing launch counts
each 512-key chunk itself (kernels/triton_lsh.py, with_prefix) and runs pass 2, so the sort
proper is pass 3 alone: one launch fewer before the forward (kernels/NOTES_BY_VERSION.md, v24).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import cdiv, launch_in_chunks, next_power_of_2

CHUNK = 512            # keys per program of pass 3 (timings above)
WARPS = 4              # warps per program of pass 3
SCAN_ROWS = 64         # chunks per step of the scan (16 took 0.066 ms for 512 chunks a row)
MAX_PROJS = 8          # 256 buckets at most: the histogram and the prefix table stay small


@triton.jit
def _histogram_kernel(KEYS, COUNTS, n, chunks, first, NB: tl.constexpr, CH: tl.constexpr):
    c, row = tl.program_id(0), (tl.program_id(1) + first).to(tl.int64)   # first: see _scatter_kernel
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
def _sorted_chunk(KEYS, prefix, row, n, c, last, NB: tl.constexpr, CH: tl.constexpr, PR: tl.constexpr):
    """Chunk c of a row in (key, position) order: each key (NB - 1 for padding past n, which sorts
    last), its position in the row and its rank among the chunk's equal keys (its index in that
    order less the chunk's keys of lower buckets); and `here`, the row's keys per bucket in the
    chunks before c.  prefix: the row's sums, PR entries a chunk (CH / PR keys each) and the row's
    total at entry `last`; their difference at the chunk's end and start is its histogram (padding
    not counted)."""
    bins = tl.arange(0, NB)
    here = tl.load(prefix + c * PR * NB + bins)
    in_chunk = tl.load(prefix + tl.minimum((c + 1) * PR, last) * NB + bins) - here
    local = tl.arange(0, CH)
    ok = c * CH + local < n
    keys = tl.load(KEYS + row * n + c * CH + local, mask=ok, other=0).to(tl.int32)
    packed = tl.sort(tl.where(ok, keys, NB) * CH + local)
    key = tl.minimum(packed // CH, NB - 1)
    first = tl.cumsum(in_chunk, axis=0) - in_chunk
    return key, c * CH + packed % CH, local - tl.gather(first, key, axis=0), here


@triton.jit
def _scatter_kernel(KEYS, PREFIX, ORDER, n, last, first, NB: tl.constexpr, CH: tl.constexpr, PR: tl.constexpr):
    """Pass 3: chunk c of a row into the row's sorted order (PREFIX: chunk_prefix's sums, PR entries
    a chunk, `last` + 1 a row; first: the launch's first row, launch_in_chunks)."""
    c, row = tl.program_id(0), (tl.program_id(1) + first).to(tl.int64)
    prefix = PREFIX + row * (last + 1) * NB
    key, pos, rank, here = _sorted_chunk(KEYS, prefix, row, n, c, last, NB, CH, PR)
    total = tl.load(prefix + last * NB + tl.arange(0, NB))
    slot = tl.cumsum(total, axis=0) - total + here
    tl.store(ORDER + row * n + tl.gather(slot, key, axis=0) + rank, pos.to(tl.int64), mask=pos < n)


def buckets(num_projs: int) -> int:
    """Histogram bins for keys of num_projs bits (tl.histogram takes 16 at least)."""
    return max(16, 2 ** num_projs)


def chunk_for(n: int) -> int:
    """Keys per program of pass 3 for rows of n keys: CHUNK, or for rows shorter than that one
    chunk of their own length rounded up to a power of two."""
    return min(CHUNK, next_power_of_2(max(n, 16)))


def counting_sort_orders(keys: torch.Tensor, num_projs: int, chunk: int | None = None,
                         prefix: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
    """Stable sort permutation of keys [..., n] (ints in [0, 2**num_projs)): order[..., r] is the
    original index of the row at sorted position r (int64), as torch.sort(stable=True) gives.
    `chunk` (a power of two; default chunk_for(n)): keys per program; the tests use small ones so
    that a few hundred keys cross several chunks.  prefix: (sums, keys per entry) that the hashing
    counted already (kernels/triton_lsh.py, with_prefix), used where its entries divide the chunks,
    so passes 1 and 2 are not run."""
    if num_projs > MAX_PROJS:
        raise ValueError(f"counting sort takes at most {MAX_PROJS} projections, got {num_projs}")
    *lead, n = keys.shape
    flat = keys.reshape(-1, n).contiguous()
    rows, nb = flat.shape[0], buckets(num_projs)
    chunk = chunk or chunk_for(n)
    order = torch.empty(rows, n, dtype=torch.int64, device=keys.device)
    if order.numel() == 0:
        return order.view(*lead, n)
    sums, per_entry = _prefix_for(flat, chunk, nb, prefix)
    launch_in_chunks(_scatter_kernel, (cdiv(n, chunk), rows), flat, sums, order, n, sums.shape[1] - 1,
                     NB=nb, CH=chunk, PR=chunk // per_entry, num_warps=WARPS)
    return order.view(*lead, n)


def _prefix_for(flat: torch.Tensor, chunk: int, nb: int, prefix):
    """(sums [rows, entries + 1, nb], keys per entry): the hashing's where they suit this chunk
    length and these rows, else passes 1 and 2 (chunk_prefix) at one entry a chunk."""
    if prefix is not None:
        sums, per_entry = prefix
        rows, n = flat.shape
        if sums.shape == (rows, cdiv(n, per_entry) + 1, nb) and sums.device == flat.device:
            if chunk % per_entry == 0:
                return sums, per_entry
            if n <= min(chunk, per_entry):     # one chunk and one entry: the row's total
                return sums, chunk
    return chunk_prefix(flat, chunk, nb), chunk


def chunk_prefix(flat: torch.Tensor, chunk: int, nb: int) -> torch.Tensor:
    """Keys [rows, n] -> [rows, chunks + 1, nb] int32: per bucket, the row's keys in the chunks
    before each chunk (the last entry: the row's total)."""
    rows, n = flat.shape
    chunks = cdiv(n, chunk)
    counts = torch.empty(rows, chunks, nb, dtype=torch.int32, device=flat.device)
    launch_in_chunks(_histogram_kernel, (chunks, rows), flat, counts, n, chunks, NB=nb, CH=chunk, num_warps=4)
    return summed_counts(counts)


def summed_counts(counts: torch.Tensor) -> torch.Tensor:
    """Pass 2: per-chunk histograms [rows, chunks, nb] int32 -> chunk_prefix's sums."""
    rows, chunks, nb = counts.shape
    prefix = torch.empty(rows, chunks + 1, nb, dtype=torch.int32, device=counts.device)
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
# earlier chunks) + (equal keys before them in the chunk).  Only the last term needs the chunk's
# sort, and it is the same at every level, so one sort serves every level's stores.

@triton.jit
def _levels_scatter_kernel(KEYS, PREFIX, ORDERS, n, last, query_rows, first, NB: tl.constexpr, CH: tl.constexpr,
                           PR: tl.constexpr, LEVELS: tl.constexpr):
    """Chunk c of row `row` (query rows first, then key rows) into the orders of every level it
    takes part in: ORDERS[l, row, j·h + r] = the original index within its half of the key at
    sorted position r of half-segment j (h = n / 2^(l+1)).  PREFIX and first as _scatter_kernel's."""
    c, row = tl.program_id(0), (tl.program_id(1) + first).to(tl.int64)
    p0 = c * CH
    prefix = PREFIX + row * (last + 1) * NB
    key, pos, rank, here = _sorted_chunk(KEYS, prefix, row, n, c, last, NB, CH, PR)
    bins = tl.arange(0, NB)
    is_query = row < query_rows
    for l in tl.static_range(LEVELS):
        h = n >> (l + 1)
        seg = p0 // h
        if (seg % 2 == 1) == is_query:                    # queries: bottom halves; keys: top
            lo = tl.load(prefix + (seg * h // CH) * PR * NB + bins)
            in_half = tl.load(prefix + ((seg + 1) * h // CH) * PR * NB + bins) - lo
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


def recursion_orders(ranks: torch.Tensor, num_projs: int, levels: int, chunk: int | None = None,
                     prefix: tuple[torch.Tensor, int] | None = None):
    """The sort orders of the causal recursion's first `levels` levels from one pass over the keys,
    or None where the halves of the deepest level are not whole chunks (then each level sorts its
    own, counting_sort_orders).  ranks [2, B, H, n]: the queries' and keys' LSH keys; prefix: as
    counting_sort_orders's.  Returns, per level l, (query order, key order), each
    [B, H·2^l, n / 2^(l+1)] int64: the same permutations as a stable sort of each bottom half's
    query keys and each top half's key keys."""
    chunk = chunk or CHUNK
    _, B, H, n = ranks.shape
    if num_projs > MAX_PROJS or levels < 1 or n % (chunk << levels):
        return None
    rows, nb, chunks = 2 * B * H, buckets(num_projs), n // chunk
    flat = ranks.reshape(rows, n).contiguous()
    sums, per_entry = _prefix_for(flat, chunk, nb, prefix)
    orders = torch.empty(levels, 2, B * H, n // 2, dtype=torch.int64, device=ranks.device)
    launch_in_chunks(_levels_scatter_kernel, (chunks, rows), flat, sums, orders, n, sums.shape[1] - 1, B * H,
                     NB=nb, CH=chunk, PR=chunk // per_entry, LEVELS=levels, num_warps=WARPS)
    return [(orders[l, 0].view(B, H << l, n >> (l + 1)), orders[l, 1].view(B, H << l, n >> (l + 1)))
            for l in range(levels)]
