"""In-place Triton merge (kernels/triton_merge.py) against merge_partials, and the causal driver's
inference path (which uses it) against the torch backend. Interpreter on CPU: fp32/fp16, small."""

import pytest
import torch

from hyperbench_kernels.hyper_attention import HyperParams, hyper_attention, merge_partials
from hyperbench_kernels.reference import exact_attention
from hyperbench_kernels.triton_merge import merge_into

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("dtype,rows,d", [(torch.float32, 70, 16), (torch.float16, 33, 64)])
def test_merge_into_equals_merge_partials(dtype, rows, d):
    g = torch.Generator().manual_seed(rows)
    q, k, v = (torch.randn(2, 3, rows + 40, d, generator=g) for _ in range(3))
    o1, l1 = exact_attention(q[:, :, 40:], k[:, :, :25], v[:, :, :25], causal=False, scale=0.3)
    o2, l2 = exact_attention(q[:, :, 40:], k[:, :, 25:], v[:, :, 25:], causal=False, scale=0.3)
    ref, ref_lse = merge_partials(o1, l1, o2, l2)
    # out1 as a strided view of a longer buffer, as the driver passes the bottom half
    buf = torch.zeros(2, 3, rows + 7, d, dtype=dtype, device=DEVICE)
    lbuf = torch.zeros(2, 3, rows + 7, device=DEVICE)
    buf[:, :, 7:], lbuf[:, :, 7:] = o1.to(dtype), l1
    out, lse = merge_into(buf[:, :, 7:], lbuf[:, :, 7:], o2.to(dtype).to(DEVICE), l2.to(DEVICE))
    tol = 1e-6 if dtype == torch.float32 else 1e-3
    assert _rel(out, ref) < tol and _rel(lse, ref_lse) < 1e-6
    assert out.data_ptr() == buf[:, :, 7:].data_ptr() and bool((buf[:, :, :7] == 0).all())


def test_merge_into_with_an_empty_part_keeps_the_other():
    o1, o2 = torch.randn(1, 1, 5, 16), torch.randn(1, 1, 5, 16)
    l1, l2 = torch.randn(1, 1, 5), torch.full((1, 1, 5), float("-inf"))
    out, lse = merge_into(o1.clone().to(DEVICE), l1.clone().to(DEVICE), o2.to(DEVICE), l2.to(DEVICE))
    torch.testing.assert_close(out.cpu(), o1)
    torch.testing.assert_close(lse.cpu(), l1)


def test_merge_into_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        merge_into(torch.zeros(1, 1, 4, 16), torch.zeros(1, 1, 4), torch.zeros(1, 1, 5, 16), torch.zeros(1, 1, 5))


@pytest.mark.parametrize("n,tile", [(150, 32), (97, 0)])
def test_causal_inference_path_matches_torch_backend(n, tile):
    """No gradient needed: the Triton driver merges in place; same numbers as the torch backend."""
    params = HyperParams(block_size=16, sample_size=12, sample_tile=tile, min_seq_len=20)
    xs = [torch.randn(1, 2, n, 16, generator=torch.Generator().manual_seed(80 + i)).to(DEVICE)
          for i in range(3)]
    res = {}
    for backend in ("triton", "torch"):
        gen = torch.Generator(device=DEVICE).manual_seed(3)
        with torch.no_grad():
            res[backend] = hyper_attention(*xs, params, causal=True, generator=gen, backend=backend)
    for a, b in zip(res["triton"], res["torch"]):
        assert a.shape == b.shape and torch.isfinite(a).all() and _rel(a, b) < 3e-4
