"""The causal recursion on the Triton backend: one autograd function around the whole recursion.

Forward: hyper_attention._causal (the specification) step for step, with the same random draws in
the same order, but every level merges in place instead of the fp32 merge and torch.cat: the
key-list kernel's epilogue merges the lower-left piece into the rows' diagonal result
(triton_merge.merge_into where that kernel does not apply).

Backward. Let a row's keys be split into parts p (a causal leaf, each level's lower-left piece),
each with its own scores S_p (the sampled part's include + log w) and partial (O_p, ℓ_p), merged
into the row's final O = Σ_p w_p O_p, ℓ = log Σ_p exp ℓ_p, w_p = exp(ℓ_p − ℓ). The chain rule
through the merge gives each part dO_p = w_p dO and dℓ_p = w_p (dO·(O_p − O) + dℓ), so its
Δ_p = rowsum(dO_p ∘ O_p) − dℓ_p = w_p (rowsum(dO ∘ O) − dℓ) = w_p Δ, and
    dS_p = exp(S_p − ℓ_p) ∘ (dO_p Vᵀ − Δ_p) = exp(S_p − ℓ) ∘ (dO Vᵀ − Δ):
every part's backward is the ordinary attention backward run with the FINAL row's ℓ and Δ (as
FlashAttention does across its key tiles). So the backward needs no part's own output or lse, no
merge backward and no concatenation: each piece's backward kernel runs on (dO, ℓ, Δ) of its rows
and the gradients add up. The fused SDPA leaves compute Δ themselves from (dO, out): given the
final out they get it right when no gradient reaches lse; with one, the leaves fall back to our
Triton kernel, which takes Δ directly.
"""

from __future__ import annotations

import os

import torch

from . import hyper_attention as driver
from . import sdpa_leaves, triton_attention
from .triton_cast import copy_into
from .triton_delta import delta as row_delta
from .triton_merge import merge_into
from .triton_sort import recursion_levels, recursion_orders

# A padded row's lse in the backward: its dO and Δ are zero, so any finite value will do.
_PAD_LSE = 0.0

# The recursion adds its gradients up straight in the inputs' 16-bit dtype, into the SDPA leaves'
# own gradient tensors (no fp32 copy of them, no cast at the end), where the levels add at most
# this many times into a key row on average (grads_dtype); else in fp32 buffers cast at the end.
# Each add is one more rounding.  On the H200 (v28, gpu_probe.py --parts=causal16): n = 131072,
# d = 64 (10 adds) fwd+bwd 42.45 -> 38.15 ms, dK/dV error against the fp32 reference 4.1e-3 ->
# 4.9e-3, dQ 3.8e-3 -> 3.7e-3; d = 128 (20 adds) 76.2 -> 66.5 ms, dK/dV 4.1e-3 -> 5.8e-3.  The
# largest error seen in 16 bits, 6.5e-3 (blocks of 32, 18 adds), is within 1e-2; n = 262144
# (6 levels, 12 and 24 adds) gave the same as 131072, and d = 16 at 20 adds 5.8e-3 (v29).
# HYPERBENCH_CAUSAL_16BIT_ADDS=0 keeps fp32.
CAUSAL_16BIT_ADDS_DEFAULT = 24.0
CAUSAL_16BIT_ADDS = float(os.environ.get("HYPERBENCH_CAUSAL_16BIT_ADDS", CAUSAL_16BIT_ADDS_DEFAULT))


def _exact_forward(q, k, v, causal, scale):
    """Exact attention of a leaf or a short lower-left piece -> (out, lse, piece record)."""
    if driver.SDPA_LEAVES and sdpa_leaves.supported(q):
        out, lse, state = sdpa_leaves.forward_with_state(q, k, v, causal=causal, scale=scale)
        return out, lse, ("sdpa", causal, state)
    piece = _exact_triton_piece(q, causal, scale)
    _, order, _, _, kw = piece
    out, lse = triton_attention.block_sample_forward(q, k, v, order, order, None, **kw)
    return out, lse, piece


