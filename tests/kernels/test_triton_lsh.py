"""The Triton bucket-key kernel computes lsh.bucket_rank exactly (interpreter on CPU)."""

import pytest
import torch
import triton
import triton.language as tl

from hyperbench_kernels import lsh
from hyperbench_kernels.triton_lsh import _round_to_bf16, bucket_rank

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("n,d,num_projs,dtype", [(200, 64, 7, torch.float32), (77, 32, 3, torch.float16),
                                                 (130, 16, 16, torch.float32)])
def test_keys_match_reference(n, d, num_projs, dtype):
    g = torch.Generator().manual_seed(n + d)
    x = torch.randn(2, 3, n + 4, d, generator=g)[:, :, 2:2 + n].to(dtype).to(DEVICE)   # strided rows
    drawn = torch.randn(d, num_projs, generator=g).to(DEVICE)   # as the triton backend draws them
    rounded = drawn.to(torch.bfloat16)
    keys = bucket_rank(x, drawn)
    assert keys.dtype == lsh.key_dtype(num_projs)
    assert torch.equal(keys.long(), lsh.bucket_rank(x, rounded.float()))
    assert torch.equal(bucket_rank(x, rounded), keys)           # bf16 values pass unchanged
    assert torch.equal(bucket_rank(x, rounded.float()), keys)
    assert keys.max() >= 2 ** (num_projs - 1) - 1 or num_projs > 10   # keys span the range


def test_q_and_k_in_one_launch_match_each_alone():
    """bucket_ranks hashes two tensors (here one strided, one contiguous) in one launch, as the two
    single calls would; tensors of different shapes are refused."""
    from hyperbench_kernels.triton_lsh import bucket_ranks
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 3, 90, 32, generator=g)[:, :, 3:83].to(DEVICE)
    k = torch.randn(2, 3, 80, 32, generator=g).to(DEVICE)
    proj = torch.randn(32, 7, generator=g).to(torch.bfloat16).float().to(DEVICE)
    both = bucket_ranks([q, k], proj)
    assert both.shape == (2, 2, 3, 80)
    assert torch.equal(both[0].long(), lsh.bucket_rank(q, proj))
    assert torch.equal(both[1].long(), lsh.bucket_rank(k, proj))
    with pytest.raises(ValueError, match="one shape"):
        bucket_ranks([q, k[:, :, :40]], proj)


@triton.jit
def _round_kernel(X, Y, N: tl.constexpr):
    offs = tl.arange(0, N)
    tl.store(Y + offs, _round_to_bf16(tl.load(X + offs)))


def test_in_kernel_rounding_is_torchs():
    """The kernel's fp32 -> bf16 rounding is torch's (nearest, ties to even), ties and carries into
    the exponent included, where the interpreter's own cast would truncate."""
    g = torch.Generator().manual_seed(9)
    upper = torch.randint(0, 0x7F00, (256,), generator=g, dtype=torch.int32) << 16   # finite values
    low = torch.tensor([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x4000, 0xC000], dtype=torch.int32)
    bits = (upper[:, None] | low[None, :]).reshape(-1)
    # carries into the exponent, a tie at an odd mantissa, a negative one
    bits[:4] = torch.tensor([0x3F7FFFFF, 0x3F7F8000, 0x3F808000, 0xBF7FFFFF - (1 << 32)], dtype=torch.int64).to(torch.int32)
    x = bits.view(torch.float32)
    x = torch.cat([x, torch.randn(2048 - x.numel(), generator=g)]).to(DEVICE)
    y = torch.empty_like(x)
    _round_kernel[(1,)](x, y, N=x.numel())
    assert torch.equal(y, x.to(torch.bfloat16).float())


def _prefix_reference(keys: torch.Tensor, per_entry: int, nb: int) -> torch.Tensor:
    """Per row of keys [rows, n] and bucket, the row's keys before each per_entry-key chunk
    boundary, and the row's total last."""
    rows, n = keys.shape
    ends = list(range(0, n, per_entry)) + [n]
    return torch.stack([torch.stack([torch.bincount(keys[r, :e].long(), minlength=nb) for e in ends])
                        for r in range(rows)]).to(torch.int32)


@pytest.mark.parametrize("n", [300, 512, 1300], ids=["ragged", "one-chunk", "many-chunks"])
def test_prefix_from_the_hashing_launch(n):
    """with_prefix: the same keys, and the counting sort's per-bucket sums of each row (q's rows,
    then k's) before every COUNT_ROWS-key chunk, counted by the hashing launch."""
    from hyperbench_kernels.triton_lsh import COUNT_ROWS, bucket_ranks
    g = torch.Generator().manual_seed(n)
    q, k = (torch.randn(2, 2, n, 16, generator=g).to(torch.float16).to(DEVICE) for _ in range(2))
    proj = torch.randn(16, 7, generator=g).to(DEVICE)
    keys, (sums, per_entry) = bucket_ranks([q, k], proj, with_prefix=True)
    assert per_entry == COUNT_ROWS and torch.equal(keys, bucket_ranks([q, k], proj))
    assert torch.equal(sums.cpu(), _prefix_reference(keys.reshape(-1, n).cpu(), per_entry, 128))
    with pytest.raises(ValueError, match="at most 8"):
        bucket_ranks([q, k], torch.randn(16, 9, generator=g).to(DEVICE), with_prefix=True)
