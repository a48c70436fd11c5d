"""pytest-benchmark timing of the reference on CPU (run with --benchmark-enable to record numbers;
under the default --benchmark-disable it runs once and checks the result, so it stays a real test)."""

import torch

from hyperbench_kernels.hyper_attention import HyperParams, hyper_attention
from hyperbench_kernels.reference import exact_attention


def test_hyper_ref_cpu_benchmark(benchmark):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 2048, 64, generator=g) for _ in range(3))
    p = HyperParams(block_size=128, sample_size=128, sample_tile=128, min_seq_len=1024)
    out, lse = benchmark(lambda: hyper_attention(q, k, v, p, generator=torch.Generator().manual_seed(1)))
    ref, _ = exact_attention(q, k, v, causal=False, scale=0.125)
    assert torch.isfinite(out).all() and out.shape == ref.shape
    # ||V||₂-normalised operator error of the approximation stays far below that of a zero output
    err = torch.linalg.matrix_norm((out - ref)[0].double(), 2) / torch.linalg.matrix_norm(v[0].double(), 2)
    assert err.max() < 0.5
