"""HyperAttention (Han et al., ICLR 2024): the algorithm around the block+sample primitive.

    non-causal:  sortLSH orders queries and keys -> block-diagonal attention over the sorted rows
                 + uniformly sampled columns reweighted by n/m, merged through the log-sum-exp.
    causal:      recursive halving: the two diagonal halves recurse (causal), the lower-left
                 quarter is non-causal HyperAttention, and the bottom rows merge the two.
    small n:     exact attention below `min_seq_len` (non-causal: n < min_seq_len; causal:
                 n <= min_seq_len, as in the public implementation).

The same driver serves both backends: "torch" (kernels/reference.py, the readable specification)
and "triton" (kernels/triton_attention.py). Random draws (LSH projections, sampled columns) come from
one generator in one fixed order, so both backends see identical hashes and samples for one seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import lsh


@dataclass(frozen=True)
class HyperParams:
    block_size: int = 256
    sample_size: int = 256
    # Sorted query rows that share one sample set; 0 = one set per head (the published variant).
    sample_tile: int = 256
    lsh_num_projs: int = 7
    min_seq_len: int = 4096


# Triton backend: how the LSH keys are sorted; every choice gives torch.sort(stable=True)'s
# permutation. "counting": kernels/triton_sort.py (up to 8 projections, else "flat"); "flat":
# lsh.flat_sort_orders (one radix sort of all rows, int16 composite keys); "flat32": the same with
# int32 keys (one sort, four passes); "segmented": torch.sort over the batch of rows. Module-level
# so scripts/gpu_kernel_check.py can time them against each other in one run.
SORT = "counting"


def _sort_orders(backend: str, keys, num_projs: int, prefix=None):
    """prefix: counted_ranks's, for the counting sort."""
    if backend != "triton" or SORT == "segmented":
        return lsh.sort_orders(keys, num_projs)
    if SORT == "counting" and num_projs <= 8:
        from .triton_sort import counting_sort_orders
        return lsh.sort_orders(keys, num_projs, sort=lambda k, p: counting_sort_orders(k, p, prefix=prefix))
    key_dtype = torch.int32 if SORT == "flat32" else torch.int16
    return lsh.sort_orders(keys, num_projs, sort=lambda k, p: lsh.flat_sort_orders(k, p, key_dtype))


def _bucket_rank(backend: str):
    if backend == "triton":
        from .triton_lsh import bucket_rank
        return bucket_rank
    return lsh.bucket_rank


def bucket_ranks(backend: str, q, k, proj):
    """The bucket ranks of q's and k's rows: one [2, B, H, n] tensor from one launch (triton, equal
    shapes), else a pair."""
    if backend == "triton" and q.shape == k.shape and q.dtype == k.dtype:
        from .triton_lsh import bucket_ranks as both
        return both([q, k], proj)
    rank = _bucket_rank(backend)
    return rank(q, proj), rank(k, proj)


# Triton backend: the hashing launch counts the keys for the counting sort (counted_ranks).
# Module-level so scripts/gpu_probe.py can time both ways.
COUNT_IN_HASHING = True


def counted_ranks(backend: str, q, k, proj, num_projs: int):
    """(ranks, prefix): bucket_ranks's, and where the triton backend's counting sort will sort them
    (SORT), the sort's per-bucket sums counted by the hashing launch itself (triton_lsh.bucket_ranks,
    with_prefix), so that the sort makes two launches instead of three; else prefix None."""
    if (backend == "triton" and COUNT_IN_HASHING and SORT == "counting" and q.shape == k.shape
            and q.dtype == k.dtype and num_projs <= 8):
        from .triton_lsh import bucket_ranks as both
        return both([q, k], proj, with_prefix=True)
    return bucket_ranks(backend, q, k, proj), None


def _primitive(backend: str):
    if backend == "torch":
        from .reference import block_sample_attention
        return block_sample_attention
    if backend == "triton":
        from .triton_attention import block_sample_attention
        return block_sample_attention
    raise ValueError(f"backend must be 'torch' or 'triton', got {backend!r}")


def merge_partials(out1, lse1, out2, lse2):
    """Attention over the union of two disjoint key sets from the two partial results."""
    lse = torch.logaddexp(lse1, lse2)
    out = out1.float() * torch.exp(lse1 - lse).unsqueeze(-1) + out2.float() * torch.exp(lse2 - lse).unsqueeze(-1)
    return out.to(out1.dtype), lse


def _identity(x: torch.Tensor) -> torch.Tensor:
    B, H, n, _ = x.shape
    return torch.arange(n, device=x.device).expand(B, H, n)


# Triton backend, CUDA 16-bit inputs: exact pieces (causal leaves, short inputs) go to PyTorch's
# fused SDPA kernels (kernels/sdpa_leaves.py), which are faster there than our general kernel.
# Module-level so scripts/gpu_kernel_check.py can time both.
SDPA_LEAVES = True


