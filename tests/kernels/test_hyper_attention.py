"""HyperAttention (the torch backend, `hyper_ref`): the properties the paper's algorithm must have."""

import pytest
import torch

from hyperbench_kernels.hyper_attention import HyperParams, hyper_attention, merge_partials
from hyperbench_kernels.reference import exact_attention


def _qkv(n, d=16, B=1, H=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, n, d, generator=g, dtype=dtype) for _ in range(3)]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n", [64, 257, 1000])
def test_equals_exact_when_one_block_covers_everything(n):
    q, k, v = _qkv(n)
    p = HyperParams(block_size=1024, sample_size=0, sample_tile=0, lsh_num_projs=5, min_seq_len=1)
    out, lse = hyper_attention(q, k, v, p, generator=_gen())
    ref, ref_lse = exact_attention(q, k, v, causal=False, scale=16 ** -0.5)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lse, ref_lse, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [100, 333])
def test_causal_equals_exact_below_min_seq_len(n):
    q, k, v = _qkv(n)
    p = HyperParams(block_size=32, sample_size=32, sample_tile=32, min_seq_len=n)
    out, lse = hyper_attention(q, k, v, p, causal=True, generator=_gen())
    ref, ref_lse = exact_attention(q, k, v, causal=True, scale=16 ** -0.5)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lse, ref_lse, rtol=1e-5, atol=1e-5)


def test_causal_recursion_with_whole_blocks_is_exact():
    # With blocks as large as every half, each lower-left quarter is computed exactly, so the
    # recursion and merge alone must reproduce causal attention (odd n exercises the padding row).
    q, k, v = _qkv(301)
    p = HyperParams(block_size=512, sample_size=16, sample_tile=0, min_seq_len=40)
    out, lse = hyper_attention(q, k, v, p, causal=True, generator=_gen())
    ref, ref_lse = exact_attention(q, k, v, causal=True, scale=16 ** -0.5)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lse, ref_lse, rtol=1e-5, atol=1e-5)


def test_merge_of_partials_equals_attention_over_union():
    q, k, v = _qkv(90, dtype=torch.float64)
    o1, l1 = exact_attention(q, k[:, :, :40], v[:, :, :40], causal=False, scale=0.25)
    o2, l2 = exact_attention(q, k[:, :, 40:], v[:, :, 40:], causal=False, scale=0.25)
    out, lse = merge_partials(o1, l1, o2, l2)
    ref, ref_lse = exact_attention(q, k, v, causal=False, scale=0.25)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(lse, ref_lse)


def test_same_seed_same_output_and_other_seed_differs():
    q, k, v = _qkv(600)
    p = HyperParams(block_size=64, sample_size=32, sample_tile=64, min_seq_len=64)
    a, _ = hyper_attention(q, k, v, p, generator=_gen(5))
    b, _ = hyper_attention(q, k, v, p, generator=_gen(5))
    c, _ = hyper_attention(q, k, v, p, generator=_gen(6))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("causal", [False, True])
def test_error_falls_as_sample_size_grows(causal):
    q, k, v = _qkv(1024, d=16, H=4, seed=1)
    ref, _ = exact_attention(q, k, v, causal=causal, scale=0.25)

    def mean_error(m):
        p = HyperParams(block_size=64, sample_size=m, sample_tile=64, min_seq_len=128)
        errs = [(hyper_attention(q, k, v, p, causal=causal, generator=_gen(s))[0] - ref).norm() for s in range(4)]
        return torch.stack(errs).mean() / ref.norm()

    e16, e64, e256 = mean_error(16), mean_error(64), mean_error(256)
    assert e16 > e64 > e256


@pytest.mark.parametrize("n", [4097, 5000, 6143])
@pytest.mark.parametrize("causal", [False, True])
def test_odd_lengths_return_each_row_to_its_query(n, causal):
    # Queries parallel to their own keys with a sharp softmax: LSH puts q_i and k_i in one bucket,
    # so row i must come out ≈ v_i. A row restored to the wrong position would not.
    g = torch.Generator().manual_seed(n)
    k = torch.nn.functional.normalize(torch.randn(1, 2, n, 16, generator=g), dim=-1)
    v = torch.randn(1, 2, n, 16, generator=g)
    p = HyperParams(block_size=128, sample_size=64, sample_tile=0, min_seq_len=1024)
    out, lse = hyper_attention(k * 40, k, v, p, causal=causal, scale=1.0, generator=_gen())
    assert out.shape == v.shape and lse.shape == v.shape[:3]
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()
    assert (out - v).norm() / v.norm() < 0.05
