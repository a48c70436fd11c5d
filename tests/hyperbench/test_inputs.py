"""inputs.py: seeded, shaped, distribution-faithful Q, K, V and every user-facing error."""

import math
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from hyperbench.errors import ConfigError
from hyperbench.inputs import DEFAULTS, check, describe, heavy_hitter_keys, make_inputs, normalise

CONF = Path(__file__).resolve().parents[2] / "conf" / "inputs"
RANDOM = ["gaussian", "clustered", "heavy_hitters", "low_rank"]


def make(spec, n=256, d=32, heads=2, batch=2, dtype="float32", seed=0):
    return make_inputs(spec, batch=batch, heads=heads, seq_len=n, head_dim=d, dtype=dtype,
                       device="cpu", seed=seed)


def attention(q, k):
    return torch.softmax((q.double() @ k.double().transpose(-1, -2)) / math.sqrt(q.shape[-1]), -1)


# --------------------------------------------------------------------- determinism, shapes --
@pytest.mark.parametrize("name", RANDOM)
def test_same_seed_same_tensors_other_seed_different(name):
    a, b, c = make({"name": name}, seed=3), make({"name": name}, seed=3), make({"name": name}, seed=4)
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y)
        assert not torch.equal(x, z)
    assert not torch.equal(a[0], a[1])                      # q and k are separate draws


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64", torch.bfloat16])
@pytest.mark.parametrize("name", RANDOM)
def test_shapes_dtypes_device(name, dtype):
    q, k, v = make({"name": name}, n=37, d=16, heads=3, batch=2, dtype=dtype)
    want = dtype if isinstance(dtype, torch.dtype) else getattr(torch, dtype)
    for x in (q, k, v):
        assert x.shape == (2, 3, 37, 16) and x.dtype == want and x.device.type == "cpu"
        assert x.is_contiguous() and bool(torch.isfinite(x).all())


@pytest.mark.parametrize("name", RANDOM)
def test_low_precision_is_rounded_fp32(name):
    full = make({"name": name}, dtype="float32")
    half = make({"name": name}, dtype="bfloat16")
    for x, y in zip(full, half):
        assert torch.equal(x.to(torch.bfloat16), y)


def test_seed_changes_every_batch_and_head():
    q, _, _ = make({"name": "gaussian"}, batch=2, heads=2)
    flat = q.reshape(4, -1)
    assert all(not torch.equal(flat[i], flat[j]) for i in range(4) for j in range(i))


# ------------------------------------------------------------------- defining properties --
def test_gaussian_temperature_scales_logit_spread():
    q1, k1, v1 = make({"name": "gaussian"}, n=512, d=64)
    q4, k4, v4 = make({"name": "gaussian", "temperature": 4.0}, n=512, d=64)
    assert q1.std().item() == pytest.approx(1.0, rel=0.02)
    torch.testing.assert_close(q4, 2 * q1)                  # same draws, sqrt(4) = 2
    torch.testing.assert_close(v4, v1)
    spread = [(q @ k.transpose(-1, -2)).std().item() for q, k in ((q1, k1), (q4, k4))]
    assert spread[1] / spread[0] == pytest.approx(4.0, rel=1e-4)


def test_gaussian_draws_are_the_seeded_normals_in_order():
    """q, k, v are three standard normal draws of the seeded generator, in that order, q and k times
    sqrt(temperature), rounded once to the dtype: the values every stored row was measured on, kept
    while the draw casts each tensor before drawing the next (a third of the fp32 memory)."""
    gen = torch.Generator().manual_seed(5)
    want = [torch.randn(2, 2, 256, 32, generator=gen) * math.sqrt(2.0) for _ in range(2)]
    want.append(torch.randn(2, 2, 256, 32, generator=gen))
    for dtype, tdtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        got = make({"name": "gaussian", "temperature": 2.0}, seed=5, dtype=dtype)
        for g, w in zip(got, want):
            assert torch.equal(g, w.to(tdtype))


