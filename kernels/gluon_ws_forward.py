"""The key-list forward (triton_attention._list_kernel's contract, plain forward only) as a
warp-specialised, persistent Gluon kernel for Hopper: an experiment (kernels/NOTES.md, v14).

Why: v14 found the forward bound by latency with too few ready warps, not by the schedule inside a
warpgroup.  Here the warpgroups never meet at a barrier: one producer warp gathers each step's key
and value rows (cp.async) and biases into a ring of STAGES shared buffers and signals them through
mbarriers; four consumer warpgroups, each on 64 of a program's 256 query rows, wait for a step,
run QKᵀ → softmax → PV on it and release it.  256 rows per program read each key and value row
once for four warpgroups (the Triton kernel: once per two), and the programs are persistent, so
the producer fetches the next tile's first steps while the consumers finish the last.
"""

from __future__ import annotations

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy as cp
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, warpgroup_mma,
                                                              warpgroup_mma_wait)

# d = 64 only; partitions see these as globals (constexprs passed to warp_specialize's partitions
# arrive as tensors in Triton 3.6)
_D = gl.constexpr(64)
_BM = gl.constexpr(256)     # query rows per program
_R = gl.constexpr(128)      # query rows per consumer warpgroup (two wgmma row tiles of 64)
_BN = gl.constexpr(64)      # keys per step


@gluon.jit
def _release(bar):
    """Every thread of the warpgroup arrives on bar on its own (cp.async.mbarrier.arrive.noinc with
    no copies outstanding arrives at once): mbarrier.arrive is one thread's arrival behind a
    barrier of the warpgroup, before which ptxas put the wait for the P·V product, out of the
    softmax it was meant to overlap."""
    cp.mbarrier_arrive(bar, increment_count=False)


