"""The widened FlashAttention backward (kernels/sdpa_leaves.py) gives the gradient through both
outputs, lse included. The fused kernels are CUDA-only; here the kernel is stood in for by
`backward_reference`, PyTorch's statement of what FlashAttention's backward computes, so what is
checked is the widening itself. scripts/gpu_kernel_check.py runs the real kernels on the GPU."""

import pytest
import torch

from hyperbench_kernels import sdpa_leaves
from hyperbench_kernels.reference import exact_attention


@pytest.mark.parametrize("causal,n,d", [(True, 37, 16), (False, 50, 32)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_widened_backward_is_the_gradient_through_out_and_lse(causal, n, d, dtype):
    g = torch.Generator().manual_seed(n)
    q, k, v = (torch.randn(2, 2, n, d, generator=g, dtype=torch.float64).requires_grad_(True) for _ in range(3))
    dout, dlse = torch.randn(2, 2, n, d, generator=g, dtype=torch.float64), torch.randn(2, 2, n, generator=g,
                                                                                          dtype=torch.float64)
    out, lse = exact_attention(q, k, v, causal=causal, scale=0.3)
    want = torch.autograd.grad((out * dout).sum() + (lse * dlse).sum(), (q, k, v))
    got = sdpa_leaves.backward_with_lse(dout.to(dtype), dlse.float(), *(x.detach().to(dtype) for x in (q, k, v)),
                                        out.detach().to(dtype), lse.detach().float(), causal, 0.3, None,
                                        kernel=sdpa_leaves.backward_reference)
    tol = 1e-5 if dtype == torch.float32 else 3e-3
    for a, b in zip(got, want):
        assert a.shape == b.shape
        assert ((a.double() - b).norm() / b.norm()).item() < tol


def test_without_the_dlse_columns_the_gradient_is_wrong():
    # The check above can fail: dropping dlse (what the public implementations do) is caught.
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 1, 40, 16, generator=g, dtype=torch.float64).requires_grad_(True) for _ in range(3))
    dout, dlse = torch.randn(1, 1, 40, 16, generator=g, dtype=torch.float64), torch.randn(1, 1, 40, generator=g,
                                                                                            dtype=torch.float64)
    out, lse = exact_attention(q, k, v, causal=True, scale=0.3)
    want = torch.autograd.grad((out * dout).sum() + (lse * dlse).sum(), (q, k, v))
    got = sdpa_leaves.backward_with_lse(dout, torch.zeros_like(dlse), q.detach(), k.detach(), v.detach(),
                                        out.detach(), lse.detach(), True, 0.3, None,
                                        kernel=sdpa_leaves.backward_reference)
    assert ((got[0] - want[0]).norm() / want[0].norm()).item() > 1e-2


def test_only_cuda_16bit_inputs_take_the_fused_kernels():
    assert not sdpa_leaves.supported(torch.zeros(1, 1, 8, 64, dtype=torch.float16))


def _stand_in_kernels(monkeypatch, note):
    """The fused kernels stood in for by the reference: LEAF_FORWARD "reference", and flash's
    backward by backward_reference. Returns the list of note(q) for each backward call."""
    calls = []

    def flash_backward(dout, q, k, v, out, lse, causal, scale, state):
        calls.append(note(q))
        return sdpa_leaves.backward_reference(dout, q, k, v, out, lse, causal, scale)
    monkeypatch.setattr(sdpa_leaves, "LEAF_FORWARD", "reference")
    monkeypatch.setattr(sdpa_leaves, "_flash_backward", flash_backward)
    return calls


def _draw(shape, seed):
    """q, k, v and dout of `shape`, dlse of shape[:-1], fp64, in that order from one generator."""
    g = torch.Generator().manual_seed(seed)
    base = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3)]
    return base, torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape[:-1], generator=g,
                                                                                   dtype=torch.float64)


@pytest.mark.parametrize("with_lse", [False, True])
def test_attention_with_lse_widens_only_when_a_gradient_reaches_lse(monkeypatch, with_lse):
    """Loss through out alone: the forward kernel's own backward (here the reference's) on the
    head_dim-wide tensors. Through lse too: flash's widened call. Both give the exact gradient (the
    kernels stood in for by the reference)."""
    calls = _stand_in_kernels(monkeypatch, lambda q: q.shape[-1])
    base, dout, dlse = _draw((1, 2, 45, 16), 5)
    results = []
    for fn in (lambda *x: sdpa_leaves.attention_with_lse(*x, causal=True, scale=0.3),
               lambda *x: exact_attention(*x, causal=True, scale=0.3)):
        xs = [x.clone().requires_grad_(True) for x in base]
        out, lse = fn(*xs)
        loss = (out * dout).sum() + ((lse * dlse).sum() if with_lse else 0)
        results.append(torch.autograd.grad(loss, xs))
    for a, b in zip(*results):
        assert ((a - b).norm() / b.norm()).item() < 1e-6   # dlse passes through fp32
    assert calls == ([16 + 8] if with_lse else [])


@pytest.mark.parametrize("with_lse", [False, True])
def test_more_heads_than_a_call_takes_are_run_a_slice_at_a_time(monkeypatch, with_lse):
    """cuDNN's and flash's calls take at most MAX_HEADS heads (65535); the causal recursion's leaves
    can be more. With the limit at 2, three heads make two calls of each kernel, and the outputs and
    gradients are those of one call (the kernels stood in for by the reference)."""
    calls = _stand_in_kernels(monkeypatch, lambda q: q.shape[1])
    base, dout, dlse = _draw((2, 3, 30, 16), 6)

    def run():
        xs = [x.clone().requires_grad_(True) for x in base]
        out, lse = sdpa_leaves.attention_with_lse(*xs, causal=True, scale=0.3)
        loss = (out * dout).sum() + ((lse * dlse).sum() if with_lse else 0)
        return (out, lse, *torch.autograd.grad(loss, xs))

    def leaves():   # the causal recursion's leaves: forward_with_state, then backward_from_state
        with torch.no_grad():
            out, lse, state = sdpa_leaves.forward_with_state(*base, causal=True, scale=0.3)
            return state, (out, lse, *sdpa_leaves.backward_from_state(dout, *base, out, lse, causal=True,
                                                                         scale=0.3, state=state))
    whole, (_, whole_leaves) = run(), leaves()
    monkeypatch.setattr(sdpa_leaves, "MAX_HEADS", 2)
    cut, (state, cut_leaves) = run(), leaves()
    assert state[0] == "heads" and len(state[1]) == 2
    for a, b in zip(cut + cut_leaves, whole + whole_leaves):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert calls == ([3, 2, 1] if with_lse else [])
