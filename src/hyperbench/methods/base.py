"""What a method is: a name, whether it can run here (and why not), and a forward pass.

`forward(q, k, v, causal) -> (out, lse or None)` on tensors shaped [batch, heads, seq, dim]. The harness,
not the method, decides how to time it. `check` raises ConfigError for a config the method can never
take (a head_dim it has no kernel for); `unavailable` returns the reason it cannot run on this machine
(no GPU, package not installed, the backend refuses these inputs), or None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..errors import ConfigError

Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], tuple]


def _no_check(job) -> None:
    return None


def _always_available(job) -> Optional[str]:
    return None


@dataclass(frozen=True)
class Method:
    name: str
    exact: bool                               # computes softmax(QKᵀ)V exactly (up to rounding)
    build: Callable[["object"], Forward]      # job config -> forward function
    flops: Callable[["object"], float]        # forward FLOPs of one call for this job
    efficiency: float                         # guessed fraction of the device's matmul rate, for estimates
    check: Callable[["object"], None] = field(default=_no_check)
    unavailable: Callable[["object"], Optional[str]] = field(default=_always_available)
    description: str = ""


def attention_flops(job) -> float:
    """4·B·H·n²·d for QKᵀ and PV; half of it under a causal mask."""
    full = 4.0 * job.batch * job.num_heads * job.seq_len**2 * job.head_dim
    return full / 2 if job.causal else full


def require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(key, message)
