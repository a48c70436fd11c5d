"""Where the error metric's time goes when a job has many heads (a diagnostic, not results/).

    python3 scripts/metric_probe.py [--heads=32,4096,70000] [--n=64] [--d=64] [--old-up-to=4096]

For each head count (B = 1, bf16 Gaussian inputs, SDPA's output as the method's, non-causal and
causal): the exact reference, then ||D⁻¹A||₂ (block Lanczos, with a cProfile of its CPU side) and
one method's metrics given both, with the largest eigenvalues by repeated squaring
(metrics.EIG_BY_SQUARING) and, up to --old-up-to heads, by eigvalsh as before, the two ways'
norms and errors compared; then the Gram norms alone both ways on the same matrices, and torch's
eigvalsh on the CPU for scale.
Prints everything; writes metric_probe.json to $OUT (or gpu_out/ in the repository).
"""

from __future__ import annotations

import cProfile
import io
import math
import pstats
import time

import torch
import torch.nn.functional as F

from hyperbench import metrics
from probe_out import arg, note, save   # this script's folder is on sys.path

def timed(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return result, time.perf_counter() - t0


def profiled(label, fn, top=8):
    prof = cProfile.Profile()
    prof.enable()
    result, seconds = timed(fn)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
    print(f"--- {label}: {seconds:.3f} s; CPU profile by own time:\n"
          + "\n".join(text.getvalue().splitlines()[6:6 + top + 3]), flush=True)
    return result, seconds


def gram_both_ways(label, x, old_up_to):
    gram = (lambda xd: xd.transpose(-1, -2) @ xd)(x.double())
    new, t_new = timed(lambda: metrics.largest_eigenvalue(gram))
    note(f"{label} squaring s", round(t_new, 4))
    if gram.shape[0] <= old_up_to:
        old, t_old = timed(lambda: torch.linalg.eigvalsh(gram)[..., -1])
        note(f"{label} eigvalsh (GPU) s", round(t_old, 4))
        note(f"{label} largest relative difference", float(((new - old).abs() / old).max()))
        cpu = gram.cpu()
        _, t_cpu = timed(lambda: torch.linalg.eigvalsh(cpu))
        note(f"{label} eigvalsh (CPU) s", round(t_cpu, 4))


def probe_heads(heads, n, d, old_up_to):
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, d, device="cuda", generator=gen).bfloat16() for _ in range(3))
    scale = 1 / math.sqrt(d)
    for causal in (False, True):
        tag = f"H={heads} n={n} d={d} causal={causal}"
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        metrics.warm_up(q, k, v, causal=causal, scale=scale)
        exact, t = timed(lambda: metrics.exact_reference(q, k, v, causal=causal, scale=scale))
        note(f"{tag} exact reference s", round(t, 3))
        found = {}
        for squaring in (True, False) if heads <= old_up_to else (True,):
            metrics.EIG_BY_SQUARING = squaring
            norm, t = profiled(f"{tag} ||D^-1 A||, squaring={squaring}", lambda: metrics.attention_matrix_norm(
                q, k, exact[1], causal=causal, scale=scale))
            note(f"{tag} norm s, squaring={squaring}", round(t, 3))
            note(f"{tag} norm iterations (max), squaring={squaring}", int(norm[1].max()))
            errs, t = profiled(f"{tag} one method's metrics, squaring={squaring}",
                               lambda: metrics.head_errors(q, k, v, out, causal=causal, scale=scale,
                                                           exact=exact, norm=norm))
            note(f"{tag} one method's metrics s, squaring={squaring}", round(t, 3))
            found[squaring] = (norm[0], errs["spec_err"])
        if len(found) == 2:
            for i, name in enumerate(("norm", "spec_err")):
                new, old = found[True][i], found[False][i]
                note(f"{tag} {name}: largest relative difference of the two ways",
                     float(((new - old).abs() / old).max()))
        metrics.EIG_BY_SQUARING = True
        gram_both_ways(f"{tag} Gram norms of E", out[0].float() - exact[0][0], old_up_to)
    gram_both_ways(f"H={heads} n={n} d={d} Gram norms of V", v[0].float(), old_up_to)


def main():
    n, d = int(arg("n", 64)), int(arg("d", 64))
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    for heads in (int(h) for h in arg("heads", "32,4096,70000").split(",")):
        probe_heads(heads, n, d, int(arg("old-up-to", 4096)))
        torch.cuda.empty_cache()
    save("metric_probe.json")


if __name__ == "__main__":
    main()
