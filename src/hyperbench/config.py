"""The job config: check every key once, up front, and resolve 'auto' values.

`job_config(cfg)` turns a composed Hydra config into a frozen `JobConfig` or raises ConfigError naming
the key and what is allowed. `check_overrides(args)` checks command-line overrides against the base
config before Hydra starts, so a typo or an impossible value fails before any job runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch

from .errors import ConfigError
from .inputs import normalise as normalise_inputs

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
MODES = ("fwd", "bwd", "fwd+bwd")
DEVICES = ("auto", "cuda", "cpu")

# Keys that change what is measured (the rest change how: where results go, timing, budgets).
MEASURED_KEYS = ("seq_len", "head_dim", "num_heads", "batch", "dtype", "causal", "mode", "block_size",
                 "sample_size", "sample_tile", "lsh_num_projs", "min_seq_len", "inputs", "seed", "device")
# Where a job runs (the `isolate` key): "worker", a child process that the sweep's later jobs reuse
# until a job of it dies or records an error row (a kernel fault can leave its CUDA context broken);
# "job" (true), a fresh process per job; "none" (false), hyperbench's own. auto: worker on a GPU.
ISOLATE = {"worker": "worker", True: "job", False: "none", "auto": "auto"}
# How captions, figure titles and the run's job line name a setting (key=value; a key not listed
# keeps its own name): one vocabulary for tables and figures that go into the same paper.
SETTING_NAMES = {"batch": "B", "num_heads": "H", "seq_len": "n", "head_dim": "d", "block_size": "block",
                 "sample_size": "sample", "lsh_num_projs": "projections"}


def setting_name(key: str) -> str:
    """The name a caption gives the column `key` (SETTING_NAMES, else the key itself)."""
    return SETTING_NAMES.get(key, key)


@dataclass(frozen=True)
class Timing:
    warmup: int = 2
    target_ms: float = 1000.0
    min_reps: int = 3
    max_reps: int = 100
    flush_l2: bool = True
    # GPU: queue the repetitions back to back and wait once at the end, as triton.testing.do_bench
    # does, instead of waiting for each call (the host's time to start a call then counts only
    # where the GPU runs out of queued work).
    back_to_back: bool = False
    # GPU: time replays of the call captured in a CUDA graph (no host work inside a call but the
    # replay's launch).
    cuda_graph: bool = False

    @property
    def mode(self) -> str:
        """How the repetitions were waited for, and whether they were graph replays, as rows record
        it (the store's timing_mode): per_call, back_to_back, per_call+cuda_graph, ..."""
        return ("back_to_back" if self.back_to_back else "per_call") + ("+cuda_graph" if self.cuda_graph else "")


# Every timing_mode a row can record (Timing.mode), in the order tables and figures show them.
TIMING_MODES = ("per_call", "per_call+cuda_graph", "back_to_back", "back_to_back+cuda_graph")


def _rank(order: tuple[str, ...], value: str) -> tuple[int, str]:
    return (order.index(value) if value in order else len(order), str(value))


def timing_mode_rank(mode: str) -> tuple[int, str]:
    """Sort key of a timing mode: TIMING_MODES' order, any other after them by name."""
    return _rank(TIMING_MODES, mode)


def mode_rank(mode: str) -> tuple[int, str]:
    """Sort key of a mode: fwd, bwd, fwd+bwd (MODES' order), any other after them by name."""
    return _rank(MODES, mode)


@dataclass(frozen=True)
class JobConfig:
    seq_len: int
    head_dim: int
    num_heads: int
    batch: int
    dtype: str             # resolved: float16 | bfloat16 | float32
    causal: bool
    mode: str
    block_size: int
    sample_size: int
    sample_tile: int
    lsh_num_projs: int
    min_seq_len: int
    methods: tuple[str, ...]
    method_target: str | None
    inputs: dict
    seed: int
    device: str            # resolved: cuda | cpu
    results_dir: str
    timing: Timing
    budget_s: float
    errors: bool
    isolate: str           # resolved: "worker" | "job" | "none" (see ISOLATE)
    force: bool = False    # measure even what the store already holds for this code version

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def as_dict(self) -> dict:
        return asdict(self)


def _int(cfg: Mapping, key: str, lo: int, hi: int | None = None, what: str | None = None) -> int:
    value = cfg.get(key)
    allowed = what or (f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}")
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise ConfigError(key, f"{value!r} is not allowed; allowed: {allowed}")
    return value


def _choice(cfg: Mapping, key: str, allowed) -> Any:
    value = cfg.get(key)
    if value not in allowed:
        raise ConfigError(key, f"{value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")
    return value


def _bool(cfg: Mapping, key: str) -> bool:
    value = cfg.get(key)
    if not isinstance(value, bool):
        raise ConfigError(key, f"{value!r} is not allowed; allowed: true, false")
    return value


def _number(cfg: Mapping, key: str, lo: float) -> float:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lo:
        raise ConfigError(key, f"{value!r} is not allowed; allowed: a number >= {lo}")
    return float(value)


def resolve_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda was requested but no CUDA GPU is visible; allowed here: auto, cpu")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _timing(raw: Mapping) -> Timing:
    try:
        t = Timing(
            warmup=_int(raw, "warmup", 0, 1000),
            target_ms=_number(raw, "target_ms", 0.0),
            min_reps=_int(raw, "min_reps", 1, 100000),
            max_reps=_int(raw, "max_reps", 1, 100000),
            flush_l2=_bool(raw, "flush_l2"),
            back_to_back=_bool(raw, "back_to_back"),
            cuda_graph=_bool(raw, "cuda_graph"),
        )
    except ConfigError as err:   # name the key as it is written: timing.min_reps=0
        raise ConfigError(f"timing.{err.field}", err.message) from None
    if t.max_reps < t.min_reps:
        raise ConfigError("timing.max_reps", f"{t.max_reps} is below timing.min_reps={t.min_reps}; allowed: >= min_reps")
    return t


def job_config(cfg: Mapping) -> JobConfig:
    """Check a composed config (a DictConfig or a plain mapping) and resolve it; raises ConfigError."""
    from . import methods as registry  # late: the registry imports this module

    cfg = _plain(cfg)
    device = resolve_device(_choice(cfg, "device", DEVICES))
    dtype = cfg.get("dtype")
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    _choice({"dtype": dtype}, "dtype", tuple(DTYPES))
    names = cfg.get("methods")
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)) or not names:
        raise ConfigError("methods", f"{names!r} is not allowed; allowed: a non-empty list of {', '.join(registry.names())}")
    for name in names:
        if name not in registry.names():
            raise ConfigError("methods", f"unknown method {name!r}; allowed: {', '.join(registry.names())}")
    if len(set(names)) != len(names):
        raise ConfigError("methods", f"{list(names)} names a method twice; allowed: each method once")
    inputs = cfg.get("inputs") or {"name": "gaussian"}
    if not isinstance(inputs, Mapping) or "name" not in inputs:
        raise ConfigError("inputs", f"{inputs!r} is not allowed; allowed: a config group with a 'name', e.g. inputs=gaussian")
    normalise_inputs(inputs)   # its parameters (a file's contents: inputs.check, once per sweep)
    isolate = cfg.get("isolate", "auto")
    if isolate not in ISOLATE:
        raise ConfigError("isolate", f"{isolate!r} is not allowed; allowed: auto, worker, true, false")
    job = JobConfig(
        seq_len=_int(cfg, "seq_len", 1),
        head_dim=_int(cfg, "head_dim", 1, 512),
        num_heads=_int(cfg, "num_heads", 1),
        batch=_int(cfg, "batch", 1),
        dtype=dtype,
        causal=_bool(cfg, "causal"),
        mode=_choice(cfg, "mode", MODES),
        block_size=_int(cfg, "block_size", 1),
        sample_size=_int(cfg, "sample_size", 0),
        sample_tile=_int(cfg, "sample_tile", 0),
        lsh_num_projs=_int(cfg, "lsh_num_projs", 1, 20),
        min_seq_len=_int(cfg, "min_seq_len", 1),
        methods=tuple(names),
        method_target=(cfg.get("method") or {}).get("target"),
        inputs=dict(inputs),
        seed=_int(cfg, "seed", 0),
        device=device,
        results_dir=str(cfg.get("results_dir") or "results"),
        timing=_timing(cfg.get("timing") or {}),
        budget_s=_number(cfg, "budget_s", 0.0),
        errors=_bool(cfg, "errors"),
        isolate=ISOLATE[isolate] if isolate != "auto" else ("worker" if device == "cuda" else "none"),
        force=_bool(cfg, "force") if "force" in cfg else False,
    )
    if job.timing.cuda_graph and job.device != "cuda":
        raise ConfigError("timing.cuda_graph", f"true needs a CUDA GPU (the device here is {job.device}); allowed here: false")
    if job.timing.cuda_graph and job.mode == "bwd":
        raise ConfigError("timing.cuda_graph", "true is allowed with mode fwd or fwd+bwd (mode bwd times the backward "
                          "of an eager forward made before each call, which a graph cannot replay); allowed with bwd: false")
    for name in job.methods:
        registry.get(name).check(job)
    # A shape that some selected methods have no kernel for gives those methods `unavailable` rows
    # (a head_dim sweep past hyper's 128 still measures the others); one that none takes is an error.
    refusals = [registry.refusal(registry.get(name), job) for name in job.methods]
    if all(refusals):
        raise refusals[0]
    return job


def _plain(cfg: Mapping) -> dict:
    try:
        from omegaconf import DictConfig, OmegaConf
        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf comes with hydra-core
        pass
    return dict(cfg)