def test_clustered_attention_is_concentrated():
    n, d = 1024, 64
    peak = {}
    for name in ("gaussian", "clustered"):
        q, k, _ = make({"name": name}, n=n, d=d)
        peak[name] = attention(q, k).amax(-1).mean().item()
    assert peak["clustered"] > 4 * peak["gaussian"]
    # queries and keys sit near `num_clusters` shared centres: with no noise exactly on them
    q, k, _ = make({"name": "clustered", "num_clusters": 3, "noise": 0.0, "radius": 2.0})
    for b in range(2):
        for h in range(2):
            both = torch.cat([q[b, h], k[b, h]])
            centres = torch.unique(both, dim=0)
            assert len(centres) <= 3
            torch.testing.assert_close(centres.norm(dim=-1), torch.full((len(centres),), 2.0))


def test_heavy_hitters_planted_keys_take_the_mass():
    n, d, h = 1024, 64, 4
    spec = {"name": "heavy_hitters", "num_heavy": h, "strength": 8.0}
    q, k, _ = make(spec, n=n, d=d)
    keys = heavy_hitter_keys(spec, batch=2, heads=2, seq_len=n, head_dim=d, device="cpu", seed=0)
    assert keys.shape == (2, 2, n, h) and keys.dtype == torch.int64
    # distinct keys per query, and every key is planted for exactly h queries
    assert bool((keys.sort(-1).values.diff(dim=-1) > 0).all())
    counts = torch.zeros(2, 2, n, dtype=torch.int64).scatter_add_(
        2, keys.reshape(2, 2, -1), torch.ones(2, 2, n * h, dtype=torch.int64))
    assert bool((counts == h).all())
    mass = attention(q, k).gather(-1, keys).sum(-1)
    assert mass.mean().item() > 0.5                          # h of n keys take most of the mass
    qg, kg, _ = make({"name": "gaussian"}, n=n, d=d)
    assert attention(qg, kg).gather(-1, keys).sum(-1).mean().item() < 0.02


def test_heavy_hitters_without_strength_is_gaussian():
    a = make({"name": "heavy_hitters", "strength": 0.0})
    b = make({"name": "gaussian"})
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_low_rank_queries_and_keys():
    q, k, _ = make({"name": "low_rank", "rank": 4, "noise": 0.0}, n=128, d=32)
    for x in (q, k):
        s = torch.linalg.svdvals(x.double())
        assert bool((s[..., 3] > 1e-2 * s[..., 0]).all())
        assert bool((s[..., 4] < 1e-5 * s[..., 0]).all())
    # q and k share one row space: k projected onto q's row space is k itself
    basis = torch.linalg.svd(q.double(), full_matrices=False).Vh[..., :4, :]
    kp = k.double() @ basis.transpose(-1, -2) @ basis
    torch.testing.assert_close(kp, k.double(), rtol=1e-4, atol=1e-4)
    qn, _, _ = make({"name": "low_rank", "rank": 4, "noise": 0.1}, n=128, d=32)
    s = torch.linalg.svdvals(qn.double())
    assert bool((s[..., 4] < 0.1 * s[..., 0]).all()) and bool((s[..., 4] > 0).all())


# --------------------------------------------------------------------------------- files --
@pytest.mark.parametrize("lead", [(2, 3), (3,), ()])
def test_file_round_trip_pt(tmp_path, lead):
    src = {key: torch.randn(*lead, 17, 8, dtype=torch.float64) for key in "qkv"}
    path = tmp_path / "qkv.pt"
    torch.save(src, path)
    spec = {"name": "file", "path": str(path)}
    q, k, v = make_inputs(spec, batch=2, heads=3, seq_len=17, head_dim=8, dtype="float32",
                          device="cpu", seed=123)
    for key, x in zip("qkv", (q, k, v)):
        assert x.shape == (2, 3, 17, 8) and x.dtype == torch.float32 and x.is_contiguous()
        torch.testing.assert_close(x, src[key].float().expand(2, 3, 17, 8))
    assert describe(spec) == f"file(path={path})"


