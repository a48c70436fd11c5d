"""Launches wider than a CUDA grid takes (kernels/launch.py, launch_in_chunks): where the helper cuts,
and every kernel of the triton backend giving the same results when its launches are cut into
pieces of two heads, as a GPU cuts them beyond 65535 batch·heads (the causal recursion's deep levels
at a small min_seq_len). A kernel that ignored its `first` would compute its first heads again and
leave the others unwritten."""

import pytest
import torch

from hyperbench_kernels import launch, triton_lsh, triton_merge, triton_sort
from hyperbench_kernels.hyper_attention import HyperParams, hyper_attention


class _Recorder:
    """Stands in for a Triton kernel: kernel[grid](..., first=...) records the grid and first."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        return lambda *args, first, **kwargs: self.calls.append((grid, first))


@pytest.mark.parametrize("grid,limit,expect", [
    ((4, 7), 3, [((4, 3), 0), ((4, 3), 3), ((4, 1), 6)]),
    ((4, 3), 3, [((4, 3), 0)]),
    ((4, 0), 3, []),
    ((4, 1, 5), 2, [((4, 1, 2), 0), ((4, 1, 2), 2), ((4, 1, 1), 4)]),   # the last axis is cut, here z
])
def test_the_last_axis_is_cut_into_launches_of_at_most_the_limit(monkeypatch, grid, limit, expect):
    monkeypatch.setattr(launch, "MAX_GRID_YZ", limit)
    kernel = _Recorder()
    launch.launch_in_chunks(kernel, grid, 1, 2, x=3)
    assert kernel.calls == expect


def test_the_pieces_fit_cudas_grid_and_start_on_multiples_of_16():
    # 65535 programs on y or z at most; `first` a multiple of 16, so one specialisation serves all
    assert launch.MAX_GRID_YZ <= 65535 and launch.MAX_GRID_YZ % 16 == 0
    assert launch.MAX_GRID_YZ + 16 > 65535


def _driver(causal: bool, train: bool, params: HyperParams):
    """out, lse (and the gradients) of the triton driver on B=2, H=3: six heads, so that cut in twos
    a launch's pieces cross from one batch into the next."""
    g = torch.Generator().manual_seed(11)
    base = [torch.randn(2, 3, 150, 16, generator=g) for _ in range(3)]
    gout = torch.randn(2, 3, 150, 16, generator=g)
    xs = [x.clone().requires_grad_(train) for x in base]
    with torch.set_grad_enabled(train):
        out, lse = hyper_attention(*xs, params, causal=causal, generator=torch.Generator().manual_seed(3),
                                   backend="triton")
    if not train:
        return out, lse
    grads = torch.autograd.grad((out * gout).sum() + lse.sum(), xs)
    return (out, lse, *grads)


@pytest.mark.parametrize("causal,train", [(False, True), (True, True), (True, False)])
def test_the_driver_gives_the_same_results_with_its_launches_cut(monkeypatch, causal, train):
    # block 16 with sets of 32 rows: key lists; min_seq_len 40: causal levels of 12 and 24 heads
    # whose exact lower-left pieces run the general kernel and the split backward
    params = HyperParams(block_size=16, sample_size=12, sample_tile=32, min_seq_len=40)
    whole = _driver(causal, train, params)
    monkeypatch.setattr(launch, "MAX_GRID_YZ", 2)
    cut = _driver(causal, train, params)
    for a, b in zip(cut, whole):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_hashing_sorting_and_merging_give_the_same_results_cut(monkeypatch):
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(2, 3, 64, 16, generator=g), torch.randn(2, 3, 64, 16, generator=g)
    proj = torch.randn(16, 5, generator=g)
    o1, l1 = torch.randn(2, 3, 64, 16, generator=g), torch.randn(2, 3, 64, generator=g)
    o2, l2 = torch.randn(2, 3, 64, 16, generator=g), torch.randn(2, 3, 64, generator=g)

    def run():
        keys, (sums, _) = triton_lsh.bucket_ranks([x, y], proj, with_prefix=True)
        orders = triton_sort.counting_sort_orders(keys, 5, chunk=32)   # its own histograms
        levels = triton_sort.recursion_orders(keys, 5, 1, chunk=32)   # 64 rows: one level, halves of 32
        merged = triton_merge.merge_into(o1.clone(), l1.clone(), o2, l2)
        return keys, sums, orders, *levels[0], *merged
    whole = run()
    monkeypatch.setattr(launch, "MAX_GRID_YZ", 2)
    cut = run()
    for a, b in zip(cut, whole):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
