"""A job measures every method on the same inputs; failures become rows and the job goes on."""

import signal

import pytest
import torch

from hyperbench import job as job_mod
from hyperbench.config import job_config

from .test_config import cfg

SMALL = dict(seq_len=160, num_heads=2, head_dim=16, block_size=32, sample_size=32, sample_tile=32, min_seq_len=64,
             **{"timing.warmup": 1, "timing.min_reps": 2, "timing.max_reps": 3, "timing.target_ms": 1})


def _run(**over):
    job = job_config(cfg(**{**SMALL, **over}))
    return job, job_mod.run_job(job, {"run_id": "r", "job_id": "j"})


def test_every_method_gets_a_row_with_timing_and_error():
    job, rows = _run(methods=["exact", "sdpa_math", "hyper_ref", "sdpa_cudnn"])
    by = {r["method"]: r for r in rows}
    assert list(by) == ["exact", "sdpa_math", "hyper_ref", "sdpa_cudnn"]
    for name in ("exact", "sdpa_math", "hyper_ref"):
        r = by[name]
        assert r["status"] == "ok", r
        assert r["time_ms_p20"] <= r["time_ms"] <= r["time_ms_p80"] and r["reps"] >= 2
        assert r["spec_err"] is not None and r["rel_fro_err"] is not None
    assert by["exact"]["spec_err"] < 1e-5 and by["sdpa_math"]["spec_err"] < 1e-5
    assert by["hyper_ref"]["spec_err"] > 1e-3  # an approximation, measured as one
    assert by["sdpa_cudnn"]["status"] == "unavailable" and "CUDA" in by["sdpa_cudnn"]["message"]


@pytest.mark.parametrize("target,status,text", [
    ("tests.hyperbench.helpers:raises", "error", "planted failure"),
    ("tests.hyperbench.helpers:out_of_memory", "oom", "out of memory"),
])
def test_a_failing_method_is_recorded_and_the_rest_still_run(target, status, text):
    _, rows = _run(methods=["custom", "exact"], **{"method.target": target})
    assert rows[0]["status"] == status and text in rows[0]["message"]
    assert rows[1]["status"] == "ok"


