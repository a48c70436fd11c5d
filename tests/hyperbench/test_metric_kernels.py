"""metric_kernels.py (Triton, run by the interpreter on CPU) against metrics.py's torch path.

The kernels read 16-bit inputs and must be as accurate as fp32 matmuls on them: the torch path on
the same values cast to fp32 is the reference.  Measured under the interpreter: O 2-4e-7 relative
(Frobenius) for fp16, 4.8e-6 for bf16 with the default two-part split of P (2^-17 per product;
1.9e-7 with BF16_PV_TERMS = 3), lse <= 1.9e-6 absolute (|lse| up to ~18), W 4e-7 to 9e-7
relative (2.9e-6 with scale 1, where most of P is tiny), ||D⁻¹A|| 4e-7 to 7e-7 relative.  The
asserts leave room and stay far below bf16 rounding (4e-3).  Sizes are odd so tiles have tails;
the interpreter's tiles are 64 query rows x 32 keys, so query and key tiles do not line up.
With CUDA the same tests run on the GPU (they pass on the H200).  There, against fp64 up to
n = 16384: O 2-6e-7 (fp16) and 1-2.5e-6 (bf16) relative, W and ||D⁻¹A|| as close as torch's fp32
path.  The interpreter cannot show Hopper's truncating accumulation (see metric_kernels._mm).
"""

import math

import pytest
import torch

from hyperbench import metric_kernels, metrics
from hyperbench.inputs import make_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"   # else the interpreter (conftest)
O_TOL = {torch.float16: 2e-6, torch.bfloat16: 1e-5}   # relative Frobenius error of O, per head
LSE_TOL = 1e-5     # absolute error of the natural-log lse: a few fp32 ulps at |lse| ~ 16
W_TOL = 1e-5       # relative Frobenius error of W, per head and column


def rel_err(a, b, dims):
    a, b = a.double(), b.double()
    return (a - b).norm(dim=dims) / b.norm(dim=dims)


def strided(x, kind):
    """The same values as x [B, H, n, d] in a layout that is not contiguous [B, H, n, d]."""
    if kind == "bnhd":                        # [B, n, H, d] storage seen as [B, H, n, d]
        return x.transpose(1, 2).contiguous().transpose(1, 2)
    if kind == "slice":                       # the second half of a twice-as-long sequence
        return torch.cat([torch.zeros_like(x), x], dim=2)[:, :, x.shape[2]:]
    return x


def draw(n, d, dtype, *, heads=2, spec=None, seed=0):
    return make_inputs(spec or {"name": "gaussian"}, batch=1, heads=heads, seq_len=n,
                       head_dim=d, dtype=dtype, device=DEVICE, seed=seed)


@pytest.mark.parametrize("n_q,n_k,d,causal,dtype,layout,spec,terms", [
    (100, 100, 16, False, torch.float16, "contig", None, 2),
    (100, 100, 32, True, torch.float16, "bnhd", None, 2),
    (257, 257, 64, False, torch.float16, "slice", {"name": "gaussian", "temperature": 4.0}, 2),
    (257, 257, 64, True, torch.float16, "contig", {"name": "heavy_hitters"}, 2),
    (70, 200, 32, True, torch.float16, "slice", None, 2),        # causal with n_q < n_k
    (257, 130, 32, False, torch.float16, "contig", None, 2),     # more queries than keys
    (150, 150, 64, True, torch.bfloat16, "bnhd", {"name": "clustered"}, 2),
    (150, 150, 64, True, torch.bfloat16, "bnhd", {"name": "clustered"}, 3),
])
def test_exact_attention_matches_torch(monkeypatch, n_q, n_k, d, causal, dtype, layout, spec,
                                       terms):
    monkeypatch.setattr(metric_kernels, "BF16_PV_TERMS", terms)
    q = draw(n_q, d, dtype, spec=spec)[0]
    _, k, v = draw(n_k, d, dtype, spec=spec, seed=1)
    q, k, v = (strided(x, layout) for x in (q, k, v))
    scale = 1 / math.sqrt(d)
    o, lse = metric_kernels.exact_attention_fp32(q, k, v, causal=causal, scale=scale)
    o_ref, lse_ref = metrics.exact_reference(q.float(), k.float(), v.float(), causal=causal,
                                             scale=scale)
    assert o.dtype == lse.dtype == torch.float32
    assert o.shape == o_ref.shape and lse.shape == lse_ref.shape
    tol = 2e-6 if terms == 3 else O_TOL[dtype]
    assert float(rel_err(o, o_ref, (-1, -2)).max()) < tol
    assert float((lse - lse_ref).abs().max()) < LSE_TOL


