"""One job: every selected method on the same seeded inputs, each becoming one result row.

Per method: can it run here (else `unavailable`), does its estimated time fit the budget (else
`skipped`), then timing and, separately, its error against exact fp32 attention. Out-of-memory and
exceptions become `oom` / `error` rows and the job goes on; inputs too large for the device make an
`oom` row for every method, and a reference too large leaves the error columns empty. `run_isolated`
runs the job in a child process so that a method that breaks the CUDA context cannot take later jobs
down with it; that process serves the next job too unless this one died or recorded an error.
Ctrl-C raises `Interrupted` with the rows of the methods that finished, in either way of running.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import multiprocessing.util
import os
import signal
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch

from . import cost, inputs, metrics, methods, timing
from .config import JobConfig, MEASURED_KEYS
from .errors import ConfigError

ERROR_KEYS = ("spec_err", "spec_err_max", "rel_spec_err", "rel_spec_err_max", "rel_fro_err",
              "rel_fro_err_max", "max_row_err", "lse_err", "attn_norm", "norm_iters", "metric_ms")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a job, carrying the rows of the methods that finished before it, so that they
    are stored and a rerun of the same command measures only the rest."""

    def __init__(self, rows: list[dict]):
        super().__init__(f"interrupted after {len(rows)} finished methods")
        self.rows = rows


# How long an interrupted parent waits for its job process to send the finished methods' rows:
# the child sees Ctrl-C only when the operation it is in returns.
INTERRUPT_WAIT_S = 10.0


def base_row(job: JobConfig, prov: dict, run_id: str, job_id: str, overrides: str, config_hash: str) -> dict:
    row = {k: getattr(job, k) for k in MEASURED_KEYS if k != "inputs"}
    row.update(prov)
    row.update(run_id=run_id, job_id=job_id, inputs=inputs.describe(job.inputs), overrides=overrides,
               config_hash=config_hash, timing_mode=job.timing.mode)
    return row


def _message(err: BaseException) -> str:
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text[:500]


def _rows_for_every_method(job: JobConfig, base: dict, status: str, message: str) -> list[dict]:
    """One row per method with the same outcome, where the job could not get as far as the methods."""
    return [{**base, "method": name, "status": status, "message": message[:500]} for name in job.methods]


def _cuda_healthy() -> bool:
    """Whether the CUDA context still works after a method, its cached memory released for the
    next. Both calls are inside the check: after a kernel fault either raises the fault's sticky
    error, which must become this method's row, not the job's end (the earlier methods' rows with it)."""
    try:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        return True
    except Exception:  # a sticky CUDA error (illegal address, ...) poisons the whole context
        return False


@contextmanager
def _peak_memory(device: str, into: dict):
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    yield
    if device == "cuda":
        torch.cuda.synchronize()
        into["peak_mem_bytes"] = int(torch.cuda.max_memory_allocated() - base)


def _io_bytes(job: JobConfig) -> float:
    """Fewest bytes a forward must move: read q, k, v once and write the output once."""
    return 4.0 * job.batch * job.num_heads * job.seq_len * job.head_dim * job.torch_dtype.itemsize


