"""sortLSH bucket keys in one pass on the GPU: the same function as lsh.bucket_rank.

One program reads a tile of rows once, projects them on the hyperplanes (exact products: fp32 for
fp32 inputs, tensor cores for 16-bit inputs, whose products with the bf16-valued normals are exact),
packs the sign bits into a bucket and looks up its Gray rank. The reference's chain of
torch ops (fp32 copy of x, a skinny matmul, bit packing, a gather) moves several times the bytes.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from . import lsh
from .launch import cdiv, next_power_of_2
from .triton_sort import MAX_PROJS, SCAN_ROWS, _chunk_prefix_kernel, buckets, scan_counts

BLOCK_ROWS = 128
# with_prefix: the last program of each row sums the row's counts in the hashing launch itself
# (False: a separate launch of the sort's pass 2 over them), FUSED_SCAN_ROWS counts a step (16:
# 70 registers with the step's loads pipelined, against 44 without the sums; 32 takes 113, 64 spills).
SCAN_IN_HASHING = True
FUSED_SCAN_ROWS = 16


@triton.jit
def _round_to_bf16(x):
    """fp32 -> the nearest bf16 value (ties to even), still in fp32: what torch's .to(bfloat16)
    gives for finite values. Integer arithmetic on the bits, because under TRITON_INTERPRET a float
    cast to bf16 truncates where CUDA rounds, and the tests run there; bf16 values pass unchanged."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _bucket_rank_kernel(X, X2, P, W, RANK, KEY, COUNTS, PREFIX, DONE, sxb, sxh, sxn, s2b, s2h, s2n, H, BH, n, NP,
                        D: tl.constexpr, R: tl.constexpr, BM: tl.constexpr,
                        EXACT_FP32: tl.constexpr, NB: tl.constexpr, SUMS: tl.constexpr, CR: tl.constexpr):
    """Keys of rows pid·BM.. of head g: of X for g < BH (= B·H), of X2 for the next BH heads, so
    that q and k are hashed in one launch into one [2, B, H, n] tensor.  SUMS: also the counting
    sort's passes 1 and 2 (kernels/triton_sort.py) on BM-key chunks: each program stores its tile's
    histogram in COUNTS, and (CR > 0) the last program of a row to finish (DONE: zeroed counters)
    sums the row's into PREFIX, CR counts a step: two launches fewer for the CPU to make before the
    sort."""
    pid, g = tl.program_id(0), tl.program_id(1)
    if g < BH:
        b, h = (g // H).to(tl.int64), (g % H).to(tl.int64)
        base = X + b * sxb + h * sxh
        stride_n = sxn
    else:
        b, h = ((g - BH) // H).to(tl.int64), ((g - BH) % H).to(tl.int64)
        base = X2 + b * s2b + h * s2h
        stride_n = s2n
    rows = pid * BM + tl.arange(0, BM)
    ok = rows < n
    offs_d = tl.arange(0, D)
    offs_r = tl.arange(0, R)
    x = tl.load(base + rows[:, None].to(tl.int64) * stride_n + offs_d[None, :], mask=ok[:, None], other=0.0)
    # the NP normals [D, NP], zero-padded to R columns here (one launch less than padding a copy)
    p = tl.load(P + offs_d[:, None] * NP + offs_r[None, :], mask=offs_r[None, :] < NP, other=0.0)
    p = _round_to_bf16(p.to(tl.float32))
    if EXACT_FP32:
        proj = tl.dot(x.to(tl.float32), p, input_precision="ieee")    # [BM, R]
    else:   # 16-bit x, bf16-valued normals: exact products on the tensor cores, fp32 sums
        proj = tl.dot(x, p.to(x.dtype))
    w = tl.load(W + offs_r)                                            # 2^i, 0 on padded columns
    bucket = tl.sum(tl.where(proj > 0, w[None, :], 0), axis=1)
    key = tl.load(RANK + bucket)
    tl.store(KEY + g.to(tl.int64) * n + rows, key.to(KEY.dtype.element_ty), mask=ok)
    if SUMS:
        tiles = tl.num_programs(0)
        bins = tl.arange(0, NB)
        # rows past n hashed as zeros (bucket 0, Gray rank 0): take them out of bin 0 again
        hist = tl.histogram(key, NB) - tl.where(bins == 0, BM - tl.sum(ok.to(tl.int32), axis=0), 0)
        tl.store(COUNTS + (g.to(tl.int64) * tiles + pid) * NB + bins, hist)
        tl.debug_barrier()   # every thread's counts stored before the release below
        if CR > 0:
            if tl.atomic_add(DONE + g, 1, sem="acq_rel") == tiles - 1:
                tl.debug_barrier()
                scan_counts(COUNTS, PREFIX, g, tiles, NB, CR)


@functools.lru_cache(maxsize=None)
def _weights(num_projs: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.zeros(width, dtype=torch.int32)
    w[:num_projs] = 2 ** torch.arange(num_projs, dtype=torch.int32)
    return w.to(device), lsh.gray_rank(num_projs).to(torch.int32).to(device)


def bucket_ranks(xs: list[torch.Tensor], projections: torch.Tensor, with_prefix: bool = False):
    """Keys of one or two tensors [B, H, n, d] of one shape and dtype (any strides along n, unit
    stride along d) -> [len(xs), B, H, n] in lsh.key_dtype, in one launch.  projections [d, p]:
    the normals as drawn (fp32, lsh.draw_projections(rounded=False)); the kernel rounds them to
    bf16 values itself, so these are the keys lsh.bucket_rank gives under the rounded normals
    (normals that are bf16 values already, in any float tensor, are used as they are).
    with_prefix (at most triton_sort.MAX_PROJS projections): -> (keys, (sums, BLOCK_ROWS)), the
    counting sort's per-bucket sums of each row's keys before every BLOCK_ROWS-key chunk
    ([rows, chunks + 1, bins], the counting_sort_orders argument `prefix`), from the same launch."""
    B, H, n, d = xs[0].shape
    if len(xs) not in (1, 2) or any(x.shape != xs[0].shape or x.dtype != xs[0].dtype for x in xs):
        raise ValueError("bucket_ranks takes one or two tensors of one shape and dtype")
    num_projs = projections.shape[1]
    width = max(16, next_power_of_2(num_projs))   # tl.dot needs 16 columns at least
    xs = [x if x.stride(-1) == 1 else x.contiguous() for x in xs]
    x, x2 = xs[0], xs[-1]
    p = projections.contiguous()
    weights, rank = _weights(num_projs, width, x.device)
    keys = torch.empty(len(xs), B, H, n, dtype=lsh.key_dtype(num_projs), device=x.device)
    grid = (cdiv(n, BLOCK_ROWS), len(xs) * B * H)
    if with_prefix and num_projs > MAX_PROJS:
        raise ValueError(f"with_prefix takes at most {MAX_PROJS} projections, got {num_projs}")
    nb = buckets(num_projs) if with_prefix else 16
    if with_prefix and keys.numel():
        rows, tiles = grid[1], grid[0]
        both = torch.empty(rows * (2 * tiles + 1) * nb, dtype=torch.int32, device=x.device)   # one allocation
        counts = both[:rows * tiles * nb].view(rows, tiles, nb)
        sums = both[rows * tiles * nb:].view(rows, tiles + 1, nb)
        done = torch.zeros(rows, dtype=torch.int32, device=x.device) if SCAN_IN_HASHING else keys
    else:
        counts = sums = done = keys   # not read
    scan_rows = FUSED_SCAN_ROWS if SCAN_IN_HASHING else 0
    _bucket_rank_kernel[grid](x, x2, p, weights, rank, keys, counts, sums, done, x.stride(0), x.stride(1), x.stride(2),
                              x2.stride(0), x2.stride(1), x2.stride(2), H, B * H, n, num_projs,
                              D=d, R=width, BM=BLOCK_ROWS, EXACT_FP32=x.dtype == torch.float32,
                              NB=nb, SUMS=with_prefix, CR=scan_rows, num_warps=4)
    if with_prefix and keys.numel() and not SCAN_IN_HASHING:
        _chunk_prefix_kernel[(grid[1],)](counts, sums, grid[0], NB=nb, CR=SCAN_ROWS, num_warps=4)
    return (keys, (sums, BLOCK_ROWS)) if with_prefix else keys


def bucket_rank(x: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """x [B, H, n, d] (any strides along n, unit stride along d) -> keys [B, H, n] in lsh.key_dtype."""
    return bucket_ranks([x], projections)[0]
