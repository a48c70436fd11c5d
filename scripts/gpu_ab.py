"""Time `hyper` (the triton backend) in two checkouts of this repository against each other, on one GPU.

    python3 scripts/gpu_ab.py --trees=OLD,NEW [--ns=8192,16384,131072] [--rounds=3] [--causals=false,true]
                              [--sample-tiles=256,0]

Each tree runs in its own process (both name their package `kernels`), in rounds A, B, A, B, ...,
so drift of the machine through the call hits both. A call is timed by hyperbench's own timer
(src/hyperbench/timing.py, this checkout's): L2 flushed, CUDA events around the call, each call
waited for, so CPU launch overhead counts where the GPU waits for it. Rows are causal and not ×
forward and forward+backward, B=1, H=32, d=64, bf16, the default HyperParams but for each
--sample-tiles value (0: the published variant, one sample set per head), in the order --causals
gives (true,false: causal first in each process). Prints each tree's median of its
rounds' medians, NEW / OLD, and each tree's range over its rounds.
For a tree at an old commit: `git worktree add .ab_old COMMIT`; a worktree is a nested git checkout,
so the device tool carries its files only when named in `carry`. Diagnostics, not results for results/.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from probe_out import arg  # noqa: E402  (this script's folder is on sys.path)


def synced_ms(fn, reps=30):
    """Median time of fn as hyperbench times a call (src/hyperbench/timing.py: L2 flushed, CUDA
    events, each call waited for), after 5 untimed calls."""
    sys.path.insert(0, os.path.join(REPO, "src"))
    from hyperbench.timing import measure
    return measure(lambda: None, fn, device="cuda", warmup=5, target_ms=0.0, min_reps=reps, max_reps=reps,
                   flush_l2=True).median_ms


def worker(tree: str, ns: list[int]) -> dict:
    sys.path.insert(0, os.path.abspath(tree))
    import torch
    from kernels.hyper_attention import HyperParams, hyper_attention

    found = {}
    for n in ns:
        xs = [torch.randn(1, 32, n, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]
        gout = torch.randn_like(xs[0])
        gen = torch.Generator(device="cuda")
        for causal, tile in ((c, t) for t in SAMPLE_TILES for c in CAUSALS):
            def fwd():
                gen.manual_seed(0)
                return hyper_attention(*xs, HyperParams(sample_tile=tile), causal=causal, generator=gen,
                                       backend="triton")

            def fwd_bwd():
                out, _ = fwd()
                torch.autograd.grad(out, xs, gout)

            row = f"n={n} causal={causal}" + (f" sample_tile={tile}" if tile != 256 else "")
            with torch.no_grad():
                found[f"{row} fwd"] = synced_ms(fwd)
            found[f"{row} fwd+bwd"] = synced_ms(fwd_bwd)
        torch.cuda.empty_cache()
    return found


# The order of the rows within a worker process (--causals=true,false: causal first).
CAUSALS = [c == "true" for c in arg("causals", "false,true").split(",")]
SAMPLE_TILES = [int(t) for t in arg("sample-tiles", "256").split(",")]


def main():
    ns = [int(x) for x in arg("ns", "8192,16384,131072").split(",")]
    if arg("worker", None):
        print(json.dumps(worker(arg("worker", None), ns)))
        return
    trees = arg("trees", "").split(",")
    if len(trees) != 2 or os.path.realpath(trees[0]) == os.path.realpath(trees[1]):
        print("error: --trees must name two different checkouts, OLD,NEW", file=sys.stderr)
        sys.exit(2)
    runs = {t: [] for t in trees}
    for _ in range(int(arg("rounds", 3))):
        for t in trees:
            done = subprocess.run([sys.executable, __file__, f"--worker={t}", f"--ns={arg('ns', '8192,16384,131072')}",
                                   f"--causals={arg('causals', 'false,true')}",
                                   f"--sample-tiles={arg('sample-tiles', '256')}"], capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"error: the worker for {t} failed:\n{done.stderr[-3000:]}")
            runs[t].append(json.loads(done.stdout.strip().splitlines()[-1]))
    old, new = trees
    print(f"{'row':34s} {old:>14s} {new:>14s}  new/old   {'rounds (old)':>22s} {'rounds (new)':>22s}")
    for key in runs[old][0]:
        a, b = ([r[key] for r in runs[t]] for t in (old, new))
        spread = lambda x: f"{min(x):9.3f}–{max(x):.3f}ms"  # noqa: E731
        print(f"{key:34s} {statistics.median(a):12.3f}ms {statistics.median(b):12.3f}ms  "
              f"{statistics.median(b) / statistics.median(a):6.3f}   {spread(a):>22s} {spread(b):>22s}", flush=True)


if __name__ == "__main__":
    main()
