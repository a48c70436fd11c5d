"""Counting sort (kernels/triton_sort.py) against torch.sort(stable=True): the same permutation,
ties in original order, at lengths around and across chunk boundaries. Interpreter on CPU."""

import functools

import pytest
import torch

from hyperbench_kernels import lsh, triton_sort

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Small chunks so a few hundred keys cross several chunk boundaries (the interpreter is slow); the
# GPU uses triton_sort.CHUNK, which scripts/gpu_kernel_check.py checks at full size.
CH = 32


@pytest.mark.parametrize("n", [1, 7, CH, 5 * CH + 9, 13 * CH + 3])
@pytest.mark.parametrize("num_projs", [3, 7, 8])
@pytest.mark.parametrize("chunk", [CH, 4 * CH])
def test_same_permutation_as_a_stable_sort(n, num_projs, chunk):
    g = torch.Generator().manual_seed(n * 10 + num_projs)
    keys = torch.randint(2 ** num_projs, (2, 3, n), generator=g).to(torch.int16).to(DEVICE)
    keys[..., n // 3: n // 2] = 1           # a long run of ties
    want = torch.sort(keys, dim=-1, stable=True).indices
    got = triton_sort.counting_sort_orders(keys, num_projs, chunk)
    assert got.dtype == torch.int64 and torch.equal(got, want)


def test_skewed_keys_and_joint_sort_match_lsh_sort_orders():
    # most rows in one bucket: long runs that cross chunks
    g = torch.Generator().manual_seed(1)
    n = 12 * CH + 13
    q = torch.where(torch.rand(1, 2, n, generator=g) < 0.9, 5, torch.randint(128, (1, 2, n), generator=g))
    k = torch.randint(128, (1, 2, n), generator=g)
    keys = [x.to(torch.int16).to(DEVICE) for x in (q, k)]
    counting = functools.partial(triton_sort.counting_sort_orders, chunk=2 * CH)
    for a, b in zip(lsh.sort_orders(keys, 7, sort=counting), lsh.sort_orders(keys, 7)):
        assert torch.equal(a, b)


def test_too_many_projections_is_refused():
    with pytest.raises(ValueError, match="at most"):
        triton_sort.counting_sort_orders(torch.zeros(1, 4, dtype=torch.int16), triton_sort.MAX_PROJS + 1)


def test_driver_with_counting_sort_matches_torch_backend(monkeypatch):
    from hyperbench_kernels import hyper_attention as driver
    monkeypatch.setattr(driver, "SORT", "counting")
    monkeypatch.setattr(triton_sort, "CHUNK", CH)
    calls = []
    real = triton_sort.counting_sort_orders
    monkeypatch.setattr(triton_sort, "counting_sort_orders", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    params = driver.HyperParams(block_size=16, sample_size=12, sample_tile=32, min_seq_len=40)
    xs = [torch.randn(1, 2, 150, 16, generator=torch.Generator().manual_seed(40 + i)).to(DEVICE) for i in range(3)]
    res = {}
    for backend in ("triton", "torch"):
        gen = torch.Generator(device=DEVICE).manual_seed(2)
        with torch.no_grad():
            res[backend] = driver.hyper_attention(*xs, params, causal=True, generator=gen, backend=backend)
    assert calls    # the recursion's non-causal levels sorted by counting sort
    for a, b in zip(res["triton"], res["torch"]):
        assert ((a - b).norm() / b.norm()).item() < 3e-4


def test_rows_longer_than_one_scan_step():
    # more chunks than the prefix scan takes per step (SCAN_ROWS), so its carry crosses steps
    n = (triton_sort.SCAN_ROWS + 7) * CH + 5
    keys = torch.randint(128, (1, 2, n), generator=torch.Generator().manual_seed(9)).to(torch.int16).to(DEVICE)
    got = triton_sort.counting_sort_orders(keys, 7, CH)
    assert torch.equal(got, torch.sort(keys, dim=-1, stable=True).indices)


def _per_level_orders(ranks, levels):
    """What the causal recursion's levels sort one by one: in each segment of n / 2^l keys, the
    bottom half's query keys and the top half's key keys."""
    _, B, H, n = ranks.shape
    orders = []
    for l in range(levels):
        s = n >> l
        q = ranks[0].reshape(B, H << l, s)[:, :, s // 2:]
        k = ranks[1].reshape(B, H << l, s)[:, :, :s // 2]
        orders.append(tuple(torch.sort(x, dim=-1, stable=True).indices for x in (q, k)))
    return orders


@pytest.mark.parametrize("B,H,n,levels,chunk,num_projs", [(1, 2, 8 * CH, 2, CH, 7), (2, 1, 16 * CH, 3, CH, 3),
                                                           (1, 1, 16 * CH, 3, 2 * CH, 8)])
def test_every_recursion_level_in_one_pass(B, H, n, levels, chunk, num_projs):
    g = torch.Generator().manual_seed(n + levels)
    ranks = torch.randint(2 ** num_projs, (2, B, H, n), generator=g).to(torch.int16).to(DEVICE)
    ranks[0, ..., n // 5: n // 3] = 1          # a run of ties across chunks and halves
    got = triton_sort.recursion_orders(ranks, num_projs, levels, chunk)
    assert len(got) == levels
    for (q, k), (want_q, want_k) in zip(got, _per_level_orders(ranks, levels)):
        assert q.dtype == torch.int64 and torch.equal(q, want_q) and torch.equal(k, want_k)


def test_recursion_orders_need_halves_of_whole_chunks():
    ranks = torch.zeros(2, 1, 1, 6 * CH, dtype=torch.int16, device=DEVICE)
    assert triton_sort.recursion_orders(ranks, 7, 2, CH) is None        # halves of 1.5 chunks
    assert triton_sort.recursion_levels(131072, 4096) == 5
    assert triton_sort.recursion_levels(12288, 4096) == 1                # 6144 rows, then 3072-row halves
    assert triton_sort.recursion_levels(4096, 4096) == 0


def _small_counting(monkeypatch):
    """The hashing launch counting 64-key chunks, 32 rows a step, so that the sorts' chunks stay
    small (the interpreter's tl.sort is slow); the GPU's sizes are checked by
    scripts/gpu_kernel_check.py and tests/kernels/test_triton_lsh.py."""
    from hyperbench_kernels import triton_lsh
    monkeypatch.setattr(triton_lsh, "COUNT_ROWS", 64)
    monkeypatch.setattr(triton_lsh, "BLOCK_ROWS", 32)
    return triton_lsh


@pytest.mark.parametrize("n,chunk", [(300, 64), (300, 128), (20, 32), (64, None)],
                         ids=["entry-a-chunk", "two-entries-a-chunk", "short-row", "one-chunk"])
def test_the_hashings_prefix_replaces_passes_1_and_2(monkeypatch, n, chunk):
    """Sums counted by the hashing launch (one entry a COUNT_ROWS-key chunk; one or more to a
    sort chunk, or a row shorter than both) sort as the sort's own passes do, without running
    them; a chunk that the entries do not divide runs them."""
    triton_lsh = _small_counting(monkeypatch)
    g = torch.Generator().manual_seed(n)
    q, k = (torch.randn(1, 3, n, 16, generator=g).to(torch.float16).to(DEVICE) for _ in range(2))
    keys, prefix = triton_lsh.bucket_ranks([q, k], torch.randn(16, 7, generator=g).to(DEVICE), with_prefix=True)
    want = torch.sort(keys, dim=-1, stable=True).indices
    passes = []
    real = triton_sort.chunk_prefix
    monkeypatch.setattr(triton_sort, "chunk_prefix", lambda *a: passes.append(1) or real(*a))
    assert torch.equal(triton_sort.counting_sort_orders(keys, 7, chunk, prefix=prefix), want)
    assert passes == []
    assert torch.equal(triton_sort.counting_sort_orders(keys, 7, 16, prefix=prefix), want)
    assert passes == [1]


def test_recursion_orders_from_the_hashings_prefix(monkeypatch):
    triton_lsh = _small_counting(monkeypatch)
    g = torch.Generator().manual_seed(3)
    q, k = (torch.randn(1, 2, 512, 16, generator=g).to(torch.float16).to(DEVICE) for _ in range(2))
    keys, prefix = triton_lsh.bucket_ranks([q, k], torch.randn(16, 7, generator=g).to(DEVICE), with_prefix=True)
    want = triton_sort.recursion_orders(keys, 7, 2, chunk=64)
    monkeypatch.setattr(triton_sort, "chunk_prefix", None)   # passes 1 and 2 must not run
    got = triton_sort.recursion_orders(keys, 7, 2, chunk=64, prefix=prefix)
    for (a, b), (c, d) in zip(got, want):
        assert torch.equal(a, c) and torch.equal(b, d)
