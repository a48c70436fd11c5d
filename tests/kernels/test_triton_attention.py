"""Triton block_sample_attention against the PyTorch specification (kernels/reference.py).

On CPU the kernels run under TRITON_INTERPRET=1 (set in conftest.py), so sizes stay small and dtypes
are fp32/fp16 (the interpreter's bf16 dot is wrong).  Gradients come from a loss that uses both
outputs, so the lse gradient path (driver merges) is checked too.
"""

from unittest import mock

import pytest
import torch

from hyperbench_kernels import reference
from hyperbench_kernels.hyper_attention import HyperParams, hyper_attention
from hyperbench_kernels.triton_attention import block_sample_attention

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 1e-4, torch.float16: 2e-3}


def _rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _inputs(seed, B, H, n, d, dtype, *, T, m, permute=True, strided=False):
    g = torch.Generator().manual_seed(seed)
    if strided:   # rows of a longer sequence: non-contiguous along n, as the driver passes them
        q, k, v = (torch.randn(B, H, n + 5, d, generator=g)[:, :, 3:3 + n] for _ in range(3))
    else:
        q, k, v = (torch.randn(B, H, n, d, generator=g) for _ in range(3))
    if permute:
        q_order = torch.stack([torch.randperm(n, generator=g) for _ in range(B * H)]).view(B, H, n)
        k_order = torch.stack([torch.randperm(n, generator=g) for _ in range(B * H)]).view(B, H, n)
    else:
        q_order = k_order = torch.arange(n).expand(B, H, n)
    samples = torch.randint(n, (B, H, T, m), generator=g) if m > 0 else None
    dev = [x.to(DEVICE) for x in (q, k, v, q_order, k_order)]
    dev[:3] = [x.to(dtype) for x in dev[:3]]
    return (*dev, None if samples is None else samples.to(DEVICE)), g


