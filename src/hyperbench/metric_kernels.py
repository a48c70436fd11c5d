"""Triton kernels for the error metric (metrics.py): the exact reference and W = Pᵀ(P X).

Both read 16-bit (bf16 or fp16) Q, K, V as the benchmark made them and return fp32 results as
accurate as fp32 matmuls on those inputs, so a method's error (bf16 rounding alone is ~4e-3) is not
polluted by the metric's own rounding.  How, with 16-bit tensor-core dots only:
  * Q Kᵀ: 16-bit dot, fp32 accumulation.  The product of two 16-bit numbers is exact in fp32, so
    this is an fp32 matmul of the same inputs.
  * P times an fp32 matrix: the fp32 factor is split as hi + lo, both 16-bit (hi = f rounded,
    lo = the rounding error rounded), and the dots of the parts are summed in fp32; the error left is
    the rounding of lo (and the dropped lo·lo term), see `_split_dot` / `_split_dot3`.  For P X and
    Pᵀ Z (both factors fp32) this is three fp16 dots rather than tl.dot(..., "tf32x3"): tf32 runs at
    half the 16-bit tensor-core rate, so three tf32 dots cost twice as much for the same ~2^-22
    accuracy, and the split is ordinary arithmetic that the CPU interpreter runs as on the GPU (it
    ignores input_precision), so the tests check it.
  * Every tile's dot starts from zero and is added to the running fp32 accumulator with a rounded
    add, never chained over a whole row: Hopper's tensor cores truncate when they accumulate (see
    `_mm`; chained, ||D⁻¹A|| came out 8.6e-5 low at n = 8192 and ~9e-4 low at n = 131072).
  * exp in the exp2 domain (scale·log2 e folded into one multiplier), in fp32.
P = exp(scale·Q Kᵀ − lse) is D⁻¹A as metrics._scores builds it: natural-log lse, the scale applied
to the scores, and causal as "query i sees key j iff j <= i + n_k − n_q".

Kernels
  exact_attention_fp32  flash-style forward, one program per (query tile, head): online softmax,
                        key tiles past the causal diagonal skipped, no score matrix in memory.
  ptp_apply             W = Pᵀ(P X) in two launches: (a) Z = P X, one program per query tile
                        looping over key tiles; (b) W = Pᵀ Z, one program per key tile looping over
                        the query tiles that see it.  P is recomputed from the exact lse in both,
                        so no online softmax and no atomics; each pass costs one Q Kᵀ and one exp
                        per visible (query, key) pair.
On the H200 at n = 131072, d = 64, bf16, non-causal: exact_attention_fp32 16.5 ms per head,
ptp_apply (both passes, 16 columns) 19.6 ms per head; causal about half.  Against fp64 (n up to
16384): O within 3e-7 (fp16) and 2.5e-6 (bf16) relative, W and ||D⁻¹A|| as close as torch's fp32
path (||D⁻¹A|| of the two paths agree to 1.5e-7).
Under TRITON_INTERPRET=1 (CPU tests) the dots run on fp32 copies of their 16-bit operands, which is
the same arithmetic: the interpreter's bf16 dot is wrong (see ENVIRONMENT.md).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from hyperbench_kernels.launch import launch_in_chunks

LOG2E = 1.4426950408889634
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# P is multiplied by this power of two before its 16-bit split and the results divided by it
# afterwards (exact): P <= 1, so tiny probabilities would otherwise fall into fp16's subnormals
# (< 6e-5) and lose their low bits; 2^14 keeps P·2^14 <= 2^14(1 + rounding) far below fp16's max.
P_SCALE = 16384.0
# fp32 operands (X, Z) are scaled per column by a power of two so that their largest entry lies in
# [2^13, 2^14), for the same reason (see `_split16`).
_SPLIT_MAX_EXP = 14
# Parts of P in the reference's P V when V is bf16.  Measured on the H200 against fp64 (n 3001 to
# 16384): two parts ~1-2.5e-6 relative on O (torch fp32: ~1e-6), three ~2-6e-7 for one more dot per
# tile (+0.19 s at n = 131072, H = 32, d = 64).  Both are far below bf16 rounding (4e-3), so two.
# fp16 V always uses two (2^-22 per product).
BF16_PV_TERMS = 2

# Tile shapes and launch settings per head_dim, module-level so a GPU check script can try others.
# fwd / pz: (BLOCK_M query rows, BLOCK_N keys, warps, stages); ptz: (BLOCK_N keys, BLOCK_M query
# rows, warps, stages).
CONFIGS = {
    "fwd": {16: (128, 64, 4, 3), 32: (128, 64, 4, 3), 64: (128, 64, 4, 3), 128: (128, 64, 8, 2)},
    "pz": {16: (128, 64, 4, 3), 32: (128, 64, 4, 3), 64: (128, 64, 4, 3), 128: (128, 64, 8, 2)},
    "ptz": {16: (128, 64, 4, 3), 32: (128, 64, 4, 3), 64: (128, 64, 4, 3), 128: (128, 64, 8, 2)},
}
# The interpreter runs programs one by one and pays per operation, so a few mid-sized tiles are
# fastest; the two sizes differ so that tests cover query and key tiles that do not line up.
INTERPRET_CONFIG = (64, 32, 4, 1)


def _config(kind: str, d: int):
    return INTERPRET_CONFIG if _INTERPRET else CONFIGS[kind][d]


# ----------------------------------------------------------------------------------------------
# Device helpers
# ----------------------------------------------------------------------------------------------

@triton.jit
def _mm(a, b, UPCAST: tl.constexpr):
    """a @ b of 16-bit tiles as a fresh fp32 tile (the products are exact).

    Never chained into a long-lived accumulator: Hopper's tensor cores add into the accumulator
    with truncation, not rounding, so a dot chained over a whole row (n/16 steps) drifts toward
    zero by up to ~1 ulp per step (seen on the H200: 8.6e-5 relative bias in ||D⁻¹A|| at n = 8192).
    A tile's dot starts from zero (BN/16 steps) and is added to the accumulator with an ordinary,
    rounded fp32 add.  Triton's combine pass rewrites `acc + tl.dot(a, b)` into
    `tl.dot(a, b, acc)`, so callers write `acc + (tl.dot(a, b) + other)`: the outer add then has
    no zero-initialised dot to fold (checked in the TTGIR for sm_90).  UPCAST (interpreter only): the dot runs on fp32 copies (exact for 16-bit
    values), since the interpreter's bf16 dot is wrong."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32))
    return tl.dot(a, b)


