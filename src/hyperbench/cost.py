"""Estimate a call's time from its FLOPs before running it, so no job hangs for hours by surprise.

The device's matmul rate is measured once per process in the job's dtype; a method's estimate is its
FLOPs over that rate times a per-method efficiency guess (materialised attention reaches a small
fraction of the matmul rate, fused kernels a larger one). Estimates decide skips and are stored next
to the measurement (est_ms), so they can be checked.
"""

from __future__ import annotations

import functools
import time

import torch

from .timing import GRAPH_EXTRA_CALLS, sync

MODE_FACTOR = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}  # backward ≈ 2.5 forwards of matmul work


@functools.lru_cache(maxsize=None)
def matmul_rate(device: str, dtype: torch.dtype) -> float:
    """Measured FLOP/s of a square matmul on this device and dtype (best of a few, after an
    untimed one: a process's first CPU matmul ran at 73–96% of the later ones' rate on 2 cores,
    which put the default job's `exact` over its budget)."""
    n = 4096 if device == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(4):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def call_flops(method, job) -> float:
    """Matmul FLOPs of one timed call of `method` for `job` in the job's mode."""
    return method.flops(job) * MODE_FACTOR[job.mode]


def compute_ms(flops: float, device: str, dtype: torch.dtype, efficiency: float) -> float:
    """Milliseconds for `flops` at `efficiency` times the device's matmul rate in `dtype`."""
    return 1e3 * flops / (matmul_rate(device, dtype) * efficiency)


def estimate_ms(method, job) -> float:
    """Estimated milliseconds of one timed call of `method` for `job`."""
    return compute_ms(call_flops(method, job), job.device, job.torch_dtype, method.efficiency)


def measuring_ms(call_ms: float, job) -> float:
    """Time the harness spends on a method: warm-up plus the fewest repetitions it will take
    (on a CPU one warm-up call when a call outlasts the measuring target, as timing.measure does;
    with timing.cuda_graph three calls more: the side stream's, the captured one and the first replay)."""
    warmups = 1 if job.device == "cpu" and call_ms > job.timing.target_ms else max(job.timing.warmup, 1)
    captures = GRAPH_EXTRA_CALLS if job.timing.cuda_graph else 0
    return call_ms * (warmups + captures + job.timing.min_reps)
