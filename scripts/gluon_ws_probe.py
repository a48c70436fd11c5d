"""The warp-specialised Gluon forward (kernels/gluon_ws_forward.py) against the Triton key-list
forward on a GPU: outputs compared (NaN-poisoned), then both timed (do_bench, key lists included).

    python3 scripts/gluon_ws_probe.py [--n=131072]
"""
from __future__ import annotations

import os
import sys

import torch
from triton.testing import do_bench

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from kernels import gluon_ws_forward, triton_attention  # noqa: E402
from gpu_kernel_check import poison, problem, rel  # noqa: E402

CONFIGS = [(5, 232, 40, 168), (4, 232, 40, 168), (6, 232, 40, 168), (8, 232, 40, 168)]


def ws_forward(args, kw, config=None):
    q, k, v, qo, ko, smp = args
    g = triton_attention._Geometry(q, smp, kw["block_size"], kw["sample_tile"], kw["sample_weight"], kw["scale"])
    lists = triton_attention.prepared_lists(*args, block_size=kw["block_size"], sample_tile=kw["sample_tile"],
                                            sample_weight=kw["sample_weight"], scale=kw["scale"])
    B, H, n, d = q.shape
    out = torch.empty_like(q)
    lse = torch.empty(B, H, n, device=q.device, dtype=torch.float32)
    gluon_ws_forward.list_forward(q, k, v, qo, *lists, out, lse, H=H, U=triton_attention._list_unit(g),
                                  qk_scale=g.qk_scale, out_head_stride=n * d, lse_head_stride=n, config=config)
    return out, lse


def main():
    n = int(next((a.split("=")[1] for a in sys.argv if a.startswith("--n=")), 131072))
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    for nn, H in ((3000, 4), (20000, 8), (n, 32)):
        args, kw = problem(1, H, nn, 64, torch.bfloat16, 0)
        want = triton_attention.block_sample_forward(*args, **kw)
        poison()
        got = ws_forward(args, kw)
        torch.cuda.synchronize()
        finite = all(bool(torch.isfinite(x).all()) for x in got)
        print(f"n={nn} H={H} rel.diff out {rel(got[0], want[0]):.2e} lse {rel(got[1], want[1]):.2e} finite={finite}",
              flush=True)
    args, kw = problem(1, 32, n, 64, torch.bfloat16, 0)
    t = do_bench(lambda: triton_attention.block_sample_forward(*args, **kw), warmup=25, rep=200, return_mode="median")
    print(f"n={n} triton _list_kernel forward (lists included) {t:.3f} ms", flush=True)
    for cfg in CONFIGS:
        try:
            t = do_bench(lambda: ws_forward(args, kw, cfg), warmup=25, rep=200, return_mode="median")
            print(f"n={n} gluon ws {cfg} {t:.3f} ms", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"gluon ws {cfg} FAILED {repr(e)[:300]}", flush=True)


if __name__ == "__main__":
    main()
