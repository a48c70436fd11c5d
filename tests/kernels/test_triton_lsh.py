"""The Triton bucket-key kernel computes lsh.bucket_rank exactly (interpreter on CPU)."""

import pytest
import torch

from hyperbench_kernels import lsh
from hyperbench_kernels.triton_lsh import bucket_rank

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("n,d,num_projs,dtype", [(200, 64, 7, torch.float32), (77, 32, 3, torch.float16),
                                                 (130, 16, 16, torch.float32)])
def test_keys_match_reference(n, d, num_projs, dtype):
    g = torch.Generator().manual_seed(n + d)
    x = torch.randn(2, 3, n + 4, d, generator=g)[:, :, 2:2 + n].to(dtype).to(DEVICE)   # strided rows
    proj = torch.randn(d, num_projs, generator=g).to(torch.bfloat16).to(DEVICE)  # as the triton backend draws them
    keys = bucket_rank(x, proj)
    assert keys.dtype == lsh.key_dtype(num_projs)
    assert torch.equal(keys.long(), lsh.bucket_rank(x, proj.float()))
    assert torch.equal(bucket_rank(x, proj.float()), keys)      # the same values in an fp32 tensor
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
