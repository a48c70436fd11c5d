"""What a method is: a name, whether it can run here (and why not), and a forward pass.

`forward(q, k, v, causal) -> (out, lse or None)` on tensors shaped [batch, heads, seq, dim]. The harness,
not the method, decides how to time it. `check` raises ConfigError for a setting of the method itself
that is wrong (a custom target that does not import); `limits` raises it for a shape the method has
no kernel for (a head_dim, a block size): the job records that method `unavailable` with the message,
and only a config that every selected method refuses is an error (`config.job_config`).
`unavailable` returns the reason it cannot run on this machine (no GPU, package not installed, the
backend refuses these inputs), or None.
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
    limits: Callable[["object"], None] = field(default=_no_check)
    unavailable: Callable[["object"], Optional[str]] = field(default=_always_available)
    description: str = ""


def attention_flops(job) -> float:
    """4·B·H·n²·d for QKᵀ and PV; half of it under a causal mask."""
    full = 4.0 * job.batch * job.num_heads * job.seq_len**2 * job.head_dim
    return full / 2 if job.causal else full


def refusal(method: Method, job) -> Optional[ConfigError]:
    """The error `method.limits` raises for this job's shape, or None where the method takes it."""
    try:
        method.limits(job)
    except ConfigError as err:
        return err
    return None


def require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(key, message)
