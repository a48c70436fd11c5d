"""metrics.py against dense float64 linear algebra (SVD of the materialised n×n matrix)."""

import math
import os
import subprocess
import sys

import pytest
import torch

from hyperbench import metrics
from hyperbench.inputs import make_inputs
from hyperbench.metrics import (attention_errors, attention_matrix_norm, exact_reference,
                                gram_spectral_norm, head_errors)
from hyperbench_kernels.reference import exact_attention

DISTS = [{"name": "gaussian"}, {"name": "gaussian", "temperature": 4.0}, {"name": "clustered"},
         {"name": "heavy_hitters"}, {"name": "low_rank"}]


def dense_p(q, k, *, causal, scale):
    """D⁻¹A materialised in fp64: [B, H, n_q, n_k]."""
    s = (q.double() @ k.double().transpose(-1, -2)) * scale
    if causal:
        n_q, n_k = s.shape[-2:]
        mask = torch.ones(n_q, n_k, dtype=torch.bool).tril(n_k - n_q)
        s = s.masked_fill(~mask, -math.inf)
    return torch.softmax(s, dim=-1)


def inputs(spec, n, *, d=32, heads=2, batch=1, dtype=torch.float64, seed=0):
    return make_inputs(spec, batch=batch, heads=heads, seq_len=n, head_dim=d, dtype=dtype,
                       device="cpu", seed=seed)


def spec2(x):
    return torch.linalg.matrix_norm(x.double(), ord=2)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", [37, 301])
