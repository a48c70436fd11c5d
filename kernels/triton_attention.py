"""Triton kernels for `block_sample_attention` (contract: kernels/reference.py's docstring).

Layout of the work (sorted positions r, c; original rows through q_order / k_order):
  forward      one program per tile of BLOCK_M sorted query rows: gathers its query rows, runs one
               online softmax over the keys of its block(s) and over its sample set(s), and writes
               out / lse to the original rows.  Scores live in the exp2 domain (scale·log2 e folded
               into one multiplier; the sample weight becomes + log2 w).
  backward     where key lists apply (non-causal, tiles aligned with blocks and sample sets): one
               fused program per query tile over its list, dQ stored, dK/dV added atomically.
               Elsewhere:
               (1) dQ: one program per query tile, same loops as the forward, P recomputed from lse;
               (2) dK/dV of the block part: one program per key tile, looping over the queries of
                   its block(s); every key belongs to one block, so each row is written once;
               (3) dK/dV of the sampled keys: one program per (chunk of a sample set, query tile of
                   that set), atomically added (fp32) into the keys' original rows after (2) wrote
                   them; repeated samples add up, as each draw counts.
  Gradients flow from both outputs: dS = P ∘ (dP − Δ) with Δ_i = rowsum(dO_i ∘ O_i) − dlse_i.
"""

from __future__ import annotations

import functools
import math
import os

import torch
import triton
import triton.language as tl

from .launch import cdiv, launch_in_chunks
from .triton_delta import delta as row_delta
from .triton_merge import merge_into


LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

# Tile shapes and launch settings per head_dim; module-level so scripts/gpu_kernel_check.py can
# try others.  fwd/dq: (BLOCK_M query rows, BLOCK_N keys); dkdv: (BLOCK_N keys, BLOCK_M queries).
CONFIGS = {   # tuned on the H200 at n = 131072 (scripts/gpu_kernel_check.py --sweep=64,128; d3d9881)
    # Key-list forward and fused backward: 5 stages (gpu_probe.py --parts=stages,stages_causal at
    # 0b364ca/e6afd33).  Below 5, Triton 3.6 waits for every outstanding copy at the top of the key
    # loop (SASS: DEPBAR.LE SB0, 0x0), so a step's gathered key and value rows were fetched with
    # nothing to hide their latency; from 5 on they are one step ahead.  d = 64: forward 2.31 ->
    # 2.05 ms, backward 6.57 -> 5.93 ms.  d = 128: forward 4.25 -> 3.68 ms, backward 13.67 -> 11.93.
    # The plain forward at d = 64 runs on 8 warps (v11: the driver's forward 2.53 against 2.58 ms
    # with 4, gpu_probe.py --parts=fwdsplit) ...
    # head_dim 16 (v18, gpu_probe.py --parts=d16 at 37f76f5): 4 warps, 6 stages, forward 1.31 -> 1.17
    # ms, the driver's 1.59 -> 1.46 (8 warps: 1.49 ms).
    "fwd": {16: (128, 64, 4, 6), 32: (128, 64, 8, 6), 64: (128, 64, 8, 5), 128: (256, 32, 8, 5)},
    # ... but where it merges into the rows' (out, lse) in place (the causal recursion's levels) on
    # 4: on 8, loading the rows' old state takes it past 128 registers, one program per SM (v15:
    # 142 registers, causal forward 14.04 against 11.35 ms); capped at 128 it was slower still
    # (11.69; v13 found the same with the merge in the epilogue).  A fifth entry is a register cap.
    # head_dim 32's "fwd", "fwd_merge" and "bwd" (v17, gpu_probe.py --parts=d32; until then v9's
    # tiles): the merging forward fits 8 warps there (123 registers), and the driver at n = 131072
    # took fwd 2.44 -> 1.99 ms, fwd+bwd 6.15 -> 5.23 non-causal and 10.60 -> 9.57, 34.47 -> 32.40 causal.
    # head_dim 16's merging forward on 5 stages (v18, gpu_probe.py --parts=d16 at 253433a): the causal
    # forward 8.60 -> 8.20 ms, forward+backward 28.31 -> 27.87.
    "fwd_merge": {16: (128, 64, 4, 5), 32: (128, 64, 8, 5), 64: (128, 64, 4, 5), 128: (256, 32, 8, 5)},
    # 64-row tiles for the key-list forward (plain and merging), for blocks or sample sets the
    # 128-row ones do not line up with (block 64, 192, 320, ...; since v19 wherever ROW_COST says
    # they are the cheapest, part empty or not).  Before v17 those ran the general kernel.
    # gpu_probe.py --parts=narrow at 62859a0, n = 131072, block 192: d = 32 5.76 -> 1.39 ms,
    # d = 64 6.64 -> 2.09, d = 128 13.48 -> 3.70; block 64, d = 64 9.05 -> 1.67 (block 256 on the
    # default tiles: 1.99).  d = 16 untimed.
    "fwd_rows64": {16: (64, 64, 4, 3), 32: (64, 32, 4, 5), 64: (64, 32, 4, 5), 128: (64, 32, 4, 5)},
    # ... and 32-row tiles (block 32, 96, 160, ...; the products then run on mma.sync, not wgmma,
    # which needs 64 rows per warpgroup).  gpu_probe.py --parts=rows32 at 37ddd54, n = 131072,
    # block 32: d = 64 17.24 -> 2.88 ms, d = 128 42.96 -> 5.93.  d = 16 and 32 untimed.
    "fwd_rows32": {16: (32, 64, 4, 3), 32: (32, 64, 4, 5), 64: (32, 64, 2, 5), 128: (32, 32, 4, 5)},
    # ... and 16-row tiles, which divide every size the issue allows (16, 48, 80, ...; one warp:
    # more only split the keys; v19: at block 48, 64-row tiles a quarter empty are faster).
    # gpu_probe.py --parts=rows16 at 7540a47, n = 131072, block 48: d = 64 14.49 -> 3.68 ms,
    # d = 128 33.09 -> 7.15.  d = 16 and 32 untimed.
    "fwd_rows16": {16: (16, 64, 1, 3), 32: (16, 32, 1, 5), 64: (16, 32, 1, 5), 128: (16, 32, 1, 5)},
    # the general forward (_row_tile_kernel: tiles not aligned with blocks or sample sets, causal
    # exact pieces) keeps the tiles it was last timed with (v9); 5 stages were not timed on it
    "fwd_general": {16: (128, 64, 4, 3), 32: (128, 64, 4, 3), 64: (128, 64, 4, 3), 128: (256, 64, 8, 3)},
    "dq": {16: (64, 32, 4, 3), 32: (64, 32, 4, 3), 64: (64, 64, 4, 3), 128: (64, 32, 4, 3)},
    "dkdv": {16: (64, 64, 4, 2), 32: (64, 64, 4, 2), 64: (64, 64, 4, 2), 128: (64, 64, 4, 2)},
    # the fused key-list backward: (BLOCK_M query rows, BLOCK_N keys of the list per step); 256
    # rows were the fastest at d = 64 on the plain call (--sweep at 128ff1e: fwd+bwd 9.95 against
    # 10.70 ms) and in the causal recursion (gpu_probe.py at 3b30c8b: 46.1 against 46.8 ms); at
    # d = 128, 256 rows and 5 stages need more shared memory than an SM has, and 128 rows with 5
    # stages beat 256 with 2 (above)
    # head_dim 16 (v18, gpu_probe.py --parts=d16 at 719672c): 5 stages, fused backward 4.04 -> 3.68 ms,
    # the driver's fwd+bwd 4.32 -> 3.96 (3.73 with the forward above).
    "bwd": {16: (128, 64, 4, 5), 32: (128, 64, 4, 5), 64: (256, 64, 8, 5), 128: (128, 64, 8, 5)},
    # ... and 128-row tiles at d = 64 where the 256-row ones would be mostly empty
    "bwd_narrow": {16: (64, 64, 4, 3), 32: (64, 64, 4, 3), 64: (128, 64, 4, 3), 128: (128, 64, 8, 2)},
    # ... and 64-row tiles (before v17 those blocks ran the split backward; same probe, fwd+bwd of
    # the primitive with the old forward -> both new: block 192 d = 32 10.32 -> 5.91 ms, d = 64
    # 18.07 -> 9.95, d = 128 31.77 -> 21.43; block 64, d = 64 23.74 -> 6.19).  d = 16 untimed.
    # d = 32 re-timed at d3c1a4a and 9c60673 (block 192, fwd+bwd of the primitive): (64, 64, 4, 5)
    # 5.62 ms against 6.00 for (64, 64, 4, 3), the fastest again at 9c60673 (5.60).
    "bwd_rows64": {16: (64, 64, 4, 3), 32: (64, 64, 4, 5), 64: (64, 64, 4, 5), 128: (64, 32, 4, 3)},
    # (same probe, fwd+bwd of the primitive: d = 64 54.65 -> 10.39 ms, d = 128 99.46 -> 20.44)
    "bwd_rows32": {16: (32, 64, 4, 3), 32: (32, 64, 4, 5), 64: (32, 32, 4, 5), 128: (32, 32, 4, 5)},
    # (same probe, fwd+bwd of the primitive: d = 64 45.90 -> 20.53 ms, d = 128 79.06 -> 42.35; the
    # dK/dV adds of a list per 16 query rows are what is left)
    "bwd_rows16": {16: (16, 32, 2, 3), 32: (16, 32, 2, 3), 64: (16, 32, 2, 5), 128: (16, 32, 2, 3)},
}
# The key-list tile kinds the cost model weighs, widest first: a forward's own kind ("fwd" or
# "fwd_merge") and the narrower ones after it; the fused backward's.
NARROW_FORWARD_KINDS = ("fwd_rows64", "fwd_rows32", "fwd_rows16")
BACKWARD_KINDS = ("bwd", "bwd_narrow", "bwd_rows64", "bwd_rows32", "bwd_rows16")
# Time per query row and list key of each key-list kind's tiles relative to its role's widest
# ("fwd" and "fwd_merge", "bwd"; a kind not listed: 1.0), so that _cheapest_tiles can weigh narrow
# tiles that divide the units of rows sharing a key list against wider ones left part empty.
# gpu_probe.py --parts=padded at 45dee29 (n = 131072, 256-row sample sets, blocks 32 ... 240, each
# kind forced): the median over blocks of time / (tiles × BM × list length).  With these the choice
# was the fastest kind in 47 of 48 cases (the other within 0.5%).  Narrower tiles gather each key
# row for fewer queries, and each backward program adds its whole list's dK/dV.
# d = 16: the same probe with --ds=16 at d3c1a4a; d = 32: --ds=32 at 9c60673, after its
# bwd_rows64 tiles changed (together the fastest kind in 42 of 44 cases, counting d = 16's
# bwd_narrow and bwd_rows64, one config, as one; the others +3.5% and +8.3%; d = 64's costs,
# which they took before, picked it in 29, up to +19.7%).  d = 32's fwd_rows64 measured 0.97;
# kept at 1.0 so that blocks the 128-row tiles divide keep the tiles tuned for them.
_ROW_COST_BY_D = {
    16: {"fwd_rows64": 1.22, "fwd_rows32": 2.25, "fwd_rows16": 2.21,
         "bwd_narrow": 1.07, "bwd_rows64": 1.07, "bwd_rows32": 2.30, "bwd_rows16": 2.76},
    32: {"fwd_rows64": 1.0, "fwd_rows32": 2.17, "fwd_rows16": 1.54,
         "bwd_narrow": 1.28, "bwd_rows64": 1.14, "bwd_rows32": 2.32, "bwd_rows16": 3.30},
    64: {"fwd_rows64": 1.06, "fwd_rows32": 2.12, "fwd_rows16": 2.10,
         "bwd_narrow": 1.28, "bwd_rows64": 1.53, "bwd_rows32": 2.47, "bwd_rows16": 4.09},
    128: {"fwd_rows64": 1.21, "fwd_rows32": 3.05, "fwd_rows16": 2.53,
          "bwd_narrow": 1.27, "bwd_rows64": 1.48, "bwd_rows32": 2.35, "bwd_rows16": 3.74},
}
ROW_COST = {kind: {d: costs[kind] for d, costs in _ROW_COST_BY_D.items()} for kind in _ROW_COST_BY_D[64]}
# Query rows per virtual tile when one sample set is shared by a whole head (sample_tile 0): the
# sampled dK/dV is split over such chunks so a head's few sample chunks still fill the GPU.
SHARED_SET_CHUNK = 2048
# The key-list path (see _list_kernel) is used whenever the tiles line up with blocks and sample
# sets; module-level so scripts/gpu_kernel_check.py can time the general path against it.
USE_KEY_LISTS = True


