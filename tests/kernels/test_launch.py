"""kernels/launch.py: the launch path past Triton's JIT picks a compiled kernel by a key at least as
fine as Triton's specialisation, and hands it the arguments in the kernel's own order."""

from __future__ import annotations

import inspect
import itertools

import pytest
import torch
from triton.backends.compiler import BaseBackend
from triton._C.libtriton import native_specialize_impl


def _triton_class(a):
    return str(native_specialize_impl(BaseBackend, a, False, True, True))


def test_arg_class_is_never_coarser_than_tritons_specialisation():
    """Any two arguments with one class get one specialisation from Triton 3.6 itself."""
    from hyperbench_kernels.launch import arg_class
    ints = [0, 1, 2, 3, 15, 16, 17, 32, 48, 100, 4096, 131072, -1, -16, -17, 2**31 - 16, 2**31 - 1, 2**31,
            2**31 + 16, 2**32, -2**31, -2**31 - 1, -2**31 - 16, 2**62, 2**63 - 16, 2**63, 2**63 + 16, 2**64 - 1]
    base = torch.empty(256, dtype=torch.uint8)
    tensors = [base.view(dtype)[offset:] for dtype in (torch.bfloat16, torch.float16) for offset in (0, 1, 8)]
    tensors += [base.view(torch.int32)[offset:] for offset in (0, 2, 4)] + [base.view(torch.float32)[1:]]
    others = [0.5, 1.0, 16.0, True, False, None]
    seen = {}
    for a in ints + tensors + others:
        seen.setdefault(arg_class(a), set()).add(_triton_class(a))
    assert {k: v for k, v in seen.items() if len(v) > 1} == {}
    # and fine enough to tell apart what matters here: alignment and the specialised ints
    assert len({arg_class(t) for t in tensors[:3]}) == 2 and arg_class(1) != arg_class(2) != arg_class(16)


class _Param:
    def __init__(self, name, default=inspect.Parameter.empty):
        self.name, self.default = name, default


class _Compiled:
    """Stands in for Triton's CompiledKernel: records what its launcher is given."""

    def __init__(self, tag):
        self.tag, self.function, self.packed_metadata, self.calls = tag, object(), object(), []

    def run(self, *a):
        self.calls.append(a)


class _Kernel:
    """Stands in for a JITFunction with parameters (X, n, BLOCK, FLAG=False): `[grid](...)` is the
    JIT, which compiles one kernel per call here, so that a reuse shows."""

    params = [_Param("X"), _Param("n"), _Param("BLOCK"), _Param("FLAG", False)]
    used_global_vals = {}

    def __init__(self):
        self.jit_calls = []

    def __getitem__(self, grid):
        def jit(*args, **kwargs):
            self.jit_calls.append((grid, args, kwargs))
            return _Compiled(len(self.jit_calls))
        return jit


@pytest.fixture
def direct(monkeypatch):
    """launch() as on a GPU, with a stand-in driver (device 0, stream 7)."""
    from hyperbench_kernels import launch as launch_mod
    from triton.runtime import driver

    class _Active:
        get_current_device = staticmethod(lambda: 0)
        get_current_stream = staticmethod(lambda device: 7)
    monkeypatch.setattr(launch_mod, "_INTERPRET", False)
    monkeypatch.setattr(launch_mod, "_COMPILED", {})
    monkeypatch.setattr(driver, "_active", _Active())   # DriverConfig.active returns it
    return launch_mod


def test_repeat_calls_reach_the_compiled_launcher_with_every_argument_in_order(direct):
    kernel, x = _Kernel(), torch.empty(64, dtype=torch.float16)
    first = direct.launch(kernel, (3, 2), x, 4096, BLOCK=128, num_warps=4)
    again = direct.launch(kernel, (3, 2), x, 8192, BLOCK=128, num_warps=4)
    assert again is first and len(kernel.jit_calls) == 1
    # grid padded to three, the stream, then the kernel's arguments: positional, keywords, defaults
    (call,) = first.calls
    assert call[:4] == (3, 2, 1, 7) and call[4] is first.function and call[5] is first.packed_metadata
    assert call[6:9] == (None, None, None) and call[9:] == (x, 8192, 128, False)


@pytest.mark.parametrize("change", ["int becomes 1", "int not a multiple of 16", "misaligned tensor", "dtype",
                                    "constexpr", "option"])
def test_another_specialisation_goes_through_the_jit(direct, change):
    kernel, x = _Kernel(), torch.empty(64, dtype=torch.float16)
    args, kwargs = [x, 4096], dict(BLOCK=128, num_warps=4)
    direct.launch(kernel, (1,), *args, **kwargs)
    if change == "int becomes 1":
        args[1] = 1
    elif change == "int not a multiple of 16":
        args[1] = 4095
    elif change == "misaligned tensor":
        args[0] = x[1:]
    elif change == "dtype":
        args[0] = x.view(torch.bfloat16)
    elif change == "constexpr":
        kwargs["BLOCK"] = 64
    else:
        kwargs["num_warps"] = 8
    direct.launch(kernel, (1,), *args, **kwargs)
    assert len(kernel.jit_calls) == 2


@pytest.mark.parametrize("why", ["hooks", "globals", "off"])
def test_the_jit_runs_every_launch_where_the_direct_path_cannot_be_trusted(direct, monkeypatch, why):
    from triton import knobs
    kernel, x = _Kernel(), torch.empty(64, dtype=torch.float16)
    if why == "hooks":   # a profiler's hook on Triton's chain
        chain = knobs.HookChain()
        chain.add(lambda *a: None)
        monkeypatch.setattr(knobs.runtime, "launch_enter_hook", chain)
    elif why == "globals":
        kernel.used_global_vals = {("TILE", 0): (64, {})}
    else:
        monkeypatch.setattr(direct, "DIRECT", False)
    for _ in range(3):
        direct.launch(kernel, (1,), x, 4096, BLOCK=128)
    assert len(kernel.jit_calls) == 3


def test_under_the_interpreter_launch_is_the_jit():
    """The CPU tests run every kernel through launch(); under TRITON_INTERPRET it is kernel[grid]."""
    from hyperbench_kernels import launch as launch_mod
    kernel = _Kernel()
    for _ in range(2):
        launch_mod.launch(kernel, (1,), torch.empty(4), 16, BLOCK=8)
    assert launch_mod._INTERPRET and len(kernel.jit_calls) == 2


def test_int_classes_cover_the_three_integer_widths():
    from hyperbench_kernels.launch import arg_class
    widths = {arg_class(v)[2] for v in (16, 2**40 + 16, 2**63 + 16)}
    assert len(widths) == 3, list(itertools.chain(widths))
