"""The readable HyperAttention primitive against a dense construction of the same function."""

import math

import pytest
import torch

from hyperbench_kernels.reference import block_sample_attention, exact_attention


def dense_block_sample(q, k, v, q_order, k_order, samples, block_size, sample_tile, weight, scale, causal=False):
    """The same function built the slow way: an n×n multiplicity matrix of which keys each query sees."""
    B, H, n, d = q.shape
    out = torch.empty(B, H, n, d, dtype=torch.float64)
    lse = torch.empty(B, H, n, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            counts = torch.zeros(n, n, dtype=torch.float64)  # counts[r, c]: weight of sorted key c for sorted query r
            for r in range(n):
                lo, hi = r // block_size * block_size, min(n, (r // block_size + 1) * block_size)
                for c in range(lo, hi):
                    if not causal or c <= r:
                        counts[r, c] += 1.0
                if samples is not None:
                    t = 0 if samples.shape[2] == 1 else r // sample_tile
                    for c in samples[b, h, t].tolist():
                        if c // block_size != r // block_size:
                            counts[r, c] += weight
            qs = q[b, h, q_order[b, h]].double()
            ks = k[b, h, k_order[b, h]].double()
            vs = v[b, h, k_order[b, h]].double()
            logits = qs @ ks.T * scale + counts.log()
            l = torch.logsumexp(logits, -1)
            o = torch.exp(logits - l[:, None]) @ vs
            out[b, h, q_order[b, h]] = o
            lse[b, h, q_order[b, h]] = l
    return out, lse


@pytest.mark.parametrize("n,block,tile,m,causal", [
    (37, 16, 16, 8, False), (50, 64, 0, 12, False), (61, 8, 24, 5, False), (40, 40, 0, 0, True), (33, 33, 0, 0, False),
])
def test_primitive_matches_dense_construction(n, block, tile, m, causal):
    g = torch.Generator().manual_seed(n * 7 + m)
    B, H, d = 2, 2, 8
    q, k, v = (torch.randn(B, H, n, d, generator=g, dtype=torch.float64) for _ in range(3))
    if causal:
        q_order = k_order = torch.arange(n).expand(B, H, n)
    else:
        q_order = torch.argsort(torch.rand(B, H, n, generator=g), -1)
        k_order = torch.argsort(torch.rand(B, H, n, generator=g), -1)
    sets = 0 if m == 0 else (1 if tile == 0 else -(-n // tile))
    samples = torch.randint(n, (B, H, sets, m), generator=g) if m else None
    w = n / m if m else 1.0
    out, lse = block_sample_attention(q, k, v, q_order, k_order, samples, block_size=block, sample_tile=tile,
                                      sample_weight=w, scale=0.3, causal=causal)
    ref_out, ref_lse = dense_block_sample(q, k, v, q_order, k_order, samples, block, tile, w, 0.3, causal)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lse, ref_lse, rtol=1e-10, atol=1e-10)


def test_exact_attention_lse_and_causal_mask():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 23, 8, generator=g, dtype=torch.float64) for _ in range(3))
    for causal in (False, True):
        out, lse = exact_attention(q, k, v, causal=causal, scale=0.5)
        s = q @ k.transpose(-1, -2) * 0.5
        if causal:
            s = s.masked_fill(torch.ones(23, 23, dtype=torch.bool).triu(1), -math.inf)
        torch.testing.assert_close(lse, torch.log(torch.exp(s).sum(-1)))
        torch.testing.assert_close(out, torch.softmax(s, -1) @ v)