@triton.jit
def _mm_acc(a, b, acc, UPCAST: tl.constexpr):
    """acc + a @ b in the tensor core; only for short chains of small terms (see `_mm`)."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
    return tl.dot(a, b, acc)


@triton.jit
def _scores(a, b, UPCAST: tl.constexpr):
    """a @ bᵀ of 16-bit rows, fp32 accumulation (exact products, d/16 steps from zero)."""
    return _mm(a, tl.trans(b), UPCAST)


@triton.jit
def _split_dot(p, v, acc, TERMS: tl.constexpr, UPCAST: tl.constexpr):
    """acc + p @ v for fp32 p and 16-bit v, to ~fp32 accuracy: p = hi + lo (+ lo2) in v's dtype,
    each part the rounding error of the previous one (exact in fp32); v is exact in 16 bits, so
    only the last part's own rounding is lost: 2^-22 relative of p for fp16 with two parts, 2^-17
    (two) or 2^-25 (three) for bf16's 8-bit mantissa."""
    hi = p.to(v.dtype)
    rest = p - hi.to(tl.float32)
    if TERMS == 3:
        mid = rest.to(v.dtype)
        lo = (rest - mid.to(tl.float32)).to(v.dtype)
        small = _mm_acc(lo, v, _mm(mid, v, UPCAST), UPCAST)   # <= 2^-8 of the total
    else:
        small = _mm(rest.to(v.dtype), v, UPCAST)
    return acc + (_mm(hi, v, UPCAST) + small)      # not (acc + hi·v): see `_mm`


@triton.jit
def _split_dot3(p, xh, xl, acc, UPCAST: tl.constexpr):
    """acc + p @ (xh + xl) for fp32 p and an fp32 matrix given as fp16 hi/lo parts: three fp16
    dots (the lo·lo term, ~2^-22 relative, is dropped)."""
    hi = p.to(tl.float16)
    lo = (p - hi.to(tl.float32)).to(tl.float16)
    small = _mm_acc(lo, xh, _mm(hi, xl, UPCAST), UPCAST)      # ~2^-11 of the total
    return acc + (_mm(hi, xh, UPCAST) + small)     # not (acc + hi·xh): see `_mm`


@triton.jit
def _visible(rows, cols, n_q, n_k, offset, CAUSAL: tl.constexpr):
    """Query row i sees key j (rows [BM, 1] and cols [1, BN] broadcast, either orientation)."""
    vis = (rows < n_q) & (cols < n_k)
    if CAUSAL:
        vis = vis & (cols <= rows + offset)
    return vis