def _exact_triton_piece(q, causal, scale):
    """The record of exact attention on our kernel: one block over identity orders, no samples."""
    order = driver._identity(q)
    return ("triton", order, order, None, dict(block_size=q.shape[2], sample_tile=0, sample_weight=1.0,
                                               scale=scale, causal=causal))


def _lower_left_forward(q, k, v, p, scale, generator, into, ranks, orders=None):
    """Bottom half's queries against the top half's keys (non-causal HyperAttention), merged in
    place into `into` = (out, lse) those rows hold from their diagonal part; ranks: the LSH bucket
    ranks of these queries and keys; orders: their sort orders where the top call sorted every
    level at once. Returns the piece's record for the backward."""
    driver.check_square(q, k)
    if q.shape[2] < p.min_seq_len:
        out, lse, piece = _exact_forward(q, k, v, False, scale)
        merge_into(*into, out, lse)
        return piece
    q_order, k_order, samples, weight = driver.lsh_plan(q, k, p, generator, "triton", ranks=ranks, orders=orders)
    kw = dict(block_size=p.block_size, sample_tile=p.sample_tile, sample_weight=weight, scale=scale,
              causal=False)
    # one build of the key lists for this piece's forward and backward
    kw["lists"] = triton_attention.prepared_lists(q, k, v, q_order, k_order, samples, **kw)
    triton_attention.block_sample_forward(q, k, v, q_order, k_order, samples, **kw, into=into)
    return ("triton", q_order, k_order, samples, kw)


def _leaf_split(n: int, min_seq_len: int):
    """(halvings, leaf rows) where n halves evenly down to leaves of at most min_seq_len rows, so
    that every leaf is one slice of a single reshape of the inputs; None where a level pads."""
    halvings = 0
    while n > min_seq_len:
        if n % 2:
            return None
        n, halvings = n // 2, halvings + 1
    return halvings, n


def _leaves_first(q, k, v, p, scale):
    """All the recursion's causal leaves in one exact call, made before the LSH planning: the leaves
    need no hashing, so the GPU works through them while the CPU launches the planning's short
    kernels, which would otherwise leave it idle between them.  None where a level pads."""
    B, H, n, d = q.shape
    split = _leaf_split(n, p.min_seq_len)
    if split is None:
        return None
    halvings, rows = split
    return _exact_forward(*(x.reshape(B, H << halvings, rows, d) for x in (q, k, v)), True, scale)


def _plan_all_levels(q, k, p, generator):
    """The recursion's LSH planning, made once at the top: one set of hyperplanes (as the
    specification draws), every row of q and k hashed once, and every level's sort in one pass
    where the length halves into whole chunks.  -> (ranks, orders): the rows' bucket ranks, or ()
    when orders holds every sorted level's (query order, key order); orders None otherwise."""
    both, prefix = driver.counted_ranks("triton", q, k, driver.draw_projections(q, p, generator, "triton"),
                                        p.lsh_num_projs)
    if driver.SORT == "counting" and isinstance(both, torch.Tensor):
        orders = recursion_orders(both, p.lsh_num_projs, recursion_levels(q.shape[2], p.min_seq_len),
                                  prefix=prefix)
        if orders:
            return (), orders
    return tuple(both), None


