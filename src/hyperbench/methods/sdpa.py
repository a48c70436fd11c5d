"""`sdpa_*`: torch.nn.functional.scaled_dot_product_attention with one backend forced.

The backend is forced with torch.nn.attention.sdpa_kernel([backend]); PyTorch then raises rather than
fall back to another kernel. Whether the backend takes these inputs is probed once per job on a small
tensor of the same dtype, head_dim and mask, and the refusal (PyTorch's own warning) becomes the
reason the row is unavailable.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from hyperbench_kernels.sdpa_leaves import MAX_HEADS

from .base import Method, attention_flops

BACKENDS = {
    "sdpa_flash": SDPBackend.FLASH_ATTENTION,
    "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION,
    "sdpa_efficient": SDPBackend.EFFICIENT_ATTENTION,
    "sdpa_math": SDPBackend.MATH,
}


def _forward(backend: SDPBackend):
    def forward(q, k, v, causal):
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal), None
    return forward


@functools.lru_cache(maxsize=None)
def _refusal(backend: SDPBackend, device: str, dtype: torch.dtype, head_dim: int, causal: bool, grad: bool):
    """None if the backend runs these inputs, else why not (PyTorch's warning or error, one line)."""
    q = torch.randn(1, 2, 128, head_dim, device=device, dtype=dtype, requires_grad=grad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out, _ = _forward(backend)(q, q, q, causal)
            if grad:
                out.sum().backward()
            if device == "cuda":
                torch.cuda.synchronize()
            return None
        except RuntimeError as err:
            reasons = [str(w.message) for w in caught if "kernel" in str(w.message) or "requires" in str(w.message)]
            text = reasons[0] if reasons else str(err)
            return " ".join(text.split())[:300]


GPU_ONLY = {"sdpa_cudnn", "sdpa_efficient"}


def _unavailable(name: str):
    def unavailable(job):
        if name in GPU_ONLY and job.device != "cuda":
            return f"PyTorch's {BACKENDS[name].name} backend runs on CUDA GPUs only"
        # FlashAttention-2 puts the batch and the heads on CUDA grid axes (the limit hyper's SDPA leaves
        # slice by); past it the launch fails (on the H200: "invalid argument" at num_heads=70000)
        if name == "sdpa_flash" and job.device == "cuda" and max(job.batch, job.num_heads) > MAX_HEADS:
            return (f"PyTorch's flash kernels launch at most {MAX_HEADS} batches and heads (a CUDA grid "
                    f"axis); got batch={job.batch}, num_heads={job.num_heads}")
        return _refusal(BACKENDS[name], job.device, job.torch_dtype, job.head_dim, job.causal, job.mode != "fwd")
    return unavailable


METHODS = tuple(
    Method(
        name=name,
        exact=True,
        build=lambda job, b=backend: _forward(b),
        flops=attention_flops,
        efficiency=0.12 if name == "sdpa_math" else 0.5,
        unavailable=_unavailable(name),
        description=f"PyTorch SDPA with the {backend.name} backend forced",
    )
    for name, backend in BACKENDS.items()
)
