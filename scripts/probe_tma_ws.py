"""Could Triton's Hopper warp specialisation speed up the key-list forward?  A probe, not a kernel.

    python3 scripts/probe_tma_ws.py            # no GPU: compile for sm_90a and say where it engages
    python3 scripts/gpu_probe.py --parts=tmaws # on the H200: time it (see gpu_probe.py)

Triton 3.6 warp-specialises a loop on Hopper (`tl.range(..., warp_specialize=True)`: one producer
warpgroup issuing the copies, two consumer warpgroups of 64 rows each, registers moved between
them by setmaxnreg) only where its loads go through TMA descriptors, which read contiguous boxes.
The key-list forward gathers its query rows and its list's key and value rows through the sort
permutation, so it would need contiguous copies of them first.  `_window_forward` is the forward
on such copies: the sorted queries, and each unit's key list copied out in list order (its block's
keys, then its sample set), every load through a descriptor; the biases and the outputs' rows go
through pointers as in the real kernel.  Same lists, same biases, so its outputs must equal
`block_sample_forward`'s.
"""

from __future__ import annotations

import os
import re
import sys

import triton
import triton.language as tl


@triton.jit
def rows_descriptor(ptr, rows, D: tl.constexpr, BLOCK: tl.constexpr):
    """A TMA descriptor over a row-major [rows, D] tensor, read BLOCK rows at a time."""
    return tl.make_tensor_descriptor(ptr, shape=[rows, D], strides=[D, 1], block_shape=[BLOCK, D])


@triton.jit
def online_softmax_step(qk, v, m_i, l_i, acc):
    """One key step of the online softmax in the exp2 domain: scores qk [BM, BN] (scaled by
    log2 e), values v [BN, D]; returns the new row max, row sum and unnormalised output."""
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(qk - m_new[:, None])
    return m_new, l_i * alpha + tl.sum(p, 1), acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)


@triton.jit
def _window_forward(QS, Q, QO, KC, VC, KB, Out, Lse, n, L, NL, qk_scale, q_rows, kc_rows,
                    D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, UNIT: tl.constexpr,
                    WS: tl.constexpr, Q_GATHER: tl.constexpr):
    """Query tile pid of head bh over its unit's key list.  QS: sorted queries [B·H·n, D]; KC, VC:
    every unit's key list copied out [B·H·NL·L, D]; KB: the lists' exp2-domain biases; QO: the
    sort order, by which out and lse go to the original rows.  Q_GATHER: gather the queries from Q
    through QO instead (as the real kernel does), to see whether warp specialisation takes it."""
    pid, bh = tl.program_id(0), tl.program_id(1)
    bh64 = bh.to(tl.int64)
    offs_d = tl.arange(0, D)
    rows = pid * BM + tl.arange(0, BM)
    if Q_GATHER:
        q_idx = tl.load(QO + bh64 * n + rows)
        q = tl.load(Q + bh64 * n * D + q_idx[:, None] * D + offs_d[None, :])
    else:
        desc_q = rows_descriptor(QS, q_rows, D, BM)
        q = desc_q.load([bh * n + pid * BM, 0])
    desc_k = rows_descriptor(KC, kc_rows, D, BN)
    desc_v = rows_descriptor(VC, kc_rows, D, BN)
    first = (bh * NL + (pid * BM) // UNIT) * L          # the unit's list, as a row of KC
    m_i = tl.full([BM], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BM], dtype=tl.float32)
    acc = tl.zeros([BM, D], dtype=tl.float32)
    for j in tl.range(0, L, BN, warp_specialize=WS):
        k = desc_k.load([first + j, 0])
        v = desc_v.load([first + j, 0])
        qk = tl.dot(q, k.T) * qk_scale + tl.load(KB + first + j + tl.arange(0, BN))[None, :]
        m_i, l_i, acc = online_softmax_step(qk, v, m_i, l_i, acc)
    q_idx = tl.load(QO + bh64 * n + rows)
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    tl.store(Out + bh64 * n * D + q_idx[:, None] * D + offs_d[None, :], (acc / l_safe[:, None]).to(Out.dtype.element_ty))
    tl.store(Lse + bh64 * n + q_idx, (m_i + tl.log2(l_safe)) * 0.6931471805599453)


