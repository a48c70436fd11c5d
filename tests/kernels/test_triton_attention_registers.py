"""Register use of the key-list kernels as compiled for the H200 (sm_90a), without a GPU.

The CPU tests run the kernels under the interpreter, which cannot see registers; yet a few more
values held through the key loop can halve the programs an SM runs (v19: the training forward went
from 125 to 137 registers and took 60% longer on the H200).  scripts/kernel_registers.py compiles
them for the H200 with no GPU present and reads ptxas's report; it runs in a process of its own,
without the TRITON_INTERPRET that conftest.py sets.
"""

import json
import os
import subprocess
import sys

import pytest
import triton

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "kernel_registers.py")
REGISTERS_PER_SM = 65536
pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")),
    reason="this Triton install ships no ptxas to compile for the H200 with")


@pytest.fixture(scope="module")
def d64():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, SCRIPT, "--d=64"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return {use["kernel"]: use for use in map(json.loads, run.stdout.splitlines())}


def _programs_per_sm(use):
    return REGISTERS_PER_SM // (use["registers"] * use["warps"] * 32)


@pytest.mark.parametrize("kernel", ["forward", "training forward", "merging forward"])
def test_the_forwards_at_head_dim_64_fit_two_programs_per_sm_without_spills(d64, kernel):
    """Each forward (the training one also clears the backward's dK/dV; the merging one is the
    causal levels') keeps two programs on an SM, so that one's loads hide behind the other's
    work, and spills nothing."""
    use = d64[kernel]
    assert _programs_per_sm(use) >= 2 and use["spill_stores"] == 0, use


@pytest.mark.parametrize("kernel", ["fused backward", "fused backward, sample slots"])
def test_the_fused_backward_at_head_dim_64_spills_little(d64, kernel):
    """The fused backward runs at the 255-register ceiling; what it spills stays small (v19: 72
    bytes; v18: 176; holding the tile's rows through the loop made it 204).  So does its variant
    that adds a shared sample set's dK/dV by slot (v23: 44 bytes; with masked adds to both kinds in
    every step it spilled 216 and took 6.45 ms on the H200, against 4.98)."""
    assert d64[kernel]["spill_stores"] <= 128, d64[kernel]