def measure_method(method, job: JobConfig, q, k, v, reference, say: Callable[[str], None]) -> dict:
    """Time one method and measure its error; returns the row fields it determines."""
    row: dict = {"method": method.name}
    refused = methods.refusal(method, job)
    reason = str(refused) if refused else method.unavailable(job)
    if reason:
        return {**row, "status": "unavailable", "message": reason}
    est = cost.estimate_ms(method, job)
    row["est_ms"] = est
    measuring_ms = cost.measuring_ms(est, job)
    if measuring_ms > job.budget_s * 1e3:
        return {**row, "status": "skipped",
                "message": f"estimated {measuring_ms / 1e3:.1f} s to measure > budget_s={job.budget_s:g}"}
    forward = method.build(job)
    say(f"{method.name}: timing")
    kept: dict = {}
    # A graph replay's output is not kept for the error: its random draws (hyper's samples) are not the
    # seeded ones, so the error is measured on a seeded eager call, the same output per-call rows measure.
    setup, timed = timing.make_call(forward, q, k, v, job.causal, job.mode,
                                    keep=None if job.timing.cuda_graph else kept)
    with _peak_memory(job.device, row):
        t = timing.measure(setup, timed, device=job.device, warmup=job.timing.warmup,
                           target_ms=job.timing.target_ms, min_reps=job.timing.min_reps,
                           max_reps=job.timing.max_reps, flush_l2=job.timing.flush_l2,
                           back_to_back=job.timing.back_to_back, cuda_graph=job.timing.cuda_graph)
    del setup, timed
    flops = cost.call_flops(method, job)
    row.update(status="ok", time_ms=t.median_ms, time_ms_p20=t.p20_ms, time_ms_p80=t.p80_ms, reps=t.reps,
               time_samples_ms=json.dumps([round(x, 6) for x in t.samples_ms]), host_ms=t.host_ms,
               tflops=flops / (t.median_ms * 1e-3) / 1e12,
               gbps=_io_bytes(job) * cost.MODE_FACTOR[job.mode] / (t.median_ms * 1e-3) / 1e9, **(t.gpu or {}))
    if reference is not None:
        say(f"{method.name}: error metrics")
        with torch.no_grad():
            out, lse = kept.pop("result", None) or forward(q, k, v, job.causal)
            errs = metrics.attention_errors(q, k, v, out, causal=job.causal, scale=1 / math.sqrt(job.head_dim),
                                            lse=lse, exact=reference.exact, norm=reference.norm)
        errs["metric_ms"] += reference.shared_ms  # the job's one exact pass and norm, charged to every row
        row.update({key: errs.get(key) for key in ERROR_KEYS})
        del out, lse
    return row


@dataclass
class Reference:
    """What every method's error is measured against; it depends on the inputs only."""
    exact: tuple          # (O, lse) in fp32
    norm: tuple           # ||D⁻¹A||₂ per (batch, head), iterations, converged
    shared_ms: float      # time these took


# The error metric costs about this many exact fp32 attention passes (reference + Lanczos passes),
# or, on the Triton path (metrics.uses_triton), this many exact passes at the inputs' 16-bit rate:
# the reference is ~1.5 passes (hi/lo P·V) and each Lanczos iteration ~1.75 (two passes, three
# narrow dots each), 3–7 iterations.
METRIC_PASSES = 4
METRIC_PASSES_TRITON = 12
# ... or, where each head's D⁻¹A is formed once for all Lanczos passes (metrics.caches_probabilities:
# the torch path up to n ≈ 16k in fp32), this many: on a 2-core CPU at n = 2048 and 4096 (H = 32,
# d = 64, Gaussian, clustered and heavy-hitter inputs, 3–8 passes) reference and norm took 0.9–1.6
# times `exact`'s estimated call non-causal and 1.6–2.2 causal (whose FLOPs count half, where the
# cached P's products do not skip the masked half).
METRIC_PASSES_CACHED = 2
# ... plus a cost per (batch, head) that no FLOP count sees: every method's three Gram norms (a d × d
# top eigenvalue each), the reference's and the norm's loops over heads.  Measured at n = 64, d = 64,
# where the FLOPs are nothing: 6–8 µs a head and method on the H200 (v27, scripts/metric_probe.py);
# ~450 µs on a 2-core CPU (LAPACK; the reference and norm ~190 µs), and 3.6× that at d = 128, so it
# scales as d².  Without it a job of 70000 heads of 64 rows was estimated at milliseconds; its
# metric took minutes in v26 and ~0.5 s a method since v27.
METRIC_MS_PER_HEAD = {"cuda": 0.008, "cpu": 0.45}   # by JobConfig.device (cuda | cpu)


