"""The triton backend's causal recursion (kernels/causal_triton.py) against the torch backend's
readable one (autograd through merge_partials and torch.cat): outputs and gradients, with the loss
through out alone (the fused leaves' own backward) and through out and lse (Δ from outside)."""

import pytest
import torch

from hyperbench_kernels import causal_triton, sdpa_leaves
from hyperbench_kernels.hyper_attention import HyperParams, hyper_attention

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _both_backends(n, params, *, with_lse, seed=0):
    base = [torch.randn(1, 2, n, 16, generator=torch.Generator().manual_seed(seed + i)).to(DEVICE)
            for i in range(3)]
    g = torch.Generator().manual_seed(seed + 9)
    gout, glse = torch.randn(1, 2, n, 16, generator=g).to(DEVICE), torch.randn(1, 2, n, generator=g).to(DEVICE)
    results = []
    for backend in ("triton", "torch"):
        xs = [x.clone().requires_grad_(True) for x in base]
        gen = torch.Generator(device=DEVICE).manual_seed(7)
        out, lse = hyper_attention(*xs, params, causal=True, generator=gen, backend=backend)
        loss = (out * gout).sum() + ((lse * glse).sum() if with_lse else 0)
        loss.backward()
        results.append((out, lse, *(x.grad for x in xs)))
    return {name: _rel(a, b) for name, a, b in zip(["out", "lse", "dq", "dk", "dv"], *results)}


# n = 150 with min_seq_len 40: 150 -> 75 (odd, padded to 76) -> leaves of 38, and the 38-row
# lower-left pieces are exact (below min_seq_len) while the top level's is HyperAttention.
@pytest.mark.parametrize("with_lse", [False, True])
@pytest.mark.parametrize("n,tile", [(150, 32), (97, 0), (301, 32), (33, 32)])   # 33: one exact leaf
def test_triton_recursion_matches_torch_backend(n, tile, with_lse):
    params = HyperParams(block_size=16, sample_size=12, sample_tile=tile, min_seq_len=40)
    errs = _both_backends(n, params, with_lse=with_lse)
    assert all(e < 3e-4 for e in errs.values()), errs


def test_every_row_is_hashed_once(monkeypatch):
    """n = 301: two HyperAttention levels (151 and 76 rows, the first padded), yet q and k are
    hashed once, together in one launch, at the top; the levels sort slices of those ranks."""
    from hyperbench_kernels import triton_lsh
    calls = []
    real = triton_lsh.bucket_ranks
    monkeypatch.setattr(triton_lsh, "bucket_ranks",
                        lambda xs, proj, **kw: calls.append([x.shape for x in xs]) or real(xs, proj, **kw))
    params = HyperParams(block_size=16, sample_size=12, sample_tile=32, min_seq_len=40)
    x = torch.randn(1, 2, 301, 16, device=DEVICE)
    hyper_attention(x, x, x, params, causal=True, generator=torch.Generator(device=DEVICE).manual_seed(1),
                    backend="triton")
    assert calls == [[(1, 2, 301, 16)] * 2]


