"""A persistent fused backward: could it hide each program's fixed cost?  A probe, not a kernel.

    python3 scripts/probe_persistent_bwd.py            # no GPU: compile for sm_90a, its resources
    python3 scripts/gpu_probe.py --parts=persistent    # on the H200: time it (see gpu_probe.py)

The d = 64 fused backward (`_list_bwd_kernel`) runs one program per SM, and a quarter of its time
does not grow with the key list (gpu_probe.py --parts=gather at e55b862: 1.30 of 5.15 ms): each
program gathers its rows, fills its copy ring for 8 key steps and stores dQ with nothing to hide
behind.  `_persistent_list_bwd` is the same work with one program per SM walking the tiles in turn,
in one loop over (tile, key step) that Triton flattens (`tl.range(..., flatten=True)`), so that the
copy ring runs on across tiles.  The body is `_list_bwd_kernel`'s, from the same helpers.
"""

from __future__ import annotations

import os
import sys

import triton
import triton.language as tl

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kernels.triton_attention import (_grad_rows, _head_ptrs, _list_bwd_keys, _list_tile_queries,  # noqa: E402
                                      _store_dq)


@triton.jit
def _persistent_list_bwd(Q, K, V, QO, TT, KR, KB, Lse, DO, Delta, DQ, DK, DV,
                         sqb, sqh, sqn, skb, skh, skn, svb, svh, svn,
                         H, n, L, NL, n_tiles, BH, qk_scale, so_h, sk_h, sdo_h, sl_h, sdl_h,
                         D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, PREC: tl.constexpr,
                         FLATTEN: tl.constexpr):
    """_list_bwd_kernel (ACCUM 0, atomics for dK/dV) over work items (query tile, head), taken
    by the launch's programs in turn."""
    k_scale = qk_scale * 0.6931471805599453
    for w in tl.range(tl.program_id(0), n_tiles * BH, tl.num_programs(0), flatten=FLATTEN):
        pid, bh = w % n_tiles, w // n_tiles
        Qh, Kh, Vh = _head_ptrs(Q, K, V, bh, H, sqb, sqh, skb, skh, svb, svh)
        lists, row_ok, offs_d, q_idx, q = _list_tile_queries(Qh, QO, TT, pid, bh, n, L, NL, sqn, BM, D, 0)
        do, lse2, delta = _grad_rows(DO, Lse, Delta, bh, sdo_h, sl_h, sdl_h, q_idx, offs_d, row_ok, D)
        dq = tl.zeros([BM, D], dtype=tl.float32)
        keys = (Kh, Vh, KR, KB, lists, skn, svn, offs_d)
        dq = _list_bwd_keys(dq, q, do, lse2, delta, keys, 0, L, qk_scale, k_scale, DK, DV, bh.to(tl.int64) * sk_h,
                            DK, 0, 0, D, BN, PREC, False, False, False)
        _store_dq(DQ, bh.to(tl.int64) * so_h, q_idx, offs_d, row_ok, dq, qk_scale, D, 0)


def persistent_backward(q, k, v, q_order, lists, layout, lse, dout, delta, *, scale: float, programs: int,
                        flatten: bool, tiles, precision: str = "tf32"):
    """(dq, dk, dv) of _persistent_list_bwd: `programs` programs over every (query tile of
    `layout`, head), on `lists` (triton_attention.prepared_lists); dK, dV added into zeros in q's
    dtype, as the fused backward does where few programs add into a key.  tiles (BM, BN, warps,
    stages), BM that of `layout`."""
    import torch
    from kernels import triton_attention as ta
    bm, bn, warps, stages = tiles
    rows, bias = lists
    B, H, n, d = q.shape
    dq, dk, dv = torch.empty_like(q), torch.zeros_like(q), torch.zeros_like(q)
    _persistent_list_bwd[(programs,)](
        q, k, v, q_order, layout.tiles_on(q.device), rows, bias, lse, dout, delta, dq, dk, dv,
        *ta._strides(q), *ta._strides(k), *ta._strides(v), H, n, rows.shape[-1], rows.shape[2], layout.n_tiles,
        B * H, scale * ta.LOG2E, ta._head_stride(dq, H), ta._head_stride(dk, H), *ta._grad_strides(lse, dout, delta, H),
        D=d, BM=bm, BN=bn, PREC=precision, FLATTEN=flatten, num_warps=warps, num_stages=stages)
    return dq, dk, dv


def compile_report(tiles, flatten: bool) -> str:
    """One line: does the kernel compile for sm_90a, and its shared memory (flattening keeps the
    next tile's rows there beside the copy ring), registers and spills.  No GPU needed."""
    from kernel_registers import compile_or_why, ptxas_use
    bm, bn, warps, stages = tiles
    label = f"tiles {tiles} flatten={flatten}:"
    compiled, why = compile_or_why(_persistent_list_bwd, dict(D=64, BM=bm, BN=bn, PREC="tf32", FLATTEN=flatten),
                                   warps, stages)
    if why:
        return f"{label} does not compile ({why})"
    use = ptxas_use(compiled)
    return (f"{label} {compiled.metadata.shared / 1024:.0f} KB of shared memory (an SM has 227), "
            f"{use['registers']} registers, {use['spill_stores']} bytes of spill stores")


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("probe_persistent_bwd.py: unset TRITON_INTERPRET (the interpreter compiles nothing)")
    print("Triton", triton.__version__, "compiling for sm_90a")
    for tiles, flatten in (((256, 64, 8, 5), False), ((256, 64, 8, 5), True), ((256, 64, 8, 3), True),
                          ((256, 64, 8, 2), True)):
        print(compile_report(tiles, flatten))