# Where key lists apply, one fused backward kernel (dQ, dK, dV in one pass over each query tile's
# list, 5 products per score tile instead of 7, dK/dV added atomically) replaces the dQ and dK/dV
# kernels.  On the H200 at n = 131072, d = 64 (1c60c06): the plain non-causal fwd+bwd 10.9 ms
# fused against 13.5 split; the causal recursion 49.5 against 59.3.  Module-level so
# scripts/gpu_kernel_check.py can time both.
FUSED_LIST_BACKWARD = True
# Timing diagnostics for scripts/gpu_probe.py only, never for results: (block keys, samples) of the
# fused backward written by plain stores instead of atomic adds. The sums are then WRONG wherever
# two programs share a key; the time says what the atomics cost.
_DIAGNOSTIC_DKDV_STORES = (False, False)


# A backward with no caller buffers to add into (the plain non-causal call) adds dK and dV up in
# the inputs' 16-bit dtype, instead of fp32 buffers that must be zero-filled and then cast, where
# few programs add into any one key row: the programs of its block's query tiles plus those of
# each sample set it is drawn into.  At most this many for a block and one set, else fp32 (a set
# shared by a whole head has n / BLOCK_M programs adding into each of its keys).  0: always fp32.
# On the H200 at n = 131072 (v11, gpu_probe.py --parts=adds16): the driver's forward+backward
# 9.35 -> 7.91 ms at d = 64, 18.36 -> 14.19 at d = 128; relative error of dK/dV against fp32
# 2.9e-3 -> 3.6e-3 (d = 64, two programs per key row) and 4.0e-3 (d = 128, four).
# HYPERBENCH_DKDV_16BIT_ADDS=0 keeps fp32 everywhere (e.g. to compare gradient errors).
DKDV_16BIT_ADDS_DEFAULT = 4
DKDV_16BIT_ADDS = int(os.environ.get("HYPERBENCH_DKDV_16BIT_ADDS", DKDV_16BIT_ADDS_DEFAULT))
# Where only the sample sets have more adders than that (one set shared by a head), the fused
# backward adds the sets' keys in fp32 by their slot in the set ([B·H, sets, m, d], small) and the
# block keys in 16 bits, instead of fp32 buffers for every key row (_dkdv_adds).  False: fp32 rows.
SAMPLE_SLOTS = True


# Where every unit of rows sharing a key list is the same whole number of query tiles (the
# config's shapes), the key-list kernels find a tile's rows and unit by arithmetic, not by a load
# from the tile table (_Layout.unit_tiles).  True: always the table (for scripts to time both).
TILE_TABLE_ALWAYS = False


# How the backward adds into the caller's gradient buffers (block_sample_backward(accumulate=True)):
# "load" (read, add, write) or "atomic" (relaxed fp32 atomic adds, nothing held in registers).
# Module-level so scripts/gpu_kernel_check.py can time both.
ACCUMULATE_BY = "atomic"


def _accum_code(accumulate: bool) -> int:
    return {"load": 1, "atomic": 2}[ACCUMULATE_BY] if accumulate else 0


def _config(kind: str, d: int):
    if _INTERPRET:   # the interpreter runs programs one by one; tile size barely matters there
        return (64, 64, 4, 1)
    return CONFIGS[kind][d]


# ----------------------------------------------------------------------------------------------
# Shared device helpers
# ----------------------------------------------------------------------------------------------

@triton.jit
def _gather_rows(ptr, rows, stride_n, offs_d, mask):
    """Rows `rows` (original indices) of a [n, d] matrix with unit column stride."""
    return tl.load(ptr + rows[:, None] * stride_n + offs_d[None, :], mask=mask[:, None], other=0.0)