def test_inputs_too_large_for_the_device_make_an_oom_row_for_every_method(monkeypatch):
    def no_room(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 16.00 GiB")
    monkeypatch.setattr(job_mod.inputs, "make_inputs", no_room)
    _, rows = _run(methods=["exact", "hyper_ref"])
    assert [(r["method"], r["status"]) for r in rows] == [("exact", "oom"), ("hyper_ref", "oom")]
    assert all("inputs do not fit" in r["message"] and "16.00 GiB" in r["message"] for r in rows)


def test_an_input_file_gone_bad_after_the_check_makes_an_error_row_for_every_method(tmp_path):
    path = tmp_path / "inputs.pt"
    path.write_text("no longer tensors")
    _, rows = _run(methods=["exact", "hyper_ref"], inputs={"name": "file", "path": str(path)})
    assert [(r["method"], r["status"]) for r in rows] == [("exact", "error"), ("hyper_ref", "error")]
    assert all("the inputs could not be made" in r["message"] and "inputs.path" in r["message"] for r in rows)


def test_a_reference_too_large_leaves_the_errors_empty_and_the_timings_run(monkeypatch):
    def no_room(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    monkeypatch.setattr(job_mod.metrics, "exact_reference", no_room)
    _, rows = _run(methods=["exact"])
    assert rows[0]["status"] == "ok" and rows[0]["time_ms"] > 0 and rows[0].get("spec_err") is None
    assert "fp32 reference does not fit" in rows[0]["message"]


def test_over_budget_methods_are_skipped_with_the_estimate():
    _, rows = _run(methods=["exact"], budget_s=1e-9)
    assert rows[0]["status"] == "skipped" and "budget_s" in rows[0]["message"] and rows[0]["est_ms"] > 0


def test_many_heads_put_the_error_metric_over_budget_though_its_flops_are_few():
    # 512 heads of 32 rows: ~25 ms of FLOPs, ~0.46 s of Gram norms and loops over heads on a CPU
    job, rows = _run(methods=["exact"], seq_len=32, num_heads=512, head_dim=64, budget_s=0.2)
    exact = job_mod.methods.get("exact")
    passes = job_mod.METRIC_PASSES_CACHED          # 32 × 32 scores a head: formed once for the norm
    flops_ms = job_mod.cost.compute_ms(passes * exact.flops(job), "cpu", torch.float32, exact.efficiency)
    assert flops_ms < 0.2e3 < job_mod.metric_estimate_ms(job, passes, torch.float32)
    assert rows[0]["status"] == "ok" and rows[0].get("spec_err") is None
    assert "error metrics skipped: estimated" in rows[0]["message"] and "budget_s=0.2" in rows[0]["message"]


@pytest.mark.parametrize("fits", [True, False])
def test_the_metric_estimate_counts_fewer_passes_where_the_norm_forms_p_once(monkeypatch, fits):
    seen = []
    real = job_mod.metric_estimate_ms
    monkeypatch.setattr(job_mod, "metric_estimate_ms", lambda job, passes, dtype: seen.append(passes)
                        or real(job, passes, dtype))
    if not fits:
        monkeypatch.setattr(job_mod.metrics, "SCORE_BUDGET_BYTES", 1000)
    _, rows = _run(methods=["exact"])
    assert seen == [job_mod.METRIC_PASSES_CACHED if fits else job_mod.METRIC_PASSES]
    assert job_mod.METRIC_PASSES_CACHED < job_mod.METRIC_PASSES
    assert rows[0]["status"] == "ok" and rows[0]["spec_err"] < 1e-5


def test_errors_off_leaves_error_columns_empty():
    _, rows = _run(methods=["exact"], errors=False)
    assert rows[0]["status"] == "ok" and rows[0].get("spec_err") is None


@pytest.mark.parametrize("mode", ["bwd", "fwd+bwd"])
def test_backward_modes_run(mode):
    _, rows = _run(methods=["exact", "hyper_ref"], mode=mode, causal=True, errors=False)
    assert [r["status"] for r in rows] == ["ok", "ok"]


def test_a_dying_job_process_is_reported_for_every_method():
    job = job_config(cfg(**{**SMALL, "methods": ["custom", "exact"], "errors": False,
                            "method.target": "tests.hyperbench.helpers:dies"}))
    rows = job_mod.run_isolated(job, {"run_id": "r", "job_id": "j"})
    assert [r["status"] for r in rows] == ["error", "error"]
    assert "exit code 13" in rows[0]["message"]


def test_isolated_job_returns_the_same_rows_as_in_process():
    job = job_config(cfg(**{**SMALL, "methods": ["exact"], "errors": False}))
    rows = job_mod.run_isolated(job, {"run_id": "r", "job_id": "j"})
    assert rows[0]["status"] == "ok" and rows[0]["time_ms"] > 0


def test_a_worker_serves_the_next_job_until_one_records_an_error():
    """isolate: worker keeps the job process across jobs; an error row or a death replaces it."""
    base = {"run_id": "r", "job_id": "j"}
    ok = job_config(cfg(**{**SMALL, "methods": ["exact"], "errors": False}))
    failing = job_config(cfg(**{**SMALL, "methods": ["custom"], "errors": False,
                                "method.target": "tests.hyperbench.helpers:raises"}))
    dying = job_config(cfg(**{**SMALL, "methods": ["custom"], "errors": False,
                              "method.target": "tests.hyperbench.helpers:dies"}))
    try:
        assert job_mod.run_isolated(ok, base, keep=True)[0]["status"] == "ok"
        first = job_mod._worker[0].pid
        assert job_mod.run_isolated(ok, base, keep=True)[0]["status"] == "ok"
        assert job_mod._worker[0].pid == first                 # the same process served both
        rows = job_mod.run_isolated(failing, base, keep=True)
        assert rows[0]["status"] == "error" and "planted failure" in rows[0]["message"]
        assert job_mod._worker is None                         # an error row ends the process
        rows = job_mod.run_isolated(dying, base, keep=True)
        assert rows[0]["status"] == "error" and "exit code 13" in rows[0]["message"]
        assert job_mod._worker is None
        assert job_mod.run_isolated(ok, base, keep=True)[0]["status"] == "ok"
        assert job_mod._worker[0].pid != first                 # the next job got a fresh one
    finally:
        job_mod.stop_worker()
    assert job_mod._worker is None


def test_without_keep_every_job_gets_a_fresh_process():
    job = job_config(cfg(**{**SMALL, "methods": ["exact"], "errors": False}))
    base = {"run_id": "r", "job_id": "j"}
    assert job_mod.run_isolated(job, base, keep=True)[0]["status"] == "ok"
    kept = job_mod._worker[0]
    assert job_mod.run_isolated(job, base)[0]["status"] == "ok"
    assert job_mod._worker is None and not kept.is_alive()     # not run in the kept one, which is gone


def _job_in_a_child_process():
    job = job_config(cfg(**{**SMALL, "methods": ["exact"], "errors": False}))
    assert job_mod.run_isolated(job, {"run_id": "r", "job_id": "j"}, keep=True)[0]["status"] == "ok"
    assert job_mod._worker is not None        # kept, for a next job that never comes


def test_a_process_that_keeps_a_worker_still_exits():
    """A launcher may run jobs in multiprocessing children, which join their own children as they
    exit: the kept worker must be ended first, or the join waits on it forever."""
    import multiprocessing as mp
    proc = mp.get_context("spawn").Process(target=_job_in_a_child_process)
    proc.start()
    proc.join(60)
    alive = proc.is_alive()
    if alive:
        proc.kill()
    assert not alive and proc.exitcode == 0


@pytest.mark.parametrize("inherited", [signal.SIG_IGN, signal.default_int_handler])
def test_a_job_process_takes_one_sigint_unless_it_was_started_ignoring_them(inherited):
    """A shell starts background commands with SIGINT ignored; their job processes ignore it too."""
    old = signal.signal(signal.SIGINT, inherited)
    try:
        job_mod.interrupt_once()
        if inherited == signal.SIG_IGN:
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        else:
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN   # the second is ignored
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, old)
