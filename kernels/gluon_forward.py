"""The key-list forward (triton_attention._list_kernel, GRAD=False) in Gluon, Triton's lower-level
language, for Hopper: the same arithmetic with the schedule written out by hand.

Why: under Triton 3.6 every key step of _list_kernel runs QKᵀ → softmax → PV as one dependent
chain (the compiler waits on all outstanding wgmma groups before the softmax), so the tensor cores
idle while each warpgroup does its exponentials (kernels/NOTES.md, v10–v13).  Here the product of
step i-1's probabilities with its values is issued asynchronously together with step i's scores,
and step i's softmax runs while that product is still on the tensor cores (FlashAttention-3's
intra-warpgroup overlap).  Key and value rows are gathered through the list's row indices by
cp.async into a ring of STAGES shared-memory buffers, STAGES-2 steps ahead of their use.

Same contract as _list_kernel's forward: one program per BM sorted query rows of one (b, h); KR/KB
the key lists (original key rows, exp2-domain bias); out/lse written to the rows' original indices,
or merged into what they hold (MERGE); ZERO_DKDV clears the backward's dK/dV rows.  The readable
reference is kernels/reference.py (the tests compare both kernels against it); there is no CPU
interpreter for Gluon, so this kernel is checked on the GPU only (scripts/gpu_kernel_check.py).
"""

from __future__ import annotations

import os

import torch

try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.ampere import async_copy as cp
    from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, warpgroup_mma,
                                                                  warpgroup_mma_wait)
    _IMPORTED = True
except ImportError:      # a Triton without Gluon: the Triton kernel runs instead
    _IMPORTED = False


def available(x: torch.Tensor) -> bool:
    """Whether this kernel can run on x's device: Gluon present, a Hopper GPU, not the CPU
    interpreter, 16-bit inputs."""
    return (_IMPORTED and x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1"
            and x.dtype in (torch.float16, torch.bfloat16) and torch.cuda.get_device_capability(x.device)[0] == 9)


