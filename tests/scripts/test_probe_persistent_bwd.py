"""scripts/probe_persistent_bwd.py: the persistent fused backward (programs walking the query tiles
in turn) gives the fused backward's gradients, so the H200 timings it gives compare like with like
(gpu_probe.py --parts=persistent checks the same on the GPU)."""

import os
import sys

import torch

from kernels import triton_attention
from kernels.triton_delta import delta as row_delta

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import probe_persistent_bwd  # noqa: E402


def test_programs_walking_the_tiles_give_the_fused_backwards_gradients():
    g = torch.Generator().manual_seed(5)
    B, H, n, d = 1, 2, 320, 64      # five 64-row units (block and sample set), the last tile's rows all valid
    q, k, v = (torch.randn(B, H, n, d, generator=g) for _ in range(3))
    q_order, k_order = (torch.argsort(torch.rand(B, H, n, generator=g), -1) for _ in range(2))
    samples = torch.randint(n, (B, H, n // 64, 32), generator=g)
    kw = dict(block_size=64, sample_tile=64, sample_weight=n / 32, scale=d ** -0.5, causal=False)
    args = (q, k, v, q_order, k_order, samples)
    out, lse = triton_attention.block_sample_forward(*args, **kw)
    dout = torch.randn(B, H, n, d, generator=g)
    delta = row_delta(dout, out, None)
    want = triton_attention.block_sample_backward(*args, dout, lse, delta, **kw)
    lists = triton_attention.prepared_lists(*args, **kw)
    layout = triton_attention._layout(n, 64, 64, 64)   # the interpreter's 64-row tiles (_config)
    dq, dk, dv = probe_persistent_bwd.persistent_backward(   # 3 programs walk the 10 (tile, head) items
        q, k, v, q_order, lists, layout, lse, dout, delta, scale=kw["scale"], programs=3, flatten=False,
        tiles=(64, 64, 4, 1), precision="ieee")
    for got, expected in zip((dq, dk, dv), want):
        torch.testing.assert_close(got, expected.float(), rtol=1e-4, atol=1e-5)
