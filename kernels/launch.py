"""Host-side arithmetic for kernel launches.

triton.cdiv and triton.next_power_of_2 are constexpr functions in Triton 3.6: called from Python
they go through a wrapper that costs ~2 µs each here and more on the H200 machine's CPU, several
times per attention call, in the stretch before the first long kernel is queued, where the GPU
waits for the CPU. These plain versions give the same integers.
"""


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_power_of_2(x: int) -> int:
    return 1 << (x - 1).bit_length() if x > 0 else 0


# CUDA runs at most 65535 programs along a grid's y and z axes. The kernels put the batch·head
# index (or the sort's rows, two a head) on one of them, and the causal recursion doubles the heads
# at every level: at n = 131072, H = 32 and min_seq_len 32 its deepest level has 65536.
# Launches are cut at 65520, the largest multiple of 16 within that: every piece's `first` is then a
# multiple of 16 as 0 is, so Triton specialises (and compiles) each kernel once for all of them.
MAX_GRID_YZ = 65520


def launch_in_chunks(kernel, grid: tuple[int, ...], *args, **kwargs) -> None:
    """kernel[grid](*args, **kwargs), with the grid's last axis cut into launches of at most
    MAX_GRID_YZ programs. Each launch passes its first index along that axis as the keyword
    `first`, which the kernel adds to that axis's program id."""
    *lead, count = grid
    for first in range(0, count, MAX_GRID_YZ):
        kernel[(*lead, min(MAX_GRID_YZ, count - first))](*args, first=first, **kwargs)