def _forward(q, k, v, p, scale, generator, ranks=None, orders=None, leaves=None):
    """(out, lse, tree): tree holds each level's piece record for the backward.  ranks: the LSH
    bucket ranks of q's and k's rows; the top call draws the hyperplanes (one set for every level,
    as the specification does) and hashes each row once, and the levels take slices.  orders: the
    sort orders of this level's piece and the deeper ones', where the top call sorted every level
    in one pass (triton_sort.recursion_orders, for lengths that halve into whole chunks); ranks are
    () then, since the levels below the sorted ones have exact pieces.  leaves: the deepest level's
    (out, lse, record), computed by the top call before anything else (_leaves_first)."""
    B, H, n, d = q.shape
    if n <= p.min_seq_len:
        return leaves if leaves is not None else _exact_forward(q, k, v, True, scale)
    if ranks is None:
        leaves = _leaves_first(q, k, v, p, scale)
        ranks, orders = _plan_all_levels(q, k, p, generator)
    if n % 2:
        q, k, v = (torch.nn.functional.pad(x, (0, 0, 0, 1)) for x in (q, k, v))
        # the zero row is on the negative side of every hyperplane: bucket 0, Gray rank 0
        ranks = tuple(torch.nn.functional.pad(r, (0, 1)) for r in ranks)
    half = q.shape[2] // 2
    halves = [x.reshape(B, 2 * H, half, d) for x in (q, k, v)]
    out_d, lse_d, sub = _forward(*halves, p, scale, generator, tuple(r.reshape(B, 2 * H, half) for r in ranks),
                                 orders and orders[1:], leaves)
    out_d, lse_d = out_d.reshape(B, H, 2 * half, d), lse_d.reshape(B, H, 2 * half)
    piece = _lower_left_forward(q[:, :, half:], k[:, :, :half], v[:, :, :half], p, scale, generator,
                                (out_d[:, :, half:], lse_d[:, :, half:]),
                                ranks and (ranks[0][:, :, half:], ranks[1][:, :, :half]),
                                orders[0] if orders else None)
    return out_d[:, :, :n], lse_d[:, :, :n], (sub, piece)


def _piece_backward(piece, q, k, v, out, lse, dout, delta, scale, has_dlse, grads, accumulate):
    """One piece's dq, dk, dv, from its rows' final out, lse and Δ, written (accumulate: added)
    into `grads`."""
    if piece[0] == "sdpa":
        _, causal, state = piece
        if not has_dlse:
            parts = sdpa_leaves.backward_from_state(dout, q, k, v, out, lse, causal=causal, scale=scale,
                                                    state=state)
            for acc, part in zip(grads, parts):
                copy_into(acc, part, accumulate)
            return
        # A gradient reaches lse: Δ must come in from outside, which our kernel takes.
        piece = _exact_triton_piece(q, causal, scale)
    _, q_order, k_order, samples, kw = piece
    triton_attention.block_sample_backward(q, k, v, q_order, k_order, samples, dout, lse, delta, **kw,
                                           grads=grads, accumulate=accumulate)


def _leaf_backward(piece, q, k, v, out, lse, dout, delta, scale, has_dlse, dtype):
    """A leaf's dq, dk, dv in `dtype`, new tensors: the SDPA kernel's own where the sums are in
    q's dtype, which it gives them in (no copy), else buffers the leaf's gradient is written into."""
    if piece[0] == "sdpa" and not has_dlse and dtype == q.dtype:
        return sdpa_leaves.backward_from_state(dout, q, k, v, out, lse, causal=piece[1], scale=scale,
                                               state=piece[2])
    grads = tuple(torch.empty(q.shape, device=q.device, dtype=dtype) for _ in range(3))
    _piece_backward(piece, q, k, v, out, lse, dout, delta, scale, has_dlse, grads, accumulate=False)
    return grads


def _levels(tree) -> list:
    """The recursion's lower-left piece records, top level first."""
    pieces = []
    while len(tree) == 2:     # (sub, piece); a leaf's record is longer
        tree, piece = tree
        pieces.append(piece)
    return pieces


