"""`hyper` (this project's Triton kernels) and `hyper_ref` (the readable PyTorch specification).

Both run the same driver, hyperbench_kernels.hyper_attention, with the same generator seed, so for one
job they draw identical LSH projections and sampled columns and differ only in the primitive.
"""

from __future__ import annotations

import importlib.util

import torch

from hyperbench_kernels.hyper_attention import HyperParams, hyper_attention

from .base import Method, require


def params(job) -> HyperParams:
    return HyperParams(block_size=job.block_size, sample_size=job.sample_size, sample_tile=job.sample_tile,
                       lsh_num_projs=job.lsh_num_projs, min_seq_len=job.min_seq_len)


def hyper_flops(job) -> float:
    """Matmul FLOPs of the algorithm, following its recursion (exact where it falls back to exact)."""
    d, b, m, floor = job.head_dim, job.block_size, job.sample_size, job.min_seq_len

    def non_causal(n: int) -> float:
        return 4.0 * n * n * d if n < floor else 4.0 * n * (min(b, n) + m) * d

    def causal(n: int) -> float:
        if n <= floor:
            return 2.0 * n * n * d
        half = -(-n // 2)
        return 2 * causal(half) + non_causal(half)

    per_head = causal(job.seq_len) if job.causal else non_causal(job.seq_len)
    return job.batch * job.num_heads * per_head


def _capturing(q) -> bool:
    """Whether q's stream is being captured into a CUDA graph."""
    return q.is_cuda and torch.cuda.is_current_stream_capturing()


def _build(backend: str):
    def build(job):
        p = params(job)
        generators: dict[torch.device, torch.Generator] = {}

        def forward(q, k, v, causal):
            if _capturing(q):
                # Captured in a CUDA graph (timing.cuda_graph): a private generator can be neither
                # seeded nor advanced inside a capture, so draw from the device's default generator,
                # which the capture registers; each replay then draws afresh, as each call of a
                # model would. (The job measures the error on a seeded eager call instead.)
                return hyper_attention(q, k, v, p, causal=causal, generator=None, backend=backend)
            # Every call draws the same projections and samples: one generator per device, seeded
            # again before each call, rather than a new CUDA generator per call, which is CPU work
            # the GPU can wait for (gpu_probe.py --parts=timeline: 0.18 ms on one H200 host, level
            # on another).
            gen = generators.get(q.device)
            if gen is None:
                gen = generators[q.device] = torch.Generator(device=q.device)
            gen.manual_seed(job.seed)
            return hyper_attention(q, k, v, p, causal=causal, generator=gen, backend=backend)
        return forward
    return build


def _kernel_limits(job) -> None:
    allowed_d = (16, 32, 64, 128)
    require(job.head_dim in allowed_d, "head_dim",
            f"{job.head_dim} is not allowed for method hyper; allowed: {', '.join(map(str, allowed_d))}")
    require(job.block_size % 16 == 0 and 16 <= job.block_size <= 1024, "block_size",
            f"{job.block_size} is not allowed for method hyper; allowed: a multiple of 16 from 16 to 1024")
    require(job.sample_size <= 1024, "sample_size",
            f"{job.sample_size} is not allowed for method hyper; allowed: 0 to 1024")
    require(job.sample_tile % 16 == 0, "sample_tile",
            f"{job.sample_tile} is not allowed for method hyper; allowed: 0 or a multiple of 16")


def _kernel_unavailable(job):
    if job.device != "cuda":
        return "the Triton kernels need a CUDA GPU (the CPU interpreter is for tests, not timings)"
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    return None


HYPER = Method(
    name="hyper",
    exact=False,
    build=_build("triton"),
    flops=hyper_flops,
    efficiency=0.3,
    limits=_kernel_limits,
    unavailable=_kernel_unavailable,
    description="HyperAttention, this project's fused Triton kernels (kernels/)",
)

HYPER_REF = Method(
    name="hyper_ref",
    exact=False,
    build=_build("torch"),
    flops=hyper_flops,
    efficiency=0.05,
    description="HyperAttention in plain PyTorch: the readable specification (kernels/reference.py)",
)