@triton.jit
def _key_range(r0, n_q, n_k, offset, BM: tl.constexpr, BN: tl.constexpr, CAUSAL: tl.constexpr):
    """Key tiles for query rows [r0, r0 + BM): [0, full) are visible to every row (no mask),
    [full, end) need the mask (causal diagonal, the key tail); keys past the last row's diagonal
    are never touched."""
    if CAUSAL:
        end = tl.minimum(n_k, tl.minimum(r0 + BM, n_q) + offset)
        full = tl.minimum(n_k, r0 + offset + 1) // BN * BN
    else:
        end = n_k
        full = n_k // BN * BN
    return full, end


@triton.jit
def _load_rows(ptr, idx, stride, n, W: tl.constexpr, MASK: tl.constexpr):
    """Rows idx of a row-strided [n, W] matrix with unit column stride; rows >= n read as 0."""
    offs = tl.arange(0, W)
    ptrs = ptr + idx[:, None] * stride + offs[None, :]
    if MASK:
        return tl.load(ptrs, mask=(idx < n)[:, None], other=0.0)
    return tl.load(ptrs)


# ----------------------------------------------------------------------------------------------
# Exact attention in fp32: one program per (query tile, batch·head)
# ----------------------------------------------------------------------------------------------

@triton.jit
def _fwd_step(q, K, V, skn, svn, c0, rows, n_q, n_k, offset, qk_scale, m_i, l_i, acc,
              PS: tl.constexpr, D: tl.constexpr, BN: tl.constexpr, CAUSAL: tl.constexpr,
              MASK: tl.constexpr, TERMS: tl.constexpr, UPCAST: tl.constexpr):
    """Online-softmax update with keys [c0, c0 + BN)."""
    cols = c0 + tl.arange(0, BN)
    k = _load_rows(K, cols, skn, n_k, D, MASK)
    v = _load_rows(V, cols, svn, n_k, D, MASK)
    s = _scores(q, k, UPCAST) * qk_scale
    if MASK:
        s = tl.where(_visible(rows[:, None], cols[None, :], n_q, n_k, offset, CAUSAL), s,
                     float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = _split_dot(p * PS, v, acc * alpha[:, None], TERMS, UPCAST)
    return m_new, l_i, acc


# H (heads) only splits the program id: left unspecialised, so metrics.warm_up's one-head slice
# compiles the kernel every head count runs (Triton otherwise compiles apart for 1 and for
# multiples of 16).
@triton.jit(do_not_specialize=["H"])
def _exact_fwd_kernel(Q, K, V, Out, Lse,
                      sqb, sqh, sqn, skb, skh, skn, svb, svh, svn,
                      H, n_q, n_k, offset, qk_scale, first,
                      PS: tl.constexpr, D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                      CAUSAL: tl.constexpr, TERMS: tl.constexpr, UPCAST: tl.constexpr):
    pid, bh = tl.program_id(0), tl.program_id(1) + first     # first: launch_in_chunks's first head
    if CAUSAL:   # the longest rows (last tiles) first, so the short ones fill the tail of the grid
        pid = tl.num_programs(0) - 1 - pid
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    Q += b * sqb + h * sqh
    K += b * skb + h * skh
    V += b * svb + h * svh
    r0 = pid * BM
    rows = r0 + tl.arange(0, BM)
    q = _load_rows(Q, rows, sqn, n_q, D, True)
    m_i = tl.full([BM], -1.0e30, dtype=tl.float32)   # finite: a fully masked tile gives p = 0
    l_i = tl.zeros([BM], dtype=tl.float32)
    acc = tl.zeros([BM, D], dtype=tl.float32)
    full, end = _key_range(r0, n_q, n_k, offset, BM, BN, CAUSAL)
    for c0 in range(0, full, BN):
        m_i, l_i, acc = _fwd_step(q, K, V, skn, svn, c0, rows, n_q, n_k, offset, qk_scale,
                                  m_i, l_i, acc, PS, D, BN, CAUSAL, False, TERMS, UPCAST)
    for c0 in range(full, end, BN):
        m_i, l_i, acc = _fwd_step(q, K, V, skn, svn, c0, rows, n_q, n_k, offset, qk_scale,
                                  m_i, l_i, acc, PS, D, BN, CAUSAL, True, TERMS, UPCAST)
    # every row sees key 0 (causal needs n_q <= n_k), so l_i >= 1
    row_ok = rows < n_q
    base = bh.to(tl.int64) * n_q                      # Out [BH, n_q, D], Lse [BH, n_q] contiguous
    offs_d = tl.arange(0, D)
    tl.store(Out + (base + rows)[:, None] * D + offs_d[None, :], acc / (l_i * PS)[:, None],
             mask=row_ok[:, None])
    tl.store(Lse + base + rows, (m_i + tl.log2(l_i)) * 0.6931471805599453, mask=row_ok)


# ----------------------------------------------------------------------------------------------
# W = Pᵀ (P X): (a) Z = P X per query tile, (b) W = Pᵀ Z per key tile
# ----------------------------------------------------------------------------------------------

@triton.jit
def _pz_step(q, lse2, K, XH, XL, skn, c0, rows, n_q, n_k, offset, qk_scale, z,
             PS: tl.constexpr, D: tl.constexpr, R: tl.constexpr, BN: tl.constexpr,
             CAUSAL: tl.constexpr, MASK: tl.constexpr, UPCAST: tl.constexpr):
    cols = c0 + tl.arange(0, BN)
    k = _load_rows(K, cols, skn, n_k, D, MASK)
    xh = _load_rows(XH, cols, R, n_k, R, MASK)
    xl = _load_rows(XL, cols, R, n_k, R, MASK)
    s = _scores(q, k, UPCAST)
    s = s * qk_scale - lse2[:, None]
    if MASK:   # also the key tail: a zero key would give p = exp(-lse), possibly inf
        s = tl.where(_visible(rows[:, None], cols[None, :], n_q, n_k, offset, CAUSAL), s,
                     float("-inf"))
    return _split_dot3(tl.exp2(s) * PS, xh, xl, z, UPCAST)


@triton.jit
def _pz_kernel(Q, K, Lse, XH, XL, Z, sqg, sqn, skg, skn, n_q, n_k, offset, qk_scale, first,
               PS: tl.constexpr, D: tl.constexpr, R: tl.constexpr, BM: tl.constexpr,
               BN: tl.constexpr, CAUSAL: tl.constexpr, UPCAST: tl.constexpr):
    """Z[g, rows] = PS · P[rows, :] (XH + XL) for one tile of query rows (first: the launch's
    first group, launch_in_chunks)."""
    pid, g = tl.program_id(0), (tl.program_id(1) + first).to(tl.int64)
    if CAUSAL:
        pid = tl.num_programs(0) - 1 - pid
    Q += g * sqg
    K += g * skg
    XH += g * n_k * R
    XL += g * n_k * R
    r0 = pid * BM
    rows = r0 + tl.arange(0, BM)
    row_ok = rows < n_q
    q = _load_rows(Q, rows, sqn, n_q, D, True)
    lse2 = tl.load(Lse + g * n_q + rows, mask=row_ok, other=0.0) * 1.4426950408889634
    z = tl.zeros([BM, R], dtype=tl.float32)
    full, end = _key_range(r0, n_q, n_k, offset, BM, BN, CAUSAL)
    for c0 in range(0, full, BN):
        z = _pz_step(q, lse2, K, XH, XL, skn, c0, rows, n_q, n_k, offset, qk_scale, z,
                     PS, D, R, BN, CAUSAL, False, UPCAST)
    for c0 in range(full, end, BN):
        z = _pz_step(q, lse2, K, XH, XL, skn, c0, rows, n_q, n_k, offset, qk_scale, z,
                     PS, D, R, BN, CAUSAL, True, UPCAST)
    offs_r = tl.arange(0, R)
    tl.store(Z + (g * n_q + rows)[:, None] * R + offs_r[None, :], z, mask=row_ok[:, None])


@triton.jit
def _ptz_step(k, Q, Lse, ZH, ZL, sqn, r0, cols, n_q, n_k, offset, qk_scale, w,
              PS: tl.constexpr, D: tl.constexpr, R: tl.constexpr, BM: tl.constexpr,
              CAUSAL: tl.constexpr, MASK: tl.constexpr, UPCAST: tl.constexpr):
    rows = r0 + tl.arange(0, BM)
    q = _load_rows(Q, rows, sqn, n_q, D, MASK)
    zh = _load_rows(ZH, rows, R, n_q, R, MASK)
    zl = _load_rows(ZL, rows, R, n_q, R, MASK)
    if MASK:
        lse2 = tl.load(Lse + rows, mask=rows < n_q, other=0.0) * 1.4426950408889634
    else:
        lse2 = tl.load(Lse + rows) * 1.4426950408889634
    st = _scores(k, q, UPCAST)                                   # Sᵀ [BN, BM]
    st = st * qk_scale - lse2[None, :]
    if MASK:
        st = tl.where(_visible(rows[None, :], cols[:, None], n_q, n_k, offset, CAUSAL), st,
                      float("-inf"))
    return _split_dot3(tl.exp2(st) * PS, zh, zl, w, UPCAST)


@triton.jit
def _ptz_kernel(Q, K, Lse, ZH, ZL, W, sqg, sqn, skg, skn, n_q, n_k, offset, qk_scale, first,
                PS: tl.constexpr, D: tl.constexpr, R: tl.constexpr, BM: tl.constexpr,
                BN: tl.constexpr, CAUSAL: tl.constexpr, UPCAST: tl.constexpr):
    """W[g, cols] = PS · P[:, cols]ᵀ (ZH + ZL) for one tile of keys (BN keys; BM: query tile;
    first as _pz_kernel's)."""
    pid, g = tl.program_id(0), (tl.program_id(1) + first).to(tl.int64)
    Q += g * sqg
    K += g * skg
    Lse += g * n_q
    ZH += g * n_q * R
    ZL += g * n_q * R
    c0 = pid * BN
    cols = c0 + tl.arange(0, BN)
    k = _load_rows(K, cols, skn, n_k, D, True)
    w = tl.zeros([BN, R], dtype=tl.float32)
    # Query tiles [u0, u1) see every key of this tile: no mask.  Causal: rows before lo see none
    # of them and are skipped; [lo, u0) straddle the diagonal.  [max(u0, u1), n_q): the row tail.
    u1 = n_q // BM * BM
    if CAUSAL:
        lo = tl.maximum(c0 - offset, 0) // BM * BM
        u0 = tl.cdiv(tl.maximum(c0 + BN - 1 - offset, 0), BM) * BM
    else:
        lo = 0
        u0 = 0
    for r0 in range(lo, tl.minimum(u0, n_q), BM):
        w = _ptz_step(k, Q, Lse, ZH, ZL, sqn, r0, cols, n_q, n_k, offset, qk_scale, w,
                      PS, D, R, BM, CAUSAL, True, UPCAST)
    for r0 in range(u0, u1, BM):
        w = _ptz_step(k, Q, Lse, ZH, ZL, sqn, r0, cols, n_q, n_k, offset, qk_scale, w,
                      PS, D, R, BM, CAUSAL, False, UPCAST)
    for r0 in range(tl.maximum(u0, u1), n_q, BM):
        w = _ptz_step(k, Q, Lse, ZH, ZL, sqn, r0, cols, n_q, n_k, offset, qk_scale, w,
                      PS, D, R, BM, CAUSAL, True, UPCAST)
    offs_r = tl.arange(0, R)
    tl.store(W + (g * n_k + cols)[:, None] * R + offs_r[None, :], w, mask=(cols < n_k)[:, None])


# ----------------------------------------------------------------------------------------------
# Python wrappers
# ----------------------------------------------------------------------------------------------

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16)
SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)