def _check(seed, B, H, n, d, *, block, tile, m, causal=False, dtype=torch.float32, permute=True,
           strided=False, samples_override=None, grad=True):
    T = 1 if tile == 0 else -(-n // tile)
    (q, k, v, qo, ko, smp), g = _inputs(seed, B, H, n, d, dtype, T=T, m=m, permute=permute,
                                        strided=strided)
    if samples_override is not None:
        smp = samples_override.to(DEVICE)
    kw = dict(block_size=block, sample_tile=tile, sample_weight=n / max(m, 1), scale=d ** -0.5,
              causal=causal)
    gout = torch.randn(B, H, n, d, generator=g).to(DEVICE)
    glse = torch.randn(B, H, n, generator=g).to(DEVICE)

    xs = [x.detach().clone().requires_grad_(grad) for x in (q, k, v)]
    out, lse = block_sample_attention(*xs, qo, ko, smp, **kw)
    ref_xs = [x.detach().double().requires_grad_(grad) for x in (q, k, v)]
    ref_out, ref_lse = reference.block_sample_attention(*ref_xs, qo, ko, smp, **kw)

    tol = TOL[dtype]
    assert out.dtype == dtype and lse.dtype == torch.float32
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()
    assert _rel(out, ref_out) < tol, _rel(out, ref_out)
    assert _rel(lse, ref_lse) < tol, _rel(lse, ref_lse)
    if not grad:
        return
    ((out.float() * gout).sum() + (lse * glse).sum()).backward()
    ((ref_out * gout.double()).sum() + (ref_lse * glse.double()).sum()).backward()
    for name, x, rx in zip("qkv", xs, ref_xs):
        assert x.grad.dtype == dtype and torch.isfinite(x.grad).all(), name
        err = _rel(x.grad, rx.grad)
        assert err < 3 * tol, f"d{name}: {err}"


@pytest.mark.parametrize("n,block,tile,m", [
    (37, 16, 16, 5),      # odd n, ragged last block and tile, m not a multiple of 16; tiles part empty
    (100, 24, 40, 20),    # block not a multiple of BLOCK_M, tiles straddle blocks and sets
    (131, 64, 64, 16),    # aligned blocks, ragged tail
    (128, 64, 64, 32),    # key lists: tiles aligned with blocks and sets
    (150, 64, 0, 20),     # key lists, one sample set shared by the head, ragged tail
    (200, 128, 64, 24),   # key lists, two query tiles per block, own-block samples masked
    (96, 32, 0, 24),      # key lists on tiles half empty, one sample set shared by the head
    (90, 40, 0, 24),      # general kernel (blocks not of whole 16-row tiles), one set for the head
    (130, 64, 64, 0),     # key lists without samples, ragged tail
    (300, 128, 256, 24),  # key lists, one list per block shared by two query tiles, ragged tail
    (200, 128, 0, 16),    # key lists shared by two query tiles, one sample set for the head
    (200, 48, 64, 16),    # blocks straddle sample sets: a list per block and set, tiles part empty
])
@pytest.mark.parametrize("fused", [True, False], ids=["fused-bwd", "split-bwd"])
def test_block_sample_fp32(n, block, tile, m, fused, monkeypatch):
    """Both backward paths where key lists apply (blocks and sample sets of whole 16-row tiles):
    the fused one and the dQ + dK/dV kernels."""
    from hyperbench_kernels import triton_attention
    monkeypatch.setattr(triton_attention, "FUSED_LIST_BACKWARD", fused)
    launches = []
    real = triton_attention._list_bwd_kernel
    monkeypatch.setattr(triton_attention, "_list_bwd_kernel", _Spy(real, launches))
    _check(1000 + n, 2, 2, n, 32, block=block, tile=tile, m=m)
    assert bool(launches) == (fused and min(block, n) % 16 == 0 and tile % 16 == 0)


def _tiles_and_launches(monkeypatch, tiles, costs=None):
    """CONFIGS entries replaced by `tiles` ({kind: config}) and ROW_COST by `costs`, and every
    launch of the key-list forward, the fused backward and the general kernel recorded, in that
    order, as (programs, BLOCK_M)."""
    from hyperbench_kernels import triton_attention
    real = triton_attention._config
    monkeypatch.setattr(triton_attention, "_config", lambda kind, d: tiles.get(kind) or real(kind, d))
    if costs is not None:
        monkeypatch.setattr(triton_attention, "ROW_COST", costs)
    launches = []
    for name in ("_list_kernel", "_list_bwd_kernel", "_row_tile_kernel"):
        launches.append([])
        monkeypatch.setattr(triton_attention, name, _Spy(getattr(triton_attention, name), launches[-1],
                                                         lambda grid, kw: (grid[0], kw.get("BM"))))
    return launches


# Every forward and fused-backward kind at the rows its name says (the interpreter's default is 64
# rows for all), and a cost per row for each that grows as the tiles narrow, as on the H200.
_TILES_BY_ROWS = {
    "fwd": (128, 64, 4, 1), "fwd_merge": (128, 64, 4, 1), "fwd_rows64": (64, 64, 4, 1),
    "fwd_rows32": (32, 64, 4, 1), "fwd_rows16": (16, 32, 1, 1),
    "bwd": (128, 64, 4, 1), "bwd_narrow": (128, 64, 4, 1), "bwd_rows64": (64, 64, 4, 1),
    "bwd_rows32": (32, 64, 4, 1), "bwd_rows16": (16, 32, 1, 1)}
_COSTS = {kind: {32: cost} for kind, cost in (
    ("fwd_rows64", 1.1), ("fwd_rows32", 1.5), ("fwd_rows16", 3.0),
    ("bwd_narrow", 1.2), ("bwd_rows64", 1.1), ("bwd_rows32", 1.5), ("bwd_rows16", 3.0))}


def _check_merging_forward(seed, n, block):
    """The forward merging into rows that hold nothing yet (out 0, lse -inf), blocks and sample
    sets of `block` rows, against the reference."""
    from hyperbench_kernels import triton_attention
    (q, k, v, qo, ko, smp), _ = _inputs(seed, 1, 2, n, 32, torch.float32, T=-(-n // block), m=16)
    kw = dict(block_size=block, sample_tile=block, sample_weight=n / 16, scale=32 ** -0.5)
    old = (torch.zeros(1, 2, n, 32, device=DEVICE), torch.full((1, 2, n), float("-inf"), device=DEVICE))
    out, lse = triton_attention.block_sample_forward(q, k, v, qo, ko, smp, **kw, into=old)
    want_out, want_lse = reference.block_sample_attention(q.double(), k.double(), v.double(), qo, ko, smp, **kw)
    assert _rel(out, want_out) < TOL[torch.float32] and _rel(lse, want_lse) < TOL[torch.float32]


def test_blocks_narrower_than_the_tiles_run_key_lists_on_narrow_tiles_that_divide_them(monkeypatch):
    """With 128-row "fwd" and "bwd" tiles and 64-row blocks, the forward (plain and merging) and
    the fused backward run key lists on the 64-row tiles, not the 128-row ones half empty nor the
    narrower 32- and 16-row ones (which divide the blocks too, at a higher cost per row), and not
    the general kernel and the split backward; results as the reference."""
    fwd, bwd, general = _tiles_and_launches(monkeypatch, _TILES_BY_ROWS, _COSTS)
    _check(79, 1, 2, 192, 32, block=64, tile=64, m=16)
    assert fwd == [(3, 64)] and bwd == [(3, 64)]
    _check_merging_forward(80, 192, 64)
    assert fwd[-1] == (3, 64) and general == []


def test_blocks_of_32_rows_run_key_lists_on_32_row_tiles(monkeypatch):
    """32-row blocks run key lists on "fwd_rows32" / "bwd_rows32" where those cost less than 64-
    and 128-row tiles half or three quarters empty; results as the reference."""
    fwd, bwd, _ = _tiles_and_launches(monkeypatch, _TILES_BY_ROWS, _COSTS)
    _check(81, 1, 2, 96, 32, block=32, tile=32, m=16)
    assert fwd == [(3, 32)] and bwd == [(3, 32)]


def test_blocks_of_odd_multiples_of_16_rows_run_the_cheapest_tiles_part_empty(monkeypatch):
    """48-row blocks and sample sets, which only 16-row tiles divide: at the costs of _COSTS the
    forward, merging forward and fused backward run one 64-row tile per block with its last 16
    rows empty (an odd length, its last block short; results as the reference); where every kind
    costs the same per row, the 16-row tiles (fewest empty rows) run.  Never the general kernel."""
    from hyperbench_kernels import triton_attention
    fwd, bwd, general = _tiles_and_launches(monkeypatch, _TILES_BY_ROWS, _COSTS)
    _check(82, 1, 2, 130, 32, block=48, tile=48, m=16)
    assert fwd == [(3, 64)] and bwd == [(3, 64)] and general == []
    _check_merging_forward(83, 96, 48)
    assert fwd[-1] == (2, 64) and general == []
    fwd.clear(), bwd.clear()
    monkeypatch.setattr(triton_attention, "ROW_COST", {})
    _check(84, 1, 2, 130, 32, block=48, tile=48, m=16)
    assert fwd == [(9, 16)] and bwd == [(9, 16)] and general == []


def test_every_narrow_tile_kind_has_a_measured_cost_at_every_head_dim():
    """_cheapest_tiles takes a kind without a ROW_COST entry as costing what the widest kind does per
    row, so a missing entry would quietly put narrow tiles on blocks the wide ones cover: every
    kind the choice weighs has a cost at every head_dim the kernels take, and none is below the
    widest kind's (the choice would then leave tiles tuned for the default blocks)."""
    from hyperbench_kernels import triton_attention
    narrow = [kind for kind in triton_attention.CONFIGS
              if kind.startswith(("fwd_rows", "bwd_rows")) or kind == "bwd_narrow"]
    assert sorted(triton_attention.ROW_COST) == sorted(narrow)
    for kind in narrow:
        assert sorted(triton_attention.ROW_COST[kind]) == sorted(triton_attention.CONFIGS[kind]) == [16, 32, 64, 128]
        assert min(triton_attention.ROW_COST[kind].values()) >= 1.0, kind


def test_rows_of_one_block_and_one_sample_set_share_a_key_list(monkeypatch):
    """48-row blocks and 64-row sample sets: one key list per stretch of rows between consecutive
    cuts at multiples of either (0, 48, 64, 96, 128, 144, 192, then 200: 7 lists), covered at the
    costs of _COSTS by 32-row tiles (2 + 1 + 1 + 1 + 1 + 2 + 1 = 9, the last part empty); results
    as the reference."""
    from hyperbench_kernels import triton_attention
    builds = []
    monkeypatch.setattr(triton_attention, "_key_lists_kernel", _Spy(triton_attention._key_lists_kernel, builds))
    fwd, bwd, general = _tiles_and_launches(monkeypatch, _TILES_BY_ROWS, _COSTS)
    _check(85, 1, 2, 200, 32, block=48, tile=64, m=16)
    assert builds == [(7, 2)] and fwd == [(9, 32)] and bwd == [(9, 32)] and general == []


def test_forward_and_backward_share_one_build_of_the_key_lists(monkeypatch):
    from hyperbench_kernels import triton_attention
    builds = []
    monkeypatch.setattr(triton_attention, "_key_lists_kernel", _Spy(triton_attention._key_lists_kernel, builds))
    _check(78, 1, 2, 256, 32, block=128, tile=128, m=16)
    assert builds == [(2, 2)]      # one list per 128-row block, for each of the two heads


def test_uniform_units_find_their_tiles_by_arithmetic_and_others_by_the_table(monkeypatch):
    """Where every unit of rows is the same whole number of tiles (128-row blocks and sets, the
    interpreter's 64-row tiles: 2), the kernels get UNIT_TILES and no load from the tile table
    decides their rows; the forward's out and lse are then exactly those of the table's way.  48-row
    blocks in 64-row sets make uneven units, which take the table (UNIT_TILES 0)."""
    from hyperbench_kernels import triton_attention
    seen = []
    for name in ("_list_kernel", "_list_bwd_kernel"):
        monkeypatch.setattr(triton_attention, name, _Spy(getattr(triton_attention, name), seen,
                                                         lambda grid, kw: kw["UNIT_TILES"]))
    _check(86, 1, 2, 256, 32, block=128, tile=128, m=16)
    assert seen == [2, 2]
    seen.clear()
    _check(87, 1, 2, 200, 32, block=48, tile=64, m=16)
    assert seen and set(seen) == {0}
    (q, k, v, qo, ko, smp), _ = _inputs(88, 1, 2, 256, 32, torch.float32, T=2, m=16)
    kw = dict(block_size=128, sample_tile=128, sample_weight=16.0, scale=32 ** -0.5)
    ways = []
    for always in (False, True):
        monkeypatch.setattr(triton_attention, "TILE_TABLE_ALWAYS", always)
        ways.append(triton_attention.block_sample_forward(q, k, v, qo, ko, smp, **kw))
    assert seen[-1] == 0 and seen[-2] == 2
    assert torch.equal(ways[0][0], ways[1][0]) and torch.equal(ways[0][1], ways[1][1])


class _Spy:
    """Stands in for a Triton kernel: `spy[grid](...)` records the launch, then runs it; what it
    records is record(grid, keyword arguments), by default the grid."""

    def __init__(self, kernel, calls, record=lambda grid, kw: grid):
        self.kernel, self.calls, self.record = kernel, calls, record

    def __getitem__(self, grid):
        def launch(*a, **kw):
            self.calls.append(self.record(grid, kw))
            return self.kernel[grid](*a, **kw)
        return launch


def test_no_samples_and_strided_inputs():
    _check(11, 1, 2, 70, 32, block=32, tile=32, m=0, strided=True)


def test_repeated_samples():
    n, B, H = 64, 1, 2
    smp = torch.tensor([3, 3, 3, 40, 40, 7, 60, 60, 60, 60], dtype=torch.int64).expand(B, H, 2, 10)
    _check(12, B, H, n, 16, block=16, tile=32, m=10, samples_override=smp.contiguous())


@pytest.mark.parametrize("n,causal", [(1, True), (45, True), (130, True), (77, False)])
def test_exact_path(n, causal):
    """Exact attention as the driver calls it: identity orders, one block of n, no samples."""
    _check(20 + n, 1, 2, n, 32, block=n, tile=0, m=0, causal=causal, permute=False)
    if n > 1:
        q, k, v = (torch.randn(1, 2, n, 32).to(DEVICE) for _ in range(3))
        order = torch.arange(n, device=DEVICE).expand(1, 2, n)
        out, lse = block_sample_attention(q, k, v, order, order, None, block_size=n, sample_tile=0,
                                          sample_weight=1.0, scale=0.2, causal=causal)
        ref_out, ref_lse = reference.exact_attention(q, k, v, causal=causal, scale=0.2)
        assert _rel(out, ref_out) < 1e-4 and _rel(lse, ref_lse) < 1e-4


@pytest.mark.parametrize("d", [16, 64])
def test_head_dims(d):
    _check(30 + d, 1, 2, 80, d, block=32, tile=32, m=16)


def test_fp16():
    _check(40, 1, 2, 96, 32, block=32, tile=48, m=24, dtype=torch.float16)


def test_mismatch_is_detected():
    """The comparison can fail: a wrong sample weight must be caught."""
    (q, k, v, qo, ko, smp), _ = _inputs(50, 1, 1, 64, 16, torch.float32, T=2, m=8)
    kw = dict(block_size=16, sample_tile=32, scale=0.25)
    out, _ = block_sample_attention(q, k, v, qo, ko, smp, sample_weight=8.0, **kw)
    ref_out, _ = reference.block_sample_attention(q, k, v, qo, ko, smp, sample_weight=2.0, **kw)
    assert _rel(out, ref_out) > 1e-3


@pytest.mark.parametrize("causal,block,tile", [(False, 16, 32), (True, 16, 32), (False, 64, 64), (True, 64, 0)])
def test_driver_matches_torch_backend(causal, block, tile):
    """Whole HyperAttention (LSH, sampling, causal recursion, merges) with both backends."""
    B, H, n, d = 1, 2, 150, 16
    params = HyperParams(block_size=block, sample_size=12, sample_tile=tile, min_seq_len=40)
    base = [torch.randn(B, H, n, d, generator=torch.Generator().manual_seed(60 + i)).to(DEVICE)
            for i in range(3)]
    gout = torch.randn(B, H, n, d).to(DEVICE)
    results = []
    for backend in ("triton", "torch"):
        xs = [x.clone().requires_grad_(True) for x in base]
        gen = torch.Generator(device=DEVICE).manual_seed(7)
        out, lse = hyper_attention(*xs, params, causal=causal, generator=gen, backend=backend)
        ((out * gout).sum() + lse.sum()).backward()
        results.append((out, lse, *(x.grad for x in xs)))
    for name, a, b in zip(["out", "lse", "dq", "dk", "dv"], *results):
        assert torch.isfinite(a).all() and _rel(a, b) < 3e-4, (name, _rel(a, b))


@pytest.mark.parametrize("how", ["load", "atomic"])
@pytest.mark.parametrize("n,block,tile,m", [(40, 16, 20, 6), (128, 64, 64, 8)],
                         ids=["general", "key-lists"])
@pytest.mark.parametrize("accumulate", [True, False])
@pytest.mark.parametrize("fused", [True, False], ids=["fused-bwd", "split-bwd"])
def test_backward_adds_into_row_slices_of_larger_buffers(monkeypatch, how, n, block, tile, m,
                                                         accumulate, fused):
    """The causal recursion's way of calling the backward: fp32 gradients added in place into row
    slices of its accumulators (or written there), the rows outside untouched."""
    from hyperbench_kernels import triton_attention
    from hyperbench_kernels.triton_attention import block_sample_backward, block_sample_forward
    monkeypatch.setattr(triton_attention, "ACCUMULATE_BY", how)
    monkeypatch.setattr(triton_attention, "FUSED_LIST_BACKWARD", fused)
    from hyperbench_kernels.triton_delta import delta as row_delta
    (q, k, v, qo, ko, smp), g = _inputs(5, 2, 2, n, 16, torch.float32, T=-(-n // tile), m=m)
    kw = dict(block_size=block, sample_tile=tile, sample_weight=n / m, scale=0.25)
    out, lse = block_sample_forward(q, k, v, qo, ko, smp, **kw)
    dout = torch.randn(2, 2, n, 16, generator=g).to(DEVICE)
    want = block_sample_backward(q, k, v, qo, ko, smp, dout, lse, row_delta(dout, out), **kw)
    bufs = [torch.randn(2, 2, n + 10, 16, generator=g).to(DEVICE) for _ in range(3)]
    before = [b.clone() for b in bufs]
    block_sample_backward(q, k, v, qo, ko, smp, dout, lse, row_delta(dout, out), **kw,
                          grads=tuple(b[:, :, 10:] for b in bufs), accumulate=accumulate)
    for b, b0, w in zip(bufs, before, want):
        base = b0[:, :, 10:] if accumulate else 0
        torch.testing.assert_close(b[:, :, 10:], base + w.float(), rtol=1e-5, atol=1e-5)
        assert torch.equal(b[:, :, :10], b0[:, :, :10])


@pytest.mark.parametrize("n,block,tile,m", [(128, 64, 64, 8), (40, 16, 20, 6)],
                         ids=["key-lists", "general"])
def test_forward_merges_into_rows_of_a_larger_buffer(n, block, tile, m):
    """block_sample_forward(into=...) as the causal recursion calls it: this attention merged in
    place with the (out, lse) the rows hold, the destination being the bottom rows of longer heads."""
    from hyperbench_kernels.hyper_attention import merge_partials
    from hyperbench_kernels.triton_attention import block_sample_forward
    (q, k, v, qo, ko, smp), g = _inputs(8, 2, 2, n, 16, torch.float32, T=-(-n // tile), m=m)
    kw = dict(block_size=block, sample_tile=tile, sample_weight=n / m, scale=0.25)
    out_full = torch.randn(2, 2, n + 10, 16, generator=g).to(DEVICE)
    lse_full = torch.randn(2, 2, n + 10, generator=g).to(DEVICE)
    lse_full[0, 1, 12] = float("-inf")                  # a row that saw no key so far
    before = out_full.clone(), lse_full.clone()
    part_out, part_lse = block_sample_forward(q, k, v, qo, ko, smp, **kw)
    want_out, want_lse = merge_partials(before[0][:, :, 10:], before[1][:, :, 10:], part_out, part_lse)
    got = block_sample_forward(q, k, v, qo, ko, smp, **kw, into=(out_full[:, :, 10:], lse_full[:, :, 10:]))
    assert got[0].data_ptr() == out_full[:, :, 10:].data_ptr()
    torch.testing.assert_close(out_full[:, :, 10:], want_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lse_full[:, :, 10:], want_lse, rtol=1e-5, atol=1e-5)
    assert torch.equal(out_full[:, :, :10], before[0][:, :, :10])
    assert torch.equal(lse_full[:, :, :10], before[1][:, :, :10])


@pytest.mark.parametrize("n,block,tile,m", [(128, 64, 64, 8), (40, 16, 20, 6)],
                         ids=["key-lists", "general"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused-bwd", "split-bwd"])
def test_backward_reads_row_slices_of_longer_heads(monkeypatch, n, block, tile, m, fused):
    """dO, lse and Δ given as the bottom rows of longer heads (the causal recursion's pieces) are
    read in place by head stride and give what contiguous copies give."""
    from hyperbench_kernels import triton_attention
    from hyperbench_kernels.triton_attention import block_sample_backward, block_sample_forward
    from hyperbench_kernels.triton_delta import delta as row_delta
    monkeypatch.setattr(triton_attention, "FUSED_LIST_BACKWARD", fused)
    (q, k, v, qo, ko, smp), g = _inputs(9, 2, 2, n, 16, torch.float32, T=-(-n // tile), m=m)
    kw = dict(block_size=block, sample_tile=tile, sample_weight=n / m, scale=0.25)
    out, lse = block_sample_forward(q, k, v, qo, ko, smp, **kw)
    dout_long = torch.randn(2, 2, n + 7, 16, generator=g).to(DEVICE)
    dout = dout_long[:, :, 7:]
    delta = row_delta(dout.contiguous(), out)
    lse_long, delta_long = (torch.randn(2, 2, n + 7, generator=g).to(DEVICE) for _ in range(2))
    lse_long[:, :, 7:], delta_long[:, :, 7:] = lse, delta
    want = block_sample_backward(q, k, v, qo, ko, smp, dout.contiguous(), lse, delta, **kw)
    got = block_sample_backward(q, k, v, qo, ko, smp, dout, lse_long[:, :, 7:], delta_long[:, :, 7:], **kw)
    assert not dout.is_contiguous()
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tile,slots,adds_in,by_slot", [(64, True, torch.float16, False),
                                                      (0, True, torch.float16, True),
                                                      (0, False, torch.float32, False)],
                         ids=["set-per-block", "set-per-head", "set-per-head-fp32-rows"])
def test_fused_backward_adds_dkdv_in_16_bits_only_where_few_programs_add_into_a_key(monkeypatch, tile, slots,
                                                                                   adds_in, by_slot):
    """With one 64-row program per block and per sample set, each key row gets two adds and dK/dV
    add up in fp16.  A set shared by the head gets n / 64 = 4 more per sampled key (over
    DKDV_16BIT_ADDS): the block keys still add up in fp16, and the set's keys in fp32 slots added
    into their rows afterwards (SAMPLE_SLOTS; without it, fp32 for every row).  The gradients match
    the reference either way."""
    from hyperbench_kernels import triton_attention
    from hyperbench_kernels.triton_delta import delta as row_delta
    monkeypatch.setattr(triton_attention, "SAMPLE_SLOTS", slots)
    added = []
    real = triton_attention._add_sample_slots
    monkeypatch.setattr(triton_attention, "_add_sample_slots", lambda *a: added.append(1) or real(*a))
    n, m = 256, 32
    T = 1 if tile == 0 else n // tile
    (q, k, v, qo, ko, smp), _ = _inputs(90, 1, 2, n, 32, torch.float16, T=T, m=m)
    kw = dict(block_size=64, sample_tile=tile, sample_weight=n / m, scale=32 ** -0.5)
    out, lse = triton_attention.block_sample_forward(q, k, v, qo, ko, smp, **kw)
    dout = torch.randn_like(out)
    _, dk, dv = triton_attention.block_sample_backward(q, k, v, qo, ko, smp, dout, lse,
                                                       row_delta(dout, out, None), **kw)
    assert dk.dtype == dv.dtype == adds_in and bool(added) == by_slot
    _check(91, 1, 2, n, 32, block=64, tile=tile, m=m, dtype=torch.float16)


@pytest.mark.parametrize("tile,dtype,adds", [(64, torch.float16, 1 + 1 * 4 * 32 / 256), (32, torch.float16, 2 + 1 * 8 * 32 / 256),
                                             (0, torch.float16, None), (64, torch.float32, None)],
                         ids=["set-per-block", "sets-per-32-rows", "set-per-head", "fp32"])
def test_sixteen_bit_adds_counts_what_the_fused_backward_adds(tile, dtype, adds):
    """sixteen_bit_adds (the causal recursion asks it before it allocates): the 64-row tiles of a
    key's block add into its row (two where 32-row sets cut each block in two), and those of each
    set that draws it, T·m / n sets on average;
    None where dK/dV add up in fp32: a set shared by the head (fp32 slots), fp32 inputs."""
    from hyperbench_kernels import triton_attention
    n, m = 256, 32
    (q, k, v, qo, ko, smp), _ = _inputs(93, 1, 2, n, 32, dtype, T=1 if tile == 0 else n // tile, m=m)
    kw = dict(block_size=64, sample_tile=tile, sample_weight=n / m, scale=32 ** -0.5)
    assert triton_attention.sixteen_bit_adds(q.shape, dtype, smp, **kw) == adds


@pytest.mark.parametrize("n,block,tile,m", [(200, 128, 0, 24), (300, 64, 0, 40), (512, 64, 256, 16)],
                         ids=["part-empty", "ragged", "set-per-256-rows"])
def test_sample_slots_add_every_draw_into_its_key_row(monkeypatch, n, block, tile, m):
    """Sample sets through fp32 slots (one shared by the head, or one per 256 rows: each tile's
    own set's slots), with the forward's cleared buffer (poisoned with NaN, so a row neither it
    nor a slot reaches shows), a last block the tiles leave part empty, and keys drawn more than
    once (each draw adds).  Against the reference."""
    from hyperbench_kernels import triton_attention
    monkeypatch.setattr(triton_attention, "DKDV_16BIT_ADDS", 2)
    real = triton_attention.zeroed_dkdv
    monkeypatch.setattr(triton_attention, "zeroed_dkdv", lambda *a, **kw: real(*a, **kw).fill_(float("nan")))
    added = []
    slots = triton_attention._add_sample_slots
    monkeypatch.setattr(triton_attention, "_add_sample_slots", lambda *a: added.append(1) or slots(*a))
    smp = torch.randint(n // 2, (1, 2, 1 if tile == 0 else n // tile, m), generator=torch.Generator().manual_seed(5))
    smp[..., 1] = smp[..., 0]
    _check(92, 1, 2, n, 32, block=block, tile=tile, m=m, dtype=torch.float16, samples_override=smp)
    assert added


def test_merging_forward_takes_its_own_tiles(monkeypatch):
    """The plain key-list forward runs on the "fwd" tiles, the one that merges into rows in place
    (the causal levels) on "fwd_merge" (fewer warps, so that two programs share an SM)."""
    from hyperbench_kernels import triton_attention
    kinds = []
    real = triton_attention._config
    monkeypatch.setattr(triton_attention, "_config", lambda kind, d: kinds.append(kind) or real(kind, d))
    (q, k, v, qo, ko, smp), g = _inputs(9, 1, 2, 128, 16, torch.float32, T=2, m=8)
    kw = dict(block_size=64, sample_tile=64, sample_weight=16.0, scale=0.25)
    out, lse = triton_attention.block_sample_forward(q, k, v, qo, ko, smp, **kw)
    assert "fwd" in kinds and "fwd_merge" not in kinds
    kinds.clear()
    triton_attention.block_sample_forward(q, k, v, qo, ko, smp, **kw, into=(out.clone(), lse.clone()))
    assert "fwd_merge" in kinds


def test_a_register_cap_in_a_config_reaches_the_launch(monkeypatch):
    """A fifth config entry (scripts/gpu_probe.py's capped tile sets) is passed as maxnreg."""
    from hyperbench_kernels import triton_attention
    monkeypatch.setattr(triton_attention, "_config", lambda kind, d: (64, 64, 4, 1, 96))
    launches = []
    real = triton_attention._list_kernel
    monkeypatch.setattr(triton_attention, "_list_kernel", mock.MagicMock(
        __getitem__=lambda self, grid: lambda *a, **kw: launches.append(kw.get("maxnreg")) or real[grid](*a, **kw)))
    (q, k, v, qo, ko, smp), _ = _inputs(9, 1, 2, 128, 16, torch.float32, T=2, m=8)
    triton_attention.block_sample_forward(q, k, v, qo, ko, smp, block_size=64, sample_tile=64, sample_weight=16.0,
                                          scale=0.25)
    assert launches == [96]


@pytest.mark.parametrize("n,block", [(256, 64), (200, 64), (200, 48)], ids=["aligned", "ragged", "part-empty"])
def test_forward_clears_the_backwards_dkdv_buffer(monkeypatch, n, block):
    """Where dK/dV add up in 16 bits, the forward's kernel clears the backward's buffer (here
    handed over full of NaN, so a row it missed shows): the gradients match the reference, and a
    second backward of the same graph (which cannot reuse the buffer) gives them again.  Also with
    blocks that the tiles do not divide (the interpreter's 64 rows, blocks of 48)."""
    from hyperbench_kernels import triton_attention
    handed = []
    real = triton_attention.zeroed_dkdv

    def poisoned(*a, **kw):
        buf = real(*a, **kw)
        handed.append(buf)
        return None if buf is None else buf.fill_(float("nan"))
    monkeypatch.setattr(triton_attention, "zeroed_dkdv", poisoned)
    m = 32
    (q, k, v, qo, ko, smp), g = _inputs(97, 1, 2, n, 32, torch.float16, T=-(-n // block), m=m)
    kw = dict(block_size=block, sample_tile=block, sample_weight=n / m, scale=32 ** -0.5)
    gout = torch.randn(1, 2, n, 32, generator=g).to(DEVICE)
    xs = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    out, lse = block_sample_attention(*xs, qo, ko, smp, **kw)
    first = torch.autograd.grad((out.float() * gout).sum(), xs, retain_graph=True)
    again = torch.autograd.grad((out.float() * gout).sum(), xs)
    assert len(handed) == 1 and handed[0] is not None and first[1].data_ptr() == handed[0].data_ptr()
    ref_xs = [x.detach().double().requires_grad_() for x in (q, k, v)]
    ref_out, _ = reference.block_sample_attention(*ref_xs, qo, ko, smp, **kw)
    want = torch.autograd.grad((ref_out * gout.double()).sum(), ref_xs)
    for name, a, b, w in zip("qkv", first, again, want):
        assert torch.isfinite(a).all() and _rel(a, w) < 6e-3, name
        assert _rel(b, a) < 1e-3, name


def test_no_buffer_for_the_backward_without_key_gradients(monkeypatch):
    """Only q needs a gradient: the forward sets nothing aside for dK/dV."""
    from hyperbench_kernels import triton_attention
    handed = []
    real = triton_attention.zeroed_dkdv
    monkeypatch.setattr(triton_attention, "zeroed_dkdv", lambda *a, **kw: handed.append(1) or real(*a, **kw))
    (q, k, v, qo, ko, smp), _ = _inputs(98, 1, 2, 128, 32, torch.float16, T=2, m=16)
    kw = dict(block_size=64, sample_tile=64, sample_weight=8.0, scale=32 ** -0.5)
    out, _ = block_sample_attention(q.clone().requires_grad_(), k, v, qo, ko, smp, **kw)
    assert handed == []


def test_inference_skips_the_autograd_function(monkeypatch):
    """Under no_grad (or with no input needing a gradient) the primitive runs its forward directly,
    not the autograd function (whose forward prepares the key lists apart for its backward), and
    gives the autograd path's out and lse."""
    from hyperbench_kernels import triton_attention
    (q, k, v, qo, ko, smp), _ = _inputs(31, 1, 2, 128, 32, torch.float32, T=2, m=16)
    kw = dict(block_size=64, sample_tile=64, sample_weight=8.0, scale=32 ** -0.5)
    xs = [x.detach().requires_grad_() for x in (q, k, v)]
    want_out, want_lse = block_sample_attention(*xs, qo, ko, smp, **kw)
    assert want_out.grad_fn is not None
    prepared = []
    real = triton_attention.prepared_lists
    monkeypatch.setattr(triton_attention, "prepared_lists", lambda *a, **k_: prepared.append(1) or real(*a, **k_))
    with torch.no_grad():
        out, lse = block_sample_attention(*xs, qo, ko, smp, **kw)
    plain_out, _ = block_sample_attention(q, k, v, qo, ko, smp, **kw)   # grad enabled, nothing to differentiate
    assert out.grad_fn is None and plain_out.grad_fn is None and not prepared
    assert torch.equal(out, want_out.detach()) and torch.equal(lse, want_lse.detach())
    assert torch.equal(plain_out, out)