def grads_dtype(tree, q) -> torch.dtype:
    """The dtype the recursion adds its gradients up in: q's 16-bit one where every level's fused
    backward adds its dK/dV in 16 bits itself and all levels together add at most
    CAUSAL_16BIT_ADDS times into a key row (triton_attention.sixteen_bit_adds; an exact piece adds
    once), else fp32."""
    if q.dtype == torch.float32:
        return torch.float32
    adds = 0.0
    for piece in _levels(tree):
        if piece[0] == "sdpa":
            adds += 1
            continue
        _, q_order, _, samples, kw = piece
        level = triton_attention.sixteen_bit_adds((*q_order.shape, q.shape[-1]), q.dtype, samples, **kw)
        if level is None:
            return torch.float32
        adds += level
    return q.dtype if adds <= CAUSAL_16BIT_ADDS else torch.float32


def _backward(tree, q, k, v, out, lse, dout, delta, p, scale, has_dlse, dtype):
    """The recursion's dq, dk, dv ([B, H, n, d] in `dtype`): the leaves' gradients first, then every
    level adds its lower-left piece into them in place. out, lse and Δ are the final rows' values."""
    B, H, n, d = q.shape
    if n <= p.min_seq_len:
        return _leaf_backward(tree, q, k, v, out, lse, dout, delta, scale, has_dlse, dtype)
    sub, piece = tree
    if n % 2:
        # The padded row: zero dO and Δ, so it adds nothing to any gradient.
        q, k, v, out, dout = (torch.nn.functional.pad(x, (0, 0, 0, 1)) for x in (q, k, v, out, dout))
        lse = torch.nn.functional.pad(lse, (0, 1), value=_PAD_LSE)
        delta = torch.nn.functional.pad(delta, (0, 1))
    half = q.shape[2] // 2
    rows = [x.reshape(B, 2 * H, half, d) for x in (q, k, v, out)]
    grads = _backward(sub, *rows, lse.reshape(B, 2 * H, half), dout.reshape(B, 2 * H, half, d),
                      delta.reshape(B, 2 * H, half), p, scale, has_dlse, dtype)
    # a view where the level below returned whole rows; a copy where it cut a padded row off
    grads = tuple(g.reshape(B, H, 2 * half, d) for g in grads)
    top, bottom = slice(None, half), slice(half, None)
    _piece_backward(piece, q[:, :, bottom], k[:, :, top], v[:, :, top], out[:, :, bottom], lse[:, :, bottom],
                    dout[:, :, bottom], delta[:, :, bottom], scale, has_dlse,
                    (grads[0][:, :, bottom], grads[1][:, :, top], grads[2][:, :, top]), accumulate=True)
    return tuple(g[:, :, :n] for g in grads)


class _CausalHyperAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, p, scale, generator):
        out, lse, tree = _forward(q, k, v, p, scale, generator)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.tree, ctx.p, ctx.scale = tree, p, scale
        ctx.set_materialize_grads(False)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dout = torch.zeros_like(out) if dout is None else dout.to(out.dtype)
        if ctx.tree[0] == "sdpa" and dlse is None:
            # n <= min_seq_len: one exact leaf, whose kernel's own backward gives the gradient in
            # q's dtype; no Δ pass, no fp32 accumulators, no casts
            dq, dk, dv = sdpa_leaves.backward_from_state(dout, q, k, v, out, lse, causal=True, scale=ctx.scale,
                                                         state=ctx.tree[2])
            return dq, dk, dv, None, None, None
        delta = row_delta(dout, out, dlse)
        grads = _backward(ctx.tree, q, k, v, out, lse, dout, delta, ctx.p, ctx.scale, dlse is not None,
                          grads_dtype(ctx.tree, q))
        dq, dk, dv = (g.to(x.dtype).contiguous() for g, x in zip(grads, (q, k, v)))
        return dq, dk, dv, None, None, None


def causal_hyper_attention(q, k, v, p, scale, generator):
    """hyper_attention(..., causal=True, backend="triton"): (out, lse), differentiable in q, k, v."""
    if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
        return _CausalHyperAttention.apply(q, k, v, p, scale, generator)
    out, lse, _ = _forward(q, k, v, p, scale, generator)
    return out, lse
