"""Δ = rowsum(dO ∘ O) − dlse, the per-row term every attention backward starts from.

In PyTorch it is five passes at n = 131072 (both inputs cast to fp32, a product, a sum, the
subtraction): about 3 ms of a 17 ms forward+backward on the H200. Here it is one pass that reads
dO and O once in their own dtype and writes the fp32 row sums.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import cdiv

# Elements of dO (and of O) per program, and warps per program (module-level so that
# scripts/gpu_probe.py --parts=deltatiles can sweep them).
TILE_ELEMENTS = 8192
WARPS = 4


def delta_reference(dout: torch.Tensor, out: torch.Tensor, dlse: torch.Tensor | None) -> torch.Tensor:
    delta = (dout.float() * out.float()).sum(-1)
    return delta if dlse is None else delta - dlse


@triton.jit
def _delta_kernel(DO, O, DLSE, DELTA, rows, D: tl.constexpr, BR: tl.constexpr, HAS_DLSE: tl.constexpr):
    # 64-bit rows: row × D passes 2^31 for B·H·n·D of 2^31 elements or more (B = 16 at n = 131072)
    r = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
    ok = r < rows
    cols = tl.arange(0, D)
    do = tl.load(DO + r[:, None] * D + cols[None, :], mask=ok[:, None], other=0.0).to(tl.float32)
    o = tl.load(O + r[:, None] * D + cols[None, :], mask=ok[:, None], other=0.0).to(tl.float32)
    delta = tl.sum(do * o, axis=1)
    if HAS_DLSE:
        delta -= tl.load(DLSE + r, mask=ok, other=0.0)
    tl.store(DELTA + r, delta, mask=ok)


def delta(dout: torch.Tensor, out: torch.Tensor, dlse: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 [..., n] from dout, out [..., n, d] (any float dtype, d a power of two) and dlse [..., n]."""
    d = out.shape[-1]
    if dout.shape != out.shape or d & (d - 1):
        return delta_reference(dout, out, dlse)
    dout, out = dout.contiguous(), out.contiguous()
    res = torch.empty(out.shape[:-1], device=out.device, dtype=torch.float32)
    rows = res.numel()
    br = max(1, min(TILE_ELEMENTS // 64, TILE_ELEMENTS // d))
    dl = None if dlse is None else dlse.float().contiguous()
    _delta_kernel[(cdiv(rows, br),)](dout, out, res if dl is None else dl, res, rows, D=d, BR=br,
                                     HAS_DLSE=dl is not None, num_warps=WARPS)
    return res