def metric_estimate_ms(job: JobConfig, passes: float, dtype: torch.dtype) -> float:
    """Estimated milliseconds of the job's error metrics: the shared reference and norm (`passes`
    exact passes in `dtype`) and each method's, by FLOPs and by heads."""
    exact = methods.get("exact")
    flops_ms = cost.compute_ms(passes * exact.flops(job), job.device, dtype, exact.efficiency)
    per_head = METRIC_MS_PER_HEAD[job.device] * (job.head_dim / 64) ** 2
    return flops_ms + per_head * job.batch * job.num_heads * (1 + len(job.methods))


def _reference(job: JobConfig, q, k, v, say) -> tuple[Reference | None, str | None]:
    """Exact fp32 output, lse and ||D⁻¹A||₂, shared by every method's error; None and why not
    when over budget (None, None when errors are off)."""
    if not job.errors:
        return None, None
    passes, dtype = ((METRIC_PASSES_TRITON, q.dtype) if metrics.uses_triton(q, k, v)
                     else (METRIC_PASSES_CACHED, torch.float32) if metrics.caches_probabilities(q, k)
                     else (METRIC_PASSES, torch.float32))
    est = metric_estimate_ms(job, passes, dtype)
    if est > job.budget_s * 1e3:
        return None, f"error metrics skipped: estimated {est / 1e3:.1f} s > budget_s={job.budget_s:g}"
    say("exact fp32 reference and ||D⁻¹A||₂")
    scale = 1 / math.sqrt(job.head_dim)
    metrics.warm_up(q, k, v, causal=job.causal, scale=scale)    # JIT compile is not the metric's cost
    timing.sync(job.device)
    started = time.perf_counter()
    exact = metrics.exact_reference(q, k, v, causal=job.causal, scale=scale)
    norm = metrics.attention_matrix_norm(q, k, exact[1], causal=job.causal, scale=scale)
    timing.sync(job.device)
    return Reference(exact, norm, (time.perf_counter() - started) * 1e3), None


def run_job(job: JobConfig, base: dict, say: Callable[[str], None] = lambda s: None) -> list[dict]:
    torch.manual_seed(job.seed)
    try:
        q, k, v = inputs.make_inputs(job.inputs, batch=job.batch, heads=job.num_heads, seq_len=job.seq_len,
                                     head_dim=job.head_dim, dtype=job.torch_dtype, device=job.device, seed=job.seed)
    except torch.cuda.OutOfMemoryError as err:   # no method can run on inputs that do not fit
        return _rows_for_every_method(job, base, "oom", f"the inputs do not fit: {_message(err)}")
    except (ConfigError, OSError) as err:   # an input file that changed or vanished since `run` checked it
        return _rows_for_every_method(job, base, "error", f"the inputs could not be made: {_message(err)}")
    try:
        reference, why_no_errors = _reference(job, q, k, v, say)
    except torch.cuda.OutOfMemoryError as err:   # the timings can still be measured
        reference, why_no_errors = None, f"error metrics skipped: the fp32 reference does not fit: {_message(err)}"
        if job.device == "cuda":
            torch.cuda.empty_cache()
    rows, broken_by = [], None
    for name in job.methods:
        method = methods.get(name)
        if broken_by:
            rows.append({**base, "method": name, "status": "error",
                         "message": f"not run: the CUDA context was broken by {broken_by}"})
            continue
        started = time.perf_counter()
        try:
            fields = measure_method(method, job, q, k, v, reference, say)
        except KeyboardInterrupt:   # the interrupted method gets no row: a rerun measures it
            raise Interrupted(rows) from None
        except torch.cuda.OutOfMemoryError as err:
            fields = {"method": name, "status": "oom", "message": _message(err)}
        except Exception as err:  # one method's failure is its row, not the job's end
            fields = {"method": name, "status": "error", "message": _message(err)}
            traceback.print_exc()
        if job.device == "cuda" and not _cuda_healthy():
            broken_by = name
        if fields.get("status") == "ok" and why_no_errors:
            fields["message"] = why_no_errors
        fields["wall_s"] = time.perf_counter() - started
        rows.append({**base, **fields})
    return rows