@pytest.mark.parametrize("n_q,n_k,d,causal,r,scale", [
    (100, 100, 16, False, 16, None),
    (257, 257, 64, True, 16, None),
    (70, 200, 32, True, 16, None),           # causal with n_q < n_k
    (257, 130, 32, False, 5, None),          # r padded to 16
    (130, 130, 64, True, 16, 1.0),           # sharp attention: most of P is tiny
])
def test_ptp_apply_matches_torch(n_q, n_k, d, causal, r, scale):
    q = draw(n_q, d, torch.float16, heads=3)[0].flatten(0, 1)
    k = draw(n_k, d, torch.float16, heads=3, seed=1)[1].flatten(0, 1)
    scale = scale or 1 / math.sqrt(d)
    offset = n_k - n_q
    _, lse = metrics.exact_reference(q[None].float(), k[None].float(), k[None].float(),
                                     causal=causal, scale=scale)
    lse = lse[0]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, n_k, r, generator=g).to(DEVICE)
    x[..., -1] *= 1e-6                        # columns of very different size
    x[:, : n_k // 3] *= 1e-3                  # and rows
    w = metric_kernels.ptp_apply(q, k, lse, x, causal=causal, scale=scale)
    w_ref = metrics._apply_ptp(q.float(), k.float(), lse, x, scale=scale, causal=causal,
                               rows=64, offset=offset)
    assert w.shape == w_ref.shape and w.dtype == torch.float32
    assert float(rel_err(w, w_ref, -2).max()) < W_TOL


def test_uses_triton_needs_cuda_and_16_bit():
    q = torch.zeros(1, 1, 8, 64, dtype=torch.float16)
    assert not metrics.uses_triton(q, q, q)                    # CPU: torch path
    if torch.cuda.is_available():
        qc = q.cuda()
        assert metrics.uses_triton(qc, qc, qc) and metrics.uses_triton(qc, qc)
        assert not metrics.uses_triton(qc.float(), qc.float(), qc.float())
        assert not metrics.uses_triton(qc[..., :48], qc[..., :48])   # head_dim 48
        assert not metrics.uses_triton(qc, qc, qc.bfloat16())        # mixed dtypes


@pytest.fixture
def triton_path(monkeypatch):
    """The Triton path for all 16-bit inputs, CPU ones too (the interpreter runs it there)."""
    monkeypatch.setattr(metrics, "uses_triton",
                        lambda *ts: all(t.dtype in (torch.float16, torch.bfloat16) for t in ts))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_norm_triton_path_matches_torch(triton_path, causal):
    q, k, _ = draw(130, 32, torch.float16, spec={"name": "clustered"})
    scale = 1 / math.sqrt(32)
    _, lse = metrics.exact_reference(q, k, k, causal=causal, scale=scale)      # Triton
    _, lse_t = metrics.exact_reference(q.float(), k.float(), k.float(), causal=causal,
                                       scale=scale)                          # torch
    assert float((lse - lse_t).abs().max()) < LSE_TOL
    got, iters, conv = metrics.attention_matrix_norm(q, k, lse, causal=causal, scale=scale,
                                                     tol=1e-7)
    want, _, _ = metrics.attention_matrix_norm(q.float(), k.float(), lse_t, causal=causal,
                                               scale=scale, tol=1e-7)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=0)
    assert bool(conv.all())
    # against the dense matrix in fp64
    s = (q.double() @ k.double().transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(~torch.ones(130, 130, dtype=torch.bool, device=s.device).tril(),
                          -math.inf)
    dense = torch.linalg.matrix_norm(torch.softmax(s, dim=-1), ord=2).cpu()
    torch.testing.assert_close(got, dense, rtol=1e-4, atol=0)


def test_attention_errors_through_triton_path(triton_path):
    """End to end: the exact output (rounded to fp16) has only fp16 rounding error."""
    q, k, v = draw(100, 16, torch.float16)
    scale = 0.25
    o, lse = metrics.exact_reference(q, k, v, causal=True, scale=scale)
    assert o.dtype == torch.float32 and o.shape == q.shape
    r = metrics.attention_errors(q, k, v, o, causal=True, scale=scale, lse=lse)
    assert r["rel_fro_err"] < 1e-12 and r["lse_err_max"] == 0          # same kernel, same answer
    r16 = metrics.attention_errors(q, k, v, o.half(), causal=True, scale=scale)
    assert 1e-5 < r16["rel_fro_err"] < 1e-3 and r16["norm_converged"]


def test_launches_cut_past_the_grid_limit_give_the_same_results(monkeypatch):
    """More batch·heads than a CUDA grid axis takes (65535): the launches are cut (here into twos,
    kernels/launch.py) and each adds its first head; the results are those of one launch."""
    from hyperbench_kernels import launch
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 5, 40, 16, generator=g).to(torch.float16).to(DEVICE) for _ in range(3))
    x = torch.randn(5, 40, 3, generator=g).to(DEVICE)

    def run():
        out, lse = metric_kernels.exact_attention_fp32(q, k, v, causal=True, scale=0.25)
        return out, lse, metric_kernels.ptp_apply(q[0], k[0], lse[0], x, causal=True, scale=0.25)
    whole = run()
    monkeypatch.setattr(launch, "MAX_GRID_YZ", 2)
    for a, b in zip(run(), whole):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
