"""Exact attention with its log-sum-exp through PyTorch's fused SDPA kernels, for the leaves of the
causal recursion (and for non-causal inputs shorter than min_seq_len).

At n = 131072 the causal recursion ends in 32 exact 4096×4096 causal blocks per head. Our general
Triton kernel does them at ~190 TFLOP/s; cuDNN and FlashAttention-2 (both inside PyTorch) are
faster, and both return the log-sum-exp the recursion's merges need.

Gradient. The merge uses the leaves' lse, so the true gradient has a dlse term:
    dS = P ∘ (dO Vᵀ − Δ),  Δ_i = rowsum(dO_i ∘ O_i) − dlse_i.
FlashAttention's backward computes Δ itself from the `out` and `grad_out` it is given, with no
place for dlse. We make it compute our Δ by appending columns (head_dim d → d + 8, the kernels
want multiples of 8): q, k, v get zero columns (scores and dP = dO·v unchanged), grad_out two
columns of ones, and out −dlse split into two 16-bit parts, so rowsum(dO'∘O') = rowsum(dO∘O) − dlse.
The extra columns of the gradients are dropped.

The forward is LEAF_FORWARD's kernel (cuDNN by default: SDPA's own forward+backward at n = 2048
took 0.45–0.52 ms on cuDNN against 0.62–0.65 on flash in three H200 runs). When no gradient
reaches lse, that kernel's own backward runs on the unwidened tensors; only a loss through lse
takes the widened flash backward, whichever kernel ran the forward (`_flash_state`).
`backward_reference` below states the contract of the kernel in PyTorch so the tests can check
this on CPU.
"""

from __future__ import annotations

import os

import torch

_PAD = 8
# Forward kernel ("cudnn" or "flash") of every exact piece: inference, the causal recursion's leaves
# and short inputs in training (whose backward, `backward_from_state`, is the same kernel's); the
# widened backward for a lse gradient is always flash's. HYPERBENCH_LEAF_FORWARD lets the GPU check
# pick.
LEAF_FORWARD_DEFAULT = "cudnn"
LEAF_FORWARD = os.environ.get("HYPERBENCH_LEAF_FORWARD", LEAF_FORWARD_DEFAULT)
# Heads (and batches) one call of these kernels takes: cuDNN's fails beyond (PyTorch stopped routing
# such inputs to it in its PR 180718; these calls reach the kernel directly) and FlashAttention puts
# heads on a grid axis of this size. The causal recursion's leaves are H·2^levels heads, 131072 for
# n = 16384, H = 8 at min_seq_len 1, so wider calls are made a slice of heads at a time.
MAX_HEADS = 65535


def supported(q: torch.Tensor) -> bool:
    """Inputs the fused kernels take: CUDA, 16-bit, head_dim a multiple of 8 up to 128 (+8), at most
    MAX_HEADS batches (more heads than that are split into calls)."""
    return (q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
            and q.shape[-1] % 8 == 0 and q.shape[-1] <= 128 and q.shape[0] <= MAX_HEADS)


def _head_slices(heads: int) -> list[slice]:
    return [slice(h, min(heads, h + MAX_HEADS)) for h in range(0, heads, MAX_HEADS)]


def _per_head_slice(fn, states, *tensors):
    """fn(state, *tensors' slices along dim 1) for each slice of heads and its call's state, the
    results' tensors concatenated along dim 1 again."""
    parts = [fn(state, *(x[:, sl] for x in tensors)) for sl, state in zip(_head_slices(tensors[0].shape[1]), states)]
    return tuple(torch.cat(xs, 1) for xs in zip(*parts))


def _flash_forward(q, k, v, causal, scale):
    res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scale)
    out, lse = res[0], res[1]
    return out, lse[..., :q.shape[-2]], tuple(res[2:8])