# The job process that `isolate: worker` keeps for the next job: (process, connection), or None.
_worker = None


def _interrupt_once(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def interrupt_once() -> None:
    """Make a job process's first SIGINT its only one: the terminal's Ctrl-C and the parent's both
    reach it, and a second one inside the handover would lose the finished methods' rows. A process
    that was started with SIGINT ignored (as a shell starts background commands) keeps ignoring it,
    as its parent does."""
    if signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
        signal.signal(signal.SIGINT, _interrupt_once)


def _serve(conn) -> None:
    """A job process: run each (job, base) the parent sends and send back ("rows", rows),
    ("interrupted", finished rows) or ("error", message), until the parent closes its end."""
    interrupt_once()
    while True:
        try:
            job, base = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):   # closed, reset by a parent gone, or Ctrl-C between jobs
            return
        try:
            result = ("rows", run_job(job, base, say=lambda s: print(f"  {s}", flush=True)))
        except Interrupted as err:   # Ctrl-C: hand the finished methods' rows over, then end
            result = ("interrupted", err.rows)
        except BaseException as err:  # reported by the parent as the job's error
            result = ("error", _message(err))
        try:
            conn.send(result)
        except OSError:   # the parent is gone: nothing to report to
            return
        if result[0] == "interrupted":
            return


def _start_worker():
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,))
    proc.start()
    child.close()
    return proc, parent


def stop_worker(wait_s: float = 30) -> None:
    """End the kept job process, if there is one (closing its pipe ends its loop; killed after
    wait_s); also at exit."""
    global _worker
    if _worker is not None:
        proc, conn = _worker
        _worker = None
        conn.close()
        proc.join(timeout=wait_s)
        if proc.is_alive():
            proc.kill()
            proc.join()


# At exit, before multiprocessing joins its children (it would wait forever on a worker blocked on
# its pipe): its finalizers run first, in a main process and in a multiprocessing child alike.
mp.util.Finalize(None, stop_worker, exitpriority=100)


def _handover(proc, conn) -> list[dict]:
    """After Ctrl-C in the parent: the rows the job process sends within INTERRUPT_WAIT_S, none
    when it sends none (it is then killed with whatever it had)."""
    if proc.is_alive():   # for when only the parent was signalled (kill -INT); else it is ignored
        try:
            os.kill(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    try:
        if conn.poll(INTERRUPT_WAIT_S):
            kind, payload = conn.recv()
            return payload if kind in ("rows", "interrupted") else []
    except (EOFError, OSError):
        pass
    return []


def run_isolated(job: JobConfig, base: dict, keep: bool = False) -> list[dict]:
    """run_job in a child process; if it dies (kernel fault, killed), every method gets an error row.

    keep: leave the process running for the next call (`isolate: worker`: a fresh process costs a
    job the imports and the CUDA start again), unless this job died or recorded an error row; else
    (`isolate: true`) one process per job."""
    global _worker
    if not keep:
        stop_worker()   # fresh means fresh, also after jobs that kept one
    if _worker is None:
        _worker = _start_worker()
    proc, conn = _worker
    result = None
    try:
        conn.send((job, base))
        result = conn.recv()
    except (EOFError, OSError):   # the process died (its exit code is read below)
        pass
    except KeyboardInterrupt:   # Ctrl-C reaches the job process too, which sends what finished
        result = ("interrupted", _handover(proc, conn))
    if result and result[0] == "interrupted":   # also a job process interrupted on its own
        stop_worker(wait_s=1)
        raise Interrupted(result[1])
    healthy = result is not None and result[0] == "rows" and all(r.get("status") != "error" for r in result[1])
    if not (keep and healthy):
        stop_worker()
    if result and result[0] == "rows":
        return result[1]
    why = result[1] if result else f"job process died with exit code {proc.exitcode}"
    return _rows_for_every_method(job, base, "error", why)
