"""`custom`: any attention callable named by import path (`method.target=pkg.module:fn`).

The callable takes (q, k, v, causal) on [batch, heads, seq, dim] tensors and returns the output, or
(output, lse). It is measured by the same harness as the built-in methods.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .base import Method, attention_flops


def load_target(target: str | None):
    if not target or ":" not in target:
        raise ConfigError("method.target", f"{target!r} is not allowed; allowed: an import path pkg.module:function")
    module_name, _, attr = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError("method.target", f"cannot import {target!r} ({err}); allowed: an importable pkg.module:function")
    if not callable(fn):
        raise ConfigError("method.target", f"{target!r} is not callable; allowed: a function (q, k, v, causal)")
    return fn


def _build(job):
    fn = load_target(job.method_target)

    def forward(q, k, v, causal):
        result = fn(q, k, v, causal)
        return result if isinstance(result, tuple) else (result, None)
    return forward


METHOD = Method(
    name="custom",
    exact=False,
    build=_build,
    flops=attention_flops,
    efficiency=0.2,
    check=lambda job: load_target(job.method_target),
    description="a user's attention callable, named by method.target=pkg.module:function",
)
