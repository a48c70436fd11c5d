"""Every bad value gets a ConfigError naming its key and what is allowed; good configs resolve."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from hyperbench.config import job_config
from hyperbench.errors import ConfigError

BASE = OmegaConf.load(Path(__file__).parents[2] / "conf" / "config.yaml")


def cfg(**overrides):
    c = OmegaConf.to_container(BASE)
    c.pop("defaults")
    c.pop("hydra")
    c["inputs"] = {"name": "gaussian", "temperature": 1.0}
    for key, value in overrides.items():
        node = c
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return c


def test_defaults_resolve_on_cpu():
    job = job_config(cfg())
    assert job.device == "cpu" and job.dtype == "float32" and job.isolate == "none"
    assert (job.batch, job.num_heads, job.head_dim, job.block_size, job.sample_size) == (1, 32, 64, 256, 256)
    assert (job.lsh_num_projs, job.min_seq_len) == (7, 4096)


@pytest.mark.parametrize("override,key,allowed", [
    ({"seq_len": 0}, "seq_len", "integer >= 1"),
    ({"sample_size": -1}, "sample_size", "integer >= 0"),
    ({"methods": ["nope"]}, "methods", "allowed: exact"),
    ({"dtype": "float13"}, "dtype", "float16, bfloat16, float32"),
    ({"device": "cuda"}, "device", "allowed here: auto, cpu"),
    ({"mode": "sideways"}, "mode", "fwd, bwd, fwd+bwd"),
    ({"causal": "maybe"}, "causal", "true, false"),
    ({"head_dim": 7, "methods": ["hyper"]}, "head_dim", "for method hyper; allowed: 16, 32, 64, 128"),
    ({"block_size": 100, "methods": ["hyper"]}, "block_size", "for method hyper; allowed: a multiple of 16"),
    ({"methods": ["custom"]}, "method.target", "pkg.module:function"),
    ({"methods": ["custom"], "method.target": "no_such_module:f"}, "method.target", "cannot import"),
    ({"timing.min_reps": 0}, "timing.min_reps", "integer from 1"),
    ({"methods": ["exact", "exact"]}, "methods", "each method once"),
])
def test_bad_values_name_the_key(override, key, allowed):
    with pytest.raises(ConfigError) as err:
        job_config(cfg(**override))
    assert err.value.field == key
    assert allowed in str(err.value)
    assert "\n" not in str(err.value)


def test_timing_waits_for_each_call_unless_asked_to_queue_them():
    assert job_config(cfg()).timing.back_to_back is False
    assert job_config(cfg(**{"timing.back_to_back": True})).timing.back_to_back is True
    with pytest.raises(ConfigError) as err:
        job_config(cfg(**{"timing.back_to_back": "sometimes"}))
    assert err.value.field == "timing.back_to_back" and "true, false" in str(err.value)


def test_method_constraints_apply_only_to_selected_methods():
    job = job_config(cfg(head_dim=7, block_size=100, methods=["exact", "hyper_ref", "sdpa_math"]))
    assert job.head_dim == 7 and job.block_size == 100


def test_a_shape_is_an_error_only_where_every_selected_method_refuses_it():
    job = job_config(cfg(head_dim=48, methods=["exact", "hyper"]))   # hyper's row: unavailable
    assert job.head_dim == 48
    with pytest.raises(ConfigError) as err:
        job_config(cfg(head_dim=48, methods=["hyper"]))
    assert err.value.field == "head_dim" and "allowed: 16, 32, 64, 128" in str(err.value)


def test_custom_target_resolves():
    job = job_config(cfg(methods=["custom"], **{"method.target": "hyperbench.methods.exact:exact_attention"}))
    assert job.method_target.endswith(":exact_attention")


def test_cuda_graph_timing_needs_a_gpu_and_a_forward_in_the_call(monkeypatch):
    assert job_config(cfg()).timing.cuda_graph is False
    with pytest.raises(ConfigError) as err:
        job_config(cfg(**{"timing.cuda_graph": True}))
    assert err.value.field == "timing.cuda_graph" and "CUDA GPU" in str(err.value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # config only: nothing runs
    for mode in ("fwd", "fwd+bwd"):
        job = job_config(cfg(**{"timing.cuda_graph": True, "mode": mode, "methods": ["exact"]}))
        assert job.timing.mode == "per_call+cuda_graph"
    queued = job_config(cfg(**{"timing.cuda_graph": True, "timing.back_to_back": True, "methods": ["exact"]}))
    assert queued.timing.mode == "back_to_back+cuda_graph"
    with pytest.raises(ConfigError) as err:
        job_config(cfg(**{"timing.cuda_graph": True, "mode": "bwd", "methods": ["exact"]}))
    assert err.value.field == "timing.cuda_graph" and "fwd or fwd+bwd" in str(err.value)
    with pytest.raises(ConfigError) as err:
        job_config(cfg(**{"timing.cuda_graph": "yes"}))
    assert err.value.field == "timing.cuda_graph"


@pytest.mark.parametrize("value,resolved", [("auto", "none"), ("worker", "worker"), (True, "job"), (False, "none")])
def test_isolate_resolves_to_where_jobs_run(value, resolved):
    assert job_config(cfg(isolate=value)).isolate == resolved   # auto: "worker" on a GPU, "none" here


def test_an_unknown_isolate_names_the_allowed_values():
    with pytest.raises(ConfigError) as err:
        job_config(cfg(isolate="sometimes"))
    assert err.value.field == "isolate" and "auto, worker, true, false" in err.value.message