@gluon.jit
def _consume(A, SUB: gl.constexpr):
    """Consumer warpgroup SUB: rows SUB·R … SUB·R+R-1 of every tile this program takes.  Step i
    issues its scores and the product P_{i-1}·V_{i-1} together and runs its softmax while the
    product is on the tensor cores (as _list_kernel's compiled loop does); it releases step i-1's
    slot once that product is done."""
    (Q, QO, Out, Lse, sqb, sqh, sqn, H, n, T, W, qk_scale, so_h, sl_h,
     q_smem, k_smem, v_smem, b_smem, full, empty, K, V, KR, KB, skb, skh, skn, svb, svh, svn, L, NL, U,
     STAGES, NSTEPS) = A
    D: gl.constexpr = _D
    BM: gl.constexpr = _BM
    BN: gl.constexpr = _BN
    R: gl.constexpr = _R
    NC: gl.constexpr = _BM // _R
    dtype: gl.constexpr = Q.dtype.element_ty
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BN, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    s_zero = gl.zeros([R, BN], gl.float32, s_layout)
    offs_do = gl.arange(0, D, gl.SliceLayout(0, o_layout))
    it = 0
    tc = 0
    for w in range(gl.program_id(0), W, gl.num_programs(0)):
        bh64 = (w // T).to(gl.int64)
        r0 = (w % T) * BM + SUB * R
        qs = q_smem.index((tc % 2) * NC + SUB)     # gathered by the producer with the tile's first step
        tc += 1
        # step 0: scores only
        slot = it % STAGES
        mbarrier.wait(full.index(slot), (it // STAGES) & 1)
        fence_async_shared()      # the copies wrote through the generic proxy; wgmma reads async
        bias = b_smem.index(slot).load(gl.SliceLayout(0, s_layout))
        S = warpgroup_mma(qs, k_smem.index(slot).permute((1, 0)), s_zero, use_acc=False)
        qk = S * qk_scale + gl.expand_dims(bias, 0)
        m_i = gl.max(qk, 1)
        p = gl.exp2(qk - gl.expand_dims(m_i, 1))
        l_i = gl.sum(p, 1)
        P = gl.convert_layout(p.to(dtype), p_layout)
        acc = gl.zeros([R, D], gl.float32, o_layout)
        prev = slot
        it += 1
        for j in range(1, NSTEPS):
            slot = it % STAGES
            mbarrier.wait(full.index(slot), (it // STAGES) & 1)
            fence_async_shared()
            # the biases before the products are issued: loaded after, they took registers the
            # in-flight P·V product reads, and ptxas waited for that product first
            bias = b_smem.index(slot).load(gl.SliceLayout(0, s_layout))
            s_tok = warpgroup_mma(qs, k_smem.index(slot).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            o_tok = warpgroup_mma(P, v_smem.index(prev), acc, is_async=True)
            S = warpgroup_mma_wait(num_outstanding=1, deps=(s_tok, ))
            qk = S * qk_scale + gl.expand_dims(bias, 0)
            m_new = gl.maximum(m_i, gl.max(qk, 1))
            alpha = gl.exp2(m_i - m_new)
            p = gl.exp2(qk - gl.expand_dims(m_new, 1))
            l_i = l_i * alpha + gl.sum(p, 1)
            m_i = m_new
            # p passes through the wait, so the exponentials are computed before it: otherwise the
            # compiler sank them below the wait and the release that follows it, out of the overlap
            acc, p = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok, p))
            _release(empty.index(prev))
            acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
            P = gl.convert_layout(p.to(dtype), p_layout)
            prev = slot
            it += 1
        acc = warpgroup_mma(P, v_smem.index(prev), acc)
        _release(empty.index(prev))
        rows_o = r0 + gl.arange(0, R, gl.SliceLayout(1, o_layout))
        ok_o = rows_o < n
        q_o = gl.load(QO + bh64 * n + rows_o, mask=ok_o, other=0)
        l_o = gl.convert_layout(l_i, gl.SliceLayout(1, o_layout))
        m_o = gl.convert_layout(m_i, gl.SliceLayout(1, o_layout))
        l_safe = gl.where(l_o > 0, l_o, 1.0)
        out = (acc / gl.expand_dims(l_safe, 1)).to(dtype)
        gl.store(Out + bh64 * so_h + gl.expand_dims(q_o * D, 1) + gl.expand_dims(offs_do, 0), out,
                 mask=gl.expand_dims(ok_o, 1))
        gl.store(Lse + bh64 * sl_h + q_o, (m_o + gl.log2(l_safe)) * 0.6931471805599453, mask=ok_o)


@gluon.jit
def _consume0(A):
    _consume(A, 0)


@gluon.jit
def _consume1(A):
    _consume(A, 1)


@gluon.jit
def _produce(A):
    """Four warps: for every step of every tile this program takes, wait for its ring slot to be
    free and gather the step's key and value rows and biases into it (and, at a tile's first
    step, the tile's query rows) by cp.async; each thread's copies arrive on the slot's `full`
    barrier when they land (cp.async.mbarrier.arrive.noinc: 128 arrivals complete it), so the
    producer never waits on its own copies and runs up to STAGES steps ahead."""
    (Q, QO, Out, Lse, sqb, sqh, sqn, H, n, T, W, qk_scale, so_h, sl_h,
     q_smem, k_smem, v_smem, b_smem, full, empty, K, V, KR, KB, skb, skh, skn, svb, svh, svn, L, NL, U,
     STAGES, NSTEPS) = A
    D: gl.constexpr = _D
    BM: gl.constexpr = _BM
    BN: gl.constexpr = _BN
    ld: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])      # D = 64: 8 lanes a row
    R: gl.constexpr = _R
    NC: gl.constexpr = _BM // _R
    b_layout: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
    jn = gl.arange(0, BN, gl.SliceLayout(1, ld))
    jb = gl.arange(0, BN, b_layout)
    offs_d = gl.arange(0, D, gl.SliceLayout(0, ld))
    pid = gl.program_id(0)
    G = gl.num_programs(0)
    total = ((W - pid + G - 1) // G) * NSTEPS
    for s in range(total):
        slot = s % STAGES
        mbarrier.wait(empty.index(slot), ((s // STAGES) & 1) ^ 1)
        w = pid + (s // NSTEPS) * G
        bh = w // T
        b = (bh // H).to(gl.int64)
        h = (bh % H).to(gl.int64)
        lists = (bh.to(gl.int64) * NL + ((w % T) * BM) // U) * L + (s % NSTEPS) * BN
        k_idx = gl.load(KR + lists + jn).to(gl.int64)
        cp.async_copy_global_to_shared(b_smem.index(slot), KB + lists + jb)
        cp.async_copy_global_to_shared(
            k_smem.index(slot), K + b * skb + h * skh + gl.expand_dims(k_idx * skn, 1) + gl.expand_dims(offs_d, 0))
        cp.async_copy_global_to_shared(
            v_smem.index(slot), V + b * svb + h * svh + gl.expand_dims(k_idx * svn, 1) + gl.expand_dims(offs_d, 0))
        if s % NSTEPS == 0:
            # the tile's query rows, into the buffer of its parity, with its first step: tile t+2
            # reuses tile t's buffer, and its first step waits for a slot the consumers freed in
            # tile t+1 (STAGES <= NSTEPS)
            r0 = (w % T) * BM
            for c in gl.static_range(NC):
                rows = r0 + c * R + gl.arange(0, R, gl.SliceLayout(1, ld))
                row_ok = rows < n
                q_idx = gl.load(QO + bh.to(gl.int64) * n + rows, mask=row_ok, other=0)
                cp.async_copy_global_to_shared(
                    q_smem.index(((s // NSTEPS) % 2) * NC + c),
                    Q + b * sqb + h * sqh + gl.expand_dims(q_idx * sqn, 1) + gl.expand_dims(offs_d, 0),
                    mask=gl.expand_dims(row_ok, 1))
        cp.mbarrier_arrive(full.index(slot), increment_count=False)
        cp.commit_group()
    cp.wait_group(0)


@gluon.jit
def _ws_fwd_kernel(Q, K, V, QO, KR, KB, Out, Lse,
                   sqb, sqh, sqn, skb, skh, skn, svb, svh, svn,
                   H, n, T, W, L, NL, U, qk_scale, so_h, sl_h,
                   D: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr, STAGES: gl.constexpr,
                   CREGS: gl.constexpr, PREGS: gl.constexpr, num_warps: gl.constexpr):
    dtype: gl.constexpr = Q.dtype.element_ty
    q_smem = gl.allocate_shared_memory(dtype, [2 * (BM // _R), _R, D], gl.NVMMASharedLayout.get_default_for([_R, D], dtype))
    kv_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BN, D], dtype)
    k_smem = gl.allocate_shared_memory(dtype, [STAGES, BN, D], kv_sl)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES, BN, D], kv_sl)
    b_smem = gl.allocate_shared_memory(gl.float32, [STAGES, BN], gl.SwizzledSharedLayout(1, 1, 1, [0]))
    full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES):
        mbarrier.init(full.index(i), count=128)     # one asynchronous arrival per producer thread
        mbarrier.init(empty.index(i), count=(BM // _R) * 128)    # every consumer thread arrives
    A = (Q, QO, Out, Lse, sqb, sqh, sqn, H, n, T, W, qk_scale, so_h, sl_h,
         q_smem, k_smem, v_smem, b_smem, full, empty, K, V, KR, KB, skb, skh, skn, svb, svh, svn, L, NL, U,
         STAGES, L // BN)
    gl.warp_specialize([(_consume0, (A, )), (_consume1, (A, )), (_produce, (A, ))], [4, 4], [CREGS, PREGS])


# (STAGES, consumer registers, producer registers, kernel maxnreg) for head_dim 64: the kernel's
# 12 warps start at maxnreg each (one program per SM); the producer gives registers back and the
# worker consumer takes them (the default partition keeps what is left)
CONFIG = (5, 232, 40, 168)


def list_forward(q, k, v, q_order, rows, bias, out, lse, *, H: int, U: int, qk_scale: float,
                 out_head_stride: int, lse_head_stride: int, config=None):
    """The plain key-list forward on this kernel (see the module docstring); d = 64 only."""
    stages, cregs, pregs, maxnreg = config or CONFIG
    B, _, n, d = q.shape
    bn, bm = 64, 256
    L, NL = rows.shape[-1], rows.shape[2]
    T = -(-n // bm)
    W = B * H * T
    grid = (min(W, torch.cuda.get_device_properties(q.device).multi_processor_count), )
    _ws_fwd_kernel[grid](q, k, v, q_order, rows, bias, out, lse, q.stride(0), q.stride(1), q.stride(2),
                         k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
                         H, n, T, W, L, NL, U, qk_scale, out_head_stride, lse_head_stride,
                         D=d, BM=bm, BN=bn, STAGES=stages, CREGS=cregs, PREGS=pregs,
                         num_warps=4, maxnreg=maxnreg)