def test_file_safetensors(tmp_path, monkeypatch):
    path = tmp_path / "qkv.safetensors"
    path.write_bytes(b"not really")
    monkeypatch.setitem(sys.modules, "safetensors", None)             # as if not installed
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ConfigError, match="install") as e:
        make({"name": "file", "path": str(path)})
    assert e.value.field == "inputs.path" and str(path) in str(e.value)


def test_file_safetensors_round_trip(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    src = {key: torch.randn(1, 2, 9, 4) for key in "qkv"}
    path = tmp_path / "qkv.safetensors"
    st.save_file(src, str(path))
    out = make_inputs({"name": "file", "path": str(path)}, batch=1, heads=2, seq_len=9,
                      head_dim=4, dtype="float32", device="cpu", seed=0)
    for key, x in zip("qkv", out):
        assert torch.equal(x, src[key])


def _save(tmp_path, obj, name="bad.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


class Custom:                                   # not loadable with weights_only=True
    pass


@pytest.mark.parametrize("case, match", [
    ("missing", "no such file"),
    ("suffix", "unknown file type"),
    ("keys", "keys q, k, v"),
    ("list", "keys q, k, v"),
    ("not_tensor", "not a tensor"),
    ("int", "float dtype"),
    ("nan", "non-finite"),
    ("inf", "non-finite"),
    ("disagree", "q, k, v must agree"),
    ("rank5", r"\[B, H, n, d\]"),
    ("seq_len", "run with seq_len=9 head_dim=8"),
    ("heads", "run with num_heads=5"),
    ("pickle", "weights_only"),
    ("text", "not a file torch.save wrote"),
    ("empty", "not a file torch.save wrote"),
])
def test_file_errors(tmp_path, case, match):
    good = {key: torch.randn(2, 17, 8) for key in "qkv"}
    if case == "missing":
        path = str(tmp_path / "nope.pt")
    elif case == "suffix":
        path = str(tmp_path / "x.npy")
        Path(path).write_bytes(b"")
    elif case == "keys":
        path = _save(tmp_path, {"q": good["q"], "k": good["k"]})
    elif case == "list":
        path = _save(tmp_path, [good["q"], good["k"], good["v"]])
    elif case == "not_tensor":
        path = _save(tmp_path, {**good, "v": [1.0, 2.0]})
    elif case == "int":
        path = _save(tmp_path, {**good, "k": torch.ones(2, 17, 8, dtype=torch.int32)})
    elif case in ("nan", "inf"):
        bad = good["v"].clone()
        bad[1, 3, 2] = math.nan if case == "nan" else math.inf
        path = _save(tmp_path, {**good, "v": bad})
    elif case == "disagree":
        path = _save(tmp_path, {**good, "k": torch.randn(2, 16, 8)})
    elif case == "rank5":
        path = _save(tmp_path, {key: torch.randn(1, 1, 2, 17, 8) for key in "qkv"})
    elif case == "seq_len":
        path = _save(tmp_path, {key: torch.randn(9, 8) for key in "qkv"})
    elif case == "heads":
        path = _save(tmp_path, {key: torch.randn(5, 17, 8) for key in "qkv"})
    elif case in ("text", "empty"):
        path = str(tmp_path / "x.pt")
        Path(path).write_text("q, k, v\n" if case == "text" else "")
    else:
        path = _save(tmp_path, {**good, "extra": Custom()})
    with pytest.raises(ConfigError, match=match) as e:
        make({"name": "file", "path": path}, n=17, d=8, heads=2, batch=1)
    assert e.value.field == "inputs.path"
    assert str(e.value).startswith(f"inputs.path: {path}: ")
    with pytest.raises(ConfigError, match=match):   # the check before a sweep says the same
        check({"name": "file", "path": path}, batch=1, heads=2, seq_len=17, head_dim=8)


def test_check_passes_what_make_inputs_takes(tmp_path):
    path = _save(tmp_path, {key: torch.randn(2, 17, 8) for key in "qkv"})
    check({"name": "file", "path": path}, batch=3, heads=2, seq_len=17, head_dim=8)
    check({"name": "heavy_hitters", "num_heavy": 17}, batch=1, heads=1, seq_len=17, head_dim=8)
    with pytest.raises(ConfigError, match="allowed: 0..seq_len") as e:
        check({"name": "heavy_hitters", "num_heavy": 18}, batch=1, heads=1, seq_len=17, head_dim=8)
    assert e.value.field == "inputs.num_heavy"


# -------------------------------------------------------------------------------- errors --
def test_unknown_distribution():
    with pytest.raises(ConfigError) as e:
        make({"name": "x"})
    assert str(e.value) == ("inputs.name: unknown distribution 'x'; allowed: gaussian, clustered, "
                            "heavy_hitters, low_rank, file")
    with pytest.raises(ConfigError, match="inputs.name"):
        make({"temperature": 1.0})


@pytest.mark.parametrize("spec, field", [
    ({"name": "gaussian", "temperature": 0}, "inputs.temperature"),
    ({"name": "gaussian", "temperature": -1.0}, "inputs.temperature"),
    ({"name": "gaussian", "temperature": math.nan}, "inputs.temperature"),
    ({"name": "gaussian", "temperature": "hot"}, "inputs.temperature"),
    ({"name": "gaussian", "temperature": True}, "inputs.temperature"),
    ({"name": "clustered", "num_clusters": 0}, "inputs.num_clusters"),
    ({"name": "clustered", "num_clusters": 2.5}, "inputs.num_clusters"),
    ({"name": "clustered", "radius": -1}, "inputs.radius"),
    ({"name": "clustered", "noise": -0.1}, "inputs.noise"),
    ({"name": "heavy_hitters", "num_heavy": -1}, "inputs.num_heavy"),
    ({"name": "heavy_hitters", "num_heavy": 300}, "inputs.num_heavy"),     # > seq_len
    ({"name": "heavy_hitters", "strength": math.inf}, "inputs.strength"),
    ({"name": "low_rank", "rank": 0}, "inputs.rank"),
    ({"name": "low_rank", "noise": -1}, "inputs.noise"),
    ({"name": "gaussian", "temprature": 2.0}, "inputs.temprature"),        # typo: unknown key
    ({"name": "file"}, "inputs.path"),
    ({"name": "file", "path": "???"}, "inputs.path"),
])
def test_bad_parameters(spec, field):
    with pytest.raises(ConfigError) as e:
        make(spec)
    assert e.value.field == field
    assert "allowed" in e.value.message or "expected" in e.value.message or "set" in e.value.message


def test_bad_dtype_and_shape():
    with pytest.raises(ConfigError) as e:
        make({"name": "gaussian"}, dtype="int8")
    assert e.value.field == "dtype"
    with pytest.raises(ConfigError) as e:
        make({"name": "gaussian"}, dtype=torch.int32)
    assert e.value.field == "dtype"
    with pytest.raises(ConfigError) as e:
        make({"name": "gaussian"}, n=0)
    assert e.value.field == "seq_len"


def test_integral_float_accepted_and_normalised():
    assert normalise({"name": "clustered", "num_clusters": 4.0})["num_clusters"] == 4
    assert normalise({"name": "gaussian", "temperature": 2})["temperature"] == 2.0


# ---------------------------------------------------------------------- describe, configs --
def test_describe():
    assert describe({"name": "gaussian"}) == "gaussian(temperature=1.0)"
    assert describe({"name": "clustered", "num_clusters": 4}) == \
        "clustered(num_clusters=4,radius=8.0,noise=1.0)"
    assert describe({"name": "low_rank", "noise": 0}) == "low_rank(rank=8,noise=0.0)"
    with pytest.raises(ConfigError):
        describe({"name": "nope"})


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_yaml_configs_match_defaults(name):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert OmegaConf.to_container(cfg) == {"name": name, **DEFAULTS[name]}
    if name == "file":
        with pytest.raises(ConfigError, match="inputs.path: missing"):
            make(cfg)                                         # DictConfig with a ??? value
    else:
        assert describe(cfg) == describe({"name": name})
        q, _, _ = make(cfg, n=8, d=4)                         # a DictConfig works as the spec
        assert torch.equal(q, make({"name": name}, n=8, d=4)[0])
