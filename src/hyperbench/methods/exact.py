"""`exact`: softmax(QKᵀ)V in plain PyTorch with the scores materialised and the softmax in fp32.

Chunked over queries only when the whole score matrix would not fit in (a quarter of) free memory, so
it runs at n = 131072 on one H200; under autograd each chunk is checkpointed so the backward pass
recomputes its scores instead of keeping n² probabilities alive.
"""

from __future__ import annotations

import math

import torch
from torch.utils.checkpoint import checkpoint

from .base import Method, attention_flops

BYTES_PER_SCORE = 10  # fp32 scores + fp32 probabilities + probabilities in the input dtype


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    return 8 << 30  # CPU: keep a chunk's scores under a few GiB


def _attend(q, k, v, causal: bool, row0: int, scale: float):
    s = (q @ k.transpose(-1, -2)).float() * scale
    if causal:
        rows = torch.arange(row0, row0 + q.shape[-2], device=q.device).unsqueeze(-1)
        s = s.masked_fill(torch.arange(k.shape[-2], device=q.device) > rows, -math.inf)
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s, dim=-1).to(v.dtype)
    return p @ v, lse


def query_chunk(q: torch.Tensor, n_keys: int) -> int:
    B, H, n, _ = q.shape
    per_row = B * H * n_keys * BYTES_PER_SCORE
    return max(1, min(n, _free_bytes(q.device) // 4 // per_row))


def exact_attention(q, k, v, causal: bool):
    scale = 1.0 / math.sqrt(q.shape[-1])
    n = q.shape[-2]
    chunk = query_chunk(q, k.shape[-2])
    if chunk >= n:
        return _attend(q, k, v, causal, 0, scale)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    outs, lses = [], []
    for row0 in range(0, n, chunk):
        qc = q[:, :, row0:row0 + chunk]
        # Under the causal mask, keys after the chunk's last row are never seen: leave them out.
        kc, vc = (k, v) if not causal else (k[:, :, :row0 + qc.shape[-2]], v[:, :, :row0 + qc.shape[-2]])
        if grad:
            o, l = checkpoint(_attend, qc, kc, vc, causal, row0, scale, use_reentrant=False)
        else:
            o, l = _attend(qc, kc, vc, causal, row0, scale)
        outs.append(o)
        lses.append(l)
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)


METHOD = Method(
    name="exact",
    exact=True,
    build=lambda job: exact_attention,
    flops=attention_flops,
    efficiency=0.12,
    description="softmax(QKᵀ)V in PyTorch, scores materialised (fp32 softmax), chunked over queries to fit",
)
