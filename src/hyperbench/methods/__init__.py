"""The method registry: every attention implementation the suite can measure, by name."""

from __future__ import annotations

from .base import Method, refusal
from . import exact, flash_attn, hyper, sdpa, custom

__all__ = ["Method", "refusal", "names", "get"]

_REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (exact.METHOD, *sdpa.METHODS, flash_attn.METHOD, hyper.HYPER, hyper.HYPER_REF, custom.METHOD)
}


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> Method:
    return _REGISTRY[name]
