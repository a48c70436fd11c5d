"""scripts/probe_tma_ws.py: the forward on contiguous copies through TMA descriptors reads the same
keys, biases and rows as the key-list forward, so the H200 timings it gives compare like with like
(gpu_probe.py --parts=tmaws checks the same on the GPU)."""

import os
import sys

import torch

from kernels import triton_attention

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import probe_tma_ws  # noqa: E402


def test_the_forward_on_copied_lists_equals_the_key_list_forward():
    probe_tma_ws.use_torch_allocator("cpu")
    g = torch.Generator().manual_seed(3)
    B, H, n, d = 1, 2, 768, 64      # three 256-row units, each with its own 256-key sample set
    q, k, v = (torch.randn(B, H, n, d, generator=g) for _ in range(3))
    q_order, k_order = (torch.argsort(torch.rand(B, H, n, generator=g), -1) for _ in range(2))
    samples = torch.randint(n, (B, H, n // 256, 256), generator=g)
    kw = dict(block_size=256, sample_tile=256, sample_weight=n / 256, scale=d ** -0.5, causal=False)
    out, lse = triton_attention.block_sample_forward(q, k, v, q_order, k_order, samples, **kw)
    rows, bias = triton_attention.prepared_lists(q, k, v, q_order, k_order, samples, **kw)
    units = rows.shape[2]
    sorted_q, keys, values = probe_tma_ws.list_copies(q, k, v, q_order, rows)
    got, got_lse = probe_tma_ws.window_forward(sorted_q, q, q_order, keys, values, bias, unit=n // units,
                                               qk_scale=kw["scale"] * triton_attention.LOG2E,
                                               tiles=(64, 64, 4, 1), ws=False)
    torch.testing.assert_close(got, out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_lse, lse, rtol=1e-5, atol=1e-6)