def _exact(q, k, v, causal, scale, backend):
    if backend == "triton" and SDPA_LEAVES:
        from . import sdpa_leaves
        if sdpa_leaves.supported(q):
            return sdpa_leaves.attention_with_lse(q, k, v, causal=causal, scale=scale)
    order = _identity(q)
    return _primitive(backend)(q, k, v, order, order, None, block_size=q.shape[2], sample_tile=0,
                               sample_weight=1.0, scale=scale, causal=causal)


def draw_projections(q, p: HyperParams, generator, backend: str = "torch"):
    """The LSH normals: bf16 values in fp32 (the triton backend's hashing kernel takes them as
    drawn and rounds them itself)."""
    return lsh.draw_projections(q.shape[-1], p.lsh_num_projs, generator=generator, device=q.device,
                                rounded=backend != "triton")


def lsh_plan(q, k, p: HyperParams, generator, backend, proj=None, ranks=None, orders=None):
    """The random part of one non-causal HyperAttention, drawn in a fixed order: (q_order,
    k_order, samples, sample_weight); samples None when sample_size is 0.  proj: hyperplanes drawn
    already (the causal recursion draws one set for all its levels); ranks: the rows' bucket ranks
    under them, computed already; orders: (q_order, k_order) sorted already (the sort draws
    nothing, so the samples are the same either way)."""
    n = q.shape[2]
    if orders is None:
        prefix = None
        if ranks is None:
            proj = draw_projections(q, p, generator, backend) if proj is None else proj
            ranks, prefix = counted_ranks(backend, q, k, proj, p.lsh_num_projs)
        orders = _sort_orders(backend, ranks, p.lsh_num_projs, prefix)
    q_order, k_order = orders
    samples, weight = None, 1.0
    if p.sample_size > 0:
        sets = 1 if p.sample_tile == 0 else -(-n // p.sample_tile)
        samples = torch.randint(n, (q.shape[0], q.shape[1], sets, p.sample_size), generator=generator,
                                device=q.device)
        weight = n / p.sample_size
    return q_order, k_order, samples, weight


def check_square(q, k) -> None:
    if k.shape[2] != q.shape[2]:
        raise ValueError(f"hyper attention needs as many queries as keys, got {q.shape[2]} and {k.shape[2]}")


def _non_causal(q, k, v, p: HyperParams, scale, generator, backend, proj=None):
    check_square(q, k)
    if q.shape[2] < p.min_seq_len:
        return _exact(q, k, v, False, scale, backend)
    q_order, k_order, samples, weight = lsh_plan(q, k, p, generator, backend, proj)
    return _primitive(backend)(q, k, v, q_order, k_order, samples, block_size=p.block_size,
                               sample_tile=p.sample_tile, sample_weight=weight, scale=scale)


def _causal(q, k, v, p: HyperParams, scale, generator, backend, proj=None):
    """The readable recursion (the torch backend, and the specification of kernels/causal_triton.py,
    which the triton backend runs instead).  One set of LSH hyperplanes, drawn at the top, serves
    every level (as in the published implementation); each level draws its own samples."""
    B, H, n, d = q.shape
    if n <= p.min_seq_len:
        return _exact(q, k, v, True, scale, backend)
    if proj is None:
        proj = draw_projections(q, p, generator, backend)
    if n % 2:
        # One zero row at the end: under the causal mask no real query ever sees it.
        q, k, v = (torch.nn.functional.pad(x, (0, 0, 0, 1)) for x in (q, k, v))
    half = q.shape[2] // 2
    # Both diagonal halves at once, as twice the heads (a view, no copy).
    halves = [x.reshape(B, 2 * H, half, d) for x in (q, k, v)]
    out_d, lse_d = _causal(*halves, p, scale, generator, backend, proj)
    out_d, lse_d = out_d.reshape(B, H, 2 * half, d), lse_d.reshape(B, H, 2 * half)
    out_bl, lse_bl = _non_causal(q[:, :, half:], k[:, :, :half], v[:, :, :half], p, scale, generator, backend,
                                 proj)
    out_bottom, lse_bottom = merge_partials(out_d[:, :, half:], lse_d[:, :, half:], out_bl, lse_bl)
    out = torch.cat([out_d[:, :, :half], out_bottom], dim=2)[:, :, :n]
    lse = torch.cat([lse_d[:, :, :half], lse_bottom], dim=2)[:, :, :n]
    return out, lse


def hyper_attention(q, k, v, params: HyperParams = HyperParams(), *, causal: bool = False,
                    scale: float | None = None, generator: torch.Generator | None = None,
                    backend: str = "torch"):
    """HyperAttention of q, k, v [B, H, n, d] -> (out [B, H, n, d], lse [B, H, n] float32)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if causal and backend == "triton":
        from .causal_triton import causal_hyper_attention
        return causal_hyper_attention(q, k, v, params, scale, generator)
    run = _causal if causal else _non_causal
    return run(q, k, v, params, scale, generator, backend)
