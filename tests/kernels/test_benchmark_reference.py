"""pytest-benchmark timing of the reference on CPU (run with --benchmark-enable to record numbers;
under the default --benchmark-disable it runs once and checks the result, so it stays a real test).

The dense attention below is the yardstick: plain torch, none of this project's code, timed in the
same run so that scripts/ci_compare.sh can judge the reference relative to the machine's speed
(``hyperbench compare --relative-to``) rather than against another machine's milliseconds."""

import torch

from hyperbench_kernels.hyper_attention import HyperParams, hyper_attention
from hyperbench_kernels.reference import exact_attention

SHAPE = (1, 4, 2048, 64)


def _inputs():
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(*SHAPE, generator=g) for _ in range(3))


def test_hyper_ref_cpu_benchmark(benchmark):
    q, k, v = _inputs()
    p = HyperParams(block_size=128, sample_size=128, sample_tile=128, min_seq_len=1024)
    out, lse = benchmark(lambda: hyper_attention(q, k, v, p, generator=torch.Generator().manual_seed(1)))
    ref, _ = exact_attention(q, k, v, causal=False, scale=0.125)
    assert torch.isfinite(out).all() and out.shape == ref.shape
    # ||V||₂-normalised operator error of the approximation stays far below that of a zero output
    err = torch.linalg.matrix_norm((out - ref)[0].double(), 2) / torch.linalg.matrix_norm(v[0].double(), 2)
    assert err.max() < 0.5


def test_dense_attention_yardstick_cpu_benchmark(benchmark):
    q, k, v = _inputs()
    out = benchmark(lambda: torch.softmax(q @ k.transpose(-1, -2) * 0.125, dim=-1) @ v)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.125)
    assert torch.allclose(out, expected, atol=1e-5, rtol=1e-4)
