import pytest
import torch

from hyperbench_kernels import lsh


def test_gray_order_neighbours_differ_in_one_bit():
    for bits in range(1, 9):
        seq = lsh.gray_sequence(bits)
        assert sorted(seq.tolist()) == list(range(2**bits))
        flips = [bin(int(a) ^ int(b)).count("1") for a, b in zip(seq[:-1], seq[1:])]
        assert flips == [1] * (2**bits - 1)


def test_rank_is_inverse_of_sequence():
    seq, rank = lsh.gray_sequence(7), lsh.gray_rank(7)
    assert torch.equal(rank[seq], torch.arange(128))


def test_sort_walks_buckets_in_gray_order():
    # Sorted rows visit buckets in Gray order: ranks never decrease and the bucket at rank r is the
    # r-th Gray code, so consecutive occupied ranks r, r+1 are buckets one bit apart.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 5000, 16, generator=g)
    proj = lsh.draw_projections(16, 7, generator=g, device=torch.device("cpu"))
    bucket = (((x @ proj) > 0).long() * 2 ** torch.arange(7)).sum(-1)[0, 0]
    order = lsh.sort_order(x, proj)[0, 0]
    rank = lsh.bucket_rank(x, proj)[0, 0][order]
    assert torch.all(rank[1:] >= rank[:-1])
    assert torch.equal(lsh.gray_sequence(7)[rank], bucket[order])
    assert sorted(order.tolist()) == list(range(5000))


def test_close_rows_share_a_bucket_more_often_than_random_rows():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 32, generator=g)
    near = x + 0.05 * torch.randn(4000, 32, generator=g)
    far = torch.randn(4000, 32, generator=g)
    proj = lsh.draw_projections(32, 7, generator=g, device=torch.device("cpu"))
    same_near = (lsh.bucket_rank(x, proj) == lsh.bucket_rank(near, proj)).float().mean()
    same_far = (lsh.bucket_rank(x, proj) == lsh.bucket_rank(far, proj)).float().mean()
    assert same_near > 0.7 and same_far < 0.05


@pytest.mark.parametrize("key_dtype", [torch.int16, torch.int32])
@pytest.mark.parametrize("shape,num_projs", [((2, 3, 1), 7), ((2, 3, 257), 7), ((1, 600, 33), 7),
                                             ((4, 5, 101), 3), ((2, 9), 14), ((3, 40), 15)])
def test_flat_sort_is_the_stable_sort(shape, num_projs, key_dtype):
    # (1, 600, 33) at 7 projections is three int16 groups (256 rows each, the last one short);
    # 15 projections leave room for one row per int16 group, so that falls back to torch.sort
    g = torch.Generator().manual_seed(sum(shape) + num_projs)
    keys = torch.randint(2 ** num_projs, shape, generator=g).to(lsh.key_dtype(num_projs))
    keys[..., : shape[-1] // 2] = keys[..., :1]        # long runs of ties
    got = lsh.flat_sort_orders(keys, num_projs, key_dtype)
    assert got.dtype == torch.int64 and got.shape == keys.shape
    assert torch.equal(got, lsh.stable_sort_orders(keys, num_projs))


def test_flat_sort_of_a_strided_slice():
    # the causal levels sort slices of the ranks (non-contiguous views)
    keys = torch.randint(128, (1, 4, 64), generator=torch.Generator().manual_seed(3)).to(torch.int16)
    part = keys[:, :, 32:]
    assert torch.equal(lsh.flat_sort_orders(part, 7), lsh.stable_sort_orders(part, 7))


def test_unrounded_projections_are_the_same_draws():
    """rounded=False (for the Triton kernel, which rounds them itself) gives the draws the rounded
    normals come from."""
    cpu = torch.device("cpu")
    a = lsh.draw_projections(16, 7, generator=torch.Generator().manual_seed(3), device=cpu)
    b = lsh.draw_projections(16, 7, generator=torch.Generator().manual_seed(3), device=cpu, rounded=False)
    assert a.dtype == b.dtype == torch.float32 and not torch.equal(a, b)
    assert torch.equal(b.to(torch.bfloat16).float(), a)