def test_exact_reference_matches_dense(n, causal):
    q, k, v = inputs({"name": "gaussian"}, n)
    scale = 1 / math.sqrt(q.shape[-1])
    p = dense_p(q, k, causal=causal, scale=scale)
    for chunk in (None, 1, 16, n + 5):
        o, lse = exact_reference(q, k, v, causal=causal, scale=scale, query_chunk=chunk)
        assert o.dtype == torch.float64 and lse.shape == q.shape[:-1]
        torch.testing.assert_close(o, p @ v, rtol=1e-10, atol=1e-12)
        ref_out, ref_lse = exact_attention(q, k, v, causal=causal, scale=scale)
        torch.testing.assert_close(lse, ref_lse, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("spec", DISTS, ids=lambda s: "-".join(map(str, s.values())))
def test_attention_norm_matches_dense_svd(spec, causal):
    q, k, _ = inputs(spec, 256, heads=3)
    scale = 1 / math.sqrt(q.shape[-1])
    _, lse = exact_reference(q, k, k, causal=causal, scale=scale)
    norms, iters, conv = attention_matrix_norm(q, k, lse, causal=causal, scale=scale, tol=1e-3)
    dense = spec2(dense_p(q, k, causal=causal, scale=scale))
    torch.testing.assert_close(norms, dense, rtol=1e-3, atol=0)   # the stated tolerance holds
    assert bool(conv.all()) and int(iters.max()) <= 100
    assert bool((norms >= 1 - 1e-9).all())            # rows of D⁻¹A sum to 1


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("spec", DISTS[2:4], ids=lambda s: s["name"])
def test_attention_norm_with_the_gpus_eigenvalues(monkeypatch, spec, causal):
    """The Lanczos step's Ritz value as on a GPU (repeated squaring of T): the same norms, the
    same passes, and the Krylov space exhausted (n = 40 < 8 × 6 columns) still exact."""
    for n in (256, 40):
        q, k, _ = inputs(spec, n, heads=3)
        scale = 1 / math.sqrt(q.shape[-1])
        _, lse = exact_reference(q, k, k, causal=causal, scale=scale)
        want = attention_matrix_norm(q, k, lse, causal=causal, scale=scale, tol=1e-6)
        monkeypatch.setattr(metrics, "top_eigenvalue", metrics.largest_eigenvalue)
        got = attention_matrix_norm(q, k, lse, causal=causal, scale=scale, tol=1e-6)
        monkeypatch.undo()
        torch.testing.assert_close(got[0], want[0], rtol=1e-8, atol=0)
        assert torch.equal(got[1], want[1]) and bool(got[2].all())
        if n == 40:
            torch.testing.assert_close(got[0], spec2(dense_p(q, k, causal=causal, scale=scale)),
                                       rtol=1e-8, atol=0)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", [37, 301, 1024])
def test_attention_norm_odd_and_large_n(n, causal):
    q, k, _ = inputs({"name": "gaussian"}, n, d=64, dtype=torch.float32)
    scale = 1 / math.sqrt(64)
    _, lse = exact_reference(q, k, k, causal=causal, scale=scale)
    norms, _, _ = attention_matrix_norm(q, k, lse, causal=causal, scale=scale, query_chunk=100)
    dense = spec2(dense_p(q, k, causal=causal, scale=scale))
    torch.testing.assert_close(norms, dense, rtol=1e-2, atol=0)
    if causal:                                         # causal attention is far from uniform
        assert bool((norms > 1.3).all())


def test_attention_norm_tiny_budget_same_answer(monkeypatch):
    """Forcing one head per group and few rows per chunk must not change anything."""
    q, k, _ = inputs({"name": "clustered"}, 130, heads=3, batch=2)
    scale = 0.2
    _, lse = exact_reference(q, k, k, causal=True, scale=scale)
    want, _, _ = attention_matrix_norm(q, k, lse, causal=True, scale=scale, tol=1e-9)
    monkeypatch.setattr(metrics, "SCORE_BUDGET_BYTES", 130 * 8 * 7)
    assert metrics._plan(6, 130, 130, 8, None) == (1, 7)
    o2, lse2 = exact_reference(q, k, k, causal=True, scale=scale)
    torch.testing.assert_close(lse2, lse, rtol=1e-12, atol=1e-12)
    got, _, _ = attention_matrix_norm(q, k, lse, causal=True, scale=scale, tol=1e-9)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    torch.testing.assert_close(got, spec2(dense_p(q, k, causal=True, scale=scale)), rtol=1e-6,
                               atol=0)


@pytest.mark.parametrize("cached", [True, False])
def test_converged_heads_leave_the_group(monkeypatch, cached):
    """Heads that converge early stop iterating (each pass serves only the live heads); the
    others go on, and every head keeps the stated tolerance against the dense norm. Both with
    each head's P formed once and with P formed again in every pass (a query_chunk forces that)."""
    easy = inputs({"name": "gaussian"}, 384, heads=2)
    hard = inputs({"name": "heavy_hitters", "strength": 6.0}, 384, heads=2)
    q, k = (torch.cat([e, h], dim=1) for e, h in zip(easy[:2], hard[:2]))
    scale = 1 / math.sqrt(q.shape[-1])
    _, lse = exact_reference(q, k, k, causal=False, scale=scale)
    head_passes = []
    name = "_apply_cached" if cached else "_apply_ptp"
    real = getattr(metrics, name)

    def counting(first, *args, **kw):
        head_passes.append(first.shape[0])
        return real(first, *args, **kw)
    monkeypatch.setattr(metrics, name, counting)
    chunk = None if cached else 384
    assert metrics.caches_probabilities(q, k, query_chunk=chunk) == cached
    norms, iters, conv = attention_matrix_norm(q, k, lse, causal=False, scale=scale, tol=1e-3,
                                               query_chunk=chunk)
    assert int(iters[0, :2].max()) < int(iters[0, 2:].min())
    assert sum(head_passes) == int(iters.sum()) and head_passes[-1] < 4
    torch.testing.assert_close(norms, spec2(dense_p(q, k, causal=False, scale=scale)), rtol=1e-3,
                               atol=0)
    assert bool(conv.all())


@pytest.mark.parametrize("causal", [False, True])
def test_probabilities_formed_once_give_the_same_norms(monkeypatch, causal):
    """P formed once per group of heads (the default wherever it fits) against P formed again in
    every pass: the same passes and norms, at an odd n, with heads that retire at different passes
    and groups that do not divide the heads (a budget of two heads' P and basis)."""
    easy = inputs({"name": "gaussian"}, 333, heads=2, batch=2)
    hard = inputs({"name": "heavy_hitters", "strength": 6.0}, 333, heads=1, batch=2)
    q, k = (torch.cat([e, h], dim=1) for e, h in zip(easy[:2], hard[:2]))
    scale = 1 / math.sqrt(q.shape[-1])
    _, lse = exact_reference(q, k, k, causal=causal, scale=scale)
    want = attention_matrix_norm(q, k, lse, causal=causal, scale=scale, tol=1e-6, query_chunk=50)
    per_head = 333 * 333 * 8 + 333 * 333 * 8           # P and a basis that spans the space, fp64
    monkeypatch.setattr(metrics, "SCORE_BUDGET_BYTES", 2 * per_head + 100)
    assert metrics.caches_probabilities(q, k)
    monkeypatch.setattr(metrics, "SCORE_BUDGET_BYTES", per_head - 1)
    assert not metrics.caches_probabilities(q, k)
    monkeypatch.setattr(metrics, "SCORE_BUDGET_BYTES", 2 * per_head + 100)
    got = attention_matrix_norm(q, k, lse, causal=causal, scale=scale, tol=1e-6)
    torch.testing.assert_close(got[0], want[0], rtol=1e-9, atol=0)
    assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
    assert len(set(got[1].flatten().tolist())) > 1      # heads did retire at different passes
    torch.testing.assert_close(got[0], spec2(dense_p(q, k, causal=causal, scale=scale)), rtol=1e-5,
                               atol=0)


def test_tol_and_iterations_reported():
    q, k, v = inputs({"name": "gaussian"}, 512, d=16, dtype=torch.float32)
    scale = 0.25
    o, lse = exact_reference(q, k, v, causal=True, scale=scale)
    one = attention_errors(q, k, v, o, causal=True, scale=scale, exact=(o, lse), max_iters=1)
    assert one["norm_iters"] == 1 and one["norm_converged"] is False
    loose = attention_errors(q, k, v, o, causal=True, scale=scale, exact=(o, lse), tol=0.5)
    tight = attention_errors(q, k, v, o, causal=True, scale=scale, exact=(o, lse), tol=1e-9)
    assert loose["norm_tol"] == 0.5 and tight["norm_tol"] == 1e-9
    assert 2 <= loose["norm_iters"] < tight["norm_iters"] <= 100
    assert loose["norm_converged"] and tight["norm_converged"]
    # one pass gives a lower bound (Ritz value), the converged value is the dense one
    dense = spec2(dense_p(q, k, causal=True, scale=scale))
    assert one["attn_norm"] <= tight["attn_norm"] * (1 + 1e-9)
    assert tight["attn_norm"] == pytest.approx(float(dense.mean()), rel=1e-6)


def test_krylov_space_exhausted_is_exact():
    q, k, _ = inputs({"name": "low_rank"}, 20, d=8)
    _, lse = exact_reference(q, k, k, causal=True, scale=0.5)
    norms, iters, conv = attention_matrix_norm(q, k, lse, causal=True, scale=0.5, tol=0.0)
    assert bool(conv.all()) and int(iters.max()) == 3            # 8 + 8 + 4 = 20 columns
    torch.testing.assert_close(norms, spec2(dense_p(q, k, causal=True, scale=0.5)), rtol=1e-9,
                               atol=0)


@pytest.mark.parametrize("n", [37, 300])
def test_gram_norm_matches_svd(n):
    x = torch.randn(3, n, 24, dtype=torch.float64) * torch.logspace(-3, 1, 24, dtype=torch.float64)
    torch.testing.assert_close(gram_spectral_norm(x), torch.linalg.svdvals(x)[..., 0], rtol=1e-6,
                               atol=0)
    xf = x.float()                                               # fp32 data, fp64 Gram
    torch.testing.assert_close(gram_spectral_norm(xf), torch.linalg.svdvals(xf.double())[..., 0],
                               rtol=1e-6, atol=0)


def psd_with_spectrum(eigs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Q diag(eigs) Qᵀ for a random orthogonal Q, one matrix per row of eigs [g, m]."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(*eigs.shape, eigs.shape[-1], generator=g,
                                        dtype=torch.float64))[0]
    return (basis * eigs[..., None, :]) @ basis.transpose(-1, -2)


