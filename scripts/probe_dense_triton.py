"""How fast can Triton 3.6 run plain dense attention on this GPU?  A probe, not a kernel.

    python3 scripts/probe_dense_triton.py [--ns=16384] [--ds=64,128] [--backward=1] [--more-dkdv=1]

The non-causal forward goal (1.6 ms at n = 131072) needs the key-list forward to compute its
2.15 G scores faster than SDPA cuDNN computes dense ones (kernels/NOTES_BY_VERSION.md, v18). This measures
the ceiling that Triton itself sets: `_dense_forward` is the textbook online-softmax forward with
no gathers, no biases and no lists, every Q, K and V tile loaded through a TMA descriptor, run
over several tile shapes, pipeline depths and Triton's Hopper warp specialisation. It is timed
beside SDPA cuDNN and flash at the same shape. Rates are in scores per second: n² × B × H over the
median time (do_bench), so they compare directly with the key-list kernel's (its scores are
n × 512 × B × H). Each config's output is checked against SDPA's first. Then the backward the
same way: FlashAttention-2's two dense kernels (dK/dV by key tiles, dQ by query tiles, each
recomputing P from the row's log-sum-exp) beside SDPA's backward (its forward+backward less its
forward), gradients checked against SDPA's.
Prints everything; writes probe_dense_triton.json to $OUT (or gpu_out/ in the repository).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.nn.attention import SDPBackend, sdpa_kernel

from probe_out import arg, ms, note, save   # this script's folder is on sys.path
from probe_tma_ws import online_softmax_step, rows_descriptor

LOG2E = 1.4426950408889634


@triton.jit
def _head_descriptors(Q, X, K, V, rows_total, D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    """TMA descriptors over [B·H·n, D] rows: Q and X (the output, or dO) BM rows at a time, K and V
    BN rows."""
    return (rows_descriptor(Q, rows_total, D, BM), rows_descriptor(X, rows_total, D, BM),
            rows_descriptor(K, rows_total, D, BN), rows_descriptor(V, rows_total, D, BN))


@triton.jit
def _dense_forward(Q, K, V, Out, n, qk_scale, rows_total, D: tl.constexpr, BM: tl.constexpr,
                   BN: tl.constexpr, WS: tl.constexpr):
    """One query tile of one head over every key of that head; q/k/v/out are [B·H·n, D]."""
    pid, bh = tl.program_id(0), tl.program_id(1)
    desc_q, desc_o, desc_k, desc_v = _head_descriptors(Q, Out, K, V, rows_total, D, BM, BN)
    row0 = bh * n
    q = desc_q.load([row0 + pid * BM, 0])
    m_i = tl.full([BM], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BM], dtype=tl.float32)
    acc = tl.zeros([BM, D], dtype=tl.float32)
    for j in tl.range(0, n, BN, warp_specialize=WS):
        k = desc_k.load([row0 + j, 0])
        v = desc_v.load([row0 + j, 0])
        m_i, l_i, acc = online_softmax_step(tl.dot(q, k.T) * qk_scale, v, m_i, l_i, acc)
    desc_o.store([row0 + pid * BM, 0], (acc / l_i[:, None]).to(Out.dtype.element_ty))


def dense_forward(q, k, v, config):
    """q, k, v [B, H, n, D] contiguous, n a multiple of the tile sizes."""
    bm, bn, warps, stages, ws = config
    B, H, n, D = q.shape
    out = torch.empty_like(q)
    _dense_forward[(n // bm, B * H)](q, k, v, out, n, LOG2E / math.sqrt(D), B * H * n, D=D, BM=bm,
                                      BN=bn, WS=ws, num_warps=warps, num_stages=stages)
    return out


@triton.jit
def _dense_dkdv(Q, K, V, DO, Lse2, Delta, DK, DV, n, qk_scale, sm_scale, rows_total, D: tl.constexpr,
                BM: tl.constexpr, BN: tl.constexpr):
    """dK, dV of one key tile of one head over every query of that head (FlashAttention-2's
    backward). Lse2: each query row's log-sum-exp of its scaled scores in the exp2 domain;
    Delta: rowsum(dO ∘ O)."""
    pid, bh = tl.program_id(0), tl.program_id(1)
    desc_q, desc_do, desc_k, desc_v = _head_descriptors(Q, DO, K, V, rows_total, D, BM, BN)
    row0 = bh * n
    k = desc_k.load([row0 + pid * BN, 0])
    v = desc_v.load([row0 + pid * BN, 0])
    dk = tl.zeros([BN, D], dtype=tl.float32)
    dv = tl.zeros([BN, D], dtype=tl.float32)
    for i in tl.range(0, n, BM):
        q = desc_q.load([row0 + i, 0])
        do = desc_do.load([row0 + i, 0])
        rows = row0 + i + tl.arange(0, BM)
        p = tl.exp2(tl.dot(q, k.T) * qk_scale - tl.load(Lse2 + rows)[:, None])
        dv += tl.dot(p.to(do.dtype).T, do)
        ds = p * (tl.dot(do, v.T) - tl.load(Delta + rows)[:, None])
        dk += tl.dot(ds.to(q.dtype).T, q)
    tl.store(DK + (row0 + pid * BN + tl.arange(0, BN))[:, None] * D + tl.arange(0, D)[None, :],
             (dk * sm_scale).to(DK.dtype.element_ty))
    tl.store(DV + (row0 + pid * BN + tl.arange(0, BN))[:, None] * D + tl.arange(0, D)[None, :],
             dv.to(DV.dtype.element_ty))


@triton.jit
def _dense_dq(Q, K, V, DO, Lse2, Delta, DQ, n, qk_scale, sm_scale, rows_total, D: tl.constexpr,
              BM: tl.constexpr, BN: tl.constexpr):
    """dQ of one query tile of one head over every key of that head."""
    pid, bh = tl.program_id(0), tl.program_id(1)
    desc_q, desc_do, desc_k, desc_v = _head_descriptors(Q, DO, K, V, rows_total, D, BM, BN)
    row0 = bh * n
    rows = row0 + pid * BM + tl.arange(0, BM)
    q = desc_q.load([row0 + pid * BM, 0])
    do = desc_do.load([row0 + pid * BM, 0])
    lse2 = tl.load(Lse2 + rows)
    delta = tl.load(Delta + rows)
    dq = tl.zeros([BM, D], dtype=tl.float32)
    for j in tl.range(0, n, BN):
        k = desc_k.load([row0 + j, 0])
        v = desc_v.load([row0 + j, 0])
        p = tl.exp2(tl.dot(q, k.T) * qk_scale - lse2[:, None])
        ds = p * (tl.dot(do, v.T) - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k)
    tl.store(DQ + rows[:, None] * D + tl.arange(0, D)[None, :], (dq * sm_scale).to(DQ.dtype.element_ty))


def row_stats(q, k, out, dout):
    """(Lse2, Delta) of the dense attention: each row's log-sum-exp of its scores in the exp2
    domain (fp32, from fp32 scores a head at a time) and rowsum(dO ∘ O)."""
    B, H, n, D = q.shape
    lse2 = torch.empty(B, H, n, device=q.device, dtype=torch.float32)
    for b in range(B):
        for h in range(H):
            scores = (q[b, h].float() @ k[b, h].float().T) * (LOG2E / math.sqrt(D))
            lse2[b, h] = torch.logsumexp(scores / LOG2E, dim=-1) * LOG2E
    return lse2, (dout.float() * out.float()).sum(-1)


def dense_dkdv(q, k, v, dout, lse2, delta, config):
    """(dk, dv) of dense attention; config (keys a program, queries a step, warps, stages)."""
    B, H, n, D = q.shape
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    bn, bm, warps, stages = config
    _dense_dkdv[(n // bn, B * H)](q, k, v, dout, lse2, delta, dk, dv, n, LOG2E / math.sqrt(D),
                                   1 / math.sqrt(D), B * H * n, D=D, BM=bm, BN=bn, num_warps=warps,
                                   num_stages=stages)
    return dk, dv


def dense_dq(q, k, v, dout, lse2, delta, config):
    """dq of dense attention; config (queries a program, keys a step, warps, stages)."""
    B, H, n, D = q.shape
    dq = torch.empty_like(q)
    bm, bn, warps, stages = config
    _dense_dq[(n // bm, B * H)](q, k, v, dout, lse2, delta, dq, n, LOG2E / math.sqrt(D),
                                 1 / math.sqrt(D), B * H * n, D=D, BM=bm, BN=bn, num_warps=warps,
                                 num_stages=stages)
    return dq


# (keys, queries a step, warps, stages) for dK/dV; (queries, keys a step, warps, stages) for dQ
BWD_CONFIGS = [(128, 64, 8, 2), (128, 64, 8, 3), (64, 64, 4, 3), (128, 32, 8, 3), (128, 128, 8, 2)]
# More dK/dV tiles around the best of the first five (64, 64, 4, 3), asked for by --more-dkdv=1
MORE_DKDV = [(64, 32, 4, 3), (64, 64, 4, 4), (64, 64, 4, 2), (64, 64, 8, 3), (32, 64, 4, 3),
             (64, 128, 8, 2), (64, 128, 4, 2), (128, 32, 4, 3)]


CONFIGS = ([(128, 64, 4, s, ws) for s in (3, 4, 5) for ws in (False, True)]
           + [(128, 64, 8, s, ws) for s in (3, 4) for ws in (False, True)]
           + [(128, 128, 8, s, ws) for s in (2, 3) for ws in (False, True)]
           + [(256, 64, 8, 3, ws) for ws in (False, True)] + [(128, 128, 4, 3, ws) for ws in (False, True)])


def backward(q, k, v, out, tag, scores):
    """SDPA's backward (its forward+backward less its forward, same call) against the two dense
    Triton kernels, each at its best config; gradients checked against SDPA's first."""
    dout = torch.randn_like(q)
    leaves = [x.detach().requires_grad_() for x in (q, k, v)]
    want = None
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
        with sdpa_kernel(backend):
            def fwd_bwd():
                return torch.autograd.grad(F.scaled_dot_product_attention(*leaves), leaves, dout)
            want = want or fwd_bwd()
            total = ms(fwd_bwd)
            with torch.no_grad():
                fwd = ms(lambda: F.scaled_dot_product_attention(*leaves))
        note(f"{tag} SDPA {name} backward (fwd+bwd {total:.3f} − fwd {fwd:.3f})",
             f"{total - fwd:.3f} ms, {scores / (total - fwd) / 1e9:.3f} T scores/s")
    lse2, delta = row_stats(q, k, out, dout)
    best = {}
    dkdv_configs = BWD_CONFIGS + (MORE_DKDV if arg("more-dkdv", "0") == "1" else [])
    for kind, run, configs in (("dk,dv", dense_dkdv, dkdv_configs), ("dq", dense_dq, BWD_CONFIGS)):
        for config in configs:
            try:
                got = run(q, k, v, dout, lse2, delta, config)
                got = got if isinstance(got, tuple) else (got,)
                ref = want[1:] if kind == "dk,dv" else want[:1]
                err = max(float((g.float() - r.float()).abs().max() / r.float().abs().max()) for g, r in zip(got, ref))
                if not err < 3e-2:
                    note(f"{tag} triton {kind} {config}", f"wrong (relative error {err:.2e})")
                    continue
                t = ms(lambda: run(q, k, v, dout, lse2, delta, config))
            except Exception as exc:   # out of shared memory, or a compile failure
                note(f"{tag} triton {kind} {config}", f"failed: {type(exc).__name__}: {str(exc)[:120]}")
                continue
            note(f"{tag} triton {kind} {config}", f"{t:.3f} ms, error {err:.1e}")
            best[kind] = min(best.get(kind, (t, config)), (t, config))
    if len(best) == 2:
        t = best["dk,dv"][0] + best["dq"][0]
        note(f"{tag} triton backward best (dk,dv {best['dk,dv'][1]} + dq {best['dq'][1]})",
             f"{t:.3f} ms, {scores / t / 1e9:.3f} T scores/s")


