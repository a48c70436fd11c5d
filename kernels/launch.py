"""Host-side arithmetic for kernel launches, and a launch path past Triton's JIT for repeat calls.

triton.cdiv and triton.next_power_of_2 are constexpr functions in Triton 3.6: called from Python
they go through a wrapper that costs ~2 µs each here and more on the H200 machine's CPU, several
times per attention call, in the stretch before the first long kernel is queued, where the GPU
waits for the CPU. These plain versions give the same integers.

`launch(kernel, grid, *args, **kwargs)` does what `kernel[grid](*args, **kwargs)` does. The first
call of each specialisation goes through Triton's JIT, which compiles (or finds) the kernel; later
calls hand the arguments to that compiled kernel's launcher directly, skipping the JIT's binder,
cache key and checks (13–33 µs a launch on the H200's host in a loop, 45–90 µs inside a call:
kernels/NOTES.md, v24 and v25). What picks the compiled kernel is a key at least as fine as
Triton's own specialisation, so a call never reaches a kernel compiled for other arguments.
"""

from __future__ import annotations

import os

import torch

# False: every launch through Triton's JIT (module-level, so the probes can time both ways).
DIRECT = True
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# (kernel, device, argument classes, keyword arguments) -> (compiled kernel, the keyword
# parameters after the positional ones, each (name, default)); None where the JIT must run.
_COMPILED: dict = {}


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_power_of_2(x: int) -> int:
    return 1 << (x - 1).bit_length() if x > 0 else 0


def arg_class(a):
    """What Triton 3.6 specialises a kernel argument on, or finer: a tensor's dtype and whether its
    address is a multiple of 16; an int's being 1, a multiple of 16, and its type (i32, i64, or
    u64 from 2^63); the type of anything else (floats and bools are not specialised on value)."""
    if type(a) is int:
        return a == 1, a & 15 == 0, (a > 0x7FFFFFFF or a < -0x80000000) + (a >= 0x8000000000000000)
    if isinstance(a, torch.Tensor):
        return a.dtype, a.data_ptr() & 15 == 0
    return type(a)


def _idle(hook) -> bool:
    """No launch hook to call: none, or Triton 3.6's default empty chain (which the JIT hands the
    launcher on every call, with the launch's metadata built for it)."""
    from triton.knobs import HookChain
    return hook is None or (isinstance(hook, HookChain) and not hook.calls)


def _keyword_value(v):
    return arg_class(v) if isinstance(v, torch.Tensor) else v


def launch(kernel, grid: tuple, *args, **kwargs):
    """kernel[grid](*args, **kwargs), through the compiled kernel's launcher once the JIT has
    compiled it for these arguments' specialisation. Falls back to the JIT under the interpreter,
    with launch hooks set (profilers), or for kernels that read global variables (the JIT checks
    those on every call)."""
    from triton import knobs
    from triton.runtime import driver
    if not DIRECT or _INTERPRET or not (_idle(knobs.runtime.launch_enter_hook) and _idle(knobs.runtime.launch_exit_hook)):
        return kernel[grid](*args, **kwargs)
    device = driver.active.get_current_device()
    key = (kernel, device, tuple(map(arg_class, args)),
           tuple((name, _keyword_value(v)) for name, v in kwargs.items()))
    hit = _COMPILED.get(key, False)
    if not hit:
        compiled = kernel[grid](*args, **kwargs)
        if hit is False:
            usable = hasattr(compiled, "packed_metadata") and not kernel.used_global_vals
            tail = [(p.name, p.default) for p in kernel.params[len(args):]]
            _COMPILED[key] = (compiled, tail) if usable else None
        return compiled
    compiled, tail = hit
    g0, g1, g2 = (tuple(grid) + (1, 1))[:3]
    compiled.run(g0, g1, g2, driver.active.get_current_stream(device), compiled.function,
                 compiled.packed_metadata, None, None, None,
                 *args, *[kwargs[name] if name in kwargs else default for name, default in tail])
    return compiled
