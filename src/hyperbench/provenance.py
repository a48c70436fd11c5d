"""Where a result came from: host, GPU, driver, library versions, git commit and a digest of the
code itself (code_digest.py), the kernel switches set off their defaults, time.

``collect`` never raises for a missing git, nvidia-smi, CUDA, Triton or flash-attn: the field is
None instead. torch is imported lazily so that reading results does not pay for it.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
from importlib import metadata
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


_last_id_time = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
_id_lock = threading.Lock()


def new_run_id() -> str:
    """A sortable id: UTC timestamp to the microsecond, then 6 random hex digits.

    Within a process the timestamps strictly increase, so ids sort in creation order.
    """
    global _last_id_time
    with _id_lock:
        now = max(dt.datetime.now(dt.timezone.utc), _last_id_time + dt.timedelta(microseconds=1))
        _last_id_time = now
    return f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


def command_output(cmd: list[str], cwd: Path | None = None, timeout: float = 10.0) -> str | None:
    """stdout of cmd, stripped, or None if it cannot run or fails."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def git_info(path: str | None = None) -> tuple[str | None, bool | None]:
    """(sha, dirty) of the git checkout that holds the hyperbench package, else (None, None).

    The package counts as a checkout only if its ``__init__.py`` is tracked there (an installed
    copy inside some other repository is not). Dirty means tracked files differ from HEAD.
    Cached: one lookup per process.
    """
    pkg = Path(path) if path else _PACKAGE_DIR
    # A copy of the tree sent elsewhere (e.g. to a GPU machine) may carry no .git, or a stale one:
    # the sender says which commit it is through HYPERBENCH_GIT_SHA / HYPERBENCH_GIT_DIRTY
    # (scripts/gpu_bench.sh), and that statement wins over whatever git finds there.
    if os.environ.get("HYPERBENCH_GIT_SHA"):
        dirty = os.environ.get("HYPERBENCH_GIT_DIRTY")
        return os.environ["HYPERBENCH_GIT_SHA"], (None if dirty is None else dirty == "1")
    if command_output(["git", "ls-files", "--error-unmatch", "__init__.py"], cwd=pkg) is None:
        return None, None
    sha = command_output(["git", "rev-parse", "HEAD"], cwd=pkg)
    if not sha:
        return None, None
    status = command_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=pkg)
    return sha, (None if status is None else bool(status))


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        except Exception:  # a broken install: report it as absent rather than fail the job
            continue
    return None


@functools.lru_cache(maxsize=None)
def nvidia_driver() -> str | None:
    out = command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    if not out:
        return None
    return out.splitlines()[0].strip() or None


def collect(device: str) -> dict:
    """Provenance fields for rows measured on ``device`` ("cuda", "cuda:N" or "cpu")."""
    import torch

    from hyperbench import code_digest   # late: it runs its git commands through command_output

    kind = str(device).split(":")[0]
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    gpu_name = None
    if kind == "cuda":
        try:
            gpu_name = torch.cuda.get_device_name(device if ":" in str(device) else None)
        except Exception:  # no CUDA build / no device: keep the row, leave the name empty
            gpu_name = None
    sha, dirty = git_info()
    return {
        "host": socket.gethostname(),
        "device": kind,
        "gpu_name": gpu_name,
        "driver": nvidia_driver(),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": _dist_version("triton", "pytorch-triton", "triton-windows"),
        "flash_attn": _dist_version("flash-attn", "flash_attn"),
        "git_sha": sha,
        "git_dirty": dirty,
        "code_digest": code_digest.installed(),
        "switches": json.dumps(changed, sort_keys=True) if (changed := switches()) else None,
        "created_at": dt.datetime.now(dt.timezone.utc),
    }


# Module switches that change what a method computes or how fast, each set from an environment
# variable when its module is imported (the README's methods table): variable -> (module,
# attribute); the attribute's default is the module's ``<attribute>_DEFAULT``.
SWITCHES = {
    "HYPERBENCH_LEAF_FORWARD": ("hyperbench_kernels.sdpa_leaves", "LEAF_FORWARD"),
    "HYPERBENCH_DKDV_16BIT_ADDS": ("hyperbench_kernels.triton_attention", "DKDV_16BIT_ADDS"),
    "HYPERBENCH_CAUSAL_16BIT_ADDS": ("hyperbench_kernels.causal_triton", "CAUSAL_16BIT_ADDS"),
    "HYPERBENCH_TRITON_METRICS": ("hyperbench.metrics", "TRITON_METRICS"),
}


def switches() -> dict:
    """{variable: value} of the SWITCHES whose live value differs from its default (empty when
    every one is at its default); a module that cannot be imported here switches nothing."""
    changed = {}
    for variable, (module, attribute) in SWITCHES.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        value = getattr(mod, attribute)
        if value != getattr(mod, f"{attribute}_DEFAULT"):
            changed[variable] = value
    return changed