if _IMPORTED:
    @gluon.jit
    def _step_rows(KR, lists, step, nsteps, jn, BN: gl.constexpr):
        """The original key rows of list step `step` (row 0 past the list's end) and whether the
        step exists."""
        ok = step < nsteps
        return gl.load(KR + lists + step * BN + jn, mask=ok, other=0).to(gl.int64), ok

    @gluon.jit
    def _issue_step(K, V, k_smem, v_smem, step, k_idx, ok, skn, svn, jn, offs_d, STAGES: gl.constexpr):
        """cp.async of key and value rows k_idx (list step `step`) into ring buffer step % STAGES,
        as one commit group (an empty one past the list's end, so group counts stay uniform)."""
        mask = gl.expand_dims(ok & (jn >= 0), 1)
        cp.async_copy_global_to_shared(k_smem.index(step % STAGES),
                                       K + gl.expand_dims(k_idx * skn, 1) + gl.expand_dims(offs_d, 0), mask=mask)
        cp.async_copy_global_to_shared(v_smem.index(step % STAGES),
                                       V + gl.expand_dims(k_idx * svn, 1) + gl.expand_dims(offs_d, 0), mask=mask)
        cp.commit_group()

    @gluon.jit
    def _scores(S, bias, qk_scale, m_i, l_i):
        """Online-softmax update for one step's raw scores S and the keys' biases: the new row
        maxima, the factor the old accumulator is rescaled by, the probabilities (exp2 domain)
        and the new row sums."""
        qk = S * qk_scale + gl.expand_dims(bias, 0)
        m_new = gl.maximum(m_i, gl.max(qk, 1))
        alpha = gl.exp2(m_i - m_new)
        p = gl.exp2(qk - gl.expand_dims(m_new, 1))
        return m_new, alpha, p, l_i * alpha + gl.sum(p, 1)

    @gluon.jit
    def _list_fwd_kernel(Q, K, V, QO, KR, KB, Out, Lse, KO, DKV,
                         sqb, sqh, sqn, skb, skh, skn, svb, svh, svn,
                         H, n, L, NL, U, qk_scale, so_h, sl_h, sz_h, sz_kv,
                         D: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr, STAGES: gl.constexpr,
                         MERGE: gl.constexpr, ZERO_DKDV: gl.constexpr, num_warps: gl.constexpr):
        pid = gl.program_id(0)
        bh = gl.program_id(1)
        bh64 = bh.to(gl.int64)
        b = (bh // H).to(gl.int64)
        h = (bh % H).to(gl.int64)
        Q += b * sqb + h * sqh
        K += b * skb + h * skh
        V += b * svb + h * svh
        dtype: gl.constexpr = Q.dtype.element_ty

        # registers for [rows, D] gathers and stores: 16 bytes per thread per access, a row's D
        # columns over D / 8 neighbouring threads
        cols: gl.constexpr = D // 8
        ld: gl.constexpr = gl.BlockedLayout([1, 8], [32 // cols, cols], [num_warps, 1], [1, 0])
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                          instr_shape=[16, BN, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                          instr_shape=[16, D, 16])
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        q_smem = gl.allocate_shared_memory(dtype, [BM, D], gl.NVMMASharedLayout.get_default_for([BM, D], dtype))
        kv_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BN, D], dtype)
        k_smem = gl.allocate_shared_memory(dtype, [STAGES, BN, D], kv_sl)
        v_smem = gl.allocate_shared_memory(dtype, [STAGES, BN, D], kv_sl)

        # the tile's query rows, gathered by cp.async in the first commit group
        rows = pid * BM + gl.arange(0, BM, gl.SliceLayout(1, ld))
        row_ok = rows < n
        offs_d = gl.arange(0, D, gl.SliceLayout(0, ld))
        q_idx = gl.load(QO + bh64 * n + rows, mask=row_ok, other=0)
        cp.async_copy_global_to_shared(q_smem, Q + gl.expand_dims(q_idx * sqn, 1) + gl.expand_dims(offs_d, 0),
                                       mask=gl.expand_dims(row_ok, 1))
        lists = (bh64 * NL + (pid * BM) // U) * L
        nsteps = L // BN
        jn = gl.arange(0, BN, gl.SliceLayout(1, ld))
        jn_s = gl.arange(0, BN, gl.SliceLayout(0, s_layout))
        for s in gl.static_range(STAGES - 2):
            k_idx, ok = _step_rows(KR, lists, s, nsteps, jn, BN)
            _issue_step(K, V, k_smem, v_smem, s, k_idx, ok, skn, svn, jn, offs_d, STAGES)

        # step 0: scores only
        cp.wait_group(STAGES - 3)
        gl.thread_barrier()
        fence_async_shared()
        k_idx, ok = _step_rows(KR, lists, STAGES - 2, nsteps, jn, BN)
        _issue_step(K, V, k_smem, v_smem, STAGES - 2, k_idx, ok, skn, svn, jn, offs_d, STAGES)
        s_zero = gl.zeros([BM, BN], gl.float32, s_layout)
        S = warpgroup_mma(q_smem, k_smem.index(0).permute((1, 0)), s_zero, use_acc=False)
        m_i = gl.full([BM], -1.0e30, gl.float32, gl.SliceLayout(1, s_layout))
        l_i = gl.zeros([BM], gl.float32, gl.SliceLayout(1, s_layout))
        bias = gl.load(KB + lists + jn_s)
        m_i, alpha, p, l_i = _scores(S, bias, qk_scale, m_i, l_i)
        P = gl.convert_layout(p.to(dtype), p_layout)
        acc = gl.zeros([BM, D], gl.float32, o_layout)
        b_next = gl.load(KB + lists + BN + jn_s, mask=nsteps > 1, other=0.0)

        # step i: scores of i and P·V of i-1 on the tensor cores together; i's softmax while
        # the P·V product runs
        for i in range(1, nsteps):
            cp.wait_group(STAGES - 3)
            gl.thread_barrier()       # every warp's copies of step i landed
            fence_async_shared()      # cp.async wrote through the generic proxy, wgmma reads async
            # the rows of the step issued at the end of this one: their load's latency hides
            # behind this step's products (loaded just before the copies, it stalled every step)
            k_idx, ok = _step_rows(KR, lists, i + STAGES - 2, nsteps, jn, BN)
            # the biases before the products are issued: loaded after, they were put in registers
            # the P·V product still reads (ptxas then waits for that product before the softmax)
            # the next step's biases a step ahead: loaded just before use, their latency stalled
            # every step (ncu: a third of the stall cycles waited on L1TEX)
            bias = b_next
            b_next = gl.load(KB + lists + (i + 1) * BN + jn_s, mask=i + 1 < nsteps, other=0.0)
            s_tok = warpgroup_mma(q_smem, k_smem.index(i % STAGES).permute((1, 0)), s_zero, use_acc=False,
                                  is_async=True)
            o_tok = warpgroup_mma(P, v_smem.index((i - 1) % STAGES), acc, is_async=True)
            S = warpgroup_mma_wait(num_outstanding=1, deps=(s_tok,))
            m_i, alpha, p, l_i = _scores(S, bias, qk_scale, m_i, l_i)
            acc = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok,))
            acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
            P = gl.convert_layout(p.to(dtype), p_layout)
            # step i+STAGES-2 into the buffers of step i-2, which every warp is done with (the
            # barrier above came after each warpgroup's wait for its product with V of i-2)
            _issue_step(K, V, k_smem, v_smem, i + STAGES - 2, k_idx, ok, skn, svn, jn, offs_d, STAGES)
        acc = warpgroup_mma(P, v_smem.index((nsteps - 1) % STAGES), acc)
        cp.wait_group(0)

        # epilogue in the gather layout: normalise, then store to (or merge into) the original rows
        acc = gl.convert_layout(acc, ld)
        m_r = gl.convert_layout(m_i, gl.SliceLayout(1, ld))
        l_r = gl.convert_layout(l_i, gl.SliceLayout(1, ld))
        l_safe = gl.where(l_r > 0, l_r, 1.0)     # only rows past n can have l = 0
        out_ptr = Out + bh64 * so_h + gl.expand_dims(q_idx * D, 1) + gl.expand_dims(offs_d, 0)
        lse_ptr = Lse + bh64 * sl_h + q_idx
        omask = gl.expand_dims(row_ok, 1)
        if MERGE:
            lse_new = gl.where(l_r > 0, (m_r + gl.log2(l_safe)) * 0.6931471805599453, float("-inf"))
            lse_old = gl.load(lse_ptr, mask=row_ok, other=0.0)
            mx = gl.maximum(lse_old, lse_new)
            m_safe = gl.where(mx == float("-inf"), 0.0, mx)   # both parts empty: weights 0, lse -inf
            w_old = gl.exp(lse_old - m_safe)
            w_new = gl.exp(lse_new - m_safe)
            tot = w_old + w_new
            inv = gl.where(tot > 0, 1.0 / tot, 0.0)
            old = gl.load(out_ptr, mask=omask, other=0.0).to(gl.float32)
            merged = old * gl.expand_dims(w_old * inv, 1) + acc * gl.expand_dims(w_new * inv / l_safe, 1)
            gl.store(out_ptr, merged.to(dtype), mask=omask)
            gl.store(lse_ptr, m_safe + gl.log(tot), mask=row_ok)
        else:
            gl.store(out_ptr, (acc / gl.expand_dims(l_safe, 1)).to(dtype), mask=omask)
            gl.store(lse_ptr, (m_r + gl.log2(l_safe)) * 0.6931471805599453, mask=row_ok)
        if ZERO_DKDV:
            k_rows = gl.load(KO + bh64 * n + rows, mask=row_ok, other=0)
            dst = DKV + bh64 * sz_h + gl.expand_dims(k_rows * D, 1) + gl.expand_dims(offs_d, 0)
            zero = gl.zeros([BM, D], DKV.dtype.element_ty, ld)
            gl.store(dst, zero, mask=omask)
            gl.store(dst + sz_kv, zero, mask=omask)


