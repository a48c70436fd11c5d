"""Registers and spills of the key-list kernels as compiled for the H200 (sm_90a), with no GPU.

    python3 scripts/kernel_registers.py [--d=64]

Prints one JSON line per kernel: the plain forward (inference and training, which also clears
the backward's dK/dV), the merging forward and the fused backward (also with the sample sets'
share added by slot, SAMPLE_SLOTS), each on its CONFIGS tiles.
Triton compiles for a target without a GPU present, and ptxas from its wheel reports the use.
Integer arguments are taken as multiples of 16, as at the benchmark's shapes, where the
launches specialise on it.  Must run without TRITON_INTERPRET (the interpreter compiles nothing).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kernels import triton_attention as ta  # noqa: E402

# Pointer parameters by name (the key-list kernels' and the probes'); qk_scale is fp32, the rest i32.
POINTER_TYPES = {"QO": "*i64", "KO": "*i64", "TT": "*i32", "KR": "*i32", "KB": "*fp32", "Lse": "*fp32", "SS": "*fp32",
                 "Delta": "*fp32", **{name: "*bf16" for name in ("Q", "K", "V", "Out", "DO", "DQ", "DK", "DV", "DKV",
                                                                 "QS", "KC", "VC")}}
PTXAS = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")


def compile_for_h200(kernel, constexprs: dict, warps: int, stages: int):
    """kernel compiled for sm_90a with no GPU present (its parameters typed by POINTER_TYPES),
    integer and pointer arguments taken as multiples of 16."""
    names = list(inspect.signature(kernel.fn).parameters)
    sig = {n: "constexpr" if n in constexprs else POINTER_TYPES.get(n, "fp32" if n == "qk_scale" else "i32")
           for n in names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if sig[n][0] == "*" or sig[n] == "i32"}
    src = ASTSource(fn=kernel, signature=sig, constexprs={(names.index(k),): v for k, v in constexprs.items()},
                    attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": stages})


def compile_or_why(kernel, constexprs: dict, warps: int, stages: int):
    """(compile_for_h200's result, None), or (None, the last line of the compiler's error): for the
    probes, where a compile that fails is itself the finding."""
    try:
        return compile_for_h200(kernel, constexprs, warps, stages), None
    except Exception as e:  # noqa: BLE001
        return None, str(e).splitlines()[-1][:120]


def ptxas_use(compiled) -> dict:
    """{'registers', 'spill_stores', 'spill_loads' (bytes)} that ptxas reports for a compiled kernel."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as f:
            f.write(compiled.asm["ptx"])
        report = subprocess.run([PTXAS, "-v", "--gpu-name", "sm_90a", path, "-o", os.devnull],
                                capture_output=True, text=True, check=True).stderr
    grab = lambda pattern: int(re.search(pattern, report).group(1))  # noqa: E731
    return {"registers": grab(r"Used (\d+) registers"), "spill_stores": grab(r"(\d+) bytes spill stores"),
            "spill_loads": grab(r"(\d+) bytes spill loads")}


def usage(kernel, constexprs: dict, warps: int, stages: int) -> dict:
    """{'registers', 'spill_stores', 'spill_loads' (bytes), 'warps'} of kernel compiled for sm_90a."""
    return {**ptxas_use(compile_for_h200(kernel, constexprs, warps, stages)), "warps": warps}


def list_kernels(d: int) -> dict:
    """Each key-list kernel's use on its tiles at head_dim d (bf16), at the benchmark's layout
    (units of 256 rows: whole tiles, found by arithmetic, UNIT_TILES)."""
    found = {}
    for name, kind, zero in (("forward", "fwd", False), ("training forward", "fwd", True),
                             ("merging forward", "fwd_merge", False)):
        bm, bn, warps, stages = ta.CONFIGS[kind][d][:4]
        found[name] = usage(ta._list_kernel, dict(D=d, BM=bm, BN=bn, GRAD=False, PREC="tf32", ACCUM=0,
                                                  MERGE=kind == "fwd_merge", ZERO_DKDV=zero,
                                                  UNIT_TILES=256 // bm), warps, stages)
    bm, bn, warps, stages = ta.CONFIGS["bwd"][d][:4]
    for name, slots in (("fused backward", False), ("fused backward, sample slots", True)):
        found[name] = usage(ta._list_bwd_kernel, dict(D=d, BM=bm, BN=bn, PREC="tf32", ACCUM=0, STORE_BLOCK=False,
                                                     STORE_SAMPLES=False, REREAD_ROWS=ta._reread_rows(bm),
                                                     SLOTS=slots, UNIT_TILES=256 // bm), warps, stages)
    return found


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("kernel_registers.py: unset TRITON_INTERPRET (the interpreter compiles nothing)")
    d = int(next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--d=")), 64))
    for name, use in list_kernels(d).items():
        print(json.dumps({"kernel": name, "d": d, **use}))
