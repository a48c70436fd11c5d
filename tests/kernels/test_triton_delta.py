"""The one-pass Δ kernel (kernels/triton_delta.py) against its PyTorch statement."""

import pytest
import torch

from hyperbench_kernels.triton_delta import delta, delta_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("dtype,shape", [(torch.float32, (2, 3, 37, 16)), (torch.float16, (1, 2, 130, 64))])
@pytest.mark.parametrize("with_dlse", [False, True])
def test_delta_equals_reference(dtype, shape, with_dlse):
    g = torch.Generator().manual_seed(shape[2])
    dout, out = (torch.randn(shape, generator=g).to(dtype).to(DEVICE) for _ in range(2))
    dlse = torch.randn(shape[:-1], generator=g).to(DEVICE) if with_dlse else None
    got, want = delta(dout, out, dlse), delta_reference(dout, out, dlse)
    assert got.dtype == torch.float32 and got.shape == shape[:-1]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_non_contiguous_rows_are_read_as_rows():
    base = torch.randn(1, 2, 50, 16).to(DEVICE)
    dout, out = base[:, :, 5:45], torch.randn(1, 2, 40, 16).to(DEVICE)
    torch.testing.assert_close(delta(dout, out), delta_reference(dout, out, None), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tile,warps", [(4096, 2), (16384, 8)])
def test_other_tiles_give_the_same_rows(monkeypatch, tile, warps):
    """The tile sizes scripts/gpu_probe.py --parts=deltatiles sweeps: a ragged last tile of rows."""
    from hyperbench_kernels import triton_delta
    monkeypatch.setattr(triton_delta, "TILE_ELEMENTS", tile)
    monkeypatch.setattr(triton_delta, "WARPS", warps)
    g = torch.Generator().manual_seed(tile)
    dout, out = (torch.randn(1, 3, 301, 64, generator=g).to(DEVICE) for _ in range(2))
    dlse = torch.randn(1, 3, 301, generator=g).to(DEVICE)
    torch.testing.assert_close(delta(dout, out, dlse), delta_reference(dout, out, dlse), rtol=1e-5, atol=1e-5)
