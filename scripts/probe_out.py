"""What the GPU probe scripts share: their command-line values, a do_bench median, and the findings
they print and save as JSON to $OUT (or gpu_out/ in the repository)."""

from __future__ import annotations

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.environ.get("OUT") or os.path.join(REPO, "gpu_out")
FOUND: dict = {}


def arg(name, default):
    """The value of --name=VALUE on the command line, else default."""
    return next((a.split("=", 1)[1] for a in sys.argv if a.startswith(f"--{name}=")), default)


def ms(fn):
    """Median milliseconds of fn by triton.testing.do_bench (warm-up, L2 flushed between calls)."""
    from triton.testing import do_bench
    return do_bench(fn, warmup=25, rep=100, return_mode="median")


def note(key, value):
    """Record one finding and print it as `key: value`."""
    FOUND[key] = value
    print(f"{key}: {value}", flush=True)


def save(name):
    """Write every finding to $OUT/name."""
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(FOUND, f, indent=1, default=str)
