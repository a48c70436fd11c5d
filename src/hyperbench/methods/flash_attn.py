"""`flash_attn`: the flash-attn package (FlashAttention-2), where it is installed (an optional extra)."""

from __future__ import annotations

import importlib.util

from .base import Method, attention_flops


def _build(job):
    from flash_attn import flash_attn_func

    def forward(q, k, v, causal):
        # flash-attn takes [batch, seq, heads, dim]; the transposes are part of the measured call.
        out, lse, _ = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                      causal=causal, return_attn_probs=True)
        return out.transpose(1, 2), lse
    return forward


def _unavailable(job):
    if importlib.util.find_spec("flash_attn") is None:
        return "the flash-attn package is not installed (pip install 'hyperbench[flash]' where CUDA builds work)"
    if job.device != "cuda":
        return "flash-attn runs on CUDA GPUs only"
    if job.dtype == "float32":
        return "flash-attn takes float16 or bfloat16 only"
    return None


METHOD = Method(
    name="flash_attn",
    exact=True,
    build=_build,
    flops=attention_flops,
    efficiency=0.5,
    unavailable=_unavailable,
    description="flash-attn package (FlashAttention-2)",
)
