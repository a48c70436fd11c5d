"""Attention callables that tests name through method.target."""

import os

import torch


def plain_attention(q, k, v, causal):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


def raises(q, k, v, causal):
    raise RuntimeError("planted failure")


def out_of_memory(q, k, v, causal):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 TiB (planted)")


def dies(q, k, v, causal):
    os._exit(13)


def records_pid(q, k, v, causal):
    """Plain attention that appends its process id to the file $HYPERBENCH_TEST_PID_FILE."""
    with open(os.environ["HYPERBENCH_TEST_PID_FILE"], "a") as f:
        f.write(f"{os.getpid()}\n")
    return plain_attention(q, k, v, causal)


def illegal_address(q, k, v, causal):
    """A Triton kernel that stores far outside any allocation: on a GPU, a sticky CUDA error (the
    context is broken for the rest of the process), as a faulty attention kernel would leave it."""
    import triton
    import triton.language as tl

    @triton.jit
    def _store_far(ptr):
        tl.store(ptr + (1 << 40), 1.0)

    out = torch.empty_like(q)
    _store_far[(1,)](out)
    torch.cuda.synchronize()
    return out
