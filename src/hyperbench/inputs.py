"""Seeded Q, K, V for a benchmark job: `make_inputs(spec, ...)` and `describe(spec)`.

`spec` is the Hydra `inputs` group (conf/inputs/<name>.yaml): `name` plus that distribution's
parameters; missing parameters take the defaults in DEFAULTS (the same values as the yaml files).

Distributions (all per (batch, head) independent; "N" is a standard normal draw):
  gaussian(temperature)        Q, K = sqrt(temperature)·N, V = N: the logits' spread is
                               temperature× that of plain Gaussian inputs.
  clustered(num_clusters, radius, noise)
                               per head `num_clusters` centres (random unit directions × radius),
                               shared by queries and keys; every query and key picks a centre
                               uniformly and adds noise·N. V = N.
  heavy_hitters(num_heavy, strength)
                               Gaussian Q, K, V; then for a random permutation π of the keys, query i
                               is planted on the keys S_i = {π((i + t) mod n) : t < num_heavy}
                               (distinct keys; every key is planted for exactly num_heavy queries):
                               k_j += strength·q_i/||q_i|| for every planted pair (i, j), so
                               the logit q_i·k_j grows by strength·||q_i|| ≈ strength·sqrt(d),
                               i.e. by ≈ `strength` at the usual scale 1/sqrt(d). (Each key also
                               grows by num_heavy such pushes, which widens the other logits a
                               little: their std becomes ≈ sqrt(1 + num_heavy·strength²/d).)
  low_rank(rank, noise)        per head a shared basis R = N [rank×d]; Q = N_q [n×rank] @ R/sqrt(rank)
                               + noise·N, K likewise with its own N_k and the same R. V = N.
  file(path)                   q, k, v from a .pt (torch.load, weights_only) or .safetensors file.
                               Each tensor is [B, H, n, d], [H, n, d] or [n, d]; the latter two
                               are repeated over the missing leading dims. The result must be
                               exactly [batch, heads, seq_len, head_dim] as requested: a file with
                               another n or d is a ConfigError naming the overrides to set
                               (seq_len=..., head_dim=...), so every row records the true shape.

Random draws use a torch.Generator on the target device seeded with `seed`, drawn in fp32 (fp64
when dtype is fp64) and then cast: the same seed gives identical tensors, and bf16/fp16 inputs
are the rounded fp32 ones (on the same device).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch

from hyperbench.errors import ConfigError

DEFAULTS: dict[str, dict] = {
    "gaussian": {"temperature": 1.0},
    "clustered": {"num_clusters": 8, "radius": 8.0, "noise": 1.0},
    "heavy_hitters": {"num_heavy": 4, "strength": 8.0},
    "low_rank": {"rank": 8, "noise": 0.1},
    "file": {"path": "???"},
}
ALLOWED = ", ".join(DEFAULTS)
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
           "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float64": torch.float64, "fp64": torch.float64, "double": torch.float64}


# ------------------------------------------------------------------------------ validation --
def _plain(spec) -> dict:
    if spec is None or not isinstance(spec, Mapping):
        raise ConfigError("inputs", f"expected a mapping with a 'name'; got {spec!r}")
    try:                                            # an OmegaConf DictConfig: keep '???' as text
        from omegaconf import DictConfig, OmegaConf
        if isinstance(spec, DictConfig):
            return OmegaConf.to_container(spec, resolve=True, throw_on_missing=False)
    except ImportError:                             # pragma: no cover - omegaconf is a dependency
        pass
    return dict(spec)


def _number(name: str, value, *, integer: bool, low: float, low_ok: bool, what: str):
    field = f"inputs.{name}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, f"expected {what}; got {value!r}")
    if integer and not isinstance(value, int):
        if not float(value).is_integer():
            raise ConfigError(field, f"expected {what}; got {value!r}")
        value = int(value)
    if not math.isfinite(value) or value < low or (value == low and not low_ok):
        raise ConfigError(field, f"expected {what}; got {value!r}")
    return value if integer else float(value)


_RULES = {   # parameter -> (integer?, lower bound, bound allowed?, allowed values in words)
    "temperature": (False, 0.0, False, "a finite number > 0"),
    "num_clusters": (True, 1, True, "an integer >= 1"),
    "radius": (False, 0.0, True, "a finite number >= 0"),
    "noise": (False, 0.0, True, "a finite number >= 0"),
    "num_heavy": (True, 0, True, "an integer >= 0 (and <= seq_len)"),
    "strength": (False, 0.0, True, "a finite number >= 0"),
    "rank": (True, 1, True, "an integer >= 1"),
}


def normalise(spec) -> dict:
    """The spec as a plain dict: name first, every parameter present (defaults filled), checked.
    Raises ConfigError("inputs.<field>", ...) for anything not allowed."""
    raw = _plain(spec)
    name = raw.get("name")
    if name not in DEFAULTS:
        raise ConfigError("inputs.name", f"unknown distribution {name!r}; allowed: {ALLOWED}")
    params = dict(DEFAULTS[name])
    for key, value in raw.items():
        if key == "name":
            continue
        if key not in params:
            allowed = ", ".join(params)
            raise ConfigError(f"inputs.{key}", f"not a parameter of {name}; allowed: {allowed}")
        params[key] = value
    for key, value in params.items():
        if key == "path":
            if not isinstance(value, (str, os.PathLike)) or str(value) in ("", "???"):
                raise ConfigError("inputs.path", f"missing; set inputs.path=<file.pt|file"
                                  f".safetensors> holding q, k, v (got {value!r})")
            params[key] = str(value)
        else:
            integer, low, low_ok, what = _RULES[key]
            params[key] = _number(key, value, integer=integer, low=low, low_ok=low_ok, what=what)
    return {"name": name, **params}


def describe(spec) -> str:
    """Compact one-line name with every parameter, e.g. 'gaussian(temperature=1.0)'."""
    s = normalise(spec)
    args = ",".join(f"{k}={v}" for k, v in s.items() if k != "name")
    return f"{s['name']}({args})"


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        out = dtype
    elif isinstance(dtype, str) and dtype.lower() in _DTYPES:
        out = _DTYPES[dtype.lower()]
    else:
        raise ConfigError("dtype", f"unknown dtype {dtype!r}; allowed: float32, float16, "
                          "bfloat16, float64")
    if not out.is_floating_point:
        raise ConfigError("dtype", f"{dtype!r} is not a float dtype; allowed: float32, float16, "
                          "bfloat16, float64")
    return out


# --------------------------------------------------------------------------- distributions --
def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def _gaussian(p, shape, rnd, cast):
    # each tensor cast to its dtype before the next is drawn (the same values): three fp32 tensors
    # at once would be 2× the 16-bit inputs' size again (96 GB beside 48 at n = 4M, H = 32, d = 64)
    t = math.sqrt(p["temperature"])
    return cast(rnd(shape).mul_(t)), cast(rnd(shape).mul_(t)), cast(rnd(shape))


def _clustered(p, shape, rnd, gen):
    B, H, n, d = shape
    c = p["num_clusters"]
    centres = _unit(rnd((B, H, c, d))) * p["radius"]                 # [B, H, c, d]

    def around():
        pick = torch.randint(c, (B, H, n), generator=gen, device=centres.device)
        idx = pick.unsqueeze(-1).expand(B, H, n, d)
        return torch.gather(centres, 2, idx) + p["noise"] * rnd(shape)

    q = around()
    k = around()
    return q, k, rnd(shape)


def _heavy_hitters(p, shape, rnd):
    B, H, n, d = shape
    h = p["num_heavy"]
    _check_planted(p, n)
    q, k, v = rnd(shape), rnd(shape), rnd(shape)
    perm = torch.argsort(rnd((B, H, n)), dim=-1)                     # random π per head
    push = p["strength"] * _unit(q)                                  # [B, H, n, d]
    rows = torch.arange(n, device=q.device)
    planted = torch.stack([perm[..., (rows + t) % n] for t in range(h)], dim=-1)  # [B, H, n, h]
    for t in range(h):
        k.scatter_add_(2, planted[..., t].unsqueeze(-1).expand(B, H, n, d), push)
    return q, k, v, planted


def _low_rank(p, shape, rnd):
    B, H, n, d = shape
    r = p["rank"]
    basis = rnd((B, H, r, d)) / math.sqrt(r)
    q = rnd((B, H, n, r)) @ basis + p["noise"] * rnd(shape)
    k = rnd((B, H, n, r)) @ basis + p["noise"] * rnd(shape)
    return q, k, rnd(shape)


def _check_planted(p: dict, n: int) -> None:
    if p["num_heavy"] > n:
        raise ConfigError("inputs.num_heavy", f"{p['num_heavy']} planted keys per query but seq_len is {n}; "
                          f"allowed: 0..seq_len")


def _load_file(path: str, shape, dtype, device):
    """q, k, v of a file, checked against `shape`, on `device` in `dtype`, each [B, H, n, d]."""
    return tuple(x.to(device=device, dtype=dtype).expand(shape).contiguous() for x in _read_file(path, shape))


def _load_error(e: Exception) -> str:
    """The part of torch.load's error that says what is wrong with the file: past the generic
    advice of a weights_only failure, which suggests turning the safety off."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def _read_file(path: str, shape):
    """q, k, v as the file holds them (on the CPU), or a ConfigError on inputs.path saying what is
    wrong with the file for a job of `shape`."""
    where = "inputs.path"
    if not os.path.isfile(path):
        raise ConfigError(where, f"{path}: no such file")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ConfigError(where, f"{path}: reading .safetensors needs the safetensors "
                              "package; install it (pip install safetensors) or save a .pt") from None
        try:
            data = load_file(path, device="cpu")
        except Exception as e:  # noqa: BLE001 - any reader failure is the user's file
            raise ConfigError(where, f"{path}: cannot read as safetensors ({e})") from None
    elif path.endswith((".pt", ".pth")):
        with open(path, "rb") as f:
            head = f.read(4)
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):   # torch.save's zip, or a bare pickle
            raise ConfigError(where, f"{path}: not a file torch.save wrote (it starts with {head!r}); "
                              "allowed: a dict of tensors q, k, v saved by torch.save, or .safetensors")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise ConfigError(where, f"{path}: cannot load with torch.load(weights_only=True) "
                              f"({_load_error(e)})") from None
    else:
        raise ConfigError(where, f"{path}: unknown file type; allowed: .pt, .pth, .safetensors")
    if not isinstance(data, Mapping) or not all(key in data for key in "qkv"):
        got = sorted(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
        raise ConfigError(where, f"{path}: expected a dict with keys q, k, v; got {got}")
    B, H, n, d = shape
    out = []
    for key in "qkv":
        x = data[key]
        if not isinstance(x, torch.Tensor):
            raise ConfigError(where, f"{path}: {key} is {type(x).__name__}, not a tensor")
        if not x.is_floating_point():
            raise ConfigError(where, f"{path}: {key} has dtype {x.dtype}; expected a float dtype")
        if x.dim() not in (2, 3, 4):
            raise ConfigError(where, f"{path}: {key} has shape {list(x.shape)}; expected "
                              "[B, H, n, d], [H, n, d] or [n, d]")
        if x.shape != data["q"].shape:
            raise ConfigError(where, f"{path}: {key} has shape {list(x.shape)} but q has "
                              f"{list(data['q'].shape)}; q, k, v must agree")
        want = (B, H, n, d)[4 - x.dim():]
        if tuple(x.shape) != want:
            names = ("batch", "num_heads", "seq_len", "head_dim")[4 - x.dim():]
            fix = " ".join(f"{a}={b}" for a, b in zip(names, x.shape))
            raise ConfigError(where, f"{path}: {key} has shape {list(x.shape)} but the job asks "
                              f"for {list(want)}; run with {fix}")
        if not bool(torch.isfinite(x).all()):
            raise ConfigError(where, f"{path}: {key} has non-finite values (nan or inf)")
        out.append(x)
    return tuple(out)


def check(spec: Mapping, *, batch: int, heads: int, seq_len: int, head_dim: int) -> None:
    """Raise the ConfigError make_inputs would raise for this job, without drawing anything: the
    parameters, planted keys against seq_len, and a file's contents (read and checked, not kept).
    `hyperbench run` calls it for every job before the first one starts."""
    p = normalise(spec)
    if p["name"] == "heavy_hitters":
        _check_planted(p, int(seq_len))
    elif p["name"] == "file":
        _read_file(p["path"], (int(batch), int(heads), int(seq_len), int(head_dim)))


def make_inputs(spec: Mapping, *, batch: int, heads: int, seq_len: int, head_dim: int,
                dtype, device, seed: int):
    """(q, k, v), each [batch, heads, seq_len, head_dim] in `dtype` on `device`, from the
    distribution `spec['name']` with its parameters (see the module docstring)."""
    p = normalise(spec)
    dt = _dtype(dtype)
    device = torch.device(device)
    shape = (int(batch), int(heads), int(seq_len), int(head_dim))
    for field, value in zip(("batch", "num_heads", "seq_len", "head_dim"), shape):
        if value < 1:
            raise ConfigError(field, f"expected an integer >= 1; got {value}")
    q, k, v, _ = _draw(p, shape, dt, device, seed)
    return q, k, v


def heavy_hitter_keys(spec: Mapping, *, batch: int, heads: int, seq_len: int, head_dim: int,
                      device, seed: int, dtype=torch.float32) -> torch.Tensor:
    """The planted key indices of `heavy_hitters` inputs made with the same arguments:
    int64 [batch, heads, seq_len, num_heavy], row i = the keys S_i planted for query i."""
    p = normalise(spec)
    if p["name"] != "heavy_hitters":
        raise ConfigError("inputs.name", f"{p['name']!r} has no planted keys; allowed: "
                          "heavy_hitters")
    shape = (int(batch), int(heads), int(seq_len), int(head_dim))
    return _draw(p, shape, _dtype(dtype), torch.device(device), seed)[3]


def _draw(p: dict, shape, dt: torch.dtype, device: torch.device, seed: int):
    """(q, k, v, planted keys or None) for a normalised spec."""
    name = p["name"]
    if name == "file":
        return (*_load_file(p["path"], shape, dt, device), None)
    draw_dtype = torch.float64 if dt == torch.float64 else torch.float32
    gen = torch.Generator(device=device).manual_seed(int(seed))

    def rnd(size):
        return torch.randn(size, generator=gen, device=device, dtype=draw_dtype)

    planted = None
    if name == "gaussian":
        q, k, v = _gaussian(p, shape, rnd, lambda x: x.to(dt).contiguous())
    elif name == "clustered":
        q, k, v = _clustered(p, shape, rnd, gen)
    elif name == "heavy_hitters":
        q, k, v, planted = _heavy_hitters(p, shape, rnd)
    else:
        q, k, v = _low_rank(p, shape, rnd)
    return (*(x.to(dt).contiguous() for x in (q, k, v)), planted)
