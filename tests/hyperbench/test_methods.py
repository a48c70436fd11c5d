"""Each registered method computes attention (or says why it cannot run here)."""

import math

import pytest
import torch

from hyperbench import methods
from hyperbench.methods import exact as exact_mod
from hyperbench.methods import hyper as hyper_mod
from hyperbench_kernels.hyper_attention import hyper_attention
from hyperbench_kernels.reference import exact_attention as reference_attention

from .test_config import cfg
from hyperbench.config import job_config


def _qkv(n=67, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, n, d, generator=g) for _ in range(3)]


@pytest.mark.parametrize("causal", [False, True])
def test_exact_matches_reference_and_chunking_changes_nothing(monkeypatch, causal):
    q, k, v = _qkv()
    ref, ref_lse = reference_attention(q, k, v, causal=causal, scale=1 / math.sqrt(32))
    out, lse = exact_mod.exact_attention(q, k, v, causal)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lse, ref_lse, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(exact_mod, "_free_bytes", lambda device: 4 * 3 * 67 * exact_mod.BYTES_PER_SCORE * 10)
    assert exact_mod.query_chunk(q, 67) == 10
    out_c, lse_c = exact_mod.exact_attention(q, k, v, causal)
    torch.testing.assert_close(out_c, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lse_c, ref_lse, rtol=1e-5, atol=1e-5)
    # gradients through the checkpointed chunks equal those of the unchunked computation
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    exact_mod.exact_attention(*leaves, causal)[0].square().sum().backward()
    ref_leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    reference_attention(*ref_leaves, causal=causal, scale=1 / math.sqrt(32))[0].square().sum().backward()
    for a, b in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["sdpa_math", "sdpa_flash"])
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_backends_that_run_on_cpu_agree_with_exact(name, causal):
    job = job_config(cfg(methods=[name], causal=causal, head_dim=32))
    method = methods.get(name)
    assert method.unavailable(job) is None
    q, k, v = _qkv()
    out, _ = method.build(job)(q, k, v, causal)
    ref, _ = reference_attention(q, k, v, causal=causal, scale=1 / math.sqrt(32))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_gpu_only_methods_say_why_on_cpu():
    job = job_config(cfg())
    for name in ("sdpa_cudnn", "sdpa_efficient", "hyper", "flash_attn"):
        reason = methods.get(name).unavailable(job)
        assert reason and len(reason) > 10, name


@pytest.mark.parametrize("batch,heads", [(1, 70000), (70000, 1)])
def test_flash_says_why_past_its_grid_on_a_gpu(batch, heads):
    # decided before the probe (which would need CUDA) from the job's shape alone
    gpu_job = type("GpuJob", (), {"device": "cuda", "batch": batch, "num_heads": heads})()
    reason = methods.get("sdpa_flash").unavailable(gpu_job)
    assert reason and "65535" in reason and f"batch={batch}, num_heads={heads}" in reason


def test_hyper_ref_is_the_driver_with_the_job_seed():
    job = job_config(cfg(seq_len=300, min_seq_len=64, block_size=32, sample_size=16, sample_tile=32, head_dim=32))
    q, k, v = _qkv(300)
    forward = methods.get("hyper_ref").build(job)
    a, lse = forward(q, k, v, False)
    b, _ = forward(q, k, v, False)     # the method's generator, seeded again
    assert torch.equal(a, b) and lse.shape == (1, 3, 300)
    fresh, _ = hyper_attention(q, k, v, hyper_mod.params(job), causal=False, backend="torch",
                               generator=torch.Generator().manual_seed(job.seed))
    assert torch.equal(a, fresh)
    ref, _ = reference_attention(q, k, v, causal=False, scale=1 / math.sqrt(32))
    assert 0 < (a - ref).norm() / ref.norm() < 10


def test_inside_a_cuda_graph_capture_hyper_draws_from_the_default_generator(monkeypatch):
    """A capture (timing.cuda_graph) cannot seed or advance the method's own generator: the draws
    come from the default generator, which advances between calls (as a graph's replays do), and
    leave the method's seeded calls as they were."""
    job = job_config(cfg(seq_len=300, min_seq_len=64, block_size=32, sample_size=16, sample_tile=32, head_dim=32))
    q, k, v = _qkv(300)
    forward = methods.get("hyper_ref").build(job)
    seeded, _ = forward(q, k, v, False)
    monkeypatch.setattr(hyper_mod, "_capturing", lambda t: True)
    torch.manual_seed(123)
    first, _ = forward(q, k, v, False)
    second, _ = forward(q, k, v, False)
    torch.manual_seed(123)
    again, _ = forward(q, k, v, False)
    assert not torch.equal(first, second) and torch.equal(first, again)
    monkeypatch.undo()
    assert torch.equal(forward(q, k, v, False)[0], seeded)


def test_hyper_flops_follow_the_recursion():
    job = job_config(cfg(seq_len=16384, causal=False))
    assert methods.get("hyper").flops(job) == 32 * 4.0 * 16384 * (256 + 256) * 64
    causal = job_config(cfg(seq_len=8192, causal=True))
    per_head = 2 * (2.0 * 4096**2 * 64) + 4.0 * 4096 * 512 * 64
    assert methods.get("hyper").flops(causal) == 32 * per_head


def test_custom_method_wraps_a_bare_output():
    job = job_config(cfg(methods=["custom"], **{"method.target": "tests.hyperbench.helpers:plain_attention"}))
    q, k, v = _qkv()
    out, lse = methods.get("custom").build(job)(q, k, v, False)
    assert lse is None and out.shape == q.shape
