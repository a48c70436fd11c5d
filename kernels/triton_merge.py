"""In-place log-sum-exp merge for inference (kernels/hyper_attention.merge_partials is the spec).

The causal recursion merges, at every level, the bottom rows' diagonal part with their
lower-left part. In PyTorch that is about ten passes over fp32 copies of the output plus a
torch.cat; here it is one pass: read both partial outputs and lse, write the merged rows over
the first partial. Only for tensors that need no gradient (the driver checks).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import cdiv, launch_in_chunks


@triton.jit
def _merge_kernel(o1, l1, o2, l2, rows, heads,
                  s1b, s1h, s1n, t1b, t1h, s2b, s2h, s2n, t2b, t2h, first,
                  D: tl.constexpr, BR: tl.constexpr):
    r = tl.program_id(0) * BR + tl.arange(0, BR)
    bh = tl.program_id(1) + first                  # first: the launch's first head (launch_in_chunks)
    # 64-bit: b and h times their strides pass 2^31 elements in a large batch (B = 16 at n = 131072)
    b, h = (bh // heads).to(tl.int64), (bh % heads).to(tl.int64)
    ok = r < rows
    cols = tl.arange(0, D)
    lse1 = tl.load(l1 + b * t1b + h * t1h + r, mask=ok, other=0.0)
    lse2 = tl.load(l2 + b * t2b + h * t2h + r, mask=ok, other=0.0)
    m = tl.maximum(lse1, lse2)
    m_safe = tl.where(m == float("-inf"), 0.0, m)      # both parts empty: weights 0, lse -inf
    w1, w2 = tl.exp(lse1 - m_safe), tl.exp(lse2 - m_safe)
    tot = w1 + w2
    inv = tl.where(tot > 0, 1.0 / tot, 0.0)
    p1 = o1 + b * s1b + h * s1h + r[:, None] * s1n + cols[None, :]
    p2 = o2 + b * s2b + h * s2h + r[:, None] * s2n + cols[None, :]
    x1 = tl.load(p1, mask=ok[:, None], other=0.0).to(tl.float32)
    x2 = tl.load(p2, mask=ok[:, None], other=0.0).to(tl.float32)
    merged = x1 * (w1 * inv)[:, None] + x2 * (w2 * inv)[:, None]
    tl.store(p1, merged.to(o1.dtype.element_ty), mask=ok[:, None])
    tl.store(l1 + b * t1b + h * t1h + r, m_safe + tl.log(tot), mask=ok)


def merge_into(out1: torch.Tensor, lse1: torch.Tensor, out2: torch.Tensor, lse2: torch.Tensor):
    """out1, lse1 ← attention over the union of both key sets (out [B, H, r, d] any row stride,
    unit column stride; lse [B, H, r] fp32 with unit row stride). Returns (out1, lse1)."""
    B, H, rows, d = out1.shape
    if out2.shape != out1.shape or lse1.shape != (B, H, rows) or lse2.shape != (B, H, rows):
        raise ValueError(f"merge_into: shapes {tuple(out1.shape)}, {tuple(lse1.shape)}, "
                         f"{tuple(out2.shape)}, {tuple(lse2.shape)} do not match")
    if out1.stride(-1) != 1 or out2.stride(-1) != 1 or lse1.stride(-1) != 1 or lse2.stride(-1) != 1:
        raise ValueError("merge_into needs unit stride along head_dim and along the rows of lse")
    if d & (d - 1):
        raise ValueError(f"merge_into needs a power-of-two head_dim, got {d}")
    br = max(1, min(64, 8192 // d))
    launch_in_chunks(
        _merge_kernel, (cdiv(rows, br), B * H), out1, lse1, out2, lse2, rows, H,
        out1.stride(0), out1.stride(1), out1.stride(2), lse1.stride(0), lse1.stride(1),
        out2.stride(0), out2.stride(1), out2.stride(2), lse2.stride(0), lse2.stride(1),
        D=d, BR=br, num_warps=4)
    return out1, lse1
