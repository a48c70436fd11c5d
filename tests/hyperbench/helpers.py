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