# (BM query rows, BN keys per step, warps, STAGES, register cap) per head_dim.  d = 64: 128
# registers let two programs share an SM (uncapped ptxas takes 136, no spills either way).
CONFIGS = {64: (128, 64, 8, 4, 128), 128: (128, 64, 8, 3, None)}


def applies(q: torch.Tensor, list_len: int) -> bool:
    """Whether this kernel runs the forward for q with key lists of list_len entries."""
    d = q.shape[-1]
    return d in CONFIGS and list_len % CONFIGS[d][1] == 0 and available(q)


def list_forward(q, k, v, q_order, rows, bias, out, lse, *, H: int, U: int, qk_scale: float,
                 out_head_stride: int, lse_head_stride: int, merge: bool, k_order=None, zero=None):
    """The key-list forward of _list_kernel (see its docstring and this module's) on this kernel;
    q, k, v [B, H, n, d] with unit column stride, rows / bias the key lists [B, H, NL, L]."""
    B, _, n, d = q.shape
    bm, bn, warps, stages, maxnreg = CONFIGS[d]
    caps = {} if maxnreg is None else {"maxnreg": maxnreg}
    _list_fwd_kernel[(-(-n // bm), B * H)](
        q, k, v, q_order, rows, bias, out, lse, q_order if k_order is None else k_order,
        out if zero is None else zero, q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1),
        k.stride(2), v.stride(0), v.stride(1), v.stride(2), H, n, rows.shape[-1], rows.shape[2], U, qk_scale,
        out_head_stride, lse_head_stride, n * d, 0 if zero is None else zero.stride(0),
        D=d, BM=bm, BN=bn, STAGES=stages, MERGE=merge, ZERO_DKDV=zero is not None, num_warps=warps, **caps)