def _flash_backward(dout, q, k, v, out, lse, causal, scale, state):
    cum_q, cum_k, max_q, max_k, seed, offset = state
    return torch.ops.aten._scaled_dot_product_flash_attention_backward(
        dout, q, k, v, out, lse, cum_q, cum_k, max_q, max_k, 0.0, causal, seed, offset, scale=scale)


def backward_reference(dout, q, k, v, out, lse, causal, scale, state=None):
    """What FlashAttention's backward computes, in PyTorch: Δ from the given out and dout,
    P recomputed from q, k and the given lse."""
    f = torch.promote_types(q.dtype, torch.float32)
    s = (q.to(f) @ k.to(f).transpose(-1, -2)) * scale
    if causal:
        n_q, n_k = s.shape[-2:]
        s = s.masked_fill(torch.ones(n_q, n_k, dtype=torch.bool, device=s.device).triu(n_k - n_q + 1),
                          float("-inf"))
    p = torch.exp(s - lse.unsqueeze(-1))
    delta = (dout.to(f) * out.to(f)).sum(-1, keepdim=True)
    ds = p * (dout.to(f) @ v.to(f).transpose(-1, -2) - delta)
    return ((ds @ k.to(f)) * scale).to(q.dtype), ((ds.transpose(-1, -2) @ q.to(f)) * scale).to(k.dtype), \
        (p.transpose(-1, -2) @ dout.to(f)).to(v.dtype)


def _widen(x: torch.Tensor, *columns: torch.Tensor) -> torch.Tensor:
    """x with _PAD more columns: `columns` ([..., n] each) first, then zeros."""
    extra = x.new_zeros(*x.shape[:-1], _PAD)
    for i, col in enumerate(columns):
        extra[..., i] = col
    return torch.cat([x, extra], dim=-1)


def _split(x: torch.Tensor, dtype: torch.dtype):
    """x (fp32) as hi + lo in a 16-bit dtype, 16 significant bits between them."""
    hi = x.to(dtype)
    return hi, (x - hi.float()).to(dtype)


def backward_with_lse(dout, dlse, q, k, v, out, lse, causal, scale, state, kernel=_flash_backward):
    """dq, dk, dv of (out, lse) = attention(q, k, v) given dout and dlse, by the widened call."""
    d = q.shape[-1]
    ones = torch.ones_like(lse)
    # −dlse in two 16-bit columns (hi + lo), so Δ keeps dlse to ~16 bits rather than 8.
    dout_w = _widen(dout.to(q.dtype), ones, ones)
    out_w = _widen(out, *_split(-dlse.float(), out.dtype))
    dq, dk, dv = kernel(dout_w, _widen(q), _widen(k), _widen(v), out_w, lse.contiguous(), causal, scale,
                        state)
    return dq[..., :d], dk[..., :d], dv[..., :d]


def _flash_state(state):
    """flash's backward state for a forward run by `state`'s kernel.  Without dropout flash's
    backward reads only the lengths (cum_seq None for dense rows) and not its RNG tensors, so a
    cuDNN forward's lengths and RNG placeholders serve (checked on the GPU by
    scripts/gpu_kernel_check.py's leaves group, whose failure sends every leaf to flash)."""
    if state[0] == "flash":
        return state[1:]
    if state[0] == "cudnn":
        seed, offset, max_q, max_k = state[1:]
        return None, None, max_q, max_k, seed, offset
    return None     # "reference": the CPU tests' stand-in kernels take no state