def window_forward(qs, q, q_order, kc, vc, bias, *, unit: int, qk_scale: float, tiles, ws: bool,
                   q_gather: bool = False):
    """(out, lse) of _window_forward.  qs, q [B, H, n, D]; kc, vc [B, H, NL, L, D]; bias [B, H, NL,
    L]; tiles (BM, BN, warps, stages)."""
    import torch
    B, H, n, D = q.shape
    NL, L = kc.shape[2], kc.shape[3]
    bm, bn, warps, stages = tiles
    out = torch.empty_like(q)
    lse = torch.empty(B, H, n, device=q.device, dtype=torch.float32)
    _window_forward[(n // bm, B * H)](qs, q, q_order, kc, vc, bias, out, lse, n, L, NL, qk_scale,
                                      B * H * n, B * H * NL * L, D=D, BM=bm, BN=bn, UNIT=unit, WS=ws,
                                      Q_GATHER=q_gather, num_warps=warps, num_stages=stages)
    return out, lse


def list_copies(q, k, v, q_order, rows):
    """The contiguous copies _window_forward reads: the sorted queries [B, H, n, D], and every
    unit's key list (rows: triton_attention.key_lists' [B, H, NL, L] original key rows) copied out
    in list order, keys and values, each [B, H, NL, L, D]."""
    import torch
    B, H, NL, L = rows.shape
    d = q.shape[-1]
    by_list = rows.view(B, H, NL * L).long()[..., None].expand(-1, -1, -1, d)
    sorted_q = torch.gather(q, 2, q_order[..., None].expand(-1, -1, -1, d))
    return (sorted_q, *(torch.gather(x, 2, by_list).view(B, H, NL, L, d) for x in (k, v)))


def use_torch_allocator(device="cuda"):
    """Device-side descriptors need scratch memory from an allocator Triton is given."""
    import torch
    triton.set_allocator(lambda size, alignment, stream: torch.empty(size, device=device, dtype=torch.int8))


def compile_report(tiles, ws: bool, q_gather: bool) -> str:
    """One line: does _window_forward compile for sm_90a, and with how many warps and setmaxnreg
    (the mark of warp specialisation)?  No GPU needed."""
    from kernel_registers import compile_or_why
    bm, bn, warps, stages = tiles
    label = f"tiles {tiles} warp_specialize={ws} queries {'gathered' if q_gather else 'by TMA'}:"
    compiled, why = compile_or_why(_window_forward, dict(D=64, BM=bm, BN=bn, UNIT=256, WS=ws, Q_GATHER=q_gather),
                                   warps, stages)
    if why:
        return f"{label} does not compile ({why})"
    ptx = compiled.asm["ptx"]
    return (f"{label} {compiled.metadata.num_warps} warps, setmaxnreg {ptx.count('setmaxnreg')}, "
            f"TMA loads {ptx.count('cp.async.bulk.tensor')}, wgmma {ptx.count('wgmma.mma_async')}")


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("probe_tma_ws.py: unset TRITON_INTERPRET (the interpreter compiles nothing)")
    print("Triton", triton.__version__, "compiling for sm_90a")
    # A failing compile prints the MLIR reproducer to stderr; only our one-line verdicts matter.
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    for tiles, ws, q_gather in (((128, 64, 8, 3), False, False), ((128, 64, 4, 3), True, False),
                                ((128, 64, 8, 3), True, False), ((128, 64, 4, 3), True, True)):
        os.dup2(devnull, 2)
        try:
            line = compile_report(tiles, ws, q_gather)
        finally:
            os.dup2(saved, 2)
        print(re.sub(r"\s+", " ", line))