@pytest.mark.parametrize("m", [1, 5, 24, 64, 127])
def test_largest_eigenvalue_by_squaring_matches_eigvalsh(m):
    """Spectra that power iteration finds hard: a top pair 1e-3 or 1e-12 apart, a top eigenvalue
    repeated, a cluster just below it, rank one, scales near fp64's ends; within the stated bound
    (2.2e-8 relative at m <= 128) and never above the true value."""
    g = torch.Generator().manual_seed(m)
    spectra = [torch.rand(m, generator=g, dtype=torch.float64),
               torch.logspace(-300, 0, m, dtype=torch.float64),
               torch.full((m,), 0.3, dtype=torch.float64),
               torch.cat([torch.tensor([1.0]), torch.zeros(m - 1)]).double()]
    if m > 1:
        spectra += [torch.cat([torch.tensor([1.0, 1 - 1e-3]), torch.rand(m - 2, generator=g) * 0.9]),
                    torch.cat([torch.tensor([1.0, 1 - 1e-12]), torch.rand(m - 2, generator=g)]),
                    1 - torch.rand(m, generator=g, dtype=torch.float64) * 1e-4]
    eigs = torch.stack([e.double() for e in spectra])
    eigs = torch.cat([eigs, eigs * 1e-150, eigs * 1e150])
    a = psd_with_spectrum(eigs, seed=m)
    want = torch.linalg.eigvalsh(a)[..., -1]
    got = metrics.largest_eigenvalue(a)
    torch.testing.assert_close(got, want, rtol=2.2e-8, atol=0)
    assert bool((got <= want * (1 + 1e-13)).all())


