"""Diagnostics of the Triton kernels on a GPU: where the time goes, not results for results/.

    python3 scripts/gpu_probe.py [--n=131072] [--parts=atomics,gather,copies,sort]

atomics  the fused key-list backward (B=1, H=32, d=64, bf16, block 256, samples 256 per 256 rows)
         timed with its dK/dV adds as atomics (the real kernel) and with plain stores for the
         block keys, the samples or both (wrong sums: a measurement of what the atomics cost);
         also with 256-row query tiles; and the atomic instructions in the compiled PTX.
gather   the forward and the backward of the primitive with random orders against identity
         orders (the cost of reading rows through the sort permutation), and without samples
         (half the key list: the fixed cost per program).
copies   the causal forward+backward under torch.profiler with each copy or cast op's input
         shapes, to attribute the copies the kernel profile shows (and the Python stack where
         the profiler records one; on the H200 with torch 2.11 it recorded none).
sort     the counting sort's passes (kernels/triton_sort.py) on the LSH keys of q and k at several
         chunk lengths, each checked against torch.sort. (Until bf78a3f it timed the in-chunk walk
         that pass 3 was then, and a part `scatter` timed that walk against sorted chunks.)
sortn    the whole hyper forward, causal and not, n = 4096..131072, with each LSH sort
         (kernels/hyper_attention.py, SORT), timed by hyperbench's timer (gpu_ab.synced_ms): L2
         flushed, each call waited for, so CPU launch overhead counts where the GPU waits for it.
         (The log at 81a1f5e came from an earlier timer that also waited for the flush.)
warmup   the first timed metric of a process against the next two (metrics.warm_up before them),
         one process per line, with a fresh Triton cache and with the warm one (n = 16384).
stages   tile configs with 5 pipeline stages (the key loop's copies then run a step ahead; with
         fewer, Triton 3.6 waits for all of them at the top of every step), forward and fused
         backward, head_dim 64 and 128, each checked against the default's outputs; then the
         driver, causal and not, fwd and fwd+bwd, with the default and the fastest tiles.
adds16   dK/dV added up in bf16 (DKDV_16BIT_ADDS) against fp32 buffers: gradient errors against
         the fp32 reference, and the primitive's and driver's non-causal fwd+bwd, d = 64 and 128.
fwdsplit the driver with the plain forward on 8 warps against 4, causal and not.
timeline GPU idle gaps in one profiled driver call (fwd+bwd, causal and not), and the driver under
         hyperbench's timer with one generator, a new one per call, and as a job runs it.
bwdtiles the fused backward's tiles under 16-bit dK/dV adds, then the driver with the fastest.
fwdtiles the key-list forward on one and on four warpgroups per program (64 and 256 rows), plain
         and merging (the causal levels), then the driver.
narrow   blocks that 128-row tiles do not line up with (192; 64 at d = 64): key lists on 64-row
         tiles (fwd_rows64, bwd_rows64) against the general kernel and split backward they ran
         before, forward and forward+backward, d = 32, 64, 128, each config checked.
rows32   blocks of 32 rows: key lists on 32-row tiles against the general kernel, as narrow.
rows16   blocks of 48 rows: key lists on 16-row tiles against the general kernel, as narrow.
padded   blocks (32 … 240) with 256-row sample sets, d = 64 and 128 (--ds=16,32: others): the
         forward and the fused backward on each kind's tiles (narrow ones dividing the rows that
         share a key list, wide ones part empty) against ROW_COST's pick, each checked against
         the pick's outputs.
fwdsteps the key-list forward (d = 64) on 32-key steps and other stage counts, then the causal
         driver with such tiles for the merging forward.
d32      head_dim 32's tiles (set in v9, never timed since): forward, fused backward and the causal
         levels' merging forward, each checked against the default's outputs, then the driver.
d16      the same for head_dim 16.
autogradthreads fwd+bwd at n = 1024…16384 (hyper, SDPA cuDNN) as hyperbench times it, with and
         without the autograd engine's device threads, in five processes.
overhead the driver timed by do_bench and by hyperbench's timer, the CPU time of one call, and
         cProfile of the non-causal forward+backward (where the CPU time goes).
cpuphases the CPU time of each phase of a driver call (inclusive wrappers around the driver's
         planning, the primitive's pieces and every Triton launch), causal and not, fwd and fwd+bwd.
launchcost the CPU time of one Triton launch of each kernel of a driver call, three ways: through
         the JIT (binder, cache key), the compiled kernel's runner, and its launcher directly; and
         the JIT's binder alone, and the launcher behind a Python specialisation key (a bypass).
overlap  the causal call's planning (hashing, one-pass sort) and its leaves (one cuDNN call), alone,
         one after the other, and side by side on two streams: GPU time and hyperbench's timer.
leavesfirst the causal driver with its leaves first (the default) and at the bottom, interleaved.
sharedset the published variant (one sample set per head): the driver's fwd+bwd with the sets' dK/dV
         added through fp32 slots (SAMPLE_SLOTS) against fp32 rows for every key, in interleaved
         rounds, at d = 64 and 128, their gradients compared, its kernel profile, the primitive's
         backward both ways, and the per-block variant and the causal calls beside them.  (At
         c5dd0f7 it timed plain stores and forced 16-bit adds in place of the atomic fp32 adds.)
sharedtimer both sampling variants' non-causal fwd+bwd by do_bench and by hyperbench's timer in
         interleaved rounds, and the GPU's idle gaps in one profiled call of each.
tmaws    the forward on contiguous copies read through TMA descriptors, with Triton's Hopper warp
         specialisation and without (scripts/probe_tma_ws.py), each checked against the key-list
         forward's outputs, beside that forward and the copies' own time.
persistent the fused backward (d = 64) as one program per SM walking the query tiles in turn,
         its loop nest flattened or not (scripts/probe_persistent_bwd.py), each checked against
         the fused backward's gradients and timed beside it.
waits    without a profiler: the GPU's idle time before each Triton launch of one driver call (CUDA
         events beside every launch, the CPU's clock at each), L2 flushed and the call waited for
         as hyperbench's timer does; non-causal and causal, fwd and fwd+bwd; medians of rounds.
countsortn countsort's two ways at n = 4096 … 131072: the hashing alone and with the counts, and the
         driver's forward (causal and not) by hyperbench's timer in interleaved rounds.
waitsshared waits for the published variant (sample_tile=0) and the default, non-causal.
deltatiles the Δ pass (kernels/triton_delta.py) at other tile sizes and warps, and the LSH
         hashing (kernels/triton_lsh.py) at other row tiles: the short passes beside the kernels.
countsort the counting sort's pass 1 in the hashing launch (hyper_attention.COUNT_IN_HASHING) against
         its own launch: the orders compared, the hashing and the sort timed alone, then the
         driver (non-causal fwd and fwd+bwd, causal fwd) by do_bench and by hyperbench's timer in
         interleaved rounds, and the waits of each way. (At e9f9a29 it also timed passes 1 and 2
         both in the hashing launch, its last program per row summing the row's counts.)
causal16 the causal recursion's gradients added up in bf16 (causal_triton.CAUSAL_16BIT_ADDS, here
         without a bound; at 165d365 CAUSAL_16BIT_LEVELS) against fp32 buffers: errors against the
         fp32 torch backend (n = 16384 and 131072, two heads) and between the two ways (n = 131072
         and 262144, 32 heads) at head_dims --ds (64), then (unless --timed=0) the kernel profile
         of both ways and the causal fwd+bwd both ways in interleaved rounds (d = 64 and 128, and
         n = 262144).
causaltiles the fused backward's tiles (CAUSAL_BWD_TILES, or --tiles) in the causal recursion with
         its bf16 sums (v28), d = 64 and 128: gradients against the default's, then the causal and
         the non-causal driver's fwd+bwd in five interleaved rounds (do_bench).
listlen  the primitive's forward and fused backward against their lists' length (block 256, --ms
         sampled keys a set), with a least-squares line: per-key cost and per-program intercept.
tiletable the key-list kernels finding a tile's rows by arithmetic where units are uniform (UNIT_TILES,
         the default) against by the tile table: outputs compared, primitive and driver timed.
leafshapes the causal recursion's cuDNN leaves on other free views of the same memory (leaves as
         heads, as batch elements, split between them): outputs compared, forward and backward
         timed (do_bench).
mergewarps the causal levels' merging forward (CONFIGS "fwd_merge", d = 64) on 8 warps, which since
         v30 compiles to 124 registers (two programs per SM) without a cap, against its 4-warp
         default: outputs against the default's, then the causal driver's fwd and fwd+bwd in five
         interleaved rounds (do_bench).
profile  the driver's four goal calls (d = 64), kernel by kernel under torch.profiler.
clocks   the GPU's SM clock, power and power-capped share (src/hyperbench/gpu_clock.py; at 9d7f6ca
         nvidia-smi every 25 ms) beside rounds of the causal and the non-causal fwd+bwd (do_bench,
         0.5 s a round) after an idle start: whether the spread of rounds follows the clock.
graphs   the four goal calls captured in one CUDA graph each and replayed, against the same calls
         run eagerly, each by do_bench and by hyperbench's timer in interleaved rounds: the
         kernels' time with no host in the call. A capture that fails (a host sync in the call)
         is noted with its error. Replays draw fresh samples, as eager calls do.
graphgaps the four goal calls as CUDA-graph replays (each after an L2 flush, waited for) under
         torch.profiler: per replay, its first kernel's start to its last kernel's end against the
         time some kernel ran, so the GPU's idle time at kernel boundaries, with the longest gaps;
         then the same replays by CUDA events without the profiler; the SM clock over both.
leafgap  where the causal replays' gap before cuDNN's leaf forward comes from: the leaves' cuDNN call
         and SDPA's cuDNN forward alone as replays (first kernels, gaps), then the causal goal calls
         as replays with the leaves first and at the bottom of the recursion, profiled and timed;
         the CPU time of each graph's replay() (torch's generator prologue and the graph launch).
once     the primitive's forward and fused backward (B=1, H=32, d=64, bf16, block 256, samples
         256 per 256 rows) run twice each and nothing else: a target for Nsight Compute, e.g.
         ncu --clock-control none --kernel-name regex:^_list --launch-skip 2 --launch-count 2 ...
Imports only torch, triton, the kernels package and hyperbench's timer; prints everything, and writes probe.json to
$OUT (or ./gpu_out).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import statistics
import sys
import time
from unittest import mock

import torch
import triton

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from kernels import lsh, reference, triton_attention, triton_lsh, triton_sort  # noqa: E402
from kernels.hyper_attention import HyperParams, hyper_attention  # noqa: E402
from kernels.triton_delta import delta as row_delta  # noqa: E402
from gpu_ab import synced_ms  # noqa: E402  (this script's folder is on sys.path)
from probe_out import arg, ms  # noqa: E402
from gpu_kernel_check import SORTS, problem, rel  # noqa: E402

OUT = os.environ.get("OUT") or os.path.join(REPO, "gpu_out")
FOUND: dict = {}


def note(key, value):
    FOUND[key] = value
    print(f"{key:60s} {value:9.3f} ms" if isinstance(value, float) else f"{key}: {value}", flush=True)


TIMERS = {"do_bench": ms, "timer": synced_ms}


def _interleaved(label, ways: dict, timers=("do_bench", "timer"), rounds=3):
    """Each way, {name: (call, context)} with context a function giving a context manager, timed
    by each of `timers` (TIMERS) in interleaved rounds, so drift of the machine hits every way
    alike; notes each median with its rounds as "{label} {name} {timer}"."""
    found = {(name, how): [] for name in ways for how in timers}
    for _ in range(rounds):
        for name, (call, context) in ways.items():
            with context():
                for how in timers:
                    found[name, how].append(TIMERS[how](call))
    for (name, how), xs_ms in found.items():
        note(f"{label} {name} {how} (rounds {[round(v, 3) for v in xs_ms]})", statistics.median(xs_ms))


def backward_call(args, kw):
    q, k, v, qo, ko, smp = args
    out, lse = triton_attention.block_sample_forward(*args, **kw)
    do = torch.randn_like(out)
    delta = row_delta(do, out, None)
    return lambda: triton_attention.block_sample_backward(q, k, v, qo, ko, smp, do, lse, delta, **kw)


def atomics(n):
    args, kw = problem(1, 32, n, 64, torch.bfloat16, 0)
    bwd = backward_call(args, kw)
    for stores in ((False, False), (True, False), (False, True), (True, True)):
        with mock.patch.object(triton_attention, "_DIAGNOSTIC_DKDV_STORES", stores):
            note(f"bwd n={n} plain stores (block keys, samples)={stores}", ms(bwd))
    for cfg in ((256, 64, 8, 2), (256, 32, 8, 2), (128, 64, 8, 3)):
        for stores in ((False, False), (True, False)):
            with mock.patch.dict(triton_attention.CONFIGS["bwd"], {64: cfg}), \
                    mock.patch.object(triton_attention, "_DIAGNOSTIC_DKDV_STORES", stores):
                note(f"bwd n={n} tiles {cfg} plain stores={stores}", ms(bwd))
    cache = os.environ.get("TRITON_CACHE_DIR", os.path.expanduser("~/.triton/cache"))
    for path in sorted(glob.glob(os.path.join(cache, "**", "_list_bwd_kernel.ptx"), recursive=True))[:6]:
        text = open(path).read()
        ops = {}
        for op in re.findall(r"\b((?:red|atom)\.[\w.]+)", text):
            ops[op] = ops.get(op, 0) + 1
        note(f"ptx {os.path.basename(os.path.dirname(path))[:12]} atomics", ops)


def gather(n):
    args, kw = problem(1, 32, n, 64, torch.bfloat16, 0)
    q, k, v, qo, ko, smp = args
    ident = torch.arange(n, device="cuda").expand(1, q.shape[1], n).contiguous()
    fwd = lambda a: (lambda: triton_attention.block_sample_forward(*a, **kw))  # noqa: E731
    note(f"fwd n={n} random orders", ms(fwd(args)))
    note(f"fwd n={n} identity orders", ms(fwd((q, k, v, ident, ident, smp))))
    note(f"fwd n={n} no samples (key list 256)", ms(fwd((q, k, v, qo, ko, None))))
    note(f"bwd n={n} random orders", ms(backward_call(args, kw)))
    note(f"bwd n={n} identity orders", ms(backward_call((q, k, v, ident, ident, smp), kw)))
    note(f"bwd n={n} no samples", ms(backward_call((q, k, v, qo, ko, None), kw)))


def _driver_call(n, d, causal, grad, params=None):
    """One call of the driver (the triton backend, params or the default HyperParams) on fresh
    [1, 32, n, d] bf16 inputs, with the backward of a random output gradient when grad.  The call
    returns the output, or with grad the gradients of q, k and v."""
    params = params or HyperParams()
    xs = [torch.randn(1, 32, n, d, device="cuda", dtype=torch.bfloat16).requires_grad_(grad) for _ in range(3)]
    gout = torch.randn_like(xs[0])
    gen = torch.Generator(device="cuda")

    def call():
        gen.manual_seed(0)
        out, _ = hyper_attention(*xs, params, causal=causal, generator=gen, backend="triton")
        return torch.autograd.grad(out, xs, gout) if grad else out
    return call


COPY_OPS = {"aten::copy_", "aten::to", "aten::_to_copy", "aten::contiguous", "aten::clone", "aten::reshape",
            "aten::zeros", "aten::zero_", "aten::fill_", "aten::empty_like", "aten::add_", "aten::cat"}


def copies(n):
    run = _driver_call(n, 64, True, True)
    note(f"causal fwd+bwd n={n}", ms(run))
    run()
    torch.cuda.synchronize()
    act = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=act, record_shapes=True, with_stack=True) as prof:
        run()
        torch.cuda.synchronize()
    rows = []
    for evt in prof.key_averages(group_by_input_shape=True, group_by_stack_n=6):
        if evt.key in COPY_OPS and evt.device_time_total > 50:
            here = [f for f in evt.stack if "kernels/" in f or "gpu_probe" in f or "torch/" in f][:6]
            rows.append((evt.device_time_total, evt.key, evt.count, str(evt.input_shapes)[:160], here))
    rows.sort(reverse=True)
    FOUND["copies"] = [dict(us=r[0], op=r[1], count=r[2], shapes=r[3], stack=r[4]) for r in rows]
    for us, op, count, shapes, stack in rows:
        print(f"{us:9.0f} us  {op} x{count}  {shapes}\n           " + "\n           ".join(stack), flush=True)
    print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=14, max_name_column_width=70))


def sort(n):
    """The counting sort's passes at several chunk lengths and warps on the q and k keys of the
    benchmark shape, each order checked against torch.sort."""
    q, k, _ = (torch.randn(1, 32, n, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    proj = lsh.draw_projections(64, 7, generator=None, device=q.device)
    keys = triton_lsh.bucket_ranks([q, k], proj).reshape(-1, n)
    want = torch.sort(keys, dim=-1, stable=True).indices
    rows, nb = keys.shape[0], 128
    note("sort: torch.sort (segmented)", ms(lambda: torch.sort(keys, dim=-1, stable=True)))
    note("sort: counting sort, whole", ms(lambda: triton_sort.counting_sort_orders(keys, 7)))
    for ch, warps in ((256, 2), (512, 4), (1024, 4)):
        chunks = triton.cdiv(n, ch)
        counts = torch.empty(rows, chunks, nb, dtype=torch.int32, device=q.device)
        prefix = torch.empty(rows, chunks + 1, nb, dtype=torch.int32, device=q.device)
        hist = lambda: triton_sort._histogram_kernel[(chunks, rows)](keys, counts, n, chunks, 0, NB=nb, CH=ch)  # noqa: E731
        scan = lambda: triton_sort._chunk_prefix_kernel[(rows,)](counts, prefix, chunks, NB=nb,  # noqa: E731
                                                                 CR=triton_sort.SCAN_ROWS)
        note(f"sort: chunk {ch} histogram", ms(hist))
        note(f"sort: chunk {ch} chunk prefix sums", ms(scan))
        hist(), scan()
        order = torch.full_like(want, -1)
        scatter = lambda: triton_sort._scatter_kernel[(chunks, rows)](  # noqa: E731
            keys, prefix, order, n, chunks, 0, NB=nb, CH=ch, num_warps=warps)
        scatter()
        bad = int((order != want).sum())
        note(f"sort: chunk {ch} scatter, {warps} warps (mismatches {bad})", ms(scatter))
    note("sort: copy of the orders (floor of the write)", ms(lambda: order.copy_(want)))


def levelsort(n):
    """The causal recursion's sorts at n: each level's counting sort of its pieces' keys, as the
    levels ran them before, against triton_sort.recursion_orders (every level in one pass);
    the orders are compared, then each way timed (sum over levels against one call)."""
    from kernels import hyper_attention as driver
    q, k, _ = (torch.randn(1, 32, n, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    proj = lsh.draw_projections(64, 7, generator=None, device=q.device)
    ranks = triton_lsh.bucket_ranks([q, k], proj)
    levels = triton_sort.recursion_levels(n, HyperParams().min_seq_len)
    pieces = []
    for l in range(levels):
        s = n >> l
        pieces.append((ranks[0].reshape(1, 32 << l, s)[:, :, s // 2:], ranks[1].reshape(1, 32 << l, s)[:, :, :s // 2]))
    per_level = lambda: [driver._sort_orders("triton", piece, 7) for piece in pieces]  # noqa: E731
    at_once = lambda: triton_sort.recursion_orders(ranks, 7, levels)  # noqa: E731
    bad = sum(int((a != b).sum()) for got, want in zip(at_once(), per_level()) for a, b in zip(got, want))
    note(f"levelsort: n={n}, {levels} levels, mismatched positions", bad)
    note(f"levelsort: n={n} each level's counting sort, all levels", ms(per_level))
    note(f"levelsort: n={n} every level in one pass", ms(at_once))


def overlap(n):
    """The causal call's planning (hyperplanes, hashing, the one-pass sort) and its leaves (one
    exact call on every min_seq_len-row leaf), each alone, one after the other on one stream, and
    the planning on a second stream (normal and high priority) beside the leaves: whether running
    them side by side would save GPU time, and hyperbench's timer (each call waited for) besides."""
    from kernels import causal_triton
    p = HyperParams()
    q, k, v = (torch.randn(1, 32, n, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    gen = torch.Generator(device="cuda")

    def leaves():
        return causal_triton._leaves_first(q, k, v, p, 64 ** -0.5)

    def plan():
        gen.manual_seed(0)
        return causal_triton._plan_all_levels(q, k, p, gen)

    def one_stream():
        leaves()
        plan()
    calls = {"leaves": leaves, "planning": plan, "leaves then planning, one stream": one_stream}
    main_stream = torch.cuda.current_stream()
    for priority in (0, -1):   # lower is higher
        side = torch.cuda.Stream(priority=priority)

        def side_by_side(side=side):
            side.wait_stream(main_stream)
            with torch.cuda.stream(side):
                plan()
            leaves()
            main_stream.wait_stream(side)
        calls[f"planning on a side stream (priority {priority}) beside the leaves"] = side_by_side
    with torch.no_grad():
        for name, call in calls.items():
            note(f"overlap n={n}: {name}, do_bench", ms(call))
            note(f"overlap n={n}: {name}, hyperbench timer", synced_ms(call))


def leavesfirst(n):
    """The causal driver with its leaves computed first (causal_triton._leaves_first, the default)
    and at the bottom of the recursion as before, in interleaved rounds, hyperbench's timer: the
    leaves first hide the CPU's planning launches, and put the GPU's planning after them."""
    from kernels import causal_triton
    for size in (16384, n):
        for grad in (False, True):
            call = _driver_call(size, 64, True, grad)
            for rnd in range(3):
                for first in (True, False):
                    patch = mock.patch.object(causal_triton, "_leaves_first", causal_triton._leaves_first if first
                                              else (lambda *a: None))
                    with patch, torch.enable_grad() if grad else torch.no_grad():
                        note(f"leavesfirst: n={size} causal {'fwd+bwd' if grad else 'fwd'} round {rnd}, "
                             f"leaves {'first' if first else 'at the bottom'}", synced_ms(call))


def sortn(_n):
    """The whole forward under each LSH sort (gpu_kernel_check.SORTS), n = 4096..131072."""
    from kernels import hyper_attention as driver
    for n in (4096, 8192, 16384, 32768, 65536, 131072):
        for causal in (False, True):
            call = _driver_call(n, 64, causal, False)
            for variant in SORTS:
                with mock.patch.object(driver, "SORT", variant), torch.no_grad():
                    note(f"sortn: n={n} causal={causal} fwd, {variant} sort", synced_ms(call))


def once(n):
    """Two forwards and two backwards of the primitive, no timing loop (see the docstring)."""
    args, kw = problem(1, 32, n, 64, torch.bfloat16, 0)
    bwd = backward_call(args, kw)            # runs the forward once
    bwd()
    triton_attention.block_sample_forward(*args, **kw)
    bwd()
    torch.cuda.synchronize()
    note(f"once n={n}", "forward, backward, forward, backward")


STAGE_TRIALS = {   # (head_dim, kind): tile configs (BM, BN, warps, stages) to time; the first is the default
    (64, "fwd"): [(128, 64, 4, 3), (128, 64, 4, 5), (128, 64, 4, 6), (256, 64, 8, 5), (128, 64, 8, 5),
                  (128, 32, 4, 5)],
    (64, "bwd"): [(256, 64, 8, 3), (256, 64, 8, 4), (256, 64, 8, 5), (128, 64, 8, 5), (128, 64, 4, 5)],
    (128, "fwd"): [(256, 64, 8, 3), (128, 64, 8, 5), (128, 64, 4, 5), (256, 32, 8, 5), (128, 32, 4, 5)],
    (128, "bwd"): [(256, 64, 8, 2), (128, 64, 8, 5), (128, 64, 8, 3), (128, 32, 8, 5)],
}


def _fastest_tiles(label, fn, kind, d, configs, tol):
    """Each tile config for CONFIGS[kind][d] in turn: fn's outputs against the default's (a config
    whose relative difference exceeds tol or that gives a non-finite value is not kept), then its
    time (do_bench); returns the fastest config kept."""
    want, times = fn(), {}
    for cfg in configs:
        name = f"{label} tiles {cfg}"
        try:
            with mock.patch.dict(triton_attention.CONFIGS[kind], {d: cfg}):
                got = fn()
                torch.cuda.synchronize()
                diff = max(rel(a, b) for a, b in zip(got, want))
                note(f"{name} max rel.diff", diff)
                times[cfg] = ms(fn)
                note(name, times[cfg])
                if diff > tol or not all(bool(torch.isfinite(g).all()) for g in got):
                    times.pop(cfg)
        except Exception as e:  # noqa: BLE001  (e.g. too much shared memory)
            note(f"{name} FAILED", repr(e)[:300])
    return min(times, key=times.get)


def stages(n):
    """Tile configs with more pipeline stages: Triton 3.6 waits for every outstanding copy at the
    top of the key loop unless num_stages >= 5 (SASS: DEPBAR.LE SB0, 0x0), so the gathered key and
    value rows of a step are loaded only one step ahead with nothing in between.  Each config is
    checked against the default's outputs, then the driver is timed with the fastest."""
    best = {}
    for (d, kind), configs in STAGE_TRIALS.items():
        args, kw = problem(1, 32, n, d, torch.bfloat16, 0)
        fn = (backward_call(args, kw) if kind == "bwd" else
              lambda: triton_attention.block_sample_forward(*args, **kw))  # noqa: E731
        best[(d, kind)] = _fastest_tiles(f"stages {kind} d={d} n={n}", fn, kind, d, configs, tol=1e-2)
        note(f"stages {kind} d={d} fastest", best[(d, kind)])
    for d in (64, 128):
        _driver_configs(n, d, (False, True), [{}, {k: best[(d, k)] for k in ("fwd", "bwd")}])


def _driver_configs(n, d, causals, sets):
    """The driver (fwd, fwd+bwd) at head_dim d with each set of tile configs ({kind: config})."""
    for causal in causals:
        for grad in (False, True):
            call = _driver_call(n, d, causal, grad)
            for cfgs in sets:
                with contextlib.ExitStack() as patched:
                    for kind, cfg in cfgs.items():
                        patched.enter_context(mock.patch.dict(triton_attention.CONFIGS[kind], {d: cfg}))
                    with torch.enable_grad() if grad else torch.no_grad():
                        note(f"driver d={d} n={n} causal={causal} {'fwd+bwd' if grad else 'fwd'} {cfgs or 'default'}",
                             ms(call))


CAUSAL_SETS = {   # head_dim: tile sets for the causal recursion, whose levels' forward merges into rows in
    # place ("fwd_merge"; a fifth entry is a register cap)
    64: [{}, {"fwd_merge": (128, 64, 8, 5, 128)}, {"fwd_merge": (128, 64, 8, 5)}, {"fwd_merge": (128, 64, 4, 6)}],
    128: [{}, {"fwd_merge": (128, 32, 4, 5)}, {"fwd_merge": (128, 64, 8, 5)}],
}


def stages_causal(n):
    """The causal recursion under the tile sets of CAUSAL_SETS (its merging forward is where the
    8-warp tiles lost in `stages`)."""
    for d, sets in CAUSAL_SETS.items():
        _driver_configs(n, d, (True,), sets)


WARMUP_CHILD = """
import json, sys, time, torch
from hyperbench import metrics
g = torch.Generator(device="cuda").manual_seed(0)
q, k, v = (torch.randn(1, 32, 16384, 64, generator=g, device="cuda").to(torch.bfloat16) for _ in range(3))
out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
out = (out.float() + 1e-2 * torch.randn_like(out, dtype=torch.float32)).to(out.dtype)
torch.cuda.synchronize()
t0 = time.perf_counter()
metrics.warm_up(q, k, v, causal=False, scale=64 ** -0.5)
torch.cuda.synchronize()
warm = (time.perf_counter() - t0) * 1e3
ms = [metrics.attention_errors(q, k, v, out, causal=False, scale=64 ** -0.5)["metric_ms"] for _ in range(3)]
print(json.dumps({"warm_up_ms": warm, "metric_ms": ms}))
"""


def warmup(_n):
    """The first timed metric of a process against later ones (metrics.warm_up before them), one
    process per line, each with a fresh Triton cache (the worst case) or the shared warm one."""
    import subprocess
    import tempfile
    for cache in ("fresh", "fresh", "fresh", "warm", "warm"):
        env = dict(os.environ)
        if cache == "fresh":
            env["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="tcache_")
        run = subprocess.run([sys.executable, "-c", WARMUP_CHILD], env=env, capture_output=True, text=True)
        line = run.stdout.strip().splitlines()[-1] if run.returncode == 0 else f"FAILED: {run.stderr[-300:]}"
        note(f"warmup ({cache} Triton cache), n=16384 H=32 bf16", line)


THREADS_CHILD = """
import json, sys, torch
sys.path.insert(0, "src"); sys.path.insert(0, ".")
from hyperbench import methods
from hyperbench.timing import make_call, measure
from kernels.hyper_attention import HyperParams, hyper_attention
cudnn = methods.get("sdpa_cudnn").build(None)   # what a job of method sdpa_cudnn times
out = {}
for n in (1024, 2048, 16384):
    q, k, v = (torch.randn(1, 32, n, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    gen = torch.Generator(device="cuda")
    def hyper(q, k, v, causal):
        gen.manual_seed(0)
        return hyper_attention(q, k, v, HyperParams(), causal=causal, generator=gen, backend="triton")
    for name, fn in (("hyper", hyper), ("cudnn", cudnn)):
        for causal in (False, True):
            for threads in (True, False, True, False):
                torch.autograd.set_multithreading_enabled(threads)
                setup, timed = make_call(fn, q, k, v, causal, "fwd+bwd")
                before = torch.cuda.memory_stats()
                t = measure(setup, timed, device="cuda", warmup=5, target_ms=0.0, min_reps=40, max_reps=40,
                            flush_l2=True)
                after = torch.cuda.memory_stats()
                key = f"n={n} {name} causal={causal} threads={threads}"
                out.setdefault(key, []).append(round(t.median_ms, 4))
                # cudaMalloc / cudaFree calls during the timing (the caching allocator's misses)
                mallocs = sum(after.get(c, 0) - before.get(c, 0) for c in ("num_device_alloc", "num_device_free"))
                out.setdefault("allocator calls " + key, []).append(mallocs)
print(json.dumps(out))
"""


def autogradthreads(_n):
    """fwd+bwd at short lengths, timed as hyperbench times it, with the autograd engine's device
    threads (the default: the backward runs on a thread per GPU, the caller waits) and without
    (torch.autograd.set_multithreading_enabled(False): the caller runs it), in alternating blocks,
    in five processes: do the per-process differences of the backward's time come from the thread
    handoff?  Also the caching allocator's cudaMalloc/cudaFree calls during each timing."""
    import subprocess
    per_process = []
    for _ in range(5):
        run = subprocess.run([sys.executable, "-c", THREADS_CHILD], cwd=REPO, capture_output=True, text=True)
        if run.returncode:
            note("autogradthreads FAILED", run.stderr[-500:])
            return
        per_process.append(json.loads(run.stdout.strip().splitlines()[-1]))
    for key in per_process[0]:
        if key.startswith("allocator calls"):
            note(f"autogradthreads {key}", f"per process {[p[key] for p in per_process]}")
            continue
        medians = [statistics.median(p[key]) for p in per_process]
        note(f"autogradthreads {key}", f"per-process medians {medians} ms, max/min {max(medians) / min(medians):.2f}")


def _grad_errors(args, kw):
    """Relative errors of the primitive's dq, dk, dv (bf16, autograd) against the fp32 reference,
    for one loss through out and lse."""
    q, k, v, qo, ko, smp = args
    xs = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    ref = [x.detach().float().requires_grad_() for x in (q, k, v)]
    g = torch.Generator(device="cuda").manual_seed(77)
    gout = torch.randn(q.shape, generator=g, device="cuda")
    glse = torch.randn(q.shape[:-1], generator=g, device="cuda")
    for fn, ins in ((triton_attention.block_sample_attention, xs), (reference.block_sample_attention, ref)):
        out, lse = fn(*ins, qo, ko, smp, **kw)
        ((out.float() * gout).sum() + (lse * glse).sum()).backward()
    return {f"d{c}": rel(a.grad, b.grad) for c, a, b in zip("qkv", xs, ref)}


def _primitive_fwd_bwd(n, d, **shape):
    """The primitive's forward+backward through autograd (as a job times it) on the benchmark
    problem at head_dim d (shape: problem's block, m, tile, where not the benchmark's): a call
    returning the gradients of q, k, v."""
    args, kw = problem(1, 32, n, d, torch.bfloat16, 0, **shape)
    xs = [x.detach().requires_grad_() for x in args[:3]]
    gout = torch.randn_like(args[0])

    def call():
        out, _ = triton_attention.block_sample_attention(*xs, *args[3:], **kw)
        return torch.autograd.grad(out, xs, gout)
    return call


def adds16(n):
    """dK/dV added up in the inputs' 16-bit dtype (DKDV_16BIT_ADDS, the default) against fp32
    buffers: gradient errors against the fp32 reference (sets per 256 rows and one per head), then
    the primitive's and the driver's non-causal forward+backward at n, d = 64 and 128."""
    for n_chk, H in ((16384, 4), (65536, 2)):
        for tile in (256, 0):
            args, kw = problem(1, H, n_chk, 64, torch.bfloat16, 5, tile=tile)
            for adds in (4, 0):
                with mock.patch.object(triton_attention, "DKDV_16BIT_ADDS", adds):
                    errs = _grad_errors(args, kw)
                note(f"adds16 errors n={n_chk} tile={tile} DKDV_16BIT_ADDS={adds}",
                     " ".join(f"{k}={v:.3e}" for k, v in errs.items()))
    for d in (64, 128):
        prim = _primitive_fwd_bwd(n, d)
        drv = _driver_call(n, d, False, True)
        for _ in range(2):      # twice, interleaved: the second round says how much is drift
            for adds in (4, 0):
                with mock.patch.object(triton_attention, "DKDV_16BIT_ADDS", adds):
                    note(f"adds16 primitive fwd+bwd d={d} n={n} DKDV_16BIT_ADDS={adds}", ms(prim))
                    note(f"adds16 driver fwd+bwd d={d} n={n} DKDV_16BIT_ADDS={adds}", ms(drv))


def _sums_in(bits):
    """A context in which the causal recursion adds its gradients up in fp32 (bits 32) or, wherever
    its levels can, in bf16 (16: no bound on the adds, causal_triton.CAUSAL_16BIT_ADDS)."""
    from kernels import causal_triton
    return mock.patch.object(causal_triton, "CAUSAL_16BIT_ADDS", 0 if bits == 32 else float("inf"))


def _causal_grads(xs, gout, backend="triton", bits=32):
    """q, k, v's gradients of the causal call (loss through out), summed as _sums_in(bits)."""
    ins = [x.detach().clone().requires_grad_() for x in xs]
    with _sums_in(bits):
        out, _ = hyper_attention(*ins, HyperParams(), causal=True, backend=backend,
                                 generator=torch.Generator(device="cuda").manual_seed(3))
        return torch.autograd.grad(out.float(), ins, gout)


def causal16(n):
    """The causal recursion's sums in bf16 against fp32: errors, profile, timings (see the top)."""
    from torch.profiler import ProfilerActivity, profile
    for d, (n_chk, H, with_ref) in ((d, c) for d in map(int, arg("ds", "64").split(","))
                                    for c in ((16384, 2, True), (131072, 2, True), (131072, 32, False),
                                              (262144, 32, False))):
        try:
            xs = [torch.randn(1, H, n_chk, d, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
            gout = torch.randn(1, H, n_chk, d, device="cuda")
            wide, narrow = _causal_grads(xs, gout), _causal_grads(xs, gout, bits=16)
            found = {f"{g} 16-bit vs fp32 sums": rel(a, b) for g, a, b in zip(("dq", "dk", "dv"), narrow, wide)}
            if with_ref:
                ref = _causal_grads(xs, gout, backend="torch")
                for name, got in (("fp32 sums", wide), ("16-bit sums", narrow)):
                    found.update({f"{g} {name} vs reference": rel(a, b) for g, a, b in zip(("dq", "dk", "dv"), got, ref)})
                del ref
            note(f"causal16 errors n={n_chk} H={H} d={d}", " ".join(f"{k}={v:.3e}" for k, v in found.items()))
            del xs, wide, narrow
        except torch.OutOfMemoryError as e:
            note(f"causal16 errors n={n_chk} H={H} d={d}", f"out of memory: {str(e).splitlines()[0]}")
        torch.cuda.empty_cache()
    if arg("timed", "1") == "0":
        return
    call = _driver_call(n, 64, True, True)
    for bits in (32, 16):
        with _sums_in(bits):
            for _ in range(3):
                call()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                call()
                torch.cuda.synchronize()
            print(f"== causal16 profile sums in {bits} bits n={n}")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=16, max_name_column_width=70))
    for n_t, d in ((n, 64), (n, 128), (2 * n, 64)):
        c = _driver_call(n_t, d, True, True)
        _interleaved(f"causal16 fwd+bwd n={n_t} d={d}",
                     {f"sums in {bits} bits": (c, lambda bits=bits: _sums_in(bits)) for bits in (32, 16)})
        del c


def fwdsplit(n):
    """The plain forward on 8 warps (CONFIGS "fwd") against 4 (the merging one's, "fwd_merge"); the
    causal rows do not use "fwd" and show the drift between the two."""
    for _ in range(2):
        _driver_configs(n, 64, (False, True), [{}, {"fwd": (128, 64, 4, 5)}])


def overhead(n):
    """Where hyperbench's timer (each call waited for) and do_bench (calls back to back) differ: the
    CPU time of one call's launches, then cProfile of the non-causal forward+backward."""
    import cProfile
    import pstats
    import time
    for causal in (False, True):
        for grad in (False, True):
            call = _driver_call(n, 64, causal, grad)
            with torch.enable_grad() if grad else torch.no_grad():
                name = f"overhead causal={causal} {'fwd+bwd' if grad else 'fwd'} n={n}"
                note(f"{name} do_bench", ms(call))
                note(f"{name} hyperbench timer", synced_ms(call))
                cpu = []
                for _ in range(10):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    call()
                    cpu.append((time.perf_counter() - t0) * 1e3)
                note(f"{name} CPU time of the call (launches)", sorted(cpu)[5])
    call = _driver_call(n, 64, False, True)
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(10):
        call()
    prof.disable()
    torch.cuda.synchronize()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def _gpu_gaps(call, label, top=12):
    """One call after a sync, under torch.profiler: the GPU's busy time against the span from the
    call's start to its last kernel's end, and the longest idle gaps with the kernels around them."""
    import time
    act = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=act) as prof:
        t0 = time.perf_counter()
        call()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) * 1e3
    kernels = sorted((e.time_range.start, e.time_range.end, e.name) for e in prof.events()
                     if e.device_type == torch.autograd.DeviceType.CUDA)
    busy = sum(b - a for a, b, _ in kernels) / 1e3
    span = (kernels[-1][1] - kernels[0][0]) / 1e3
    gaps = sorted(((kernels[i + 1][0] - kernels[i][1], kernels[i][2][:50], kernels[i + 1][2][:50])
                   for i in range(len(kernels) - 1)), reverse=True)
    note(f"timeline {label}: kernels", len(kernels))
    note(f"timeline {label}: wall (profiled)", wall)
    note(f"timeline {label}: first to last kernel", span)
    note(f"timeline {label}: GPU busy", busy)
    for gap, before, after in gaps[:top]:
        print(f"    gap {gap:8.1f} us after {before} before {after}", flush=True)


def timeline(n):
    """Where a call waits: GPU idle gaps in one profiled call (non-causal and causal fwd+bwd), and
    the driver timed by hyperbench's timer three ways: one generator reused, a new generator per
    call (as the hyper method does), and through the method and make_call exactly as a job."""
    sys.path.insert(0, os.path.join(REPO, "src"))
    from types import SimpleNamespace
    from hyperbench import inputs, methods, timing
    for causal in (False, True):
        call = _driver_call(n, 64, causal, True)
        for _ in range(3):
            call()
        _gpu_gaps(call, f"causal={causal} fwd+bwd n={n}")
        xs = [torch.randn(1, 32, n, 64, device="cuda", dtype=torch.bfloat16).requires_grad_() for _ in range(3)]
        gout = torch.randn_like(xs[0])

        def new_gen():
            gen = torch.Generator(device="cuda").manual_seed(0)
            out, _ = hyper_attention(*xs, HyperParams(), causal=causal, generator=gen, backend="triton")
            torch.autograd.grad(out, xs, gout)
        p = HyperParams()
        job = SimpleNamespace(block_size=p.block_size, sample_size=p.sample_size, sample_tile=p.sample_tile,
                              lsh_num_projs=p.lsh_num_projs, min_seq_len=p.min_seq_len, seed=0)
        q, k, v = inputs.make_inputs({"name": "gaussian"}, batch=1, heads=32, seq_len=n, head_dim=64,
                                     dtype=torch.bfloat16, device="cuda", seed=0)
        setup, timed = timing.make_call(methods.get("hyper").build(job), q, k, v, causal, "fwd+bwd")
        for name, fn in (("one generator", call), ("new generator per call", new_gen), ("as a job", timed)):
            note(f"timeline causal={causal} fwd+bwd n={n} hyperbench timer, {name}", synced_ms(fn))


def cpuphases(n):
    """The CPU time of each phase of one driver call (inclusive, per call, averaged over 30 calls
    each after a sync): what the front of a call costs before its first long kernel is queued, and
    each Triton launch's share (JITFunction.run by kernel)."""
    import collections
    import time
    from kernels import hyper_attention as driver
    spent = collections.defaultdict(float)

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t0
        return wrapper
    patches = [mock.patch.object(driver, name, timed(f"driver.{name}", getattr(driver, name)))
               for name in ("draw_projections", "bucket_ranks", "_sort_orders", "lsh_plan", "_primitive")]
    patches += [mock.patch.object(triton_attention, name, timed(f"triton_attention.{name}",
                                                                getattr(triton_attention, name)))
                for name in ("prepared_lists", "zeroed_dkdv", "block_sample_forward", "block_sample_backward",
                             "key_lists", "_list_launch", "row_delta")]
    patches.append(mock.patch.object(torch, "randint", timed("torch.randint", torch.randint)))
    run = triton.runtime.jit.JITFunction.run

    def launch(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return run(self, *a, **k)
        finally:
            took = time.perf_counter() - t0
            spent[f"launch {self.fn.__name__}"] += took
            spent["launch (all Triton)"] += took
    patches.append(mock.patch.object(triton.runtime.jit.JITFunction, "run", launch))
    for causal in (False, True):
        for grad in (False, True):
            call = _driver_call(n, 64, causal, grad)
            with torch.enable_grad() if grad else torch.no_grad():
                for _ in range(3):
                    call()
                for p in patches:
                    p.start()
                spent.clear()
                reps = 30
                for _ in range(reps):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    call()
                    spent["whole call"] += time.perf_counter() - t0
                for p in patches:
                    p.stop()
            label = f"cpuphases causal={causal} {'fwd+bwd' if grad else 'fwd'} n={n}"
            for name, total in sorted(spent.items(), key=lambda kv: -kv[1]):
                note(f"{label} {name}", total / reps * 1e3)
    t0 = time.perf_counter()
    for _ in range(100):
        torch.Generator(device="cuda").manual_seed(0)
    note("cpuphases new cuda Generator + manual_seed", (time.perf_counter() - t0) * 10)


def _specialisation_key(args, kwargs):
    """A launch's cache key at least as fine as Triton 3.6's specialisation: each tensor's dtype and
    16-byte alignment, each int's value class (1, multiple of 16, i32 / i64 / u64), and the
    constexprs and options as given."""
    def one(a):
        if type(a) is int:
            return a == 1, a & 15 == 0, (a >= 2**31 or a < -2**31) + (a >= 2**63)
        if isinstance(a, torch.Tensor):
            return a.dtype, a.data_ptr() & 15 == 0
        return type(a)
    return tuple(map(one, args)), tuple(kwargs.items())


def launchcost(_n):
    """What one Triton launch costs the CPU, by the route it takes: `kernel[grid](...)` (binder,
    cache key, launcher), the compiled kernel's own `[grid]` runner (no binder), and its launcher
    called directly with the stream looked up once. Every launch of one small driver call
    (fwd+bwd, n = 4096, 2 heads) is recorded and replayed 300 times each way."""
    import time
    from triton import knobs
    recorded = []
    run = triton.runtime.jit.JITFunction.run

    def record(self, *a, grid, warmup, **k):
        kernel = run(self, *a, grid=grid, warmup=warmup, **k)
        recorded.append((self, a, dict(k), grid, kernel))
        return kernel
    xs_small = [torch.randn(1, 2, 4096, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                for _ in range(3)]
    gen = torch.Generator(device="cuda")
    with mock.patch.object(triton.runtime.jit.JITFunction, "run", record):
        gen.manual_seed(0)
        out, _ = hyper_attention(*xs_small, HyperParams(), generator=gen, backend="triton")
        torch.autograd.grad(out, xs_small, torch.randn_like(out))
    torch.cuda.synchronize()
    stream = torch.cuda.current_stream().cuda_stream
    device = triton.runtime.driver.active.get_current_device()
    for fn, a, k, grid, kernel in recorded:
        bound = list(fn.device_caches[device][4](*a, **k)[0].values())   # the JIT's binder
        g = tuple(grid) + (1,) * (3 - len(grid))
        ways = {
            "kernel[grid](...)": lambda: fn[grid](*a, **k),
            "compiled[grid](...)": lambda: kernel[g](*bound),
            "launcher direct": lambda: kernel.run(g[0], g[1], g[2], stream, kernel.function, kernel.packed_metadata,
                                                  None, knobs.runtime.launch_enter_hook,
                                                  knobs.runtime.launch_exit_hook, *bound),
            # What a bypass of the JIT would still pay: a key at least as fine as Triton's
            # specialisation, computed in Python, against the binder that computes Triton's.
            "binder alone": lambda: fn.device_caches[device][4](*a, **k),
            "own key + launcher": lambda: (_specialisation_key(a, k),
                                           kernel.run(g[0], g[1], g[2], stream, kernel.function,
                                                      kernel.packed_metadata, None, None, None, *bound)),
        }
        for way, launch in ways.items():
            for _ in range(20):
                launch()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(300):
                launch()
            cpu = (time.perf_counter() - t0) / 300 * 1e3
            torch.cuda.synchronize()
            note(f"launchcost {fn.fn.__name__} ({len(bound)} args) {way}", cpu)


FWD_TILES = {   # head_dim: key-list forward tiles to time, the default first
    64: [(128, 64, 8, 5), (64, 64, 4, 5), (128, 64, 4, 5), (256, 64, 16, 5), (256, 128, 16, 3)],
    128: [(256, 32, 8, 5), (64, 32, 4, 5), (256, 32, 16, 5)],
}
# ... and for the forward that merges into the rows in place (the causal levels)
MERGE_TILES = {64: [(64, 64, 4, 5), (256, 64, 16, 5)], 128: [(64, 32, 4, 5), (256, 32, 16, 5)]}


def fwdtiles(n):
    """The key-list forward with other numbers of warpgroups per program: one (64 rows; three
    programs per SM, each on its own, where the default's two 8-warp programs run two warpgroups
    each in lockstep, a barrier per step) and four (256 rows, 16 warps: a whole block per program,
    half the key and value loads per row).  The plain forward alone (each config checked against
    the default's outputs), then the driver non-causal with the fastest, and causal with each
    MERGE_TILES config for the merging forward."""
    for d, configs in FWD_TILES.items():
        args, kw = problem(1, 32, n, d, torch.bfloat16, 0)
        best = _fastest_tiles(f"fwdtiles d={d} n={n}", lambda: triton_attention.block_sample_forward(*args, **kw),
                              "fwd", d, configs, tol=1e-2)
        note(f"fwdtiles d={d} fastest", best)
        _driver_configs(n, d, (False,), [{}, {"fwd": best}])
        _driver_configs(n, d, (True,), [{}] + [{"fwd_merge": c} for c in MERGE_TILES[d]])


FWD_STEPS = [(128, 64, 8, 5), (128, 32, 8, 5), (128, 32, 8, 6), (128, 32, 8, 7), (128, 64, 8, 4), (128, 64, 8, 6)]
MERGE_STEPS = [(128, 32, 4, 5), (128, 32, 4, 6), (128, 32, 8, 6)]


def fwdsteps(n):
    """The key-list forward at d = 64 with steps of 32 keys (twice the steps, each softmax burst
    between two barriers half as long; v20's ncu: the warps of a program all reach the softmax at
    once) and other stage counts: the plain forward alone, each checked against the default's
    outputs, then the causal driver with such tiles for the merging forward."""
    args, kw = problem(1, 32, n, 64, torch.bfloat16, 0)
    best = _fastest_tiles(f"fwdsteps d=64 n={n}", lambda: triton_attention.block_sample_forward(*args, **kw),
                          "fwd", 64, FWD_STEPS, tol=1e-2)
    note("fwdsteps d=64 fastest", best)
    _driver_configs(n, 64, (True,), [{}] + [{"fwd_merge": c} for c in MERGE_STEPS] + [{}])


BWD_TILES = {64: [(256, 64, 8, 5), (128, 64, 8, 5), (128, 64, 4, 5), (256, 64, 8, 6), (128, 64, 4, 6)],
             128: [(128, 64, 8, 5), (128, 64, 4, 5), (64, 64, 4, 5), (128, 32, 4, 5)]}


def bwdtiles(n):
    """The fused backward's tiles again now that dK/dV add up in 16 bits (DKDV_16BIT_ADDS): the
    primitive's forward+backward through autograd (zero-fill included), then the driver with the
    fastest; each config checked against the default's gradients."""
    for d, configs in BWD_TILES.items():
        best = _fastest_tiles(f"bwdtiles d={d} n={n}", _primitive_fwd_bwd(n, d), "bwd", d, configs, tol=2e-2)
        note(f"bwdtiles d={d} fastest", best)
        _driver_configs(n, d, (False, True), [{}, {"bwd": best}])


CAUSAL_BWD_TILES = {   # head_dim: the fused backward's tiles to time in the recursion, CONFIGS' entry first
    64: [(256, 64, 8, 5), (128, 64, 4, 5), (128, 64, 8, 5), (128, 64, 4, 4), (256, 64, 8, 4), (128, 64, 4, 6)],
    128: [(128, 64, 8, 5), (128, 64, 4, 5), (128, 32, 4, 5), (64, 64, 4, 5), (128, 64, 8, 4)],
}


def causaltiles(n):
    """The fused backward's tiles in the causal recursion now that it adds up in bf16 (v28): the
    tiles were last chosen with fp32 sums there (v8, v11), when each dK/dV atomic moved twice the
    bytes and 128-row tiles, which add every key of a block twice, paid for it.  Each config's
    gradients against the default's (bf16 atomics land in any order: ~2e-3 apart run to run), then
    the causal and the non-causal fwd+bwd (which share the tiles) in interleaved rounds.
    --tiles=64:256-64-16-5,256-64-16-4;128:128-64-16-5 times those instead (after CONFIGS' entry)."""
    tiles = CAUSAL_BWD_TILES
    if arg("tiles", ""):
        tiles = {int(d): [triton_attention.CONFIGS["bwd"][int(d)]]
                 + [tuple(int(x) for x in cfg.split("-")) for cfg in cfgs.split(",")]
                 for d, cfgs in (part.split(":") for part in arg("tiles", "").split(";"))}
    for d, configs in tiles.items():
        calls = {causal: _driver_call(n, d, causal, True) for causal in (True, False)}
        want = calls[True]()
        ways = {}
        for cfg in configs:
            try:
                with mock.patch.dict(triton_attention.CONFIGS["bwd"], {d: cfg}):
                    got = calls[True]()
                    torch.cuda.synchronize()
            except Exception as e:  # noqa: BLE001  (e.g. too much shared memory)
                note(f"causaltiles d={d} {cfg} FAILED", repr(e)[:300])
                continue
            diff = max(rel(a, b) for a, b in zip(got, want))
            ok = diff < 2e-2 and all(bool(torch.isfinite(g).all()) for g in got)
            note(f"causaltiles d={d} {cfg} gradients against the default's", f"{diff:.2e}{'' if ok else ' REJECTED'}")
            if ok:
                ways[cfg] = lambda cfg=cfg: mock.patch.dict(triton_attention.CONFIGS["bwd"], {d: cfg})
        del want
        for causal, call in calls.items():
            _interleaved(f"causaltiles d={d} n={n} causal={causal} fwd+bwd",
                         {str(cfg): (call, ctx) for cfg, ctx in ways.items()}, timers=("do_bench",), rounds=5)
        del calls
        torch.cuda.empty_cache()


def listlen(n):
    """The primitive's forward and fused backward against their key lists' length (block 256, then
    --ms sampled keys per 256-row set: 0,128,256,512,768), in interleaved rounds, with a least-squares
    line through the medians: its slope is the cost of 256 more keys a tile, its intercept the cost
    a program pays whatever its list (v8 put 0.47 of the forward's 2.39 ms there from two points)."""
    ms_ = [int(m) for m in arg("ms", "0,128,256,512,768").split(",")]
    for d in (64, 128):
        calls = {}
        for m in ms_:
            args, kw = problem(1, 32, n, d, torch.bfloat16, 0, m=m or 256)
            if m == 0:       # no samples: the block keys alone
                args = (*args[:5], None)
            calls[m] = (lambda args=args, kw=kw: triton_attention.block_sample_forward(*args, **kw),
                        backward_call(args, kw))
        found = {(m, part): [] for m in ms_ for part in (0, 1)}
        for _ in range(3):
            for m in ms_:
                for part in (0, 1):
                    found[m, part].append(ms(calls[m][part]))
        for part, name in ((0, "forward"), (1, "backward")):
            xs = [256 + m for m in ms_]
            ys = [statistics.median(found[m, part]) for m in ms_]
            for x, y, m in zip(xs, ys, ms_):
                note(f"listlen {name} d={d} n={n} list {x} keys (rounds {[round(v, 3) for v in found[m, part]]})", y)
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
            note(f"listlen {name} d={d} ms per 256 keys a tile", slope * 256)
            note(f"listlen {name} d={d} intercept (0 keys)", my - slope * mx)
            note(f"listlen {name} d={d} largest residual", max(abs(y - (my + slope * (x - mx))) for x, y in zip(xs, ys)))
        del calls
        torch.cuda.empty_cache()


def leafshapes(n):
    """The causal recursion's leaves (n / min_seq_len exact causal 4096-row blocks a head, one cuDNN
    call) on other free views of the same [1, 32, n, 64] memory: the leaves as heads (the driver's
    [1, 32·L, 4096, 64]), as batch elements ([32·L, 1, 4096, 64]) and split between the two
    ([32, L, 4096, 64]).  cuDNN maps batch and heads to its grid in its own way, so the same work
    could run at another rate.  Outputs checked equal; forward and backward (the leaves' backward
    on the final rows' out and lse, as the recursion runs it) timed in interleaved rounds."""
    from kernels import sdpa_leaves
    H, d, leaf = 32, 64, 4096
    L = n // leaf
    q, k, v, dout = (torch.randn(1, H, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    views = {"heads [1, 32L, 4096, 64]": (1, H * L), "batch [32L, 1, 4096, 64]": (H * L, 1),
             "both [32, L, 4096, 64]": (H, L)}
    scale = d ** -0.5
    calls, ref = {}, None
    for name, (b, h) in views.items():
        xs = [x.view(b, h, leaf, d) for x in (q, k, v, dout)]
        out, lse, state = sdpa_leaves.forward_with_state(*xs[:3], causal=True, scale=scale)
        if ref is None:
            ref = out.reshape(-1)
        note(f"leafshapes {name} out equal to the first view's", str(torch.equal(out.reshape(-1), ref)))
        fwd = lambda xs=xs: sdpa_leaves.forward_with_state(*xs[:3], causal=True, scale=scale)  # noqa: E731
        bwd = lambda xs=xs, out=out, lse=lse, state=state: sdpa_leaves.backward_from_state(  # noqa: E731
            xs[3], *xs[:3], out, lse, causal=True, scale=scale, state=state)
        calls[name] = (fwd, bwd)
    for part, label in ((0, "forward"), (1, "backward")):
        _interleaved(f"leafshapes n={n} {label}", {name: (c[part], contextlib.nullcontext) for name, c in calls.items()},
                     timers=("do_bench",), rounds=5)


def tiletable(n):
    """Tiles found by arithmetic (UNIT_TILES) against by the tile table: the forward's outputs
    compared exactly, then the primitive's forward and backward (d = 64, 128) and the driver's four
    goal rows (d = 64), in interleaved rounds (do_bench)."""
    ways = {name: lambda always=always: mock.patch.object(triton_attention, "TILE_TABLE_ALWAYS", always)
            for name, always in (("table", True), ("arithmetic", False))}
    for d in (64, 128):
        args, kw = problem(1, 32, n, d, torch.bfloat16, 0)
        fwd = lambda args=args, kw=kw: triton_attention.block_sample_forward(*args, **kw)  # noqa: E731
        outs = []
        for name, ctx in ways.items():
            with ctx():
                outs.append(fwd())
        note(f"tiletable d={d} outputs identical", str(torch.equal(outs[0][0], outs[1][0])
                                                        and torch.equal(outs[0][1], outs[1][1])))
        del outs
        bwd = backward_call(args, kw)
        for label, call in (("forward", fwd), ("backward", bwd)):
            _interleaved(f"tiletable primitive {label} d={d} n={n}", {k: (call, c) for k, c in ways.items()},
                         timers=("do_bench",), rounds=5)
        del bwd
    for causal in (False, True):
        for grad in (False, True):
            call = _driver_call(n, 64, causal, grad)
            with torch.enable_grad() if grad else torch.no_grad():
                _interleaved(f"tiletable driver causal={causal} {'fwd+bwd' if grad else 'fwd'} n={n}",
                             {k: (call, c) for k, c in ways.items()}, timers=("do_bench",), rounds=5)
            del call
            torch.cuda.empty_cache()


MERGE_WARPS = [(128, 64, 8, 5), (128, 64, 8, 6), (128, 64, 8, 4)]


def mergewarps(n):
    """The merging forward on 8 warps (MERGE_WARPS) against CONFIGS' 4-warp entry, in the causal
    driver at d = 64: v15 and v19 found 8 warps no faster when it took a register cap or an
    epilogue merge to fit two programs per SM; since v30 the start-state merge fits uncapped."""
    ways = {"default": contextlib.nullcontext}
    for cfg in MERGE_WARPS:
        ways[str(cfg)] = lambda cfg=cfg: mock.patch.dict(triton_attention.CONFIGS["fwd_merge"], {64: cfg})
    for grad in (False, True):
        call = _driver_call(n, 64, True, grad)
        with torch.enable_grad() if grad else torch.no_grad():
            want = call()
            for name, ctx in list(ways.items())[1:]:
                with ctx():
                    got = call()
                got, ref = (got, want) if grad else ((got,), (want,))
                diff = max(rel(a, b) for a, b in zip(got, ref))
                note(f"mergewarps {name} {'gradients' if grad else 'out'} against the default's", f"{diff:.2e}")
            del want
            _interleaved(f"mergewarps driver causal=True {'fwd+bwd' if grad else 'fwd'} n={n}",
                         {k: (call, c) for k, c in ways.items()}, timers=("do_bench",), rounds=5)
        del call
        torch.cuda.empty_cache()


def profile(n):
    """Where each goal call's GPU time goes, kernel by kernel (gpu_kernel_check.profile)."""
    from gpu_kernel_check import profile as kernel_table
    for causal in (False, True):
        for grad in (False, True):
            call = _driver_call(n, 64, causal, grad)
            with torch.enable_grad() if grad else torch.no_grad():
                kernel_table(f"driver d=64 n={n} causal={causal} {'fwd+bwd' if grad else 'fwd'}", call, rows=24)
            del call
            torch.cuda.empty_cache()


def _clock_window(read, run):
    """run() with the GPU's clock observed as every GPU row's since v31 (gpu_clock.observe):
    (run's result, the fields as text)."""
    from hyperbench import gpu_clock
    got, w = gpu_clock.observe(read, run)
    return got, ", ".join(f"{k} {v:.4g}" if v is not None else f"{k} —" for k, v in w.items())


def clocks(n):
    """Rounds of the goal's fwd+bwd calls with the GPU's clock sampled beside them.  (At 9d7f6ca it
    polled nvidia-smi every 25 ms instead, with the temperature; v31's log is from that version.)"""
    import time
    from triton.testing import do_bench
    from hyperbench import gpu_clock
    read = gpu_clock.reader("cuda")
    if read is None:
        note("clocks", "NVML cannot be reached here")
        return
    note("clocks idle", _clock_window(read, lambda: time.sleep(3))[1])
    for causal in (True, False):
        call = _driver_call(n, 64, causal, True)
        bench = lambda: do_bench(call, warmup=25, rep=500, return_mode="median")  # noqa: E731
        with torch.enable_grad():
            for r in range(8):
                got, state = _clock_window(read, bench)
                note(f"clocks causal={causal} fwd+bwd round {r}: {got:.3f} ms", state)
            note(f"clocks causal={causal} idle 3 s after", _clock_window(read, lambda: time.sleep(3))[1])
            got, state = _clock_window(read, bench)
            note(f"clocks causal={causal} fwd+bwd after the idle: {got:.3f} ms", state)
        del call
        torch.cuda.empty_cache()


def graphs(n):
    """The goal calls eagerly and as CUDA-graph replays (hyperbench.timing.captured, what
    timing.cuda_graph times), interleaved; outputs of a replay checked finite and of the eager
    call's scale (their samples differ, so not equal). Under the capture the driver draws from the
    default generator, as the `hyper` method does.  (At 71a423b this part captured by itself, three
    side-stream calls first and the driver's own generator registered with the graph.)"""
    from hyperbench.timing import CaptureError, captured
    for causal in (False, True):
        for grad in (False, True):
            label = f"graphs causal={causal} {'fwd+bwd' if grad else 'fwd'} n={n}"
            params = HyperParams()
            xs = [torch.randn(1, 32, n, 64, device="cuda", dtype=torch.bfloat16).requires_grad_(grad)
                  for _ in range(3)]
            gout = torch.randn_like(xs[0])
            gen = torch.Generator(device="cuda")
            gen.manual_seed(0)
            held = {}

            def call():
                own = None if torch.cuda.is_current_stream_capturing() else gen
                with torch.set_grad_enabled(grad):
                    out, _ = hyper_attention(*xs, params, causal=causal, generator=own, backend="triton")
                    held["out"] = torch.autograd.grad(out, xs, gout) if grad else (out,)
                return held["out"]

            try:
                replay = captured(call)
            except CaptureError as err:
                note(f"{label} capture failed", str(err))
                continue
            graphed = held["out"]   # the captured call's outputs, which every replay rewrites
            replay()
            torch.cuda.synchronize()
            for got, want in zip(graphed, call()):
                ok = bool(torch.isfinite(got).all()) and abs(got.float().norm() / want.float().norm() - 1) < 0.05
                note(f"{label} replay finite, norm within 5% of eager", ok)
            _interleaved(label, {"eager": (call, contextlib.nullcontext),
                                 "graph": (replay, contextlib.nullcontext)}, rounds=5)
            del replay, graphed, held, xs
            torch.cuda.empty_cache()


SMALL_D_TILES = {   # head_dim: kind: tile configs to time, CONFIGS' entry first (the others are checked against it)
    32: {"fwd": [(128, 64, 4, 3), (128, 64, 4, 5), (128, 64, 8, 5), (128, 64, 8, 6), (256, 64, 8, 5),
                 (128, 128, 8, 5), (128, 128, 8, 3)],
         "bwd": [(128, 64, 4, 3), (128, 64, 4, 5), (128, 64, 8, 5), (256, 64, 8, 5), (256, 64, 8, 3),
                 (256, 128, 8, 3)],
         "fwd_merge": [(128, 64, 4, 5), (128, 64, 8, 5), (128, 128, 8, 5)]},
    16: {"fwd": [(128, 64, 4, 6), (128, 64, 4, 5), (128, 64, 4, 3), (128, 64, 8, 5)],
         "bwd": [(128, 64, 4, 5), (128, 64, 4, 3), (128, 64, 8, 5), (256, 64, 8, 5)],
         "fwd_merge": [(128, 64, 4, 3), (128, 64, 4, 5), (128, 64, 4, 6), (128, 64, 8, 5)]},
}


def _small_d(n, d):
    """head_dim d (32 or 16), whose tiles were set in v9 and not timed since: the plain forward and
    the fused backward (each config checked against the default's outputs), then the driver with
    the fastest, non-causal, and causal with each merging-forward config on top."""
    tiles = SMALL_D_TILES[d]
    args, kw = problem(1, 32, n, d, torch.bfloat16, 0)
    best = {"fwd": _fastest_tiles(f"d{d} fwd n={n}", lambda: triton_attention.block_sample_forward(*args, **kw),
                                  "fwd", d, tiles["fwd"], tol=1e-2),
            "bwd": _fastest_tiles(f"d{d} bwd n={n}", _primitive_fwd_bwd(n, d), "bwd", d, tiles["bwd"], tol=2e-2)}
    note(f"d{d} fastest", best)
    _driver_configs(n, d, (False,), [{}, best])
    _driver_configs(n, d, (True,), [{}, best] + [{**best, "fwd_merge": c} for c in tiles["fwd_merge"]])


def d32(n):
    _small_d(n, 32)


def d16(n):
    _small_d(n, 16)


ROWS64_TILES = {   # head_dim: (forward, fused backward) 64-row tiles to time, CONFIGS' first
    32: ([(64, 32, 4, 5), (64, 64, 4, 5), (64, 64, 4, 3), (64, 64, 4, 6)], [(64, 64, 4, 5), (64, 64, 4, 3)]),
    64: ([(64, 32, 4, 5), (64, 64, 4, 5), (64, 64, 4, 3), (64, 64, 4, 6)],
         [(64, 64, 4, 5), (64, 64, 4, 3), (64, 32, 4, 5)]),
    128: ([(64, 32, 4, 5), (64, 64, 4, 5), (64, 64, 4, 3), (64, 32, 4, 3)],
          [(64, 32, 4, 3), (64, 32, 4, 5), (64, 64, 4, 3), (64, 64, 4, 5)]),
}


def _forcing(kinds, d):
    """A context in which _cheapest_tiles takes these kinds (ROW_COST 0 for them, 1 for the rest)."""
    return mock.patch.object(triton_attention, "ROW_COST", {kind: {d: 0.0} for kind in kinds})


def _narrow_tiles(n, d, block, kinds, configs):
    """Key lists on the narrow tile kinds `kinds` (forward, fused backward) for blocks (and sample
    sets) of `block` rows: the general kernel and split backward they ran before (key lists off),
    then, with those kinds forced, each config of `configs` (forward list, backward list), checked
    against the first's outputs."""
    args, kw = problem(1, 32, n, d, torch.bfloat16, 0, block=block, m=256, tile=block)
    fwd = lambda: triton_attention.block_sample_forward(*args, **kw)  # noqa: E731
    fwd_bwd = _primitive_fwd_bwd(n, d, block=block, m=256, tile=block)
    label = f"narrow d={d} block={block} n={n}"
    with mock.patch.object(triton_attention, "USE_KEY_LISTS", False):
        note(f"{label} general kernel, split backward: fwd", ms(fwd))
        note(f"{label} general kernel, split backward: fwd+bwd", ms(fwd_bwd))
    with _forcing(kinds, d):
        best = {kinds[0]: _fastest_tiles(f"{label} fwd", fwd, kinds[0], d, configs[0], tol=1e-2),
                kinds[1]: _fastest_tiles(f"{label} fwd+bwd", fwd_bwd, kinds[1], d, configs[1], tol=2e-2)}
    note(f"{label} fastest", best)


def narrow(n):
    """Blocks that the forward's 128-row tiles do not line up with (192, and 64 at d = 64; sample
    sets as large), which run key lists on 64-row tiles ("fwd_rows64", "bwd_rows64")."""
    for d, configs in ROWS64_TILES.items():
        for block in (192, 64) if d == 64 else (192,):
            _narrow_tiles(n, d, block, ("fwd_rows64", "bwd_rows64"), configs)


ROWS32_TILES = {   # head_dim: (forward, fused backward) 32-row tiles to time, CONFIGS' first
    64: ([(32, 64, 2, 5), (32, 64, 4, 5), (32, 32, 4, 5)], [(32, 32, 4, 5), (32, 64, 4, 5), (32, 64, 4, 3)]),
    128: ([(32, 32, 4, 5), (32, 64, 4, 3)], [(32, 32, 4, 5), (32, 32, 4, 3)]),
}


def rows32(n):
    """Blocks of 32 rows (sample sets as large), which run key lists on 32-row tiles
    ("fwd_rows32", "bwd_rows32"; mma.sync products)."""
    for d, configs in ROWS32_TILES.items():
        _narrow_tiles(n, d, 32, ("fwd_rows32", "bwd_rows32"), configs)


ROWS16_TILES = {   # head_dim: (forward, fused backward) 16-row tiles to time, CONFIGS' first
    64: ([(16, 32, 1, 5), (16, 64, 1, 5), (16, 64, 1, 3), (16, 64, 2, 5), (16, 64, 4, 5)],
         [(16, 32, 2, 5), (16, 32, 1, 5), (16, 64, 1, 3), (16, 64, 2, 3)]),
    128: ([(16, 32, 1, 5), (16, 64, 1, 3), (16, 32, 2, 5)], [(16, 32, 2, 3), (16, 32, 1, 5), (16, 32, 1, 3)]),
}


def rows16(n):
    """Blocks of 48 rows (sample sets as large), which only 16-row tiles line up with
    ("fwd_rows16", "bwd_rows16"; mma.sync products on 1-4 warps), as rows32."""
    for d, configs in ROWS16_TILES.items():
        _narrow_tiles(n, d, 48, ("fwd_rows16", "bwd_rows16"), configs)


FWD_KINDS = ("fwd", *triton_attention.NARROW_FORWARD_KINDS)
BWD_KINDS = triton_attention.BACKWARD_KINDS


def _each_kind(label, fn, kinds, d, tol):
    """fn run with each of `kinds` forced in turn (_forcing), its outputs checked against those of
    the cost model's own choice; {kind: ms}."""
    want, times = fn(), {}
    for kind in kinds:
        with _forcing((kind,), d):
            got = fn()
            diff = max(rel(a, b) for a, b in zip(got, want))
            ok = diff <= tol and all(bool(torch.isfinite(g).all()) for g in got)
            times[kind] = ms(fn)
            note(f"{label} {kind} (rel.diff {diff:.1e}{'' if ok else ' FAILED'})", times[kind])
    return times


def padded(n):
    """Blocks whose rows, or whose parts inside 256-row sample sets (the config's), the widest
    tiles do not divide: the primitive's forward and fused backward with each kind's tiles forced
    (narrow ones that divide the units, wide ones part empty), head_dim 64 and 128, against what
    ROW_COST picks.  Also one sample set per head (the published variant) at two blocks.
    --ds=16,32: other head dims (the blocks only)."""
    ds = [int(d) for d in arg("ds", "64,128").split(",")]
    shapes = [(d, block, 256) for d in ds for block in (32, 48, 64, 80, 96, 112, 144, 160, 192, 208, 240)]
    shapes += [(64, 48, 0), (64, 96, 0)] if 64 in ds else []
    for d, block, tile in shapes:
        args, kw = problem(1, 32, n, d, torch.bfloat16, 0, block=block, m=256, tile=tile)
        g = triton_attention._Geometry(args[0], args[5], block, tile, kw["sample_weight"], kw["scale"])
        picks = (triton_attention._forward_tiles("fwd", g, False), triton_attention._fused_backward_tiles(g, False))
        label = f"padded d={d} block={block} tile={tile} n={n}"
        note(f"{label} ROW_COST picks", picks)
        fwd = lambda: triton_attention.block_sample_forward(*args, **kw)  # noqa: E731
        fwd_ms = _each_kind(f"{label} fwd", fwd, FWD_KINDS, d, 1e-2)
        bwd_ms = _each_kind(f"{label} bwd", backward_call(args, kw), BWD_KINDS, d, 2e-2)
        note(f"{label} fastest", (min(fwd_ms, key=fwd_ms.get), min(bwd_ms, key=bwd_ms.get)))


# (BM, BN, warps, stages), warp_specialize: with it, 4 warps become one producer and two consumer
# warpgroups (12 warps); on 8 Triton 3.6 leaves the loop as it is (probe_tma_ws.py's report).
TMA_TILES = [((128, 64, 8, 3), False), ((128, 64, 8, 5), False), ((128, 64, 4, 3), False),
             ((128, 64, 4, 2), True), ((128, 64, 4, 3), True), ((128, 64, 4, 4), True),
             ((128, 128, 4, 2), True), ((256, 64, 4, 2), True)]


def tmaws(n):
    """Whether warp specialisation would pay for the copies it needs (probe_tma_ws.py): the forward
    (B=1, H=32, d=64, bf16, block 256, samples 256 per 256 rows) as it is; the copies (the sorted
    queries and every unit's key list, keys and values, by torch.gather); the same forward on the
    copies through TMA descriptors, each tile config checked against the first."""
    import probe_tma_ws
    probe_tma_ws.use_torch_allocator()
    args, kw = problem(1, 32, n, 64, torch.bfloat16, 0)
    q, k, v, qo, _, _ = args
    ref_out, ref_lse = triton_attention.block_sample_forward(*args, **kw)
    note(f"tmaws n={n} key-list forward as it is", ms(lambda: triton_attention.block_sample_forward(*args, **kw)))
    rows, bias = triton_attention.prepared_lists(*args, **kw)
    qs, kc, vc = probe_tma_ws.list_copies(q, k, v, qo, rows)
    note("tmaws copies (sorted queries, every list's keys and values; torch.gather)",
         ms(lambda: probe_tma_ws.list_copies(q, k, v, qo, rows)))
    note("tmaws copies: read and written", f"{2 * 2 * (qs.numel() + kc.numel() + vc.numel()) / 1e9:.2f} GB")
    NL = rows.shape[2]
    for tiles, ws in TMA_TILES:
        label = f"tmaws window forward tiles {tiles} warp_specialize={ws}"
        fn = lambda: probe_tma_ws.window_forward(qs, q, qo, kc, vc, bias, unit=n // NL,  # noqa: E731
                                                 qk_scale=kw["scale"] * triton_attention.LOG2E, tiles=tiles, ws=ws)
        try:
            out, lse = fn()
            note(f"{label}: out rel err, lse max abs err",
                 (rel(out, ref_out), (lse - ref_lse).abs().max().item()))
            note(label, ms(fn))
        except Exception as e:  # noqa: BLE001  (a config that does not compile is a finding)
            note(label, f"failed: {repr(e)[:300]}")


def persistent(n):
    """The fused backward with persistent programs (probe_persistent_bwd.py): the primitive's
    backward as it is, then one program per SM over every (query tile, head), its loop nest
    flattened by Triton or not, on the same key lists, each checked against the first."""
    import probe_persistent_bwd
    args, kw = problem(1, 32, n, 64, torch.bfloat16, 0)
    q, k, v, qo, _, _ = args
    out, lse = triton_attention.block_sample_forward(*args, **kw)
    do = torch.randn_like(out)
    delta = row_delta(do, out, None)
    want = triton_attention.block_sample_backward(*args, do, lse, delta, **kw)
    note(f"persistent n={n} fused backward as it is", ms(lambda: triton_attention.block_sample_backward(
        *args, do, lse, delta, **kw)))
    lists = triton_attention.prepared_lists(*args, **kw)
    bm = triton_attention.CONFIGS["bwd"][64][0]
    layout = triton_attention._layout(n, kw["block_size"], kw["sample_tile"], bm)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for flatten, stages in ((False, 5), (True, 5), (True, 3), (True, 2)):
        def run():
            return probe_persistent_bwd.persistent_backward(q, k, v, qo, lists, layout, lse, do, delta,
                                                            scale=kw["scale"], programs=sms, flatten=flatten,
                                                            tiles=(bm, 64, 8, stages))
        label = f"persistent n={n} one program per SM, flatten={flatten}, {stages} stages"
        try:
            got = run()
            note(f"{label}: rel err dq, dk, dv", tuple(round(rel(a, b), 5) for a, b in zip(got, want)))
            note(label, ms(run))
        except Exception as e:  # noqa: BLE001  (a variant that does not compile is a finding)
            note(label, f"failed: {repr(e)[:300]}")


def sharedset(n, rounds=3):
    """Where the published variant's forward+backward spends the time its per-block variant does
    not, and the sample sets' share added through fp32 slots (SAMPLE_SLOTS) against fp32 rows."""
    for tile, causal, d in ((0, False, 64), (256, False, 64), (0, True, 64), (256, True, 64), (0, False, 128)):
        call = _driver_call(n, d, causal, True, HyperParams(sample_tile=tile))
        if tile == 0 and not causal:
            with mock.patch.object(triton_attention, "SAMPLE_SLOTS", False):
                rows = call()
            got = call()
            note(f"sharedset driver d={d} slots against fp32 rows: rel diff dq, dk, dv",
                 tuple(round(rel(a.float(), b.float()), 5) for a, b in zip(got, rows)))
            _interleaved(f"sharedset driver d={d} sample_tile=0 fwd+bwd,",
                         {f"SAMPLE_SLOTS={slots}": (call, lambda slots=slots: mock.patch.object(
                             triton_attention, "SAMPLE_SLOTS", slots)) for slots in (True, False)},
                         timers=("do_bench",), rounds=rounds)
            if d == 64:
                call()
                torch.cuda.synchronize()
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                    call()
                    torch.cuda.synchronize()
                print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=14,
                                                max_name_column_width=60), flush=True)
        else:
            note(f"sharedset driver sample_tile={tile} causal={causal} fwd+bwd", ms(call))
    args, kw = problem(1, 32, n, 64, torch.bfloat16, 0, tile=0)
    bwd = backward_call(args, kw)
    for slots in (True, False):
        with mock.patch.object(triton_attention, "SAMPLE_SLOTS", slots):
            note(f"sharedset primitive bwd tile=0 SAMPLE_SLOTS={slots}", ms(bwd))


def sharedtimer(n, rounds=3):
    """Whether the published variant's forward+backward loses more to hyperbench's timer (each call
    waited for) than the per-block one does, and where its GPU waits."""
    calls = {tile: _driver_call(n, 64, False, True, HyperParams(sample_tile=tile)) for tile in (0, 256)}
    _interleaved("sharedtimer", {f"sample_tile={tile} fwd+bwd": (call, contextlib.nullcontext)
                                 for tile, call in calls.items()}, rounds=rounds)
    for tile, call in calls.items():
        _gpu_gaps(call, f"sample_tile={tile} fwd+bwd n={n}")


def _launch_marks(call, rounds):
    """Per round of `call` (L2 flushed, then the call waited for, as hyperbench's timer does):
    [(kernel, CPU ms at its launch, GPU ms at its start, GPU ms at its end)] measured from the
    call's start event, and the call's GPU span.  Events recorded around every Triton launch; the
    torch kernels between (draws, allocations' fills, casts) count in the gaps."""
    import time
    sys.path.insert(0, os.path.join(REPO, "src"))
    from hyperbench.timing import L2_FLUSH_BYTES
    run = triton.runtime.jit.JITFunction.run
    marks = []

    def launch(self, *a, **k):
        before = torch.cuda.Event(enable_timing=True)
        before.record()
        t = time.perf_counter()
        out = run(self, *a, **k)
        after = torch.cuda.Event(enable_timing=True)
        after.record()
        marks.append((self.fn.__name__, t, before, after))
        return out
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    rounds_found = []
    with mock.patch.object(triton.runtime.jit.JITFunction, "run", launch):
        for r in range(rounds + 2):
            marks.clear()
            torch.cuda.synchronize()
            flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            t0 = time.perf_counter()
            call()
            end.record()
            end.synchronize()
            if r >= 2:   # two warm rounds under the hook first
                rounds_found.append(([(name, (t - t0) * 1e3, start.elapsed_time(b), start.elapsed_time(a))
                                      for name, t, b, a in marks], start.elapsed_time(end)))
    return rounds_found


def waits(n, rounds=7, cases=((False, False), (False, True), (True, False), (True, True)), params=None):
    """Where the GPU waits for the CPU inside one call: before each Triton launch, the time since
    the previous launch's end (torch kernels between included), medians over rounds; cases:
    (causal, grad) pairs; params: HyperParams (default: the config's)."""
    for causal, grad in cases:
        call = _driver_call(n, 64, causal, grad, params)
        label = f"waits causal={causal} {'fwd+bwd' if grad else 'fwd'} n={n}{'' if params is None else f' {params}'}"
        with torch.enable_grad() if grad else torch.no_grad():
            for _ in range(3):
                call()
            note(f"{label} hyperbench timer, no hooks", synced_ms(call))
            found = _launch_marks(call, rounds)
        names = [m[0] for m in found[0][0]]
        if any([m[0] for m in f] != names for f, _ in found):
            note(f"{label}: launches differ between rounds", [[m[0] for m in f] for f, _ in found])
            continue
        med = statistics.median
        idle_total, span = [], []
        for f, total in found:
            ends = [0.0] + [m[3] for m in f]
            idle_total.append(sum(max(0.0, m[2] - ends[i]) for i, m in enumerate(f)) + total - ends[-1])
            span.append(total)
        note(f"{label} span under the hooks", med(span))
        note(f"{label} gaps before launches + tail, summed", med(idle_total))
        print(f"    {'kernel':28s} {'CPU at launch':>13s} {'GPU start':>10s} {'GPU end':>10s} {'gap before':>10s}")
        for i, name in enumerate(names):
            cpu = med([f[i][1] for f, _ in found])
            g0 = med([f[i][2] for f, _ in found])
            g1 = med([f[i][3] for f, _ in found])
            gap = med([f[i][2] - (f[i - 1][3] if i else 0.0) for f, _ in found])
            print(f"    {name[:28]:28s} {cpu:13.3f} {g0:10.3f} {g1:10.3f} {gap:10.3f}", flush=True)
        print(f"    {'(end of call)':28s} {'':13s} {med(span):10.3f} {'':10s} "
              f"{med([t - f[-1][3] for f, t in found]):10.3f}", flush=True)


def waitsshared(n):
    """waits for the published variant (one sample set per head), non-causal, beside the default:
    where its larger gap between do_bench and hyperbench's timer (v23) comes from."""
    for tile in (0, 256):
        waits(n, rounds=7, cases=((False, False), (False, True)), params=HyperParams(sample_tile=tile))


def deltatiles(n):
    """The Δ pass and the LSH hashing at other tiles (do_bench, L2 flushed), on the goal's shape."""
    from kernels import triton_delta
    x = [torch.randn(1, 32, n, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2)]
    want = triton_delta.delta_reference(*x, None)
    for tile, warps in ((8192, 4), (8192, 8), (16384, 4), (16384, 8), (32768, 8), (4096, 4), (4096, 2)):
        with mock.patch.object(triton_delta, "TILE_ELEMENTS", tile), mock.patch.object(triton_delta, "WARPS", warps):
            err = rel(triton_delta.delta(*x, None), want)
            note(f"deltatiles delta n={n} d=64 tile={tile} warps={warps} (rel err {err:.1e})",
                 ms(lambda: triton_delta.delta(*x, None)))
    # Are dO and O read at a power-of-two distance (2^28 bytes here) what halves the bandwidth?
    for gap in (0, 4096, 1 << 20):
        pad = torch.empty(gap + x[1].numel() * 2, dtype=torch.uint8, device="cuda")
        o = pad[gap:].view(torch.bfloat16).view_as(x[1])
        o.copy_(x[1])
        note(f"deltatiles delta n={n} d=64 O at {o.data_ptr() - x[0].data_ptr()} bytes from dO",
             ms(lambda: triton_delta.delta(x[0], o, None)))
    note(f"deltatiles calibration: dO + O into a new tensor (reads both, writes one) n={n}",
         ms(lambda: torch.add(x[0], x[1])))
    note(f"deltatiles calibration: torch.sum(dO * O, -1) in bf16 n={n}", ms(lambda: (x[0] * x[1]).sum(-1)))
    proj = lsh.draw_projections(64, 7, generator=None, device="cuda", rounded=False)
    keys = triton_lsh.bucket_ranks(x, proj)
    for rows in (128, 64, 256):
        with mock.patch.object(triton_lsh, "BLOCK_ROWS", rows):
            same = bool(torch.equal(triton_lsh.bucket_ranks(x, proj), keys))
            note(f"deltatiles hashing q and k n={n} d=64 rows={rows} (same keys: {same})",
                 ms(lambda: triton_lsh.bucket_ranks(x, proj)))


COUNT_WAYS = {"sort's own passes": False, "counts in the hashing": True}


@contextlib.contextmanager
def _count_way(way):
    from kernels import hyper_attention as driver
    with mock.patch.object(driver, "COUNT_IN_HASHING", COUNT_WAYS[way]):
        yield


def _count_ways(call):
    """_interleaved's ways: `call` under each of COUNT_WAYS."""
    return {way: (call, lambda way=way: _count_way(way)) for way in COUNT_WAYS}


def countsort(n, rounds=3):
    """The counting sort's passes 1 and 2 in the hashing launch, or in launches of their own."""
    from kernels import hyper_attention as driver
    x = [torch.randn(1, 32, n, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2)]
    proj = lsh.draw_projections(64, 7, generator=None, device="cuda", rounded=False)

    def plan():
        ranks, prefix = driver.counted_ranks("triton", *x, proj, 7)
        return driver._sort_orders("triton", ranks, 7, prefix)
    with _count_way("sort's own passes"):
        want = plan()
    for way in COUNT_WAYS:
        with _count_way(way):
            got = plan()
            note(f"countsort {way}: orders equal", all(torch.equal(a, b) for a, b in zip(got, want)))
            note(f"countsort {way}: hashing and sort n={n}", ms(plan))
    note(f"countsort hashing alone n={n}", ms(lambda: triton_lsh.bucket_ranks(x, proj)))
    note(f"countsort hashing with_prefix (counts, then pass 2) n={n}",
         ms(lambda: triton_lsh.bucket_ranks(x, proj, with_prefix=True)))
    for rows in (256, 1024):
        with mock.patch.object(triton_lsh, "COUNT_ROWS", rows):
            note(f"countsort hashing with_prefix, COUNT_ROWS={rows}",
                 ms(lambda: triton_lsh.bucket_ranks(x, proj, with_prefix=True)))
    for causal, grad in ((False, False), (False, True), (True, False)):
        call = _driver_call(n, 64, causal, grad)
        label = f"countsort driver causal={causal} {'fwd+bwd' if grad else 'fwd'}"
        with torch.enable_grad() if grad else torch.no_grad():
            outs = {}
            for way in COUNT_WAYS:
                with _count_way(way):
                    outs[way] = call()
            if grad:   # the dK/dV atomics add in another order each call
                note(f"{label}: gradients' largest relative difference",
                     max(rel(a, b) for o in outs.values() for a, b in zip(o, outs["sort's own passes"])))
            else:
                note(f"{label}: outputs identical", all(torch.equal(o, outs["sort's own passes"]) for o in outs.values()))
            _interleaved(label, _count_ways(call), rounds=rounds)
    for way in COUNT_WAYS:
        with _count_way(way):
            print(f"waits with {way}:", flush=True)
            waits(n, rounds=5, cases=((False, False), (False, True)))


def countsortn(_n, rounds=3):
    """countsort's comparison at short lengths, where a call is bound by the CPU: the hashing alone
    and with the sort's counts (do_bench), then the driver's forward, causal and not, both ways by
    hyperbench's timer in interleaved rounds."""
    for n in (4096, 8192, 16384, 131072):
        x = [torch.randn(1, 32, n, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2)]
        proj = lsh.draw_projections(64, 7, generator=None, device="cuda", rounded=False)
        note(f"countsortn n={n} hashing alone", ms(lambda: triton_lsh.bucket_ranks(x, proj)))
        note(f"countsortn n={n} hashing with the counts and pass 2",
             ms(lambda: triton_lsh.bucket_ranks(x, proj, with_prefix=True)))
        for causal in (False, True):
            with torch.no_grad():
                _interleaved(f"countsortn n={n} causal={causal} fwd", _count_ways(_driver_call(n, 64, causal, False)),
                             timers=("timer",), rounds=rounds)


def _intervals_union(spans):
    """Total length covered by (start, end) intervals, overlaps counted once."""
    total, reach = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


def _replays(kernels, marker="spin_kernel"):
    """Kernel events [(start, end, name)] split at each marker kernel; each part less its first
    kernel (the L2 flush that follows the marker): one list of kernels per replay."""
    parts, current = [], None
    for event in sorted(kernels):
        if marker in event[2]:
            current = []
            parts.append(current)
        elif current is not None:
            current.append(event)
    return [p[1:] for p in parts if len(p) > 1]


def _profiled_replays(replay, flush, rounds, lead_cycles=0):
    """`rounds` replays under torch.profiler, each after a marker kernel and an L2 flush and waited
    for, as the timer runs them: per replay (span from its first kernel's start to its last
    kernel's end, time some kernel ran, its kernels [(start, end, name)], µs), by span.
    lead_cycles: the GPU spins that long before the marker, so that the host has launched all of
    the replay before the GPU reaches it."""
    cuda = torch.autograd.DeviceType.CUDA
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(rounds):
            if lead_cycles:
                torch.cuda._sleep(lead_cycles)    # its own part, which _replays drops (nothing after it)
            torch.cuda._sleep(1000)    # marks where a replay's kernels start
            flush.zero_()
            replay()
            torch.cuda.synchronize()
    kernels = [(e.time_range.start, e.time_range.end, e.name) for e in prof.events() if e.device_type == cuda]
    per = [((max(b for _, b, _ in ks) - ks[0][0]) / 1e3, _intervals_union([(a, b) for a, b, _ in ks]) / 1e3, ks)
           for ks in _replays(kernels)]
    return sorted(per, key=lambda t: t[0])


def _note_replays(label, per, clock, top=8, first=0):
    """graphgaps' report of _profiled_replays: the median replay's span, busy and idle time, every
    replay's idle time, the clock, its `top` longest gaps and its `first` kernels (offset, length)."""
    if not per:
        note(f"{label}: no kernels recorded inside the replays", 0)
        return
    span, busy, ks = per[len(per) // 2]
    note(f"{label}: replays profiled", len(per))
    note(f"{label}: kernels a replay", len(ks))
    note(f"{label}: span first start to last end, median replay (ms)", span)
    note(f"{label}: some kernel running (ms)", busy)
    note(f"{label}: idle at kernel boundaries (ms)", span - busy)
    note(f"{label}: idle at boundaries, every replay (ms)", [round(s - b, 4) for s, b, _ in per])
    note(f"{label}: clock while profiled", clock)
    gaps = sorted(((ks[i + 1][0] - max(b for _, b, _ in ks[:i + 1]), ks[i][2][:60], ks[i + 1][2][:60])
                   for i in range(len(ks) - 1)), reverse=True)
    for gap, before, after in gaps[:top]:
        print(f"    gap {gap:8.1f} us after {before} before {after}", flush=True)
    for a, b, name in ks[:first]:
        print(f"    at {a - ks[0][0]:9.1f} us for {b - a:9.1f} us: {name[:90]}", flush=True)


def _host_replay_ms(replay, rounds):
    """Median CPU time of replay() itself (ms), each replay waited for after it returns: what the
    host spends in torch's replay (its generator prologue and cudaGraphLaunch) before the GPU has
    the whole graph."""
    got = []
    for _ in range(rounds):
        torch.cuda.synchronize()
        start = time.perf_counter()
        replay()
        got.append((time.perf_counter() - start) * 1e3)
    torch.cuda.synchronize()
    return statistics.median(got)


def _goal_replay(n, causal, grad):
    """The goal call (B = 1, H = 32, d = 64, bf16, default HyperParams) captured in a CUDA graph
    (timing.captured, what timing.cuda_graph times); returns (replay, what keeps its tensors alive)."""
    from hyperbench.timing import captured
    xs = [torch.randn(1, 32, n, 64, device="cuda", dtype=torch.bfloat16).requires_grad_(grad) for _ in range(3)]
    gout = torch.randn_like(xs[0])
    params, held = HyperParams(), {"xs": xs}

    def call():
        with torch.set_grad_enabled(grad):
            out, _ = hyper_attention(*xs, params, causal=causal, backend="triton")
            held["out"] = torch.autograd.grad(out, xs, gout) if grad else (out,)

    return captured(call), held


def graphgaps(n):
    """The four goal calls as CUDA-graph replays (timing.captured, what timing.cuda_graph times),
    each after an L2 flush and waited for, as the timer does them. Ten replays back to back under
    torch.profiler: per replay, the span from its first kernel's start to its last kernel's end,
    the time some kernel ran (the union of the kernels' intervals), and the rest, idle at kernel
    boundaries, with the longest gaps of the median replay. Then ten without the profiler, timed
    by CUDA events as hyperbench's timer does (gpu_ab.synced_ms, after 5 untimed replays), to see
    what the profiler adds. The SM clock is observed over both. (v36 bounded
    what overlapping launches could save from eager profiles at the idle clock; this measures the
    boundaries inside the replays.)"""
    from hyperbench import gpu_clock
    from hyperbench.timing import L2_FLUSH_BYTES
    read = gpu_clock.reader("cuda")
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    rounds = int(arg("rounds", 10))
    for causal in (False, True):
        for grad in (False, True):
            label = f"graphgaps causal={causal} {'fwd+bwd' if grad else 'fwd'} n={n}"
            replay, held = _goal_replay(n, causal, grad)
            for _ in range(20):    # the board's power state of the timer's repetitions
                replay()
            torch.cuda.synchronize()
            per, clock = gpu_clock.observe(read, lambda: _profiled_replays(replay, flush, rounds))
            _note_replays(label, per, clock)
            got, clock = gpu_clock.observe(read, lambda: synced_ms(replay, rounds))
            note(f"{label}: replay by CUDA events, no profiler, median (ms)", got)
            note(f"{label}: clock unprofiled", clock)
            del replay, held
            torch.cuda.empty_cache()


def leafgap(n):
    """Where the causal replays' ~0.1 ms gap before cuDNN's leaf forward comes from (v37 found it,
    after a memset, in every causal replay). (1) The leaves' cuDNN call alone (n / 4096 causal
    4096-row blocks a head, as _leaves_first makes it) captured in a graph, and SDPA's own
    cuDNN forward on one head of the goal's shape: their kernels, offsets and gaps. (2) The two
    causal goal calls as replays with the leaves first (the default since v16) and at the bottom of
    the recursion (_leaves_first off; the draws and outputs are the same), profiled as graphgaps
    does, then timed by CUDA events (gpu_ab.synced_ms) in interleaved rounds."""
    from hyperbench import gpu_clock
    from hyperbench.timing import L2_FLUSH_BYTES, captured
    from kernels import causal_triton, sdpa_leaves
    read = gpu_clock.reader("cuda")
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    rounds = int(arg("rounds", 10))
    leaves = [torch.randn(1, 32 * n // 4096, 4096, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
    whole = [torch.randn(1, 32, n, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
    alone = {"leaves, cuDNN call with lse": lambda: sdpa_leaves.forward_with_state(*leaves, causal=True, scale=0.125),
             "SDPA cuDNN, whole causal": lambda: torch.ops.aten._scaled_dot_product_cudnn_attention(
                 *whole, None, True, 0.0, True, False, scale=0.125)}
    for name, call in alone.items():
        replay = captured(call)
        for _ in range(3):
            replay()
        torch.cuda.synchronize()
        per, clock = gpu_clock.observe(read, lambda: _profiled_replays(replay, flush, rounds))
        _note_replays(f"leafgap {name} n={n}", per, clock, first=6)
        note(f"leafgap {name} n={n}: replay by CUDA events (ms)", synced_ms(replay, rounds))
        note(f"leafgap {name} n={n}: CPU time in replay() (ms)", _host_replay_ms(replay, rounds))
        del replay
    del leaves, whole
    torch.cuda.empty_cache()
    first = causal_triton._leaves_first
    for grad in (False, True):
        label = f"leafgap causal {'fwd+bwd' if grad else 'fwd'} n={n}"
        replays = {}
        for way in ("leaves first", "leaves at the bottom"):
            with mock.patch.object(causal_triton, "_leaves_first", first if way == "leaves first" else (lambda *a: None)):
                replays[way] = _goal_replay(n, True, grad)
            replay = replays[way][0]
            for _ in range(20):
                replay()
            torch.cuda.synchronize()
            per, clock = gpu_clock.observe(read, lambda: _profiled_replays(replay, flush, rounds))
            _note_replays(f"{label} {way}", per, clock, top=4, first=6)
            note(f"{label} {way}: CPU time in replay() (ms)", _host_replay_ms(replay, rounds))
            per, clock = gpu_clock.observe(read, lambda: _profiled_replays(replay, flush, rounds, lead_cycles=4_000_000))
            _note_replays(f"{label} {way}, the GPU 2 ms behind the host", per, clock, top=3)
        times = {way: [] for way in replays}
        for _ in range(5):
            for way, (replay, _) in replays.items():
                times[way].append(synced_ms(replay, rounds))
        for way, got in times.items():
            note(f"{label} {way}: replays by CUDA events, median of 5 rounds' medians (ms)", statistics.median(got))
            note(f"{label} {way}: the rounds (ms)", [round(t, 3) for t in got])
        del replays
        torch.cuda.empty_cache()


def main():
    n = int(arg("n", 131072))
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    for part in arg("parts", "atomics,gather,copies").split(","):
        {"atomics": atomics, "gather": gather, "copies": copies, "sort": sort, "sortn": sortn, "levelsort": levelsort,
         "overlap": overlap, "leavesfirst": leavesfirst, "warmup": warmup, "once": once, "stages": stages,
         "stages_causal": stages_causal, "adds16": adds16, "fwdsplit": fwdsplit,
         "overhead": overhead, "timeline": timeline,
         "bwdtiles": bwdtiles, "cpuphases": cpuphases, "launchcost": launchcost,
         "fwdtiles": fwdtiles, "autogradthreads": autogradthreads, "d32": d32, "d16": d16, "narrow": narrow, "rows32": rows32,
         "rows16": rows16, "padded": padded, "fwdsteps": fwdsteps,
         "tmaws": tmaws, "persistent": persistent, "sharedset": sharedset,
         "sharedtimer": sharedtimer, "waits": waits, "deltatiles": deltatiles,
         "countsort": countsort, "waitsshared": waitsshared,
         "countsortn": countsortn, "causal16": causal16,
         "causaltiles": causaltiles, "listlen": listlen, "tiletable": tiletable, "leafshapes": leafshapes,
         "mergewarps": mergewarps, "profile": profile, "clocks": clocks, "graphs": graphs,
         "graphgaps": graphgaps, "leafgap": leafgap}[part](n)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "probe.json"), "w") as f:
        json.dump(FOUND, f, indent=1, default=str)


if __name__ == "__main__":
    main()
