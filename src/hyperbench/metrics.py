"""Error of an approximate attention output against exact attention, per (batch, head).

The paper's guarantee (HyperAttention, Han et al. 2024, Thm. 1) is on the operator norm:
    ||Õ − O||₂ ≤ ε ||D⁻¹A||₂ ||V||₂,   A = exp(scale·QKᵀ) (causally masked), D = diag(A·1),
so `spec_err` = ||Õ − O||₂ / (||D⁻¹A||₂ ||V||₂). Alongside it we store errors relative to O itself.

Cost and memory
  Two implementations of the two attention-sized computations (the exact reference and the product
  W = (D⁻¹A)ᵀ(D⁻¹A) X inside the Lanczos iteration), agreeing to a few 1e-6 relative:
  * Triton (metric_kernels.py), used when `uses_triton` holds: CUDA inputs, all bf16 or all fp16,
    head_dim 16/32/64/128, and `TRITON_METRICS` on (env HYPERBENCH_TRITON_METRICS=0 turns it off).
    16-bit tensor-core dots made fp32-accurate (exact 16-bit products, hi/lo splits of the fp32
    factor), no score buffer at all: the reference is one flash-style pass (one exp per visible
    (query, key) pair); W is two passes (Z = P X by query tiles, then W = Pᵀ Z by key tiles), each
    recomputing P from the exact lse, for a block of `TRITON_NORM_BLOCK` (16) vectors. Memory is
    the outputs plus the Krylov basis (heads per group limited so the basis stays within
    `NORM_BASIS_BYTES`).
  * torch (everything else: CPU, fp32/fp64, other head dims): inputs cast to fp32 (fp64 when an
    input is fp64), chunked over queries and over groups of heads so that at most
    `SCORE_BUDGET_BYTES` of scores exist at once (the Krylov basis also limits the group).
    `exact_reference` forms each chunk's scores once. In the Lanczos iteration, for every query
    chunk P_c = exp(scale·Q_c Kᵀ − lse_c) (masked when causal) is formed once and used for both
    Z_c = P_c X and W += P_cᵀ Z_c (one pass), for a block of `NORM_BLOCK` vectors at once. Where
    a head's whole P fits the budget (`caches_probabilities`), P is formed once for all passes.
  * ||Õ − O||₂, ||O||₂, ||V||₂: from the d×d Gram matrices EᵀE in fp64 (largest eigenvalue; on
    a GPU by repeated squaring, see `largest_eigenvalue`).
  * ||D⁻¹A||₂ (n×n, formed only where a head's fits the budget): block Lanczos (block Krylov with full reorthogonalisation and
    Rayleigh–Ritz) on M = (D⁻¹A)ᵀ(D⁻¹A), one product W = M X per iteration.
    The start block contains the all-ones vector, so the estimate is ≥ 1 from the first pass
    (rows of D⁻¹A sum to 1). A head stops when its estimate is within tol (relative) of its
    limit, judged from its last steps (`_met_tol`), and leaves its group.
    Ritz values approach the true value from below.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import time

import torch

SCORE_BUDGET_BYTES = 1 << 30   # at most this many bytes of scores at once (one buffer, in place)
NORM_BLOCK = 8                 # vectors per block in the block Lanczos iteration (torch path)
NORM_MAX_ITERS = 100           # Lanczos passes at most (a head that has not met tol by then stops)
# Triton path (see the module docstring); module-level so a GPU check can compare both paths.
TRITON_METRICS_DEFAULT = True
TRITON_METRICS = os.environ.get("HYPERBENCH_TRITON_METRICS", str(int(TRITON_METRICS_DEFAULT))) != "0"
TRITON_NORM_BLOCK = 16         # tl.dot needs >= 16 columns; a wider block also needs fewer passes
# Triton path: the Krylov basis of one group of heads is at most this big (at n = 131072 with the
# default max_iters, 839 MB per head: 8 heads per group).  Fewer, larger groups save a little of
# the Lanczos step's own cost (QR, syncs): on the H200, heavy_hitters inputs, n = 131072, H = 32,
# 7 iterations: 5.86 s with 8 GiB, 5.51 s with all heads in one group (30 GB).
NORM_BASIS_BYTES = 8 << 30
# On a GPU the largest eigenvalues (of the Gram matrices and of the Lanczos step's projected matrix)
# come from repeated squaring (`largest_eigenvalue`) rather than eigvalsh; module-level so a GPU
# probe can time both.
EIG_BY_SQUARING = True
SQUARINGS = 30
BASIS_MOVE_BYTES = 256 << 20   # the Lanczos basis moves this much at a time when heads retire

SUMMARY_NAMES = ("spec_err", "rel_spec_err", "rel_fro_err", "max_row_err")


# ---------------------------------------------------------------------------------- chunking --
def _acc_dtype(*tensors) -> torch.dtype:
    """fp64 when any input is fp64, else fp32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _plan(heads: int, n_q: int, n_k: int, elt: int, query_chunk: int | None,
          extra_per_head: int = 0, causal: bool = False) -> tuple[int, int]:
    """(heads per group, query rows per chunk) so one score buffer stays within the budget.

    extra_per_head: bytes each head of a group needs besides scores (e.g. a Krylov basis); it
    also limits the group size. Causal: at least 8 chunks (of >= 128 rows), since a chunk only
    touches the keys up to its last row, which skips about half of the work.
    """
    if query_chunk is None:
        rows = max(1, min(n_q, SCORE_BUDGET_BYTES // max(1, n_k * elt)))
        if causal:
            rows = min(rows, max(128, -(-n_q // 8)))
    else:
        rows = max(1, min(n_q, int(query_chunk)))
    per_head = rows * n_k * elt + extra_per_head
    group = max(1, min(heads, SCORE_BUDGET_BYTES // max(1, per_head)))
    return group, rows


def _scores(q_c, k, lse_c, *, scale: float, causal: bool, r0: int, offset: int):
    """Scores of query rows [r0, r0 + c) against the keys they can see, as one in-place buffer.

    q_c [g, c, d], k [g, n_k, d]. Causal: query i sees key j iff j <= i + offset; only the keys
    [0, r0 + c + offset) are touched at all. With lse_c [g, c] the buffer holds
    exp(s − lse) (the normalised attention probabilities), else the raw scaled logits.
    Returns (buffer [g, c, k_end], k_end).
    """
    c = q_c.shape[-2]
    k_end = min(k.shape[-2], r0 + c + offset) if causal else k.shape[-2]
    kt = k[:, :k_end].transpose(-1, -2)
    if lse_c is None:                               # scale folded into q: no extra pass over s
        s = torch.matmul(q_c * scale, kt)
    else:                                           # s = scale·q kᵀ − lse in one product
        s = torch.baddbmm(lse_c.neg().unsqueeze(-1).expand(-1, -1, k_end), q_c, kt, alpha=scale)
    if causal:
        first = r0 + offset + 1                     # first key some row of this chunk cannot see
        if first < k_end:
            rows = torch.arange(c, device=s.device).unsqueeze(-1)
            cols = torch.arange(first, k_end, device=s.device).unsqueeze(0)
            s[..., first:k_end].masked_fill_(cols > rows + r0 + offset, -math.inf)
    if lse_c is not None:
        s.exp_()
    return s, k_end


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, *x.shape[-2:])


def uses_triton(q, k, v=None) -> bool:
    """The Triton kernels apply: CUDA, all bf16 or all fp16, one supported head_dim, Triton there."""
    ts = (q, k) if v is None else (q, k, v)
    return (TRITON_METRICS and all(t.is_cuda for t in ts)
            and q.dtype in (torch.float16, torch.bfloat16) and all(t.dtype == q.dtype for t in ts)
            and q.shape[-1] in (16, 32, 64, 128) and all(t.shape[-1] == q.shape[-1] for t in ts)
            and importlib.util.find_spec("triton") is not None)     # an optional dependency


def _check_causal(n_q: int, n_k: int, causal: bool):
    if causal and n_q > n_k:
        raise ValueError(f"causal attention needs n_q <= n_k (got {n_q} > {n_k})")


# --------------------------------------------------------------------------- exact reference --
def exact_reference(q, k, v, *, causal: bool, scale: float, query_chunk: int | None = None):
    """Exact softmax(scale·QKᵀ)V and its log-sum-exp, never holding the whole n×n matrix.

    q [B, H, n_q, d], k and v [B, H, n_k, d]; causal uses the same convention as
    kernels/reference.exact_attention (query i sees key j iff j <= i + n_k − n_q).
    Computed in fp32 (fp64 when an input is fp64) with full-precision fp32 matmuls (TF32 off).
    Returns (O [B, H, n_q, d_v], lse [B, H, n_q]), both in that accumulation dtype.
    When `uses_triton(q, k, v)`: one Triton pass with the same accuracy (query_chunk unused).
    """
    acc = _acc_dtype(q, k, v)
    B, H, n_q, _ = q.shape
    n_k = k.shape[-2]
    _check_causal(n_q, n_k, causal)
    if uses_triton(q, k, v):
        from hyperbench import metric_kernels
        return metric_kernels.exact_attention_fp32(q, k, v, causal=causal, scale=scale)
    offset = n_k - n_q
    qf, kf, vf = _flat(q), _flat(k), _flat(v)
    out = torch.empty(B * H, n_q, v.shape[-1], dtype=acc, device=q.device)
    lse = torch.empty(B * H, n_q, dtype=acc, device=q.device)
    group, rows = _plan(B * H, n_q, n_k, torch.finfo(acc).bits // 8, query_chunk, causal=causal)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        for h0 in range(0, B * H, group):
            hs = slice(h0, h0 + group)
            kg, vg = kf[hs].to(acc), vf[hs].to(acc)
            for r0 in range(0, n_q, rows):
                q_c = qf[hs, r0:r0 + rows].to(acc)
                s, k_end = _scores(q_c, kg, None, scale=scale, causal=causal, r0=r0, offset=offset)
                m = s.amax(dim=-1, keepdim=True)
                s.sub_(m).exp_()
                l = s.sum(dim=-1, keepdim=True)
                out[hs, r0:r0 + rows] = torch.matmul(s, vg[:, :k_end]) / l
                lse[hs, r0:r0 + rows] = (m + l.log()).squeeze(-1)
                del s
    finally:
        torch.set_float32_matmul_precision(precision)
    return out.view(B, H, n_q, -1), lse.view(B, H, n_q)


# ------------------------------------------------------------------------- ||D⁻¹A||₂ (Lanczos) --
def _orth_against(basis: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x minus its projection on the (orthonormal) columns of basis; twice, for fp32 safety."""
    for _ in range(2):
        x = x - basis @ (basis.transpose(-1, -2) @ x)
    return x


def _normalise_block(basis, x, gen):
    """Orthonormal block spanning the part of x outside `basis`; columns that vanished (the
    Krylov space became invariant) are replaced by random directions."""
    x = _orth_against(basis, x) if basis is not None else x
    ref = x.new_tensor(1.0)
    for _ in range(3):
        norms = x.norm(dim=-2, keepdim=True)                        # [g, 1, r]
        ref = torch.maximum(ref, norms.amax())
        bad = norms <= 1e-4 * ref
        if not bool(bad.any()):
            break
        noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        x = torch.where(bad, noise, x)
        x = _orth_against(basis, x) if basis is not None else x
    qmat = orthonormal_columns(x)
    if basis is not None:                                           # one more pass after QR
        qmat = orthonormal_columns(_orth_against(basis, qmat))
    return qmat


def orthonormal_columns(x: torch.Tensor, tol: float | None = None) -> torch.Tensor:
    """Orthonormal columns spanning those of x [g, n, r] (r small), by CholeskyQR2: Q = X R⁻¹ with
    R from the Cholesky factor of the r×r Gram matrix, twice. Householder QR of a tall [n, r]
    block costs ~2 ms per head on an H200 (cuSOLVER), twice per Lanczos iteration; this is two
    small matmuls and a triangular solve. Where the block is too ill-conditioned for it (a Gram
    matrix that is not positive definite, or columns left non-orthonormal beyond `tol`), the
    whole call falls back to Householder QR."""
    tol = 50 * torch.finfo(x.dtype).eps if tol is None else tol
    q = x
    for _ in range(2):
        chol, info = torch.linalg.cholesky_ex(q.transpose(-1, -2) @ q)
        if bool((info != 0).any()):
            return torch.linalg.qr(x)[0]
        q = torch.linalg.solve_triangular(chol.transpose(-1, -2), q, upper=True, left=False)
    eye = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device)
    if not bool(((q.transpose(-1, -2) @ q - eye).abs().amax() <= tol).all()):
        return torch.linalg.qr(x)[0]
    return q


def _apply_ptp(qg, kg, lse_g, x, *, scale, causal, rows, offset):
    """W = Pᵀ(P X) for P = D⁻¹A of a group of heads, in one pass over query chunks."""
    w = torch.zeros_like(x)
    for r0 in range(0, qg.shape[-2], rows):
        p, k_end = _scores(qg[:, r0:r0 + rows], kg, lse_g[:, r0:r0 + rows],
                           scale=scale, causal=causal, r0=r0, offset=offset)
        zt = torch.matmul(x[:, :k_end].transpose(-1, -2), p.transpose(-1, -2))   # (P_c X)ᵀ [g, r, c]
        w[:, :k_end].add_(torch.matmul(zt, p).transpose(-1, -2))    # (Zᵀ P_c)ᵀ: see _apply_cached
        del p
    return w


def _met_tol(step, prev_step, est, tol):
    """Which estimates are within `tol` (relative) of their limit. The Ritz values increase
    monotonically and, here, converge geometrically: with successive steps δ_{j−1}, δ_j and
    ρ = δ_j/δ_{j−1} < 1 the remaining distance is about δ_j ρ/(1 − ρ) = δ_j²/(δ_{j−1} − δ_j).
    Met when that tail, or the last step itself, is <= tol·est."""
    shrinking = torch.isfinite(prev_step) & (prev_step > step)
    tail = torch.where(shrinking, step * step / (prev_step - step).clamp_min(1e-300),
                       torch.full_like(step, math.inf))
    return (step <= tol * est) | (tail <= tol * est)


def _compact(live, keep):
    """Move the heads `keep` (increasing indices into dim 0) of `live` to its front, in place, a
    chunk of heads per copy (one copy per head took seconds at 70000 heads): the sources of chunk
    [j0, j1) are keep[j0:j1] >= j0, which no earlier chunk wrote, and each chunk is read whole
    before it is written. Used for the Lanczos basis and the cached probabilities."""
    step = max(1, BASIS_MOVE_BYTES // max(1, live[0].numel() * live.element_size()))
    for j0 in range(0, len(keep), step):
        src = keep[j0:j0 + step].to(live.device)
        live[j0:j0 + len(src)] = live.index_select(0, src)


def _probabilities(qg, kg, lse_g, *, scale, causal, rows, offset):
    """P = D⁻¹A of a group of heads, whole: [g, n_q, n_k] (zeros above a causal diagonal)."""
    g, n_q, n_k = qg.shape[0], qg.shape[-2], kg.shape[-2]
    if not causal and rows >= n_q:                  # one chunk: its buffer is P
        return _scores(qg, kg, lse_g, scale=scale, causal=False, r0=0, offset=offset)[0]
    p = torch.zeros(g, n_q, n_k, dtype=qg.dtype, device=qg.device)
    for r0 in range(0, n_q, rows):
        s, k_end = _scores(qg[:, r0:r0 + rows], kg, lse_g[:, r0:r0 + rows],
                           scale=scale, causal=causal, r0=r0, offset=offset)
        p[:, r0:r0 + rows, :k_end] = s
        del s
    return p


def _apply_cached(p, x):
    """W = Pᵀ(P X) with P formed once (`_probabilities`); p [g, n_q, n_k], x [g, n_k, r].
    Both products put the narrow block in front, as (P X)ᵀ = Xᵀ Pᵀ and (Pᵀ Z)ᵀ = Zᵀ P: on a
    2-core CPU, 13 heads at n = 4096, r = 8, Pᵀ @ Z took 0.77 s and Zᵀ @ P 0.09–0.12 s."""
    zt = torch.matmul(x.transpose(-1, -2), p.transpose(-1, -2))     # [g, r, n_q]
    return torch.matmul(zt, p).transpose(-1, -2)                    # [g, n_k, r]


def caches_probabilities(q, k, *, query_chunk: int | None = None, max_iters: int = NORM_MAX_ITERS,
                         block: int = NORM_BLOCK) -> bool:
    """Whether `attention_matrix_norm` forms each head's D⁻¹A once and iterates on it, rather than
    forming it again in every pass: the torch path, when one head's whole matrix and Krylov basis
    fit in SCORE_BUDGET_BYTES (n up to ~16k in fp32). Each pass is then two products with P."""
    if uses_triton(q, k) or query_chunk is not None:
        return False
    elt = torch.finfo(_acc_dtype(q, k)).bits // 8
    n_q, n_k = q.shape[-2], k.shape[-2]
    return _p_and_basis_bytes(n_q, n_k, elt, min(n_k, max(1, block) * max(1, int(max_iters)))) <= SCORE_BUDGET_BYTES


def _p_and_basis_bytes(n_q: int, n_k: int, elt: int, m_max: int) -> int:
    """Bytes one head needs with its D⁻¹A held whole: the matrix and an m_max-column basis."""
    return (n_q + m_max) * n_k * elt


def _ptp_for(heads, use_triton, qf, kf, lf, acc, *, scale, causal, rows, offset):
    """W = Pᵀ P X for the heads `heads` (indices into the flattened [B·H] inputs)."""
    idx = heads.to(qf.device)
    lg = lf.index_select(0, idx).to(acc)
    if use_triton:      # the kernels read the 16-bit inputs; ptp_apply pads x to 16 columns
        from hyperbench import metric_kernels
        return functools.partial(metric_kernels.ptp_apply, qf.index_select(0, idx),
                                 kf.index_select(0, idx), lg, causal=causal, scale=scale)
    return functools.partial(_apply_ptp, qf.index_select(0, idx).to(acc),
                             kf.index_select(0, idx).to(acc), lg, scale=scale, causal=causal,
                             rows=rows, offset=offset)


def attention_matrix_norm(q, k, lse, *, causal: bool, scale: float, tol: float = 1e-3,
                          max_iters: int = NORM_MAX_ITERS, query_chunk: int | None = None,
                          block: int = NORM_BLOCK, seed: int = 0):
    """||D⁻¹A||₂ per (batch, head) by block Lanczos on (D⁻¹A)ᵀ(D⁻¹A), forming D⁻¹A once per group
    of heads where it fits SCORE_BUDGET_BYTES (`caches_probabilities`), else again in every pass.

    lse must be the exact log-sum-exp of each query row (from `exact_reference`): then
    P = exp(scale·QKᵀ − lse) is exactly D⁻¹A. One iteration = one pass over the keys serving all
    `block` vectors. A head stops when its estimate is within tol of its limit (relative; see
    `_met_tol`: the last step, or the geometric tail of the steps, is <= tol·σ_j), when the Krylov
    basis spans the whole space (the answer is then exact up to rounding), or after max_iters.
    A stopped head leaves the group, so the later passes cost only what the live heads need.
    Returns (norms [B, H] fp64, iters [B, H] int64: passes until that head's estimate met tol, or
    the passes made when it never did, converged [B, H] bool).
    When `uses_triton(q, k)`: W = Pᵀ P X by metric_kernels.ptp_apply on the 16-bit q, k, with a
    block of at least TRITON_NORM_BLOCK vectors; query_chunk is unused there.
    """
    acc = _acc_dtype(q, k)
    B, H, n_q, _ = q.shape
    n_k = k.shape[-2]
    _check_causal(n_q, n_k, causal)
    offset = n_k - n_q
    max_iters = max(1, int(max_iters))
    use_triton = uses_triton(q, k)
    if use_triton:
        block = max(block, TRITON_NORM_BLOCK)
    r = max(1, min(block, n_k))
    m_max = min(n_k, r * max_iters)                                   # largest basis ever needed
    elt = torch.finfo(acc).bits // 8
    cached = caches_probabilities(q, k, query_chunk=query_chunk, max_iters=max_iters, block=block)
    if use_triton:      # no score buffer: only the basis limits a group; groups of equal size
        group = max(1, min(B * H, NORM_BASIS_BYTES // max(1, n_k * m_max * elt)))
        group, rows = -(-B * H // -(-B * H // group)), None
    else:
        group, rows = _plan(B * H, n_q, n_k, elt, query_chunk, extra_per_head=n_k * m_max * elt,
                            causal=causal)
        if cached:      # each head's whole P and basis in the budget: form P once per group
            group = max(1, min(B * H, SCORE_BUDGET_BYTES // _p_and_basis_bytes(n_q, n_k, elt, m_max)))
    qf, kf, lf = _flat(q), _flat(k), lse.reshape(B * H, n_q)
    gen = torch.Generator(device=q.device).manual_seed(seed)
    norms = torch.empty(B * H, dtype=torch.float64)
    iters = torch.empty(B * H, dtype=torch.int64)
    conv = torch.empty(B * H, dtype=torch.bool)
    for h0 in range(0, B * H, group):
        heads = torch.arange(h0, min(B * H, h0 + group))          # still iterating, in order
        g = len(heads)
        basis = torch.empty(g, n_k, m_max, dtype=acc, device=q.device)
        x0 = torch.randn(g, n_k, r, generator=gen, device=q.device, dtype=acc)
        x0[..., 0] = 1.0                                              # P·1 = 1: estimate >= 1
        v = _normalise_block(None, x0, gen)
        m = 0                                                         # basis columns in use
        t = torch.zeros(g, 0, 0, dtype=torch.float64, device=q.device)  # projected matrix
        prev = torch.zeros(g, dtype=torch.float64)
        prev_step = torch.full((g,), math.inf, dtype=torch.float64)
        ptp = None
        if cached:
            idx = heads.to(q.device)
            p_all = _probabilities(qf.index_select(0, idx).to(acc), kf.index_select(0, idx).to(acc),
                                   lf.index_select(0, idx).to(acc), scale=scale, causal=causal,
                                   rows=rows, offset=offset)
        for it in range(1, max_iters + 1):
            if ptp is None:                                           # (re)bind to live heads
                ptp = (functools.partial(_apply_cached, p_all[:g]) if cached else
                       _ptp_for(heads, use_triton, qf, kf, lf, acc, scale=scale, causal=causal,
                                rows=rows, offset=offset))
            rb = v.shape[-1]
            basis[:g, :, m:m + rb] = v
            m += rb
            w = ptp(v)
            col = (basis[:g, :, :m].transpose(-1, -2) @ w).double()     # new column block of T
            t_new = torch.zeros(g, m, m, dtype=torch.float64, device=q.device)
            t_new[:, :m - rb, :m - rb] = t
            t_new[:, :, m - rb:] = col
            t_new[:, m - rb:, :m - rb] = col[:, :m - rb].transpose(-1, -2)
            t = 0.5 * (t_new + t_new.transpose(-1, -2))
            est = top_eigenvalue(t).sqrt().cpu()
            step = (est - prev).abs() if it > 1 else torch.full_like(est, math.inf)
            met = _met_tol(step, prev_step, est, tol)
            last = m >= n_k or it == max_iters
            done = torch.ones_like(met) if last else met
            finished = heads[done]
            norms[finished], iters[finished] = est[done], it
            conv[finished] = (met | (m >= n_k))[done]
            if last or bool(done.all()):
                break
            # next block: the part of W outside the basis (its projection is `col` already)
            nxt = w - basis[:g, :, :m] @ col.to(w)
            keep = (~done).nonzero().flatten()
            if len(keep) < g:                                         # retire converged heads
                _compact(basis[:, :, :m], keep)
                if cached:
                    _compact(p_all, keep)
                nxt, t, heads = nxt[keep], t[keep.to(t.device)], heads[keep]
                est, step = est[keep], step[keep]
                g, ptp = len(keep), None
            prev, prev_step = est, step
            v = _normalise_block(basis[:g, :, :m], nxt[..., :min(r, n_k - m)], gen)
        del basis
        if cached:
            del p_all
    return norms.view(B, H), iters.view(B, H), conv.view(B, H)


def warm_up(q, k, v, *, causal: bool, scale: float) -> None:
    """Compile the Triton metric kernels for these inputs (dtype, head_dim, causality, strides,
    the lengths' residues mod 16: what Triton specialises on; the head count it does not) on a
    slice of one head, so that a timed metric (metric_ms) does not include JIT compilation.
    Nothing to do on the torch path."""
    if not uses_triton(q, k, v):
        return
    def short(n):                                   # same n % 16, at most ~512 rows
        return n if n <= 528 else 512 + n % 16
    n_q = short(q.shape[-2])
    n_k = min(k.shape[-2], max(n_q, short(k.shape[-2])))
    qs, ks, vs = q[:1, :1, :n_q], k[:1, :1, :n_k], v[:1, :1, :n_k]
    _, lse = exact_reference(qs, ks, vs, causal=causal, scale=scale)
    attention_matrix_norm(qs, ks, lse, causal=causal, scale=scale, max_iters=2)
    # The Gram norms' fp64 top eigenvalue (head_errors batches one d×d matrix per head): the
    # library behind it loads and sets up on its first call.
    gram_spectral_norm(q[0, :, :n_q].to(_acc_dtype(q, k, v, v)))


# ------------------------------------------------------------------------------ Gram norms --
def largest_eigenvalue(a: torch.Tensor, squarings: int = SQUARINGS) -> torch.Tensor:
    """Largest eigenvalue of each symmetric positive semidefinite [..., m, m] matrix, as batched
    matmuls: P ← (P/trace P)² `squarings` times, then the Rayleigh quotient of A at P's longest
    column v. Why not eigvalsh: on a GPU, torch solves matrices wider than 32 one at a time
    (0.32 ms each at 64 × 64 on the H200), which made the error metric of 70000 heads of 64 rows
    take 80 s a method; squaring took 5.5 ms for 4096 such matrices against 1.31 s.

    Accuracy: with A = Σ λᵢ uᵢuᵢᵀ and N = 2^squarings, column j of P is ∝ Σ λᵢᴺ uᵢ[j] uᵢ, and the
    longest column has Σᵢ (λᵢ/λ₁)²ᴺ uᵢ[j]² ≥ 1/m, so λ₁ − ρ ≤ m·λ₁·maxₓ x²ᴺ(1 − x) < m·λ₁/(2eN):
    at 30 squarings at most 2.2e-8·λ₁ for m ≤ 128 (1.1e-8 on the norm), and ρ ≤ λ₁ always (a
    Rayleigh quotient). Each P is scaled to trace 1 before it is squared, so nothing overflows,
    and its largest eigenvalue is then at least 1/m, so the squares keep it. NaN in A gives NaN,
    not an exception."""
    a = a.double()
    p = a
    for _ in range(squarings):
        trace = p.diagonal(dim1=-2, dim2=-1).sum(-1)
        p = p / torch.where(trace > 0, trace, 1.0)[..., None, None]
        p = p @ p
    col = p.norm(dim=-2).argmax(dim=-1, keepdim=True)                   # [..., 1]
    v = torch.take_along_dim(p, col[..., None, :], dim=-1)              # [..., m, 1]
    vv = (v * v).sum(dim=(-1, -2))
    rho = (v * (a @ v)).sum(dim=(-1, -2)) / torch.where(vv > 0, vv, 1.0)
    return rho.clamp_min(0)


def top_eigenvalue(a: torch.Tensor) -> torch.Tensor:
    """Largest eigenvalue of each symmetric positive semidefinite [..., m, m] fp64 matrix, on its
    device: LAPACK's eigvalsh on a CPU (faster there than the squarings' matmuls),
    `largest_eigenvalue` on a GPU."""
    if a.is_cuda and EIG_BY_SQUARING:
        return largest_eigenvalue(a)
    return torch.linalg.eigvalsh(a)[..., -1].clamp_min(0)


def gram_spectral_norm(x: torch.Tensor) -> torch.Tensor:
    """||X||₂ of each [..., n, d] matrix from the d×d Gram matrix XᵀX in fp64 (its largest
    eigenvalue). Returns [...] fp64 on x's device."""
    xd = x.double()
    return top_eigenvalue(xd.transpose(-1, -2) @ xd).sqrt()


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num/den with 0/0 = 0 and x/0 = inf."""
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.where(num > 0, math.inf, 0.0))


def head_errors(q, k, v, out, *, causal: bool, scale: float, lse=None, exact=None,
                tol: float = 1e-3, max_iters: int = NORM_MAX_ITERS, query_chunk: int | None = None,
                norm=None) -> dict:
    """Per-(batch, head) metrics as fp64 CPU tensors [B, H] (see `attention_errors`), plus
    `norm_iters` [B, H] and `norm_converged` [B, H]. `norm`: the result of
    `attention_matrix_norm` for these inputs, to reuse it across methods."""
    acc = _acc_dtype(q, k, v, out)
    if exact is None:
        o_ex, lse_ex = exact_reference(q, k, v, causal=causal, scale=scale, query_chunk=query_chunk)
    else:
        o_ex, lse_ex = exact
        if o_ex.shape != out.shape or lse_ex.shape != out.shape[:-1]:
            raise ValueError(f"exact=(O {tuple(o_ex.shape)}, lse {tuple(lse_ex.shape)}) does not "
                             f"match out {tuple(out.shape)}")
    B, H = out.shape[:2]
    res = {name: torch.empty(B, H, dtype=torch.float64) for name in
           ("spec_err", "rel_spec_err", "rel_fro_err", "max_row_err", "err_norm", "out_norm",
            "v_norm")}
    if lse is not None:
        res["lse_err"] = torch.empty(B, H, dtype=torch.float64)
    for b in range(B):                      # one batch entry at a time bounds the fp64 copies
        e = out[b].to(acc) - o_ex[b].to(acc)                          # [H, n, d]
        o = o_ex[b].to(acc)
        err2 = gram_spectral_norm(e).cpu()
        out2 = gram_spectral_norm(o).cpu()
        res["err_norm"][b], res["out_norm"][b] = err2, out2
        res["v_norm"][b] = gram_spectral_norm(v[b].to(acc)).cpu()
        res["rel_spec_err"][b] = _ratio(err2, out2)
        fro_e = e.double().square().sum(dim=(-1, -2)).sqrt().cpu()
        fro_o = o.double().square().sum(dim=(-1, -2)).sqrt().cpu()
        res["rel_fro_err"][b] = _ratio(fro_e, fro_o)
        row_e = e.double().norm(dim=-1).amax(dim=-1).cpu()
        row_o = o.double().norm(dim=-1).amax(dim=-1).cpu()
        res["max_row_err"][b] = _ratio(row_e, row_o)
        if lse is not None:
            res["lse_err"][b] = (lse[b].double() - lse_ex[b].double()).abs().amax(dim=-1).cpu()
        del e, o
    if norm is None:
        norm = attention_matrix_norm(q, k, lse_ex, causal=causal, scale=scale, tol=tol,
                                     max_iters=max_iters, query_chunk=query_chunk)
    attn, iters, conv = norm
    res["attn_norm"] = attn
    res["spec_err"] = _ratio(res["err_norm"], attn * res["v_norm"])
    res["norm_iters"], res["norm_converged"] = iters, conv
    return res


def attention_errors(q, k, v, out, *, causal: bool, scale: float, lse=None, exact=None,
                     tol: float = 1e-3, max_iters: int = NORM_MAX_ITERS,
                     query_chunk: int | None = None, norm=None) -> dict:
    """Error of an approximate attention output `out` (and optionally its `lse`), per (b, h).

    q, k, v, out [B, H, n, d] on any device, any float dtype; computed in fp32 (fp64 when an input
    is fp64). `exact`: (O, lse_exact) from `exact_reference`, and `norm`: the result of
    `attention_matrix_norm`, both to reuse across methods (they depend on the inputs only).

    Per (b, h), with O exact, Õ = out, E = Õ − O, P = D⁻¹A:
      spec_err     = ||E||₂ / (||P||₂ · ||V||₂)          (the paper's operator-norm guarantee)
      rel_spec_err = ||E||₂ / ||O||₂
      rel_fro_err  = ||E||_F / ||O||_F
      max_row_err  = max_i ||E_i||₂ / max_i ||O_i||₂      (worst row error over the largest exact
                                                          row norm of the same head, both ℓ2)
      lse_err      = max_i |lse_i − lse_exact_i|          (only when lse is given)
    (x/0 is inf, 0/0 is 0.) Returns plain Python numbers: for each name the mean over (b, h)
    under `name` and the max under `name_max`; `attn_norm` / `attn_norm_max` (mean / max of
    ||P||₂); `norm_iters` (most passes any head needed), `norm_tol` (= tol), `norm_converged`
    (every head met tol or was computed exactly); `metric_ms` (wall time of this call, CUDA
    synchronised, including the exact reference when it is computed here).
    """
    cuda = out.is_cuda
    if cuda:
        torch.cuda.synchronize(out.device)
    t0 = time.perf_counter()
    per = head_errors(q, k, v, out, causal=causal, scale=scale, lse=lse, exact=exact, tol=tol,
                      max_iters=max_iters, query_chunk=query_chunk, norm=norm)
    names = SUMMARY_NAMES + (("lse_err",) if lse is not None else ())
    summary = {}
    for name in names:
        summary[name] = float(per[name].mean())
        summary[f"{name}_max"] = float(per[name].max())
    summary["attn_norm"] = float(per["attn_norm"].mean())
    summary["attn_norm_max"] = float(per["attn_norm"].max())
    summary["norm_iters"] = int(per["norm_iters"].max())
    summary["norm_tol"] = float(tol)
    summary["norm_converged"] = bool(per["norm_converged"].all())
    if cuda:
        torch.cuda.synchronize(out.device)
    summary["metric_ms"] = (time.perf_counter() - t0) * 1e3
    return summary