def test_largest_eigenvalue_of_diagonal_matrices():
    """Columns of P without the top eigenvector: the longest column is the one that has it."""
    eigs = torch.tensor([[0.5, 0.2, 1.0, 0.1], [0.0, 0.0, 0.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(metrics.largest_eigenvalue(torch.diag_embed(eigs)),
                               eigs.amax(-1), rtol=0, atol=0)


def test_largest_eigenvalue_of_zero_and_nan():
    a = torch.zeros(3, 4, 4, dtype=torch.float64)
    a[1, 0, 0] = math.nan
    got = metrics.largest_eigenvalue(a)
    assert got[0] == 0 and got[2] == 0 and math.isnan(got[1])


def test_largest_eigenvalue_few_squarings_are_not_enough():
    """The test above can fail: a top pair 1e-3 apart needs the squarings."""
    eigs = torch.cat([torch.tensor([1.0, 1 - 1e-3]), torch.rand(30) * 0.9]).double()[None]
    a = psd_with_spectrum(eigs)
    err = 1 - metrics.largest_eigenvalue(a, squarings=4) / torch.linalg.eigvalsh(a)[..., -1]
    assert float(err) > 1e-6


@pytest.mark.parametrize("chunk_heads", [1, 2, 3, 100])
def test_compact_moves_live_heads_to_the_front(monkeypatch, chunk_heads):
    """Chunked in-place compaction of the Lanczos basis, chunks whose sources overlap their
    destinations included."""
    basis = torch.randn(9, 5, 4)
    keep = torch.tensor([1, 2, 3, 5, 8])
    monkeypatch.setattr(metrics, "BASIS_MOVE_BYTES", chunk_heads * 5 * 3 * basis.element_size())
    want = basis[keep, :, :3].clone()
    metrics._compact(basis[:, :, :3], keep)
    torch.testing.assert_close(basis[:5, :, :3], want, rtol=0, atol=0)


@pytest.mark.parametrize("causal", [False, True])
def test_exact_output_has_zero_error(causal):
    q, k, v = inputs({"name": "gaussian"}, 301, d=64, dtype=torch.float32)
    scale = 1 / 8
    out, lse = exact_attention(q, k, v, causal=causal, scale=scale)    # independent computation
    r = attention_errors(q, k, v, out, causal=causal, scale=scale, lse=lse)
    for name in ("spec_err", "rel_spec_err", "rel_fro_err", "max_row_err"):
        assert 0 <= r[name] <= r[f"{name}_max"] < 1e-5, name
    assert r["lse_err_max"] < 1e-5
    assert r["metric_ms"] > 0 and r["attn_norm"] >= 1


def dense_metrics(q, k, v, out, lse, *, causal, scale):
    p = dense_p(q, k, causal=causal, scale=scale)
    o = p @ v.double()
    e = out.double() - o
    s = (q.double() @ k.double().transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(~torch.ones(s.shape[-2:], dtype=torch.bool).tril(), -math.inf)
    lse_ex = torch.logsumexp(s, dim=-1)
    return {
        "attn_norm": spec2(p),
        "spec_err": spec2(e) / (spec2(p) * spec2(v)),
        "rel_spec_err": spec2(e) / spec2(o),
        "rel_fro_err": e.norm(dim=(-1, -2)) / o.norm(dim=(-1, -2)),
        "max_row_err": e.norm(dim=-1).amax(-1) / o.norm(dim=-1).amax(-1),
        "lse_err": (lse.double() - lse_ex).abs().amax(-1),
    }


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("spec", DISTS, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("n", [37, 512])
def test_perturbed_output_matches_dense(spec, n, causal):
    q, k, v = inputs(spec, n, heads=2, batch=2)
    scale = 1 / math.sqrt(q.shape[-1])
    o, lse = exact_reference(q, k, v, causal=causal, scale=scale)
    g = torch.Generator().manual_seed(1)
    # a structured (low-rank) plus a small dense perturbation, different size per head
    size = torch.tensor([1e-3, 1e-2, 3e-2, 1e-1], dtype=torch.float64).view(2, 2, 1, 1)
    pert = torch.randn(2, 2, n, 1, generator=g, dtype=torch.float64) @ torch.randn(
        2, 2, 1, q.shape[-1], generator=g, dtype=torch.float64)
    out = o + size * (pert + 0.3 * torch.randn(o.shape, generator=g, dtype=torch.float64))
    lse_hat = lse + 1e-3 * torch.randn(lse.shape, generator=g, dtype=torch.float64)
    per = head_errors(q, k, v, out, causal=causal, scale=scale, lse=lse_hat, tol=1e-4)
    want = dense_metrics(q, k, v, out, lse_hat, causal=causal, scale=scale)
    for name in ("rel_spec_err", "rel_fro_err", "max_row_err", "lse_err"):
        torch.testing.assert_close(per[name], want[name], rtol=1e-6, atol=0, msg=name)
    for name in ("attn_norm", "spec_err"):
        torch.testing.assert_close(per[name], want[name], rtol=1e-2, atol=0, msg=name)
    summary = attention_errors(q, k, v, out, causal=causal, scale=scale, lse=lse_hat,
                               exact=(o, lse), tol=1e-4)
    for name in ("spec_err", "rel_spec_err", "rel_fro_err", "max_row_err", "lse_err"):
        assert summary[name] == pytest.approx(float(want[name].mean()), rel=1e-2), name
        assert summary[f"{name}_max"] == pytest.approx(float(want[name].max()), rel=1e-2), name
    assert summary["attn_norm_max"] == pytest.approx(float(want["attn_norm"].max()), rel=1e-2)


def test_low_precision_output_and_reused_exact():
    q, k, v = inputs({"name": "gaussian"}, 256, d=64, dtype=torch.bfloat16)
    scale = 1 / 8
    exact = exact_reference(q, k, v, causal=False, scale=scale)
    assert exact[0].dtype == torch.float32                    # bf16 inputs: fp32 reference
    out = exact_attention(q, k, v, causal=False, scale=scale)[0]     # rounded to bf16
    a = attention_errors(q, k, v, out, causal=False, scale=scale)
    b = attention_errors(q, k, v, out, causal=False, scale=scale, exact=exact)
    for name in ("spec_err", "rel_spec_err", "rel_fro_err", "max_row_err", "attn_norm"):
        assert a[name] == b[name], name
    assert 1e-5 < a["rel_fro_err"] < 2e-2                     # bf16 rounding, nothing worse
    assert "lse_err" not in a


def test_zero_reference_gives_inf_not_nan():
    q = torch.zeros(1, 1, 8, 4)
    v = torch.zeros(1, 1, 8, 4)
    out = torch.ones(1, 1, 8, 4)
    r = attention_errors(q, q, v, out, causal=False, scale=1.0)
    assert r["rel_spec_err"] == math.inf and r["spec_err"] == math.inf
    r0 = attention_errors(q, q, v, torch.zeros_like(out), causal=False, scale=1.0)
    assert r0["rel_spec_err"] == 0.0 and r0["spec_err"] == 0.0
    assert r0["attn_norm"] == pytest.approx(1.0, rel=1e-6)     # uniform attention: norm 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_orthonormal_columns_span_x_also_when_ill_conditioned(dtype, monkeypatch):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 500, 8, generator=g, dtype=dtype)
    bad = x.clone()
    bad[1, :, 7] = bad[1, :, 6] + 1e-9 * bad[1, :, 5]              # nearly dependent columns
    householder = []
    qr = torch.linalg.qr
    monkeypatch.setattr(torch.linalg, "qr", lambda a: householder.append(1) or qr(a))
    for block in (x, bad):
        q = metrics.orthonormal_columns(block)
        if block is x:      # well conditioned: the Cholesky path, no Householder QR
            assert not householder
        # bad: Cholesky may fail (fallback) or give a full orthonormal basis; either must pass
        eye = torch.eye(8, dtype=dtype)
        assert (q.transpose(-1, -2) @ q - eye).abs().max() < 100 * torch.finfo(dtype).eps
        resid = block - q @ (q.transpose(-1, -2) @ block)          # x lies in the span of q
        assert resid.norm() / block.norm() < 100 * torch.finfo(dtype).eps


@pytest.mark.parametrize("n,causal,heads", [(131, False, 3), (100003, True, 32), (300, True, 1)])
def test_warm_up_compiles_on_a_slice_with_the_same_specialisation(monkeypatch, n, causal, heads):
    """The warm-up runs both metric computations on one head of at most ~528 rows whose length
    has the same residue mod 16 (Triton specialises on it, and not on the head count: see the
    next test), and only where Triton is used."""
    calls = []
    monkeypatch.setattr(metrics, "exact_reference",
                        lambda q, k, v, **kw: calls.append(("exact", q.shape, k.shape, kw["causal"]))
                        or (None, torch.zeros(q.shape[:-1])))
    monkeypatch.setattr(metrics, "attention_matrix_norm",
                        lambda q, k, lse, **kw: calls.append(("norm", q.shape, k.shape, kw["causal"])))
    q = torch.zeros(1, 1, 1, 16).expand(2, heads, n, 16)     # no memory for the large n
    monkeypatch.setattr(metrics, "uses_triton", lambda *a: False)
    metrics.warm_up(q, q, q, causal=causal, scale=0.25)
    assert calls == []
    monkeypatch.setattr(metrics, "uses_triton", lambda *a: True)
    metrics.warm_up(q, q, q, causal=causal, scale=0.25)
    rows = min(n, 512 + n % 16)
    assert [c[0] for c in calls] == ["exact", "norm"]
    for _, qs, ks, c in calls:
        assert qs == ks == (1, 1, rows, 16) and rows % 16 == n % 16 and c == causal


def test_exact_kernel_is_not_specialised_on_the_head_count():
    # Compiled (not interpreted) in a fresh process: a one-head warm-up slice then compiles the
    # same kernel as 32 heads would, since Triton otherwise compiles apart for H = 1 and H % 16 = 0.
    code = ("from hyperbench import metric_kernels as m; "
            "print(sorted(p.name for p in m._exact_fwd_kernel.params if p.do_not_specialize))")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split("\n")[-2] == "['H']"
