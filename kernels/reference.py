"""Readable PyTorch specification of the primitive the Triton kernels implement.

`block_sample_attention` is one HyperAttention step on sorted rows: every query attends to
  (1) the keys of its own block in sorted order (the block-diagonal part, exact), and
  (2) a set of uniformly sampled key positions (the residual estimate), each with weight
      `sample_weight` (n/m), except samples that fall inside the query's own block: those are
      already counted by (1) and are masked (no double counting).
Both parts share one softmax, which is the log-sum-exp merge of the two partial attentions.

Contract (shared with kernels/triton_attention.py; the tests compare the two):
  q, k, v      [B, H, n, d] (any float dtype; strides free); n_q == n_k == n
  q_order      int64 [B, H, n]: q_order[..., r] = original index of the query at sorted position r
  k_order      int64 [B, H, n]: likewise for keys (and values)
  samples      int64 [B, H, T, m] or None: positions in *sorted key order*; the query at sorted
               position r uses set r // sample_tile (T == 1: one set shared by every row of a head)
  block_size   sorted query r sees sorted keys [r//b*b, min(n, (r//b+1)*b))
  causal       inside a block, sorted key position c is seen only when c <= r (used with identity
               orders for exact causal attention)
Returns out [B, H, n, d] in the queries' original order (dtype of q) and lse [B, H, n] float32
(natural log of the weighted softmax normaliser, original order).
"""

from __future__ import annotations

import math

import torch


def gather_rows(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """x[..., order[..., r], :] for every r: rows of x in the given order."""
    return torch.gather(x, -2, order.unsqueeze(-1).expand(*order.shape, x.shape[-1]))


def scatter_rows(x_sorted: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Inverse of gather_rows: put sorted row r back at position order[..., r]."""
    out = torch.empty_like(x_sorted)
    return out.scatter(-2, order.unsqueeze(-1).expand_as(x_sorted), x_sorted)


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, 0, 0, rows - x.shape[-2]))


def block_sample_attention(q, k, v, q_order, k_order, samples, *, block_size: int,
                           sample_tile: int, sample_weight: float, scale: float,
                           causal: bool = False):
    B, H, n, d = q.shape
    b = block_size
    nb = -(-n // b)
    acc = torch.promote_types(q.dtype, torch.float32)   # fp32 scores (fp64 stays fp64 in tests)
    qs = gather_rows(q.to(acc), q_order)
    ks = gather_rows(k.to(acc), k_order)
    vs = gather_rows(v.to(acc), k_order)

    # (1) Block-diagonal scores: pad to whole blocks; padded keys are masked, padded queries dropped.
    qb = _pad_rows(qs, nb * b).view(B, H, nb, b, d)
    kb = _pad_rows(ks, nb * b).view(B, H, nb, b, d)
    vb = _pad_rows(vs, nb * b).view(B, H, nb, b, d)
    s_blk = (qb @ kb.transpose(-1, -2)) * scale                       # [B, H, nb, b, b]
    pos = torch.arange(nb * b, device=q.device).view(nb, b)
    visible = (pos < n).unsqueeze(-2)                                 # key exists
    if causal:
        visible = visible & (pos.unsqueeze(-1) >= pos.unsqueeze(-2))  # key <= query
    s_blk = s_blk.masked_fill(~visible, -math.inf).reshape(B, H, nb * b, b)[:, :, :n]

    # (2) Sampled scores: one sample set per tile of `sample_tile` sorted query rows.
    if samples is not None and samples.shape[-1] > 0:
        T, m = samples.shape[-2:]
        tile = n if T == 1 else sample_tile
        k_smp = gather_rows(ks, samples.reshape(B, H, T * m)).view(B, H, T, m, d)
        v_smp = gather_rows(vs, samples.reshape(B, H, T * m)).view(B, H, T, m, d)
        qt = _pad_rows(qs, T * tile).view(B, H, T, tile, d)
        s_smp = (qt @ k_smp.transpose(-1, -2)) * scale + math.log(sample_weight)
        row_block = (torch.arange(T * tile, device=q.device) // b).view(T, tile, 1)
        in_block = row_block == (samples // b).unsqueeze(-2)         # [B, H, T, tile, m]
        s_smp = s_smp.masked_fill(in_block, -math.inf).reshape(B, H, T * tile, m)[:, :, :n]
    else:
        T, m, tile = 1, 0, n
        s_smp = qs.new_empty(B, H, n, 0)
        v_smp = vs.new_empty(B, H, 1, 0, d)

    # One softmax over both parts = the log-sum-exp merge of the two partial attentions.
    scores = torch.cat([s_blk, s_smp], dim=-1)
    lse = torch.logsumexp(scores, dim=-1)                             # [B, H, n] sorted order
    p = torch.exp(scores - lse.unsqueeze(-1))
    p_blk = _pad_rows(p[..., :b], nb * b).view(B, H, nb, b, b)
    p_smp = _pad_rows(p[..., b:], T * tile).view(B, H, T, tile, m)
    out = (p_blk @ vb).reshape(B, H, nb * b, d)[:, :, :n]
    out = out + (p_smp @ v_smp).reshape(B, H, T * tile, d)[:, :, :n]
    out = scatter_rows(out, q_order).to(q.dtype)
    lse = scatter_rows(lse.unsqueeze(-1), q_order).squeeze(-1)
    return out, lse.float() if acc == torch.float32 else lse


def exact_attention(q, k, v, *, causal: bool, scale: float):
    """softmax(q kᵀ · scale) v with fp32 scores and its log-sum-exp; [B, H, n, d] -> (out, lse)."""
    acc = torch.promote_types(q.dtype, torch.float32)
    s = (q.to(acc) @ k.to(acc).transpose(-1, -2)) * scale
    if causal:
        n_q, n_k = s.shape[-2:]
        mask = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril(n_k - n_q)
        s = s.masked_fill(~mask, -math.inf)
    lse = torch.logsumexp(s, dim=-1)
    out = torch.exp(s - lse.unsqueeze(-1)) @ v.to(acc)
    return out.to(q.dtype), lse
