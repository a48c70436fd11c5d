"""kernels/triton_cast.copy_into against PyTorch's copy_ and add_ (interpreter on CPU)."""

import pytest
import torch

from hyperbench_kernels.triton_cast import copy_into

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("src_dtype,dst_dtype", [(torch.float16, torch.float32), (torch.float32, torch.float16),
                                                 (torch.bfloat16, torch.float32)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_copy_into_matches_torch(src_dtype, dst_dtype, accumulate):
    g = torch.Generator().manual_seed(3)
    shape = (2, 3, 4099 + 2, 5)          # not a multiple of the kernel's block: a masked tail
    src = torch.randn(shape, generator=g).to(src_dtype).to(DEVICE)
    dst = torch.randn(shape, generator=g).to(dst_dtype).to(DEVICE)
    want = dst.clone()
    want.add_(src) if accumulate else want.copy_(src)
    got = copy_into(dst, src, accumulate=accumulate)
    assert got is dst
    torch.testing.assert_close(dst, want, rtol=0, atol=0 if not accumulate else 1e-3)


def test_strided_destination_falls_back_to_torch():
    src = torch.randn(4, 6, dtype=torch.float16, device=DEVICE)
    buf = torch.zeros(4, 8, device=DEVICE)
    copy_into(buf[:, 1:7], src)
    assert torch.equal(buf[:, 1:7], src.float()) and not buf[:, 0].any() and not buf[:, 7].any()