@pytest.mark.parametrize("with_lse", [False, True])
def test_fused_leaf_backward_from_the_final_rows(monkeypatch, with_lse):
    """The SDPA leaves' path (forward_with_state / backward_from_state), with the kernels' PyTorch
    statement standing in for cuDNN and flash: their backward, given the final merged out and lse,
    is the leaf's share of the true gradient; with a gradient on lse the Triton kernel takes over."""
    monkeypatch.setattr(sdpa_leaves, "supported", lambda q: True)
    monkeypatch.setattr(sdpa_leaves, "LEAF_FORWARD", "reference")
    calls = []
    real = sdpa_leaves.backward_from_state
    monkeypatch.setattr(sdpa_leaves, "backward_from_state", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    params = HyperParams(block_size=16, sample_size=12, sample_tile=32, min_seq_len=40)
    errs = _both_backends(150, params, with_lse=with_lse, seed=20)
    assert all(e < 3e-4 for e in errs.values()), errs
    assert bool(calls) != with_lse   # the fused backward runs exactly when lse has no gradient


@pytest.mark.parametrize("with_lse", [False, True])
def test_one_leaf_takes_its_kernels_own_backward(monkeypatch, with_lse):
    """n <= min_seq_len: the leaf kernel's backward returns the gradient itself (no accumulators),
    unless lse has a gradient; either way it is the torch backend's."""
    monkeypatch.setattr(sdpa_leaves, "supported", lambda q: True)
    monkeypatch.setattr(sdpa_leaves, "LEAF_FORWARD", "reference")
    copies = []
    real = causal_triton.copy_into
    monkeypatch.setattr(causal_triton, "copy_into", lambda *a: copies.append(1) or real(*a))
    params = HyperParams(block_size=16, sample_size=12, sample_tile=32, min_seq_len=40)
    errs = _both_backends(37, params, with_lse=with_lse, seed=30)
    assert all(e < 3e-4 for e in errs.values()), errs
    assert not copies


def test_a_stale_leaf_lse_gives_a_wrong_gradient(monkeypatch):
    """The backward must use the merged rows' lse: with a leaf's own lse the gradient is off."""
    monkeypatch.setattr(sdpa_leaves, "supported", lambda q: True)
    monkeypatch.setattr(sdpa_leaves, "LEAF_FORWARD", "reference")
    real = causal_triton._piece_backward

    def own_lse(piece, q, k, v, out, lse, *rest, **kw):
        return real(piece, q, k, v, out, lse + 0.5, *rest, **kw)
    monkeypatch.setattr(causal_triton, "_piece_backward", own_lse)
    params = HyperParams(block_size=16, sample_size=12, sample_tile=32, min_seq_len=40)
    errs = _both_backends(150, params, with_lse=False, seed=30)
    assert errs["out"] < 3e-4 and errs["dq"] > 1e-2, errs


def test_inference_equals_training_forward():
    params = HyperParams(block_size=16, sample_size=12, sample_tile=32, min_seq_len=40)
    xs = [torch.randn(1, 2, 130, 16, generator=torch.Generator().manual_seed(40 + i)).to(DEVICE) for i in range(3)]
    with torch.no_grad():
        a = hyper_attention(*xs, params, causal=True, generator=torch.Generator(device=DEVICE).manual_seed(1),
                            backend="triton")
    b = hyper_attention(*(x.requires_grad_(True) for x in xs), params, causal=True,
                        generator=torch.Generator(device=DEVICE).manual_seed(1), backend="triton")
    assert torch.equal(a[0], b[0].detach()) and torch.equal(a[1], b[1].detach())


def test_levels_on_the_key_list_kernels():
    """Blocks and sample sets aligned with the kernels' tiles, so each level's forward merges in
    the key-list kernel's epilogue and its backward is the fused one (adding into the recursion's
    accumulators): n = 300 -> one HyperAttention level of 150 rows, exact pieces below."""
    params = HyperParams(block_size=64, sample_size=24, sample_tile=64, min_seq_len=128)
    for with_lse in (False, True):
        errs = _both_backends(300, params, with_lse=with_lse, seed=50)
        assert all(e < 3e-4 for e in errs.values()), errs


def test_every_level_sorted_in_one_pass(monkeypatch):
    """n = 256 halves into whole 32-key chunks down to min_seq_len 64, so the top call sorts both
    HyperAttention levels' pieces at once (triton_sort.recursion_orders): bit for bit what the
    per-level sorts give, and the torch backend's result."""
    from hyperbench_kernels import triton_sort
    monkeypatch.setattr(triton_sort, "CHUNK", 32)
    levels = []
    real = causal_triton.recursion_orders
    monkeypatch.setattr(causal_triton, "recursion_orders", lambda *a, **kw: levels.append(a[2]) or real(*a, **kw))
    params = HyperParams(block_size=16, sample_size=12, sample_tile=32, min_seq_len=64)
    xs = [torch.randn(1, 2, 256, 16, generator=torch.Generator().manual_seed(70 + i)).to(DEVICE) for i in range(3)]

    def forward():
        with torch.no_grad():
            return hyper_attention(*xs, params, causal=True, backend="triton",
                                   generator=torch.Generator(device=DEVICE).manual_seed(3))

    at_once = forward()
    assert levels == [2]
    with monkeypatch.context() as per_level:
        per_level.setattr(causal_triton, "recursion_orders", lambda *a, **kw: None)
        by_level = forward()
    assert torch.equal(at_once[0], by_level[0]) and torch.equal(at_once[1], by_level[1])
    errs = _both_backends(256, params, with_lse=True, seed=60)
    assert all(e < 3e-4 for e in errs.values()), errs
    assert levels == [2, 2]


def test_leaves_run_first_in_one_call(monkeypatch):
    """n = 160 halves evenly down to leaves of 40 rows (min_seq_len 40): every leaf is one exact
    call made before the LSH hashing, and the result and gradients are bit for bit those of the
    recursion computing its leaves at the bottom; with an odd level (n = 150) it does the latter."""
    from hyperbench_kernels import triton_lsh
    monkeypatch.setattr(sdpa_leaves, "supported", lambda q: True)
    monkeypatch.setattr(sdpa_leaves, "LEAF_FORWARD", "reference")
    calls = []
    real_leaf, real_hash = causal_triton._exact_forward, triton_lsh.bucket_ranks
    monkeypatch.setattr(causal_triton, "_exact_forward",
                        lambda q, *a: calls.append(("leaf", tuple(q.shape))) or real_leaf(q, *a))
    monkeypatch.setattr(triton_lsh, "bucket_ranks", lambda *a, **kw: calls.append(("hash",)) or real_hash(*a, **kw))
    params = HyperParams(block_size=16, sample_size=12, sample_tile=32, min_seq_len=40)

    def run(n, grad=True):
        xs = [torch.randn(1, 2, n, 16, generator=torch.Generator().manual_seed(80 + i)).to(DEVICE).requires_grad_(grad)
              for i in range(3)]
        out, lse = hyper_attention(*xs, params, causal=True, backend="triton",
                                   generator=torch.Generator(device=DEVICE).manual_seed(5))
        return (out, lse, *torch.autograd.grad((out * out).sum(), xs)) if grad else (out, lse)  # leaves' own bwd

    first = run(160)
    assert calls[:2] == [("leaf", (1, 8, 40, 16)), ("hash",)]
    with monkeypatch.context() as at_bottom:
        at_bottom.setattr(causal_triton, "_leaves_first", lambda *a: None)
        calls.clear()
        bottom = run(160)
        assert calls[0] == ("hash",) and ("leaf", (1, 8, 40, 16)) in calls
    assert all(torch.equal(a, b) for a, b in zip(first, bottom))
    calls.clear()
    with torch.no_grad():
        run(150, grad=False)
    assert calls[0] == ("hash",)


# 250: a level of 125 rows (1.77 adds), then one of 63, padded, below min_seq_len: exact (1 add)
@pytest.mark.parametrize("n,with_lse", [(256, False), (250, False), (256, True)])
def test_sixteen_bit_sums_match_fp32_sums(monkeypatch, n, with_lse):
    """Where the levels add into a key row at most CAUSAL_16BIT_ADDS times (here 1 block tile and
    2 set tiles, each set drawing m / 32 = 0.375 of the keys: 1.75 a level, 3.5 in all), they add
    their gradients straight into the fp16 leaves' own gradient tensors (no fp32 copy of them,
    no fp32 buffer at all), and the result is the fp32 sums' one, cast, to fp16's rounding of the
    few adds per row; above the bound, fp32 sums.  With a loss through lse the leaves run on the
    Triton kernel, which writes into the 16-bit buffers itself."""
    monkeypatch.setattr(sdpa_leaves, "supported", lambda q: True)
    monkeypatch.setattr(sdpa_leaves, "LEAF_FORWARD", "reference")
    params = HyperParams(block_size=16, sample_size=12, sample_tile=32, min_seq_len=64)
    xs = [torch.randn(1, 2, n, 16, generator=torch.Generator().manual_seed(90 + i)).to(DEVICE, torch.float16)
          for i in range(3)]
    gout = torch.randn(1, 2, n, 16, generator=torch.Generator().manual_seed(99)).to(DEVICE, torch.float16)
    dtypes, fp32_buffers = [], []
    real_dtype, real_empty = causal_triton.grads_dtype, torch.empty

    def empty(*a, dtype=None, **kw):
        x = real_empty(*a, dtype=dtype, **kw)
        fp32_buffers.append(x.dim() == 4 and x.shape[-1] == 16 and dtype == torch.float32)   # a gradient's
        return x
    monkeypatch.setattr(causal_triton, "grads_dtype", lambda *a: dtypes.append(real_dtype(*a)) or dtypes[-1])
    monkeypatch.setattr(causal_triton.torch, "empty", empty)

    def grads(adds):
        monkeypatch.setattr(causal_triton, "CAUSAL_16BIT_ADDS", adds)
        ins = [x.clone().requires_grad_(True) for x in xs]
        out, lse = hyper_attention(*ins, params, causal=True, backend="triton",
                                   generator=torch.Generator(device=DEVICE).manual_seed(3))
        return torch.autograd.grad((out, lse) if with_lse else out, ins, (gout, gout[..., 0]) if with_lse else gout)

    wide = grads(0)
    assert dtypes == [torch.float32] and any(fp32_buffers)
    fp32_buffers.clear()
    narrow = grads(3.6)
    assert dtypes[-1] == torch.float16 and not any(fp32_buffers)
    assert all(g.dtype == torch.float16 for g in narrow)
    errs = [_rel(a, b) for a, b in zip(narrow, wide)]
    assert all(1e-6 < e < 2e-3 for e in errs), errs     # rounded, a few fp16 ulps at most
    assert grads(2.5) and dtypes[-1] == torch.float32