def _check(*tensors):
    dt = tensors[0].dtype
    if dt not in SUPPORTED_DTYPES or any(t.dtype != dt for t in tensors):
        raise TypeError(f"expected fp16 or bf16 inputs of one dtype, got "
                        f"{[t.dtype for t in tensors]}")
    d = tensors[0].shape[-1]
    if d not in SUPPORTED_HEAD_DIMS or any(t.shape[-1] != d for t in tensors):
        raise ValueError(f"head_dim must be one of {SUPPORTED_HEAD_DIMS} for all inputs, got "
                         f"{[t.shape[-1] for t in tensors]}")


def _unit_col(x: torch.Tensor) -> torch.Tensor:
    """Kernels take any row/head strides but dense columns."""
    return x if x.stride(-1) == 1 else x.contiguous()


def exact_attention_fp32(q, k, v, *, causal: bool, scale: float):
    """softmax(scale·QKᵀ)V and its natural-log log-sum-exp, computed to fp32 accuracy.

    q [B, H, n_q, d], k and v [B, H, n_k, d], fp16 or bf16, any strides with a dense last dim.
    Causal: query i sees key j iff j <= i + n_k − n_q (needs n_q <= n_k).
    Returns (O [B, H, n_q, d] fp32, lse [B, H, n_q] fp32), both contiguous.
    """
    _check(q, k, v)
    B, H, n_q, d = q.shape
    n_k = k.shape[-2]
    if causal and n_q > n_k:
        raise ValueError(f"causal attention needs n_q <= n_k (got {n_q} > {n_k})")
    q, k, v = (_unit_col(x) for x in (q, k, v))
    out = torch.empty(B, H, n_q, d, device=q.device, dtype=torch.float32)
    lse = torch.empty(B, H, n_q, device=q.device, dtype=torch.float32)
    if n_q == 0 or B * H == 0:
        return out, lse
    bm, bn, warps, stages = _config("fwd", d)
    launch_in_chunks(
        _exact_fwd_kernel, (triton.cdiv(n_q, bm), B * H),
        q, k, v, out, lse, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3],
        H, n_q, n_k, n_k - n_q, scale * LOG2E,
        PS=P_SCALE, D=d, BM=bm, BN=bn, CAUSAL=causal,
        TERMS=BF16_PV_TERMS if q.dtype == torch.bfloat16 else 2, UPCAST=_INTERPRET,
        num_warps=warps, num_stages=stages)
    return out, lse