@triton.jit
def _head_ptrs(Q, K, V, bh, H, sqb, sqh, skb, skh, svb, svh):
    """Q, K, V moved to head bh = b·H + h of their [B, H, ...] layouts."""
    b, h = (bh // H).to(tl.int64), (bh % H).to(tl.int64)
    return Q + b * sqb + h * sqh, K + b * skb + h * skh, V + b * svb + h * svh


@triton.jit
def _grad_rows(DO, Lse, Delta, bh, sdo_h, sl_h, sdl_h, q_idx, offs_d, row_ok, D: tl.constexpr):
    """dO, lse (exp2 domain) and Δ of query rows q_idx, each read by its own head stride."""
    bh = bh.to(tl.int64)
    do = _gather_rows(DO + bh * sdo_h, q_idx, D, offs_d, row_ok)
    lse2 = tl.load(Lse + bh * sl_h + q_idx, mask=row_ok, other=0.0) * 1.4426950408889634
    delta = tl.load(Delta + bh * sdl_h + q_idx, mask=row_ok, other=0.0)
    return do, lse2, delta


@triton.jit
def _store_dq(Out, out_base, q_idx, offs_d, row_ok, dq, qk_scale, D: tl.constexpr, ACCUM: tl.constexpr):
    """dQ of a query tile into its original rows (scores were in the exp2 domain: × ln 2); ACCUM
    (see _ACCUM_CODE) 1 or 2: added to what is there."""
    out_ptr = Out + out_base + q_idx[:, None] * D + offs_d[None, :]
    dq = dq * (qk_scale * 0.6931471805599453)
    _put(out_ptr, dq, row_ok[:, None], ACCUM)


@triton.jit
def _put(ptr, x, mask, ACCUM: tl.constexpr):
    """Store x (ACCUM 0), or add it to what is there: load + store (1; each element has one
    writer in the launch) or a relaxed atomic add (2)."""
    if ACCUM == 2:
        tl.atomic_add(ptr, x.to(ptr.dtype.element_ty), mask=mask, sem="relaxed")
    else:
        if ACCUM == 1:
            x += tl.load(ptr, mask=mask, other=0.0)
        tl.store(ptr, x.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _store_out_lse(Out, Lse, out_base, lse_base, q_idx, offs_d, row_ok, m_i, l_i, acc, D: tl.constexpr):
    """Normalised output and natural-log lse of a query tile into its original rows."""
    out_ptr = Out + out_base + q_idx[:, None] * D + offs_d[None, :]
    l_safe = tl.where(l_i > 0, l_i, 1.0)     # only rows past n can have l = 0
    tl.store(out_ptr, (acc / l_safe[:, None]).to(Out.dtype.element_ty), mask=row_ok[:, None])
    tl.store(Lse + lse_base + q_idx, (m_i + tl.log2(l_safe)) * 0.6931471805599453, mask=row_ok)


@triton.jit
def _resume_from(Out, Lse, out_base, lse_base, q_idx, offs_d, row_ok, D: tl.constexpr):
    """The online-softmax state (m, l, acc; exp2 domain) equivalent to the (out, lse) a tile's
    original rows hold already: acc = out at m = lse·log2 e, l = 1.  Running the key loop on from
    it and storing as usual gives attention over the union of both key sets, i.e. their
    log-sum-exp merge, with nothing but the ordinary epilogue live after the loop."""
    lse_old = tl.load(Lse + lse_base + q_idx, mask=row_ok, other=float("-inf"))
    has_old = lse_old > float("-inf")
    m_i = tl.where(has_old, lse_old * 1.4426950408889634, -1.0e30)
    l_i = tl.where(has_old, 1.0, 0.0)
    acc = tl.load(Out + out_base + q_idx[:, None] * D + offs_d[None, :], mask=(row_ok & has_old)[:, None],
                  other=0.0).to(tl.float32)
    return m_i, l_i, acc


@triton.jit
def _block_visible(r, c, n, block, CAUSAL: tl.constexpr):
    """Sorted key c is in sorted row r's block, exists, and (causal) c <= r; r, c broadcast 2-D."""
    vis = ((c // block) == (r // block)) & (c < n)
    if CAUSAL:
        vis = vis & (c <= r)
    return vis


@triton.jit
def _sample_visible(r, s, s_ok, block):
    """A real sample (sorted key position s) outside sorted row r's block; r, s broadcast 2-D."""
    return s_ok & ((s // block) != (r // block))


@triton.jit
def _softmax_step(qk, v, m_i, l_i, acc, PREC: tl.constexpr):
    """Online softmax update with one tile of exp2-domain scores qk [BM, BN] and values v [BN, d]."""
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(qk - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
    return m_new, l_i, acc


@triton.jit
def _dq_step(qk, lse2, do, delta, k, v, dq, PREC: tl.constexpr):
    """dQ += dS K for one key tile; qk is exp2-domain and already masked with -inf."""
    p = tl.exp2(qk - lse2[:, None])
    dp = tl.dot(do, tl.trans(v), input_precision=PREC)
    ds = p * (dp - delta[:, None])
    return dq + tl.dot(ds.to(k.dtype), k, input_precision=PREC)


# ----------------------------------------------------------------------------------------------
# Forward and dQ: one program per tile of sorted query rows
# ----------------------------------------------------------------------------------------------

@triton.jit
def _row_tile_kernel(Q, K, V, QO, KO, S, Out, Lse, DO, Delta,
                     sqb, sqh, sqn, skb, skh, skn, svb, svh, svn,
                     H, n, m, s_head, block, tile, qk_scale, log2_w, so_h, sdo_h, sl_h, sdl_h, first,
                     D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                     CAUSAL: tl.constexpr, MASK_BLOCK: tl.constexpr, HAS_SAMPLES: tl.constexpr,
                     GRAD: tl.constexpr, PREC: tl.constexpr, ACCUM: tl.constexpr):
    """GRAD=False: out, lse of the tile.  GRAD=True: dQ of the tile (Out holds dQ; Lse, DO, Delta
    are the forward's lse and the incoming gradients).  first: the launch's first head
    (launch_in_chunks)."""
    pid, bh = tl.program_id(0), tl.program_id(1) + first
    Q, K, V = _head_ptrs(Q, K, V, bh, H, sqb, sqh, skb, skh, svb, svh)
    QO += bh.to(tl.int64) * n
    KO += bh.to(tl.int64) * n
    out_base = bh.to(tl.int64) * so_h         # Out (or dQ): head stride so_h, rows of D
    lse_base = bh.to(tl.int64) * sl_h         # DO, Lse, Delta: head strides sdo_h, sl_h, sdl_h

    r0 = pid * BM
    rows = r0 + tl.arange(0, BM)
    row_ok = rows < n
    offs_d = tl.arange(0, D)
    q_idx = tl.load(QO + rows, mask=row_ok, other=0)
    q = _gather_rows(Q, q_idx, sqn, offs_d, row_ok)
    if GRAD:
        do, lse2, delta = _grad_rows(DO, Lse, Delta, bh, sdo_h, sl_h, sdl_h, q_idx, offs_d, row_ok, D)
        dq = tl.zeros([BM, D], dtype=tl.float32)
    else:
        m_i = tl.full([BM], -1.0e30, dtype=tl.float32)   # finite: fully masked tiles give p = 0
        l_i = tl.zeros([BM], dtype=tl.float32)
        acc = tl.zeros([BM, D], dtype=tl.float32)

    # (1) keys of the block(s) of these rows; causal: stop at the last row's diagonal.
    r_last = tl.minimum(r0 + BM, n) - 1
    lo = (r0 // block) * block
    hi = tl.minimum(n, (r_last // block + 1) * block)
    if CAUSAL:
        hi = tl.minimum(hi, r_last + 1)
    for c0 in range(lo, hi, BN):
        cols = c0 + tl.arange(0, BN)
        k_idx = tl.load(KO + cols, mask=cols < hi, other=0)
        k = _gather_rows(K, k_idx, skn, offs_d, cols < hi)
        v = _gather_rows(V, k_idx, svn, offs_d, cols < hi)
        qk = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
        if MASK_BLOCK:
            qk = tl.where(_block_visible(rows[:, None], cols[None, :], n, block, CAUSAL), qk,
                              float("-inf"))
        if GRAD:
            dq = _dq_step(qk, lse2, do, delta, k, v, dq, PREC)
        else:
            m_i, l_i, acc = _softmax_step(qk, v, m_i, l_i, acc, PREC)

    # (2) sampled keys (sorted positions in S), weight w -> + log2 w; own-block samples masked.
    if HAS_SAMPLES:
        S += bh.to(tl.int64) * s_head
        for t in range(r0 // tile, r_last // tile + 1):
            for j0 in range(0, m, BN):
                js = j0 + tl.arange(0, BN)
                s_ok = js < m
                spos = tl.load(S + t * m + js, mask=s_ok, other=0)
                k_idx = tl.load(KO + spos, mask=s_ok, other=0)
                k = _gather_rows(K, k_idx, skn, offs_d, s_ok)
                v = _gather_rows(V, k_idx, svn, offs_d, s_ok)
                qk = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale + log2_w
                vis = _sample_visible(rows[:, None], spos[None, :], s_ok[None, :], block)
                qk = tl.where(vis & (rows // tile == t)[:, None], qk, float("-inf"))
                if GRAD:
                    dq = _dq_step(qk, lse2, do, delta, k, v, dq, PREC)
                else:
                    m_i, l_i, acc = _softmax_step(qk, v, m_i, l_i, acc, PREC)

    if GRAD:
        _store_dq(Out, out_base, q_idx, offs_d, row_ok, dq, qk_scale, D, ACCUM)
    else:
        _store_out_lse(Out, Lse, out_base, lse_base, q_idx, offs_d, row_ok, m_i, l_i, acc, D)


# ----------------------------------------------------------------------------------------------
# Forward and dQ over precomputed key lists (non-causal, tiles aligned with blocks and sample sets)
# ----------------------------------------------------------------------------------------------

@triton.jit
def _list_tile_queries(Q, QO, TT, pid, bh, n, L, NL, sqn, BM: tl.constexpr, D: tl.constexpr,
                       UNIT_TILES: tl.constexpr):
    """Query tile pid of head bh by its row of the tile table TT (first sorted row, end, unit:
    see _Layout; a unit's last tile may be part empty), or by arithmetic where every unit is
    UNIT_TILES whole tiles: where its unit's key list starts (NL a head), its sorted rows and their
    validity, the column offsets, the rows' original indices and their gathered queries."""
    rows, row_ok = _tile_rows(TT, pid, BM, UNIT_TILES)
    offs_d = tl.arange(0, D)
    q_idx = tl.load(QO + bh.to(tl.int64) * n + rows, mask=row_ok, other=0)
    lists = (bh.to(tl.int64) * NL + _tile_unit(TT, pid, UNIT_TILES)) * L
    return lists, row_ok, offs_d, q_idx, _gather_rows(Q, q_idx, sqn, offs_d, row_ok)


@triton.jit
def _tile_rows(TT, pid, BM: tl.constexpr, UNIT_TILES: tl.constexpr):
    """Sorted rows of query tile pid and their validity: from the tile table TT (first row, end,
    unit), or, UNIT_TILES > 0 (every unit that many whole tiles), pid · BM on, all valid, with no
    load: the table's row was the first of the dependent loads every program waits on before its
    key loop (v30).  Tiles start on multiples of 16 rows (_lists_apply), which lets the rows'
    loads be vectorised."""
    rows = tl.multiple_of(_tile_first_row(TT, pid, BM, UNIT_TILES), 16) + tl.arange(0, BM)
    if UNIT_TILES > 0:
        return rows, tl.full([BM], 1, tl.int1)
    return rows, rows < tl.load(TT + pid * 3 + 1)


@triton.jit
def _tile_first_row(TT, pid, BM: tl.constexpr, UNIT_TILES: tl.constexpr):
    """The first sorted row of query tile pid: its row of TT, or pid · BM."""
    if UNIT_TILES > 0:
        return pid * BM
    return tl.load(TT + pid * 3)


@triton.jit
def _tile_unit(TT, pid, UNIT_TILES: tl.constexpr):
    """The unit (key list) of query tile pid: its row of TT, or pid // UNIT_TILES."""
    if UNIT_TILES > 0:
        return pid // UNIT_TILES
    return tl.load(TT + pid * 3 + 2)


@triton.jit
def _list_keys(K, V, KR, KB, js, skn, svn, offs_d):
    """List entries js: the keys' original rows, their biases, and their key and value rows."""
    k_idx = tl.load(KR + js)
    bias = tl.load(KB + js)
    k = tl.load(K + k_idx[:, None].to(tl.int64) * skn + offs_d[None, :])
    v = tl.load(V + k_idx[:, None].to(tl.int64) * svn + offs_d[None, :])
    return k_idx, bias, k, v


@triton.jit
def _list_kernel(Q, K, V, QO, TT, KR, KB, Out, Lse, DO, Delta, KO, DKV,
                 sqb, sqh, sqn, skb, skh, skn, svb, svh, svn,
                 H, n, L, NL, qk_scale, so_h, sdo_h, sl_h, sdl_h, sz_h, sz_kv, first,
                 D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                 GRAD: tl.constexpr, PREC: tl.constexpr, ACCUM: tl.constexpr, MERGE: tl.constexpr,
                 ZERO_DKDV: tl.constexpr, UNIT_TILES: tl.constexpr):
    """Every row of query tile pid sees the same keys: KR lists their original rows and KB their
    exp2-domain bias (0 block key, log2 w sample, -inf masked or padding).  One loop, no masks, no
    index arithmetic in it: the general kernel's nested block and sample loops with per-element
    masks become a single pipelined loop over L keys.  DO, Lse, Delta have head strides sdo_h, sl_h,
    sdl_h (rows contiguous);
    MERGE: the forward merges into the out and lse the rows hold instead of overwriting them, by
    starting its online softmax from them (_resume_from).
    ZERO_DKDV: the forward also zeroes the backward's dK and dV (DKV: both, sz_kv apart, head
    stride sz_h) in the key rows at its own sorted positions (KO: the key order), so that every row
    is cleared once, by stores a compute-bound kernel hides, instead of by a pass of its own.
    first: the launch's first head (launch_in_chunks)."""
    pid, bh = tl.program_id(0), tl.program_id(1) + first
    Q, K, V = _head_ptrs(Q, K, V, bh, H, sqb, sqh, skb, skh, svb, svh)
    out_base = bh.to(tl.int64) * so_h
    lse_base = bh.to(tl.int64) * sl_h
    lists, row_ok, offs_d, q_idx, q = _list_tile_queries(Q, QO, TT, pid, bh, n, L, NL, sqn, BM, D, UNIT_TILES)
    if GRAD:
        do, lse2, delta = _grad_rows(DO, Lse, Delta, bh, sdo_h, sl_h, sdl_h, q_idx, offs_d, row_ok, D)
        dq = tl.zeros([BM, D], dtype=tl.float32)
    elif MERGE:
        m_i, l_i, acc = _resume_from(Out, Lse, out_base, lse_base, q_idx, offs_d, row_ok, D)
    else:
        m_i = tl.full([BM], -1.0e30, dtype=tl.float32)
        l_i = tl.zeros([BM], dtype=tl.float32)
        acc = tl.zeros([BM, D], dtype=tl.float32)
    for j0 in range(0, L, BN):
        k_idx, bias, k, v = _list_keys(K, V, KR, KB, lists + j0 + tl.arange(0, BN), skn, svn, offs_d)
        qk = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale + bias[None, :]
        if GRAD:
            dq = _dq_step(qk, lse2, do, delta, k, v, dq, PREC)
        else:
            m_i, l_i, acc = _softmax_step(qk, v, m_i, l_i, acc, PREC)
    if GRAD:
        _store_dq(Out, out_base, q_idx, offs_d, row_ok, dq, qk_scale, D, ACCUM)
    else:
        _store_out_lse(Out, Lse, out_base, lse_base, q_idx, offs_d, row_ok, m_i, l_i, acc, D)
    if ZERO_DKDV:
        # the rows again from the table, not kept from before the loop: holding them took the
        # kernel to 137 registers, one program per SM instead of two (fa5e392's profile: this
        # forward 3.24 ms against 2.01 without the clearing)
        rows, row_ok = _tile_rows(TT, pid, BM, UNIT_TILES)
        k_rows = tl.load(KO + bh.to(tl.int64) * n + rows, mask=row_ok, other=0)
        dst = DKV + bh.to(tl.int64) * sz_h + k_rows[:, None] * D + offs_d[None, :]
        zero = tl.zeros([BM, D], dtype=DKV.dtype.element_ty)
        tl.store(dst, zero, mask=row_ok[:, None])
        tl.store(dst + sz_kv, zero, mask=row_ok[:, None])


@triton.jit
def _list_bwd_step(q, k, v, bias, do, lse2, delta, dq, qk_scale, k_scale, PREC: tl.constexpr):
    """One key step of the fused backward: P and dS of the step's score tile, once, for all three
    gradients.  -> (dq with this step's dS K added, this step's dK and dV for its keys)."""
    qk = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale + bias[None, :]
    p = tl.exp2(qk - lse2[:, None])
    dp = tl.dot(do, tl.trans(v), input_precision=PREC)
    ds = p * (dp - delta[:, None])
    dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
    dv = tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PREC)
    dk = tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PREC) * k_scale
    return dq, dk, dv


@triton.jit
def _list_bwd_keys(dq, q, do, lse2, delta, keys, j_lo, j_hi, qk_scale, k_scale, DK, DV, dk_rows, SS, ss_kv, nblock,
                   D: tl.constexpr, BN: tl.constexpr, PREC: tl.constexpr, TO_SLOTS: tl.constexpr,
                   STORE_BLOCK: tl.constexpr, STORE_SAMPLES: tl.constexpr):
    """The fused backward's key loop over list entries [j_lo, j_hi) (keys: K, V, KR, KB, the list's
    start, the key and value row strides, the column offsets): dq with their dS K added, and each
    step's dK, dV added atomically into the keys' rows (DK, DV at head offset dk_rows) or, TO_SLOTS,
    in fp32 into the sample set's slots (SS, dV ss_kv further; entry j is slot j - nblock)."""
    K, V, KR, KB, lists, skn, svn, offs_d = keys
    for j0 in range(j_lo, j_hi, BN):
        k_idx, bias, k, v = _list_keys(K, V, KR, KB, lists + j0 + tl.arange(0, BN), skn, svn, offs_d)
        # rows past n or past the unit: q = 0, lse = 0, do = 0, Δ = 0, so they add nothing
        dq, dk, dv = _list_bwd_step(q, k, v, bias, do, lse2, delta, dq, qk_scale, k_scale, PREC)
        live = (bias > float("-inf"))[:, None]          # padding and masked samples add nothing
        if TO_SLOTS:
            at = (j0 - nblock + tl.arange(0, BN))[:, None] * D + offs_d[None, :]
            tl.atomic_add(SS + at, dk, mask=live, sem="relaxed")
            tl.atomic_add(SS + ss_kv + at, dv, mask=live, sem="relaxed")
        else:
            dst = dk_rows + k_idx[:, None].to(tl.int64) * D + offs_d[None, :]
            if STORE_BLOCK or STORE_SAMPLES:   # timing diagnostics only (see _DIAGNOSTIC_DKDV_STORES)
                # masks, not a branch: Triton's pipeliner rejects stores under an scf.if in the loop
                if not STORE_SAMPLES:
                    plain = j0 < nblock
                elif not STORE_BLOCK:
                    plain = j0 >= nblock
                else:
                    plain = j0 >= 0
                tl.store(DK + dst, dk, mask=live & plain)
                tl.store(DV + dst, dv, mask=live & plain)
                live = live & (~plain)
            tl.atomic_add(DK + dst, dk.to(DK.dtype.element_ty), mask=live, sem="relaxed")
            tl.atomic_add(DV + dst, dv.to(DV.dtype.element_ty), mask=live, sem="relaxed")
    return dq


@triton.jit
def _list_bwd_kernel(Q, K, V, QO, TT, KR, KB, Lse, DO, Delta, DQ, DK, DV, SS,
                     sqb, sqh, sqn, skb, skh, skn, svb, svh, svn,
                     H, n, L, NL, nblock, qk_scale, so_h, sk_h, sdo_h, sl_h, sdl_h, ss_h, ss_kv, set_rows, m, first,
                     D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                     PREC: tl.constexpr, ACCUM: tl.constexpr, STORE_BLOCK: tl.constexpr,
                     STORE_SAMPLES: tl.constexpr, REREAD_ROWS: tl.constexpr, SLOTS: tl.constexpr,
                     UNIT_TILES: tl.constexpr):
    """dQ, dK, dV of query tile pid over its key list (see _list_kernel) in one pass: P and dS of
    each score tile are computed once and serve all three gradients.  dQ stays in registers and
    is stored (ACCUM: added) once; the tile's share of dK/dV is added atomically into the keys'
    original rows (fp32, or 16-bit: DKDV_16BIT_ADDS), since a key is in the lists of several tiles
    (its block's, its sample set's).
    REREAD_ROWS: the rows' indices for dQ's store read again after the loop rather than held
    through it (see _reread_rows).
    SLOTS: the sample set's share is added in fp32 into SS (dK, ss_kv apart from dV, head stride
    ss_h) by the keys' slots in their set, [sets, m, D] a head, instead of into DK, DV: where
    many tiles share a set, fp32 for those few rows and 16-bit adds for the block keys
    (_add_sample_slots adds the slots into the keys' rows afterwards).  first: the launch's first
    head (launch_in_chunks)."""
    pid, bh = tl.program_id(0), tl.program_id(1) + first
    Q, K, V = _head_ptrs(Q, K, V, bh, H, sqb, sqh, skb, skh, svb, svh)
    out_base = bh.to(tl.int64) * so_h
    lists, row_ok, offs_d, q_idx, q = _list_tile_queries(Q, QO, TT, pid, bh, n, L, NL, sqn, BM, D, UNIT_TILES)
    do, lse2, delta = _grad_rows(DO, Lse, Delta, bh, sdo_h, sl_h, sdl_h, q_idx, offs_d, row_ok, D)
    dq = tl.zeros([BM, D], dtype=tl.float32)
    k_scale = qk_scale * 0.6931471805599453          # scores were in the exp2 domain
    keys = (K, V, KR, KB, lists, skn, svn, offs_d)
    dk_rows = bh.to(tl.int64) * sk_h
    if SLOTS:
        # the block keys into their rows, then the set's keys into its slots (this tile's set: its
        # first row's); nblock % BN == 0, so no step holds both
        SS += bh.to(tl.int64) * ss_h + (_tile_first_row(TT, pid, BM, UNIT_TILES) // set_rows).to(tl.int64) * m * D
        dq = _list_bwd_keys(dq, q, do, lse2, delta, keys, 0, nblock, qk_scale, k_scale, DK, DV, dk_rows, SS, ss_kv,
                            nblock, D, BN, PREC, False, STORE_BLOCK, STORE_SAMPLES)
        dq = _list_bwd_keys(dq, q, do, lse2, delta, keys, nblock, L, qk_scale, k_scale, DK, DV, dk_rows, SS, ss_kv,
                            nblock, D, BN, PREC, True, STORE_BLOCK, STORE_SAMPLES)
    else:
        dq = _list_bwd_keys(dq, q, do, lse2, delta, keys, 0, L, qk_scale, k_scale, DK, DV, dk_rows, SS, ss_kv,
                            nblock, D, BN, PREC, False, STORE_BLOCK, STORE_SAMPLES)
    if REREAD_ROWS:
        rows, row_ok = _tile_rows(TT, pid, BM, UNIT_TILES)
        q_idx = tl.load(QO + bh.to(tl.int64) * n + rows, mask=row_ok, other=0)
    _store_dq(DQ, out_base, q_idx, offs_d, row_ok, dq, qk_scale, D, ACCUM)


@triton.jit
def _key_lists_kernel(KO, S, US, KR, KB, n, block, tile, m, s_head, L, log2_w, first,
                      SHARED_SET: tl.constexpr, CH: tl.constexpr):
    """Key list of unit pid, the sorted query rows from US[pid] (see key_lists): block keys, then
    samples, then padding.  first: the launch's first head (launch_in_chunks)."""
    pid, bh = tl.program_id(0), tl.program_id(1) + first
    bh64 = bh.to(tl.int64)
    KO += bh64 * n
    base = (bh64 * tl.num_programs(0) + pid) * L
    r0 = tl.load(US + pid)
    blk = r0 // block
    for j0 in range(0, block, CH):
        j = j0 + tl.arange(0, CH)
        pos = blk * block + j
        valid = pos < n
        tl.store(KR + base + j, tl.load(KO + pos, mask=valid, other=0).to(tl.int32), mask=j < block)
        tl.store(KB + base + j, tl.where(valid, 0.0, float("-inf")), mask=j < block)
    if SHARED_SET:
        set_start = 0
    else:
        set_start = (r0 // tile) * m
    for j0 in range(0, m, CH):
        j = j0 + tl.arange(0, CH)
        ok = j < m
        spos = tl.load(S + bh64 * s_head + set_start + j, mask=ok, other=0)
        tl.store(KR + base + block + j, tl.load(KO + spos, mask=ok, other=0).to(tl.int32), mask=ok)
        own = (spos // block) == blk
        tl.store(KB + base + block + j, tl.where(own, float("-inf"), log2_w), mask=ok)
    for j0 in range(block + m, L, CH):
        j = j0 + tl.arange(0, CH)
        tl.store(KR + base + j, tl.zeros([CH], dtype=tl.int32), mask=j < L)
        tl.store(KB + base + j, tl.full([CH], float("-inf"), dtype=tl.float32), mask=j < L)


# ----------------------------------------------------------------------------------------------
# dK/dV: one program per key tile (block part) or per (sample chunk, query tile of its set)
# ----------------------------------------------------------------------------------------------

@triton.jit
def _dkdv_kernel(Q, K, V, QO, KO, S, Lse, DO, Delta, DK, DV,
                 sqb, sqh, sqn, skb, skh, skn, svb, svh, svn,
                 H, n, m, s_head, block, vtile, set_step, qk_scale, log2_w, so_h, sdo_h, sl_h, sdl_h, first,
                 D: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr,
                 CAUSAL: tl.constexpr, MASK_BLOCK: tl.constexpr, SAMPLED: tl.constexpr,
                 PREC: tl.constexpr, ACCUM: tl.constexpr):
    """SAMPLED=False: keys = sorted positions of tile pid, queries = their block(s); dK, dV written
    (fp32) to the keys' original rows.  SAMPLED=True: keys = samples [pid*BN, pid*BN+BN) of the set
    of virtual query tile vt (rows [vt*vtile, (vt+1)*vtile)); added atomically into DK/DV.
    first: the launch's first head (launch_in_chunks)."""
    pid, vt, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2) + first
    Q, K, V = _head_ptrs(Q, K, V, bh, H, sqb, sqh, skb, skh, svb, svh)
    QO += bh.to(tl.int64) * n
    KO += bh.to(tl.int64) * n
    offs_d = tl.arange(0, D)
    keys = pid * BN + tl.arange(0, BN)

    if SAMPLED:
        t = vt * set_step
        key_ok = keys < m
        spos = tl.load(S + bh.to(tl.int64) * s_head + t * m + keys,
                       mask=key_ok, other=0)
        k_idx = tl.load(KO + spos, mask=key_ok, other=0)
        q_lo = vt * vtile
        q_hi = tl.minimum(n, q_lo + vtile)
        bias = log2_w
    else:
        spos = keys
        key_ok = keys < n
        k_idx = tl.load(KO + keys, mask=key_ok, other=0)
        c_last = tl.minimum(pid * BN + BN, n) - 1
        q_lo = (pid * BN // block) * block
        q_hi = tl.minimum(n, (c_last // block + 1) * block)
        if CAUSAL:
            q_lo = tl.maximum(q_lo, pid * BN)   # rows before the tile's first key see none of it
        bias = 0.0
    k = _gather_rows(K, k_idx, skn, offs_d, key_ok)
    v = _gather_rows(V, k_idx, svn, offs_d, key_ok)
    dk = tl.zeros([BN, D], dtype=tl.float32)
    dv = tl.zeros([BN, D], dtype=tl.float32)

    for r0 in range(q_lo, q_hi, BM):
        rows = r0 + tl.arange(0, BM)
        row_ok = rows < q_hi
        q_idx = tl.load(QO + rows, mask=row_ok, other=0)
        q = _gather_rows(Q, q_idx, sqn, offs_d, row_ok)
        do, lse2, delta = _grad_rows(DO, Lse, Delta, bh, sdo_h, sl_h, sdl_h, q_idx, offs_d, row_ok, D)
        qk_t = tl.dot(k, tl.trans(q), input_precision=PREC) * qk_scale + bias      # [BN, BM]
        p_t = tl.exp2(qk_t - lse2[None, :])
        if SAMPLED:
            vis = _sample_visible(rows[None, :], spos[:, None], key_ok[:, None], block) & row_ok[None, :]
            p_t = tl.where(vis, p_t, 0.0)
        elif MASK_BLOCK:
            vis = _block_visible(rows[None, :], keys[:, None], n, block, CAUSAL) & row_ok[None, :]
            p_t = tl.where(vis, p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PREC)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PREC)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PREC)

    dk = dk * (qk_scale * 0.6931471805599453)
    dst = bh.to(tl.int64) * so_h + k_idx[:, None] * D + offs_d[None, :]
    if SAMPLED:
        # A sampled key can be drawn by many sets (and twice by one): add into its original row,
        # after the block-part kernel has written that row.
        tl.atomic_add(DK + dst, dk, mask=key_ok[:, None], sem="relaxed")
        tl.atomic_add(DV + dst, dv, mask=key_ok[:, None], sem="relaxed")
    else:   # each key belongs to one tile of this pass
        _put(DK + dst, dk, key_ok[:, None], ACCUM)
        _put(DV + dst, dv, key_ok[:, None], ACCUM)


# ----------------------------------------------------------------------------------------------
# Host side
# ----------------------------------------------------------------------------------------------

def _unit_col(x: torch.Tensor) -> torch.Tensor:
    """Kernels index rows by stride and columns densely; keep any row stride, fix column stride."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _strides(x: torch.Tensor):
    return x.stride(0), x.stride(1), x.stride(2)


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs get true fp32 products (tf32 would cost ~1e-3 relative error); bf16/fp16 use the
    # tensor cores natively.
    return "ieee" if dtype == torch.float32 else "tf32"


def _mask_block(n: int, block: int, bm: int, bn: int, causal: bool) -> bool:
    """Whether the block loop needs a mask: rows or key tiles straddle blocks, a ragged last
    block, or the causal diagonal."""
    return causal or block % bm != 0 or block % bn != 0 or n % block != 0


class _Geometry:
    """Sizes shared by the forward and backward launches."""

    def __init__(self, q, samples, block_size, sample_tile, sample_weight, scale):
        self.B, self.H, self.n, self.d = q.shape
        self.block = min(block_size, self.n)
        self.has_samples = samples is not None and samples.shape[-1] > 0
        self.T, self.m = (samples.shape[-2], samples.shape[-1]) if self.has_samples else (1, 0)
        self.tile = self.n if self.T == 1 else sample_tile   # rows per sample set
        self.qk_scale = scale * LOG2E
        self.log2_w = math.log2(sample_weight) if self.has_samples else 0.0


def _head_stride(x: torch.Tensor, H: int) -> int:
    """Head stride of x [B, H, n, d] (or [B, H, n]) that the kernels address as
    bh · stride + row · d + col (or bh · stride + row): rows contiguous, batch stride = heads × head
    stride."""
    rows_contiguous = x.stride(-1) == 1 and (x.dim() == 3 or x.stride(2) == x.shape[3])
    if not rows_contiguous or (x.shape[0] > 1 and x.stride(0) != H * x.stride(1)):
        raise ValueError(f"tensor {tuple(x.shape)} with strides {tuple(x.stride())}: contiguous rows and "
                         "batch stride = heads × head stride needed")
    return x.stride(1)


def _by_head_stride(x: torch.Tensor, H: int) -> bool:
    """The kernels can address x by head stride (see _head_stride)."""
    try:
        _head_stride(x, H)
    except ValueError:
        return False
    return True


def _row_tile_launch(g: _Geometry, q, k, v, q_order, k_order, samples, causal, out, lse,
                     do=None, delta=None, accumulate=False):
    """Forward (do None) or dQ.  q_order/k_order None: rows are already in sorted order."""
    grad = do is not None
    bm, bn, warps, stages = _config("dq" if grad else "fwd_general", g.d)
    dummy = lse   # stands in for pointers the chosen variant never reads
    grid = (cdiv(g.n, bm), g.B * g.H)
    launch_in_chunks(
        _row_tile_kernel, grid,
        q, k, v, _or(q_order, dummy), _or(k_order, dummy), _or(samples, dummy), out, lse,
        _or(do, dummy), _or(delta, dummy),
        *_strides(q), *_strides(k), *_strides(v),
        g.H, g.n, g.m, g.T * g.m, g.block, g.tile, g.qk_scale, g.log2_w, _head_stride(out, g.H),
        *_grad_strides(lse, do, delta, g.H),
        D=g.d, BM=bm, BN=bn, CAUSAL=causal, MASK_BLOCK=_mask_block(g.n, g.block, bm, bn, causal),
        HAS_SAMPLES=g.has_samples, GRAD=grad, PREC=_precision(q.dtype), ACCUM=_accum_code(accumulate),
        num_warps=warps, num_stages=stages)


def _dkdv_launch(g: _Geometry, q, k, v, q_order, k_order, samples, causal, lse, do, delta,
                 dk=None, dv=None, accumulate=False):
    """dK, dV in fp32, in the keys' original rows: new tensors, or written (accumulate: added)
    into the fp32 dk, dv given."""
    bn, bm, warps, stages = _config("dkdv", g.d)
    if dk is None:
        dk = torch.empty(g.B, g.H, g.n, g.d, device=q.device, dtype=torch.float32)
        dv = torch.empty_like(dk)
    common = dict(D=g.d, BN=bn, BM=bm, CAUSAL=causal, ACCUM=_accum_code(accumulate),
                  PREC=_precision(q.dtype), num_warps=warps, num_stages=stages)
    so_h = _head_stride(dk, g.H)
    rs = _grad_strides(lse, do, delta, g.H)
    args = (*_strides(q), *_strides(k), *_strides(v), g.H, g.n, g.m, g.T * g.m, g.block)
    qo, ko = _or(q_order, lse), _or(k_order, lse)
    launch_in_chunks(
        _dkdv_kernel, (cdiv(g.n, bn), 1, g.B * g.H),
        q, k, v, qo, ko, lse, lse, do, delta, dk, dv, *args, 0, 0, g.qk_scale, 0.0, so_h, *rs,
        MASK_BLOCK=_mask_block(g.n, g.block, bm, bn, causal), SAMPLED=False, **common)
    if g.has_samples:
        # Virtual query tiles: the sample sets' own tiles, or chunks of a head for a shared set.
        vtile = g.tile if g.T > 1 else min(g.n, SHARED_SET_CHUNK)
        VT = cdiv(g.n, vtile)
        launch_in_chunks(
            _dkdv_kernel, (cdiv(g.m, bn), VT, g.B * g.H),
            q, k, v, qo, ko, samples, lse, do, delta, dk, dv,
            *args, vtile, 1 if g.T > 1 else 0, g.qk_scale, g.log2_w, so_h, *rs,
            MASK_BLOCK=True, SAMPLED=True, **common)
    return dk, dv


def _dkdv_adds(g: _Geometry, dtype: torch.dtype, tiles):
    """How a fresh fused backward on `tiles` (BM, BN, ...) adds dK/dV up -> (the dK, dV buffers'
    dtype, whether the sample sets' share goes through fp32 slots).  The programs adding into a key
    row are the query tiles of its block and those of each sample set it is in: at most
    DKDV_16BIT_ADDS of them, all in `dtype`; where only the sets have more (a set shared by a head:
    n / BM tiles), the block keys in `dtype` and the sets' keys in fp32 slots (SAMPLE_SLOTS, where
    the blocks are whole key steps); else all in fp32."""
    if dtype == torch.float32:
        return torch.float32, False
    layout = _layout(g.n, g.block, g.tile, tiles[0])
    if layout.adders(g.has_samples) <= DKDV_16BIT_ADDS:
        return dtype, False
    if SAMPLE_SLOTS and g.has_samples and layout.adders(False) <= DKDV_16BIT_ADDS and g.block % tiles[1] == 0:
        return dtype, True
    return torch.float32, False


def _add_sample_slots(dk, dv, slots, k_order, samples):
    """dK, dV [B, H, n, d] += the fused backward's fp32 slots [2, B·H, sets, m, d] at their keys'
    rows (k_order at the sampled sorted positions; a key drawn twice gets both slots)."""
    B, H, n, d = dk.shape
    rows = torch.gather(k_order.reshape(B * H, n), 1, samples.reshape(B * H, -1).long())
    rows = (rows + torch.arange(B * H, device=rows.device)[:, None] * n).flatten()
    for grad, part in zip((dk, dv), slots):
        grad.view(B * H * n, d).index_add_(0, rows, part.view(-1, d).to(grad.dtype))


def _cheapest_tiles(kinds, g: _Geometry, causal: bool):
    """The tiles (for g's head_dim) of the one of these CONFIGS kinds that covers the units of
    rows sharing a key list in the least time by ROW_COST: per unit, cdiv(its rows, BM) tiles of
    BM rows, the last one part empty where BM does not divide them.  The first of equals; None
    where key lists do not apply."""
    if not _lists_apply(g, causal):
        return None

    def cost(kind):
        bm = _config(kind, g.d)[0]
        return _layout(g.n, g.block, g.tile, bm).n_tiles * bm * ROW_COST.get(kind, {}).get(g.d, 1.0)
    return _config(min(kinds, key=cost), g.d)


def _reread_rows(bm: int) -> bool:
    """Whether the fused backward reads its rows' indices again after the key loop: on the 256-row
    tiles (d = 64's "bwd", at the register ceiling) that cut spills (ptxas: 204 -> 72 bytes) and the
    backward at block 256 5.24 -> 5.16 ms; on 4-warp 128-row ones it made block 128's backward
    6.25 ms against 4.68 holding them (A/B on the H200 at 198dc00, n = 131072, d = 64)."""
    return bm >= 256


def _fused_backward_tiles(g: _Geometry, causal: bool):
    """The fused key-list backward's tiles for this geometry (the cheapest of "bwd", "bwd_narrow",
    "bwd_rows64", "bwd_rows32", "bwd_rows16"), or None where it does not run."""
    return _cheapest_tiles(BACKWARD_KINDS, g, causal) if FUSED_LIST_BACKWARD else None


def sixteen_bit_adds(shape, dtype: torch.dtype, samples, *, block_size: int, sample_tile: int,
                     sample_weight: float, scale: float, causal: bool = False, **_):
    """How many adds the fused backward of a [B, H, n, d] `shape` piece makes into a key row of
    dK/dV straight in the 16-bit `dtype` (_dkdv_adds), on average: its block's query tiles, and the
    tiles of each sample set that draws the key (T·m / n sets on average).  None where it adds in
    fp32 (fp32 inputs, or a set shared by the head, which goes through fp32 slots)."""
    g = _Geometry(torch.empty(shape, device="meta"), samples, block_size, sample_tile, sample_weight, scale)
    tiles = _fused_backward_tiles(g, causal)
    if dtype == torch.float32 or tiles is None or _dkdv_adds(g, dtype, tiles) != (dtype, False):
        return None
    layout = _layout(g.n, g.block, g.tile, tiles[0])
    return layout.by_block + (layout.by_set * g.T * g.m / g.n if g.has_samples else 0.0)


def zeroed_dkdv(q, samples, *, block_size: int, sample_tile: int, sample_weight: float, scale: float,
                causal: bool = False):
    """An uninitialised [2, B, H, n, d] buffer in q's dtype for the forward to clear and the
    backward to add dK, dV into, where the fused backward adds them up in 16 bits; else None."""
    g = _Geometry(q, samples, block_size, sample_tile, sample_weight, scale)
    tiles = _fused_backward_tiles(g, causal)
    if tiles is None or _dkdv_adds(g, q.dtype, tiles)[0] != q.dtype:
        return None
    return torch.empty(2, *q.shape, device=q.device, dtype=q.dtype)


def _or(x, default):
    return default if x is None else x


def _lists_apply(g: _Geometry, causal: bool) -> bool:
    """Key lists work: no causal mask, and blocks and sample sets of whole 16-row tiles, the
    narrowest there are (the config's sizes always are; a sequence shorter than its block may not
    be, and the general kernel runs)."""
    return USE_KEY_LISTS and not causal and g.block % 16 == 0 and (g.T == 1 or g.tile % 16 == 0)


class _Layout:
    """The units of sorted query rows that see the same keys (one block and one sample set: the
    rows between consecutive multiples of either) and the query tiles of BM rows that cover
    them, a unit's last tile part empty where BM does not divide it.  Host tensors, built once
    per shape; `units_on(device)` and `tiles_on(device)` give the device copies the kernels read,
    each copied once, when first asked for."""

    def __init__(self, n: int, block: int, tile: int, bm: int):
        cuts = torch.cat([torch.arange(0, n, block), torch.arange(0, n, tile), torch.tensor([n])])
        self.units = torch.unique(cuts).to(torch.int32)                    # unit starts, then n
        starts, ends = self.units[:-1].long(), self.units[1:].long()
        per_unit = (ends - starts + bm - 1) // bm
        unit = torch.repeat_interleave(torch.arange(len(starts)), per_unit)
        first = torch.cumsum(per_unit, 0) - per_unit                     # each unit's first tile
        r0 = starts[unit] + (torch.arange(len(unit)) - first[unit]) * bm
        self.tiles = torch.stack([r0, torch.minimum(r0 + bm, ends[unit]), unit], 1).to(torch.int32)
        self.n_tiles = len(unit)
        # every unit the same whole number of tiles: the kernels may find a tile's rows and unit by
        # arithmetic rather than by a load from the table (_tile_rows, _unit_tiles); else 0
        lengths = ends - starts
        uniform = bool((lengths == lengths[0]).all()) and int(lengths[0]) % bm == 0
        self.unit_tiles = int(lengths[0]) // bm if uniform else 0
        self.by_block = int(torch.bincount(r0 // block).max())
        self.by_set = int(torch.bincount(r0 // tile).max())
        self._on = {}

    def adders(self, sampled: bool) -> int:
        """Most query tiles adding into one key row: its block's, and its sample set's."""
        return self.by_block + (self.by_set if sampled else 0)

    def units_on(self, device) -> torch.Tensor:
        return self._copy("units", device)

    def tiles_on(self, device) -> torch.Tensor:
        return self._copy("tiles", device)

    def _copy(self, name: str, device) -> torch.Tensor:
        key = (name, str(device))
        if key not in self._on:
            self._on[key] = getattr(self, name).to(device)
        return self._on[key]


def _unit_tiles(layout: _Layout) -> int:
    """The kernels' UNIT_TILES for this layout: its unit_tiles, or 0 (the table) under
    TILE_TABLE_ALWAYS."""
    return 0 if TILE_TABLE_ALWAYS else layout.unit_tiles


@functools.lru_cache(maxsize=256)
def _layout(n: int, block: int, tile: int, bm: int) -> _Layout:
    return _Layout(n, block, tile, bm)


def _forward_tiles(kind: str, g: _Geometry, causal: bool):
    """The cheapest tiles of CONFIGS[kind] ("fwd" or "fwd_merge") and the narrower "fwd_rows64",
    "fwd_rows32", "fwd_rows16" for g's head_dim where key lists apply, else kind's (the general
    kernel runs: causal pieces, or blocks and sets that are not multiples of 16 rows)."""
    return _cheapest_tiles((kind, *NARROW_FORWARD_KINDS), g, causal) or _config(kind, g.d)


def key_lists(g: _Geometry, k_order, samples, bn: int):
    """Per unit of sorted query rows that see the same keys (_Layout: a block, or the part of one
    inside a sample set): the original rows of those keys (the block's keys, then the sample set)
    and each key's exp2-domain bias (0, log2 w, or -inf for padding and for samples inside the
    rows' own block).  Lengths padded to a multiple of bn with masked keys.  Every query tile
    lies in one unit, whatever its rows, so the forward's and the backward's tiles share one build.
    Built by one small kernel: a pure memory pass, much cheaper than the chain of torch ops."""
    units = _layout(g.n, g.block, g.tile, 16).units_on(k_order.device)   # the units, whatever the tiles
    nl = len(units) - 1
    L = cdiv(g.block + g.m, bn) * bn
    rows = torch.empty(g.B, g.H, nl, L, dtype=torch.int32, device=k_order.device)
    bias = torch.empty(g.B, g.H, nl, L, dtype=torch.float32, device=k_order.device)
    launch_in_chunks(
        _key_lists_kernel, (nl, g.B * g.H),
        k_order, _or(samples, k_order), units, rows, bias, g.n, g.block, g.tile, g.m, g.T * g.m, L, g.log2_w,
        SHARED_SET=g.T == 1, CH=64, num_warps=4)
    return rows, bias


def _lists_for(g: _Geometry, k_order, samples, bn: int, lists):
    """`lists` (a caller's key_lists of these orders and samples) where their padding suits key
    steps of bn, else a new build."""
    if lists is not None and lists[0].shape[-1] % bn == 0:
        return lists
    return key_lists(g, k_order, samples, bn)


def _list_launch(g: _Geometry, cfg, q, k, v, q_order, lists, out, lse, do=None, delta=None, accumulate=False,
                 merge=False, k_order=None, zero=None):
    """cfg: the tiles the caller chose ("dq", or _forward_tiles of "fwd" / "fwd_merge").  zero: a
    [2, B, H, n, d] buffer (dK, dV of the backward) the forward zeroes by the key rows of k_order
    (see _list_kernel's ZERO_DKDV)."""
    grad = do is not None
    bm, bn, warps, stages = cfg[:4]
    cap = {"maxnreg": cfg[4]} if len(cfg) > 4 else {}   # a register cap, where a config gives one
    rows, bias = lists
    dummy = lse
    layout = _layout(g.n, g.block, g.tile, bm)
    launch_in_chunks(
        _list_kernel, (layout.n_tiles, g.B * g.H),
        q, k, v, q_order, layout.tiles_on(q.device), rows, bias, out, lse, _or(do, dummy), _or(delta, dummy),
        _or(k_order, q_order), _or(zero, out), *_strides(q), *_strides(k), *_strides(v), g.H, g.n, rows.shape[-1],
        rows.shape[2], g.qk_scale, _head_stride(out, g.H), *_grad_strides(lse, do, delta, g.H),
        g.n * g.d, 0 if zero is None else zero.stride(0), D=g.d, BM=bm, BN=bn, GRAD=grad,
        PREC=_precision(q.dtype), ACCUM=_accum_code(accumulate), MERGE=merge, ZERO_DKDV=zero is not None,
        UNIT_TILES=_unit_tiles(layout), num_warps=warps, num_stages=stages, **cap)


def _grad_strides(lse, do, delta, H: int):
    """Head strides (dO, lse, Δ) the kernels read them by; dO and Δ are None in the forward."""
    return (0 if do is None else _head_stride(do, H), _head_stride(lse, H),
            0 if delta is None else _head_stride(delta, H))


def _forward_rows(g, q, k, v, q_order, k_order, samples, causal, out, lse, do=None, delta=None,
                  accumulate=False, lists=None, zero=None):
    """Forward (do None) or dQ, by key lists where they apply, else by the general kernel.  zero:
    a buffer the forward clears as well (see _list_launch)."""
    cfg = _config("dq", g.d) if do is not None else _forward_tiles("fwd", g, causal)
    if _lists_apply(g, causal):
        lists = _lists_for(g, k_order, samples, cfg[1], lists)
        _list_launch(g, cfg, q, k, v, q_order, lists, out, lse, do, delta, accumulate, k_order=k_order, zero=zero)
    else:
        if zero is not None:
            zero.zero_()
        _row_tile_launch(g, q, k, v, q_order, k_order, samples, causal, out, lse, do, delta, accumulate)


def _prepare(q, k, v, q_order, k_order, samples):
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"triton block_sample_attention supports fp16/bf16/fp32, got {q.dtype}")
    if q.shape[-1] not in (16, 32, 64, 128):
        raise ValueError(f"head_dim must be 16, 32, 64 or 128, got {q.shape[-1]}")
    q, k, v = (_unit_col(x) for x in (q, k, v))
    return q, k, v, q_order.contiguous(), k_order.contiguous(), None if samples is None else samples.contiguous()


def prepared_lists(q, k, v, q_order, k_order, samples, *, block_size: int, sample_tile: int,
                   sample_weight: float, scale: float, causal: bool = False):
    """The key lists that block_sample_forward and block_sample_backward would each build for these
    arguments, built once for both (their `lists`); None where the key-list kernels do not apply."""
    q, k, v, q_order, k_order, samples = _prepare(q, k, v, q_order, k_order, samples)
    g = _Geometry(q, samples, block_size, sample_tile, sample_weight, scale)
    bn = _forward_tiles("fwd", g, causal)[1]
    return key_lists(g, k_order, samples, bn) if _lists_apply(g, causal) else None


def block_sample_forward(q, k, v, q_order, k_order, samples, *, block_size: int, sample_tile: int,
                         sample_weight: float, scale: float, causal: bool = False, into=None, lists=None,
                         zero=None):
    """(out, lse) without autograd: for callers that run their own backward
    (kernels/causal_triton.py).  into=(out, lse): an attention of the same rows over other keys
    ([B, H, n, d] in q's dtype with contiguous rows, [B, H, n] fp32), merged with this one in place
    (log-sum-exp) and returned; by the key-list kernel's epilogue where it applies, else through
    temporaries and triton_merge.  lists: prepared_lists(...) of these arguments, to share one
    build of the key lists with the backward.  zero: a contiguous [2, B, H, n, d] buffer (the
    backward's dK, dV) to clear as well, by the kernel's spare stores where key lists apply."""
    q, k, v, q_order, k_order, samples = _prepare(q, k, v, q_order, k_order, samples)
    g = _Geometry(q, samples, block_size, sample_tile, sample_weight, scale)
    if into is not None:
        out, lse = into
        if out.shape != q.shape or lse.shape != q.shape[:-1] or out.dtype != q.dtype or lse.dtype != torch.float32:
            raise ValueError(f"into: out {tuple(out.shape)} {out.dtype}, lse {tuple(lse.shape)} {lse.dtype} do not "
                             f"match q {tuple(q.shape)} {q.dtype}")
        cfg = _forward_tiles("fwd_merge", g, causal)
        if _lists_apply(g, causal) and _by_head_stride(out, g.H) and _by_head_stride(lse, g.H):
            if zero is not None:
                zero.zero_()
            _list_launch(g, cfg, q, k, v, q_order, _lists_for(g, k_order, samples, cfg[1], lists), out, lse,
                         merge=True)
            return out, lse
    out = torch.empty(g.B, g.H, g.n, g.d, device=q.device, dtype=q.dtype)
    lse = torch.empty(g.B, g.H, g.n, device=q.device, dtype=torch.float32)
    _forward_rows(g, q, k, v, q_order, k_order, samples, causal, out, lse, lists=lists, zero=zero)
    return (out, lse) if into is None else merge_into(*into, out, lse)


def block_sample_backward(q, k, v, q_order, k_order, samples, dout, lse, delta, *, block_size: int,
                          sample_tile: int, sample_weight: float, scale: float, causal: bool = False,
                          grads=None, accumulate: bool = False, lists=None, zeroed=None):
    """(dq, dk, dv) given dO, the rows' lse and Δ = rowsum(dO ∘ O) − dlse: new tensors (dq in q's
    dtype; dk and dv in q's dtype where DKDV_16BIT_ADDS or the sample slots allow (_dkdv_adds), else
    fp32), or written into `grads`, three [B, H, n, d] tensors that may be row slices of larger
    ones (accumulate: added to what they hold), in fp32, or in q's dtype where sixteen_bit_adds allows.
    lse and Δ may be those of a larger attention this one is a part of (the causal recursion
    passes the merged rows' values): then the gradients are this part's share of that one's.
    lists: the forward's key lists (prepared_lists), reused where they fit.  zeroed: the [2, B, H,
    n, d] dK, dV buffer a forward cleared (zeroed_dkdv), added into where its dtype fits."""
    q, k, v, q_order, k_order, samples = _prepare(q, k, v, q_order, k_order, samples)
    g = _Geometry(q, samples, block_size, sample_tile, sample_weight, scale)
    # Row slices of longer heads (the causal recursion's pieces) are read in place, no copy.
    dout, lse, delta = (x if _by_head_stride(x, g.H) else x.contiguous() for x in (dout, lse, delta))
    dq, dk, dv = grads if grads is not None else (torch.empty_like(q, memory_format=torch.contiguous_format),
                                                  None, None)
    if dk is not None and (dk.stride() != dv.stride() or dk.dtype != dv.dtype
                           or dk.dtype not in (torch.float32, q.dtype)):
        raise ValueError("dk and dv must be fp32, or q's dtype, with the same strides")
    tiles = _fused_backward_tiles(g, causal)
    if tiles:
        bm, bn, warps, stages = tiles
        slots = None
        if dk is None:       # the fused kernel only adds into dK, dV
            acc, by_slot = _dkdv_adds(g, q.dtype, tiles)
            if zeroed is not None and zeroed.dtype == acc and zeroed.shape[1:] == q.shape:
                dk, dv = zeroed.unbind(0)
            else:
                dk = torch.zeros(g.B, g.H, g.n, g.d, device=q.device, dtype=acc)
                dv = torch.zeros_like(dk)
            if by_slot:
                slots = torch.zeros(2, g.B * g.H, g.T, g.m, g.d, device=q.device, dtype=torch.float32)
        elif not accumulate:
            dk.zero_()
            dv.zero_()
        rows, bias = _lists_for(g, k_order, samples, bn, lists)
        layout = _layout(g.n, g.block, g.tile, bm)
        launch_in_chunks(
            _list_bwd_kernel, (layout.n_tiles, g.B * g.H),
            q, k, v, q_order, layout.tiles_on(q.device), rows, bias, lse, dout, delta, dq, dk, dv, _or(slots, dk),
            *_strides(q), *_strides(k), *_strides(v), g.H, g.n, rows.shape[-1], rows.shape[2], g.block, g.qk_scale,
            _head_stride(dq, g.H), _head_stride(dk, g.H), *_grad_strides(lse, dout, delta, g.H),
            g.T * g.m * g.d, 0 if slots is None else slots[0].numel(), g.tile, g.m, D=g.d, BM=bm, BN=bn,
            PREC=_precision(q.dtype), ACCUM=_accum_code(accumulate), STORE_BLOCK=_DIAGNOSTIC_DKDV_STORES[0],
            STORE_SAMPLES=_DIAGNOSTIC_DKDV_STORES[1], REREAD_ROWS=_reread_rows(bm), SLOTS=slots is not None,
            UNIT_TILES=_unit_tiles(layout), num_warps=warps, num_stages=stages)
        if slots is not None:
            _add_sample_slots(dk, dv, slots, k_order, samples)
        return dq, dk, dv
    _forward_rows(g, q, k, v, q_order, k_order, samples, causal, dq, lse, dout, delta, accumulate, lists)
    dk, dv = _dkdv_launch(g, q, k, v, q_order, k_order, samples, causal, lse, dout, delta, dk, dv, accumulate)
    return dq, dk, dv


class _BlockSampleAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, q_order, k_order, samples, kw):
        lists = prepared_lists(q, k, v, q_order, k_order, samples, **kw)
        # dK, dV cleared by the forward's own spare stores rather than a fill in the backward
        zeroed = zeroed_dkdv(q, samples, **kw) if any(ctx.needs_input_grad[1:3]) else None
        out, lse = block_sample_forward(q, k, v, q_order, k_order, samples, **kw, lists=lists, zero=zeroed)
        ctx.save_for_backward(q, k, v, q_order, k_order, samples, out, lse)
        ctx.kw, ctx.lists, ctx.zeroed = kw, lists, zeroed
        ctx.set_materialize_grads(False)   # no gradient on lse arrives as None, not a tensor of zeros
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, q_order, k_order, samples, out, lse = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(out)
        dout = dout.contiguous()
        delta = row_delta(dout, out, dlse)   # dS = P (dP - delta)
        # the forward's cleared buffer serves one backward; another (retain_graph) starts from zeros
        zeroed, ctx.zeroed = ctx.zeroed, None
        dq, dk, dv = block_sample_backward(q, k, v, q_order, k_order, samples, dout, lse, delta, **ctx.kw,
                                           lists=ctx.lists, zeroed=zeroed)
        return dq, dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


def block_sample_attention(q, k, v, q_order, k_order, samples, *, block_size: int,
                           sample_tile: int, sample_weight: float, scale: float,
                           causal: bool = False):
    """Triton implementation of kernels.reference.block_sample_attention (same contract)."""
    kw = dict(block_size=block_size, sample_tile=sample_tile, sample_weight=sample_weight, scale=scale,
              causal=causal)
    if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
        return _BlockSampleAttention.apply(q, k, v, q_order, k_order, samples, kw)
    # inference: no autograd node to build, nothing to save for a backward
    return block_sample_forward(q, k, v, q_order, k_order, samples, **kw)
