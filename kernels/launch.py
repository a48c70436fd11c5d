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