def _split16(x: torch.Tensor):
    """fp32 x [G, n, R] as fp16 (hi, lo) of x·s, s [G, 1, R] a power of two per column that puts
    the column's largest |entry| in [2^13, 2^14): fp16 then holds hi + lo to ~2^-22 relative of
    that entry, with no overflow and no subnormals above 2^-24 / s."""
    amax = x.abs().amax(dim=-2, keepdim=True)
    _, e = torch.frexp(amax)                                   # amax < 2^e (e = 0 for 0)
    s = torch.ldexp(torch.ones_like(amax), _SPLIT_MAX_EXP - e)
    xs = x * s
    hi = xs.to(torch.float16)
    lo = (xs - hi.float()).to(torch.float16)
    return hi, lo, s


def ptp_apply(q, k, lse, x, *, causal: bool, scale: float):
    """W = Pᵀ (P X) with P = exp(scale·Q Kᵀ − lse) (causally masked: query i sees key j iff
    j <= i + n_k − n_q), never forming P.

    q [G, n_q, d] and k [G, n_k, d] fp16/bf16 (any row strides), lse [G, n_q] the exact natural-log
    log-sum-exp of each row (then P = D⁻¹A), x [G, n_k, r] fp32.  Returns W [G, n_k, r] fp32.
    Any r: columns are zero-padded to a power of two >= 16 (tl.dot needs 16).
    """
    _check(q, k)
    G, n_q, d = q.shape
    n_k, r = k.shape[-2], x.shape[-1]
    if causal and n_q > n_k:
        raise ValueError(f"causal attention needs n_q <= n_k (got {n_q} > {n_k})")
    if G == 0 or n_q == 0 or n_k == 0 or r == 0:
        return torch.zeros(G, n_k, r, device=x.device, dtype=torch.float32)
    q, k = _unit_col(q), _unit_col(k)
    lse = lse.to(torch.float32).contiguous()
    R = max(16, triton.next_power_of_2(r))
    xp = x.to(torch.float32)
    if R != r:
        xp = torch.nn.functional.pad(xp, (0, R - r))
    common = dict(PS=P_SCALE, D=d, R=R, CAUSAL=causal, UPCAST=_INTERPRET)
    args = (*q.stride()[:2], *k.stride()[:2], n_q, n_k, n_k - n_q, scale * LOG2E)

    xh, xl, xs = _split16(xp.contiguous())
    z = torch.empty(G, n_q, R, device=x.device, dtype=torch.float32)
    bm, bn, warps, stages = _config("pz", d)
    launch_in_chunks(_pz_kernel, (triton.cdiv(n_q, bm), G), q, k, lse, xh, xl, z, *args, BM=bm, BN=bn, **common,
                     num_warps=warps, num_stages=stages)
    z /= xs * P_SCALE                                          # exact: powers of two

    zh, zl, zs = _split16(z)
    w = torch.empty(G, n_k, R, device=x.device, dtype=torch.float32)
    bn, bm, warps, stages = _config("ptz", d)
    launch_in_chunks(_ptz_kernel, (triton.cdiv(n_k, bn), G), q, k, lse, zh, zl, w, *args, BM=bm, BN=bn, **common,
                     num_warps=warps, num_stages=stages)
    w /= zs * P_SCALE
    return w[..., :r] if R != r else w
