"""Run the Triton kernels under the interpreter when there is no GPU.

TRITON_INTERPRET must be set before anything imports triton, so it is set here, at collection time.
"""

import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

try:
    import hyperbench_kernels  # noqa: F401  (installed: pip install -e . --no-deps)
except ImportError:   # not installed: import the kernels folder as a package from the repo root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import kernels
    sys.modules["hyperbench_kernels"] = kernels
