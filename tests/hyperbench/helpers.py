"""Attention callables that tests name through method.target, and a run of the command to interrupt."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).parents[2]


def plain_attention(q, k, v, causal):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


def raises(q, k, v, causal):
    raise RuntimeError("planted failure")


def out_of_memory(q, k, v, causal):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 TiB (planted)")


def dies(q, k, v, causal):
    os._exit(13)


def records_pid(q, k, v, causal):
    """Plain attention that appends its process id to the file $HYPERBENCH_TEST_PID_FILE."""
    with open(os.environ["HYPERBENCH_TEST_PID_FILE"], "a") as f:
        f.write(f"{os.getpid()}\n")
    return plain_attention(q, k, v, causal)


def waits_for_interrupt(q, k, v, causal):
    """Plain attention, unless $HYPERBENCH_TEST_WAIT_DIR is set: then it puts a file named by its
    process id there (the test's cue to press Ctrl-C) and sleeps until interrupted."""
    folder = os.environ.get("HYPERBENCH_TEST_WAIT_DIR")
    if folder:
        open(os.path.join(folder, str(os.getpid())), "w").close()
        time.sleep(300)
    return plain_attention(q, k, v, causal)


def illegal_address(q, k, v, causal):
    """A Triton kernel that stores far outside any allocation: on a GPU, a sticky CUDA error (the
    context is broken for the rest of the process), as a faulty attention kernel would leave it."""
    import triton
    import triton.language as tl

    @triton.jit
    def _store_far(ptr):
        tl.store(ptr + (1 << 40), 1.0)

    out = torch.empty_like(q)
    _store_far[(1,)](out)
    torch.cuda.synchronize()
    return out


def interrupted_run(args, wait_dir, processes=1, whole_group=True):
    """`hyperbench run` that is sent SIGINT once `processes` calls of helpers.waits_for_interrupt wait:
    to its whole process group, as a terminal's Ctrl-C is, or to the hyperbench process alone."""
    wait_dir.mkdir()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "HYPERBENCH_TEST_WAIT_DIR": str(wait_dir)}
    env.pop("HYPERBENCH_RUN_ID", None)
    # SIGINT's default disposition, as under a terminal: a shell starts background commands (CI's,
    # perhaps pytest itself) with SIGINT ignored, and the command would inherit that.
    proc = subprocess.Popen([sys.executable, "-m", "hyperbench.cli", "run", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while len(list(wait_dir.iterdir())) < processes and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    (os.killpg if whole_group else os.kill)(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def block_store_folder(results: Path) -> None:
    """Put a file where the store would make today's (and tomorrow's, near midnight UTC) folder, so
    that a job measures and then fails to write its rows."""
    import datetime as dt
    results.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    for day in (now, now + dt.timedelta(days=1)):
        (results / day.strftime("%Y-%m-%d")).write_text("in the store's way\n")