def main():
    triton.set_allocator(lambda size, alignment, stream: torch.empty(size, device="cuda", dtype=torch.int8))
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    for d in (int(x) for x in arg("ds", "64,128").split(",")):
        for n in (int(x) for x in arg("ns", "16384").split(",")):
            gen = torch.Generator(device="cuda").manual_seed(0)
            q, k, v = (torch.randn(1, 32, n, d, device="cuda", generator=gen).bfloat16() for _ in range(3))
            scores = n * n * 32
            tag = f"d={d} n={n}"
            want = F.scaled_dot_product_attention(q, k, v)
            for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
                with sdpa_kernel(backend):
                    t = ms(lambda: F.scaled_dot_product_attention(q, k, v))
                note(f"{tag} SDPA {name}", f"{t:.3f} ms, {scores / t / 1e9:.3f} T scores/s")
            best = None
            for config in CONFIGS:
                try:
                    got = dense_forward(q, k, v, config)
                    err = float((got.float() - want.float()).abs().max() / want.float().abs().max())
                    if not err < 2e-2:
                        note(f"{tag} triton {config}", f"wrong (relative error {err:.2e})")
                        continue
                    t = ms(lambda: dense_forward(q, k, v, config))
                except Exception as exc:   # out of shared memory, or a compile failure
                    note(f"{tag} triton {config}", f"failed: {type(exc).__name__}: {str(exc)[:120]}")
                    continue
                note(f"{tag} triton {config}", f"{t:.3f} ms, {scores / t / 1e9:.3f} T scores/s, error {err:.1e}")
                best = min(best or (t, config), (t, config))
            if best:
                note(f"{tag} triton best", f"{best[0]:.3f} ms {best[1]}: {scores / best[0] / 1e9:.3f} T scores/s")
            if arg("backward", "1") == "1":
                backward(q, k, v, want, tag, scores)
    save("probe_dense_triton.json")


if __name__ == "__main__":
    main()
