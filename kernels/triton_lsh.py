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
from .launch import cdiv, launch_in_chunks, next_power_of_2
from .triton_sort import CHUNK, MAX_PROJS, buckets, summed_counts

BLOCK_ROWS = 128
# with_prefix: rows per program, hashed BLOCK_ROWS at a time, whose keys the program counts per
# bucket: the counting sort's chunk, so its pass 2 reads these counts as they are.
COUNT_ROWS = CHUNK


@triton.jit
def _round_to_bf16(x):
    """fp32 -> the nearest bf16 value (ties to even), still in fp32: what torch's .to(bfloat16)
    gives for finite values. Integer arithmetic on the bits, because under TRITON_INTERPRET a float
    cast to bf16 truncates where CUDA rounds, and the tests run there; bf16 values pass unchanged."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _bucket_rank_kernel(X, X2, P, W, RANK, KEY, COUNTS, sxb, sxh, sxn, s2b, s2h, s2n, H, BH, n, NP, first,
                        D: tl.constexpr, R: tl.constexpr, BM: tl.constexpr, BS: tl.constexpr,
                        EXACT_FP32: tl.constexpr, NB: tl.constexpr, COUNT: tl.constexpr):
    """Keys of rows pid·BM.. of head g, BS rows a step: of X for g < BH (= B·H), of X2 for the
    next BH heads, so that q and k are hashed in one launch into one [2, B, H, n] tensor.  COUNT:
    also the counting sort's pass 1 (kernels/triton_sort.py) on chunks of BM keys: the program's
    keys per bucket, NB bins, into COUNTS [2·B·H, chunks, NB].  first: the launch's first head
    (launch_in_chunks)."""
    pid, g = tl.program_id(0), tl.program_id(1) + first
    if g < BH:
        b, h = (g // H).to(tl.int64), (g % H).to(tl.int64)
        base = X + b * sxb + h * sxh
        stride_n = sxn
    else:
        b, h = ((g - BH) // H).to(tl.int64), ((g - BH) % H).to(tl.int64)
        base = X2 + b * s2b + h * s2h
        stride_n = s2n
    offs_d = tl.arange(0, D)
    offs_r = tl.arange(0, R)
    # the NP normals [D, NP], zero-padded to R columns here (one launch less than padding a copy)
    p = tl.load(P + offs_d[:, None] * NP + offs_r[None, :], mask=offs_r[None, :] < NP, other=0.0)
    p = _round_to_bf16(p.to(tl.float32))
    w = tl.load(W + offs_r)                                            # 2^i, 0 on padded columns
    hist = tl.zeros([NB], dtype=tl.int32)
    for s in tl.static_range(BM // BS):
        rows = pid * BM + s * BS + tl.arange(0, BS)
        ok = rows < n
        x = tl.load(base + rows[:, None].to(tl.int64) * stride_n + offs_d[None, :], mask=ok[:, None], other=0.0)
        if EXACT_FP32:
            proj = tl.dot(x.to(tl.float32), p, input_precision="ieee")    # [BS, R]
        else:   # 16-bit x, bf16-valued normals: exact products on the tensor cores, fp32 sums
            proj = tl.dot(x, p.to(x.dtype))
        bucket = tl.sum(tl.where(proj > 0, w[None, :], 0), axis=1)
        key = tl.load(RANK + bucket)
        tl.store(KEY + g.to(tl.int64) * n + rows, key.to(KEY.dtype.element_ty), mask=ok)
        if COUNT:
            # rows past n hashed as zeros (bucket 0, Gray rank 0): take them out of bin 0 again
            hist += tl.histogram(key, NB)
            hist -= tl.where(tl.arange(0, NB) == 0, BS - tl.sum(ok.to(tl.int32), axis=0), 0)
    if COUNT:
        tl.store(COUNTS + (g.to(tl.int64) * tl.num_programs(0) + pid) * NB + tl.arange(0, NB), hist)


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
    with_prefix (at most triton_sort.MAX_PROJS projections): -> (keys, (sums, COUNT_ROWS)), the
    counting sort's per-bucket sums of each row's keys before every COUNT_ROWS-key chunk
    ([rows, chunks + 1, bins], counting_sort_orders's argument `prefix`), counted by the hashing
    launch itself and summed by one more (the sort's pass 2): one launch less than the sort's own."""
    B, H, n, d = xs[0].shape
    if len(xs) not in (1, 2) or any(x.shape != xs[0].shape or x.dtype != xs[0].dtype for x in xs):
        raise ValueError("bucket_ranks takes one or two tensors of one shape and dtype")
    num_projs = projections.shape[1]
    if with_prefix and num_projs > MAX_PROJS:
        raise ValueError(f"with_prefix takes at most {MAX_PROJS} projections, got {num_projs}")
    width = max(16, next_power_of_2(num_projs))   # tl.dot needs 16 columns at least
    xs = [x if x.stride(-1) == 1 else x.contiguous() for x in xs]
    x, x2 = xs[0], xs[-1]
    p = projections.contiguous()
    weights, rank = _weights(num_projs, width, x.device)
    keys = torch.empty(len(xs), B, H, n, dtype=lsh.key_dtype(num_projs), device=x.device)
    rows_per_program = COUNT_ROWS if with_prefix else BLOCK_ROWS
    grid = (cdiv(n, rows_per_program), len(xs) * B * H)
    nb = buckets(num_projs) if with_prefix else 16
    counts = torch.empty(grid[1], grid[0], nb, dtype=torch.int32, device=x.device) if with_prefix else keys
    launch_in_chunks(_bucket_rank_kernel, grid, x, x2, p, weights, rank, keys, counts,
                     x.stride(0), x.stride(1), x.stride(2), x2.stride(0), x2.stride(1), x2.stride(2), H, B * H, n,
                     num_projs, D=d, R=width, BM=rows_per_program, BS=BLOCK_ROWS,
                     EXACT_FP32=x.dtype == torch.float32, NB=nb, COUNT=with_prefix, num_warps=4)
    return (keys, (summed_counts(counts), COUNT_ROWS)) if with_prefix else keys


def bucket_rank(x: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """x [B, H, n, d] (any strides along n, unit stride along d) -> keys [B, H, n] in lsh.key_dtype."""
    return bucket_ranks([x], projections)[0]
