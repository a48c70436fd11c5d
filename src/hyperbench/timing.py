"""How a call is timed: warm-up, repetitions, L2 flushed between them, median and 20th/80th percentiles.

GPU: CUDA events around the call alone (the flush and any setup stay outside), and the host's own
time to issue the call (host_ms). By default each call is waited for before the next is set up, so
the host's time to start a call counts wherever the GPU waits for it; `back_to_back` queues every
repetition (flush, events, call) and waits once at the end, as triton.testing.do_bench does, so
that it counts only where the host falls behind the GPU. With `cuda_graph` the call is captured
once, after the warm-up, into a CUDA graph whose replays are timed instead: the kernels' time with
no host work inside the call but the replay's launch (torch's generator prologue and
cudaGraphLaunch, which the GPU waits for where it catches up with the host: up to ~0.1 ms of a
graph of ~30 kernels on the H200; back to back, none), as a CUDA-graphed training or serving loop
runs it. CPU: a monotonic clock.
Over the timed repetitions the GPU's clock and power state is read too (gpu_clock: the median SM
clock, mean board power, the share of time held down by the power limit or by heat), since the
clock a row ran at is what moves it most between runs on one machine.
`make_call` turns a method's forward into the thing to time for the job's mode: fwd (inference, no
autograd), bwd (the backward pass alone, over a graph built outside the timed region) or fwd+bwd.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from . import gpu_clock

L2_FLUSH_BYTES = 256 << 20  # larger than any current GPU's L2 (H200: 60 MB)
# Untimed calls that `cuda_graph` adds after the warm-up: the side stream's eager call and the
# captured one (`captured`), then the first replay (`measure`). cost.measuring_ms counts them.
GRAPH_EXTRA_CALLS = 3


@dataclass(frozen=True)
class Timed:
    median_ms: float
    p20_ms: float
    p80_ms: float
    reps: int
    samples_ms: tuple[float, ...]
    # GPU only: the median CPU time the host took to issue one call (from its start until it
    # returned, before the wait for the GPU). Near median_ms or above it, the GPU waited for the
    # host's launches, and the row measures the host's CPU as much as the kernels.
    host_ms: float | None = None
    # GPU only, where NVML answers: gpu_clock.window's fields (sm_clock_mhz, sm_clock_max_mhz,
    # power_w, power_capped, thermal_capped) over the repetitions.
    gpu: dict | None = None


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def summarize(samples_ms: list[float], host_ms: list[float] | None = None, gpu: dict | None = None) -> Timed:
    return Timed(statistics.median(samples_ms), _percentile(samples_ms, 20), _percentile(samples_ms, 80),
                 len(samples_ms), tuple(samples_ms), statistics.median(host_ms) if host_ms else None, gpu)


def make_call(forward: Callable, q, k, v, causal: bool, mode: str, keep: dict | None = None):
    """Returns (setup, timed): `setup()` runs untimed before every repetition, `timed()` is measured.

    In fwd mode the last call's (out, lse) is left in `keep["result"]`, so the error can be
    measured on an output the timing already produced instead of running the method again.
    """
    if mode == "fwd":
        def timed():
            if keep is not None:
                keep.clear()   # free the previous output first: it must not inflate peak memory
            with torch.no_grad():
                result = forward(q, k, v, causal)
            if keep is not None:
                keep["result"] = result
        return (lambda: None), timed

    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
    grad_out = torch.randn_like(q)
    if mode == "fwd+bwd":
        def timed():
            out, _ = forward(*leaves, causal)
            torch.autograd.grad(out, leaves, grad_out)
        return (lambda: None), timed

    state = {}

    def setup():
        state["out"] = forward(*leaves, causal)[0]

    def timed():
        torch.autograd.grad(state.pop("out"), leaves, grad_out)
    return setup, timed


def sync(device: str) -> None:
    """Wait for the device's queued work (a no-op on a CPU), so a host clock reads real time."""
    if device == "cuda":
        torch.cuda.synchronize()


class CaptureError(RuntimeError):
    """The call cannot be captured in a CUDA graph (a host sync, or an operation that capture forbids)."""


def captured(timed: Callable) -> Callable:
    """`timed` captured in a CUDA graph; returns the graph's replay, which runs the same kernels on
    the same tensors with no host work. One eager call on a side stream first, as torch's capture
    wants (autograd and cuDNN set up their state there). Draws from a generator the capture
    registers (a device's default one) advance on every replay, so each replay draws afresh.
    Raises CaptureError with the cause in one line."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        timed()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            timed()
    except Exception as err:
        cause = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        raise CaptureError(f"the call cannot be captured in a CUDA graph ({cause})") from None
    return graph.replay


def measure(setup: Callable, timed: Callable, *, device: str, warmup: int, target_ms: float,
            min_reps: int, max_reps: int, flush_l2: bool, back_to_back: bool = False,
            cuda_graph: bool = False) -> Timed:
    """Warm up, then repeat enough times to fill `target_ms` (judged from the last warm-up call, or
    with `cuda_graph` from the first replay).

    On a CPU, warming up stops once one call takes longer than target_ms: nothing there compiles
    on first use, and a second multi-second warm-up call would only double the cost of a run.
    """
    if cuda_graph and device != "cuda":
        raise ValueError("cuda_graph needs device cuda")
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device) if device == "cuda" and flush_l2 else None
    pilot_ms = 0.0
    for _ in range(max(warmup, 1)):
        pilot_ms = _untimed_call_ms(setup, timed, device)
        if device == "cpu" and pilot_ms > target_ms:
            break
    if cuda_graph:
        timed = captured(timed)
        # One untimed replay: the first one uploads the graph. Its time, not the eager pilot's,
        # sets the repetitions, since a replay can be several times shorter than an eager call.
        pilot_ms = _untimed_call_ms(setup, timed, device)
    samples, host, queued = [], [], []

    def repetitions():
        for _ in range(reps_for(pilot_ms, target_ms, min_reps, max_reps)):
            setup()
            if device == "cuda":
                if flush is not None:
                    flush.zero_()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                t0 = time.perf_counter()
                timed()
                host.append((time.perf_counter() - t0) * 1e3)
                end.record()
                if back_to_back:
                    queued.append((start, end))
                else:
                    end.synchronize()
                    samples.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                timed()
                samples.append((time.perf_counter() - t0) * 1e3)
        if queued:
            sync(device)     # inside the observed span: the queued calls run until here
    _, gpu = gpu_clock.observe(gpu_clock.reader(device), repetitions)
    if queued:
        samples = [start.elapsed_time(end) for start, end in queued]
    return summarize(samples, host, gpu)


def _untimed_call_ms(setup: Callable, timed: Callable, device: str) -> float:
    """One warm-up call, waited for on both sides: its wall time in ms (what sets the repetitions)."""
    setup()
    sync(device)
    t0 = time.perf_counter()
    timed()
    sync(device)
    return (time.perf_counter() - t0) * 1e3


def reps_for(estimate_ms: float, target_ms: float, min_reps: int, max_reps: int) -> int:
    """Enough repetitions to fill the measuring target, within [min_reps, max_reps]."""
    if estimate_ms <= 0:
        return max_reps
    return int(max(min_reps, min(max_reps, round(target_ms / estimate_ms))))