class _SdpaWithLse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, scale):
        out, lse, state = forward_with_state(q, k, v, causal=causal, scale=scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.scale, ctx.state = causal, scale, state
        ctx.set_materialize_grads(False)   # no gradient on lse arrives as None, not as zeros
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dout = torch.zeros_like(out) if dout is None else dout.to(out.dtype).contiguous()
        if dlse is None:   # the loss reaches out only: the forward kernel's own backward, no widening
            dq, dk, dv = backward_from_state(dout, q, k, v, out, lse, causal=ctx.causal, scale=ctx.scale,
                                             state=ctx.state)
        else:
            dq, dk, dv = _widened_backward(dout, dlse, q, k, v, out, lse, ctx.causal, ctx.scale, ctx.state)
        return dq, dk, dv, None, None


def _widened_backward(dout, dlse, q, k, v, out, lse, causal, scale, state):
    """backward_with_lse on flash's kernel after a forward that left `state`, a slice of heads at
    a time where the forward was."""
    if state[0] == "heads":
        return _per_head_slice(lambda part, *xs: _widened_backward(*xs, causal, scale, part), state[1],
                               dout, dlse, q, k, v, out, lse)
    return backward_with_lse(dout, dlse, q, k, v, out, lse, causal, scale, _flash_state(state), kernel=_flash_backward)


def forward_with_state(q, k, v, *, causal: bool, scale: float):
    """(out, lse, state): LEAF_FORWARD's kernel, plus what `backward_from_state` needs of it.
    "reference" is the PyTorch statement of both kernels (CPU tests of the code around them).
    More than MAX_HEADS heads: one call per slice of heads, state ("heads", each slice's)."""
    if q.shape[1] > MAX_HEADS:
        slices = _head_slices(q.shape[1])
        parts = [forward_with_state(q[:, sl], k[:, sl], v[:, sl], causal=causal, scale=scale) for sl in slices]
        out, lse = (torch.cat([part[i] for part in parts], 1) for i in (0, 1))
        return out, lse, ("heads", tuple(part[2] for part in parts))
    q, k, v = (x.contiguous() for x in (q, k, v))
    if LEAF_FORWARD == "reference":
        from .reference import exact_attention
        out, lse = exact_attention(q, k, v, causal=causal, scale=scale)
        return out.to(q.dtype), lse, ("reference",)
    if LEAF_FORWARD == "cudnn":
        res = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, causal, False,
                                                                 scale=scale)
        B, H, n, _ = q.shape
        return res[0], res[1].reshape(B, H, n), ("cudnn", res[6], res[7], res[4], res[5])
    out, lse, state = _flash_forward(q, k, v, causal, scale)
    return out, lse, ("flash", *state)


def backward_from_state(dout, q, k, v, out, lse, *, causal: bool, scale: float, state):
    """dq, dk, dv by the kernel that made `state`, with Δ = rowsum(dout ∘ out) and P = exp(S − lse).
    out and lse may be those of a larger merged attention this one is part of (the causal
    recursion's final rows): then these are this part's share of its gradient, for a loss
    through out only (a dlse would need the widened call above)."""
    if state[0] == "heads":
        return _per_head_slice(lambda part, *xs: backward_from_state(*xs, causal=causal, scale=scale, state=part),
                               state[1], dout, q, k, v, out, lse)
    q, k, v, dout, out = (x.contiguous() for x in (q, k, v, dout.to(q.dtype), out))
    lse = lse.float().contiguous()
    if state[0] == "reference":
        return backward_reference(dout, q, k, v, out, lse, causal, scale)
    if state[0] == "cudnn":
        seed, offset, max_q, max_k = state[1:]
        return torch.ops.aten._scaled_dot_product_cudnn_attention_backward(
            dout, q, k, v, out, lse.unsqueeze(-1), seed, offset, None, None, None, max_q, max_k, 0.0,
            causal, scale=scale)
    return _flash_backward(dout, q, k, v, out, lse, causal, scale, state[1:])


def attention_with_lse(q, k, v, *, causal: bool, scale: float):
    """(out [B, H, n, d], lse [B, H, n] fp32, natural log) of exact attention, differentiable in
    q, k, v through both outputs. Causal: query i sees key j <= i (n_q == n_k)."""
    q, k, v = (x.contiguous() for x in (q, k, v))
    if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
        return _SdpaWithLse.apply(q, k, v, causal, scale)
    return forward_with_state(q, k, v, causal=causal, scale=scale)[:2]
