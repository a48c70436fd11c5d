import time
from types import SimpleNamespace

import pytest
import torch

from hyperbench import timing

from .fake_cuda import fixed_events


def test_summary_is_median_and_percentiles():
    t = timing.summarize([5.0, 1.0, 4.0, 2.0, 3.0])
    assert t.median_ms == 3.0 and t.reps == 5
    assert t.p20_ms == pytest.approx(1.8) and t.p80_ms == pytest.approx(4.2)


def test_reps_fill_the_target_within_bounds():
    assert timing.reps_for(10.0, 1000.0, 3, 50) == 50
    assert timing.reps_for(100.0, 1000.0, 3, 50) == 10
    assert timing.reps_for(5000.0, 1000.0, 3, 50) == 3


def test_measure_times_the_call_not_the_setup():
    def setup():
        time.sleep(0.02)

    def timed():
        time.sleep(0.005)
    t = timing.measure(setup, timed, device="cpu", warmup=1, target_ms=30, min_reps=3, max_reps=10, flush_l2=True)
    assert 3 <= t.reps <= 10
    assert 4.5 <= t.median_ms < 15


@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwd+bwd"])
def test_calls_for_each_mode_run_the_right_passes(mode):
    calls = {"fwd": 0, "bwd": 0}

    class Count(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            calls["fwd"] += 1
            return x * 2

        @staticmethod
        def backward(ctx, g):
            calls["bwd"] += 1
            return g * 2

    q = torch.randn(1, 1, 4, 8)

    def forward(q, k, v, causal):
        return Count.apply(q) + k + v, None
    setup, timed = timing.make_call(forward, q, q, q, False, mode)
    setup()
    before = dict(calls)
    timed()
    ran = {k: calls[k] - before[k] for k in calls}
    assert ran == {"fwd": {"fwd": 1, "bwd": 0, "fwd+bwd": 1}[mode], "bwd": {"fwd": 0, "bwd": 1, "fwd+bwd": 1}[mode]}


def test_on_a_gpu_the_host_time_to_issue_a_call_is_kept(monkeypatch):
    """CUDA events time the GPU; the host's own time to issue each call (before it waits for the
    GPU) is its median host_ms. Fake events here: every call is 7 ms on the 'GPU', 5 ms on the host."""
    monkeypatch.setattr(torch.cuda, "Event", fixed_events(7.0))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    t = timing.measure(lambda: None, lambda: time.sleep(0.005), device="cuda", warmup=1, target_ms=30,
                       min_reps=3, max_reps=5, flush_l2=False)
    assert t.median_ms == 7.0 and 4.5 <= t.host_ms < 15
    cpu = timing.measure(lambda: None, lambda: None, device="cpu", warmup=1, target_ms=1, min_reps=3, max_reps=3,
                         flush_l2=False)
    assert cpu.host_ms is None


def test_back_to_back_queues_every_repetition_and_waits_once(monkeypatch):
    """timing.back_to_back: each repetition's flush, events and call are queued with no wait
    between them (as triton.testing.do_bench), and the device is waited for once, before the events
    are read; by default each call's end event is waited for before the next setup."""
    log = []

    class Event:
        def __init__(self, enable_timing):
            pass

        def record(self):
            log.append("record")

        def synchronize(self):
            log.append("wait")

        def elapsed_time(self, end):
            log.append("read")
            return 3.0
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: log.append("wait"))
    for back_to_back in (True, False):
        log.clear()
        t = timing.measure(lambda: log.append("setup"), lambda: log.append("call"), device="cuda", warmup=1,
                           target_ms=1, min_reps=4, max_reps=4, flush_l2=False, back_to_back=back_to_back)
        reps = log[log.index("wait", log.index("call")) + 1:]     # after the warm-up's wait
        assert t.reps == 4 and t.median_ms == 3.0
        if back_to_back:
            assert reps == ["setup", "record", "call", "record"] * 4 + ["wait"] + ["read"] * 4
        else:
            assert reps == ["setup", "record", "call", "record", "wait", "read"] * 4


class FakeGraph:
    """torch.cuda.CUDAGraph and torch.cuda.graph on a machine without a GPU: the capture runs the
    call once (as a real capture records it), a replay logs "replay"."""
    fail_with = None

    def __init__(self, log):
        self.log = log

    def replay(self):
        self.log.append("replay")


def fake_graphs(monkeypatch, log, fail_with=None):
    import contextlib
    monkeypatch.setattr(torch.cuda, "Event", fixed_events(2.0))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda: SimpleNamespace(wait_stream=lambda other: None))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: SimpleNamespace(wait_stream=lambda other: None))
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: FakeGraph(log))

    @contextlib.contextmanager
    def graph(g):
        log.append("capture")
        yield
        if fail_with is not None:
            raise fail_with
    monkeypatch.setattr(torch.cuda, "graph", graph)


def test_cuda_graph_times_replays_of_the_captured_call(monkeypatch):
    """timing.cuda_graph: after the eager warm-up, one eager call on a side stream, one captured,
    one untimed replay, and then every repetition is a replay of the graph, not a call."""
    log = []
    fake_graphs(monkeypatch, log)
    t = timing.measure(lambda: log.append("setup"), lambda: log.append("call"), device="cuda", warmup=2,
                       target_ms=1, min_reps=3, max_reps=3, flush_l2=False, cuda_graph=True)
    assert t.reps == 3 and t.median_ms == 2.0
    assert log == ["setup", "call"] * 2 + ["call", "capture", "call"] + ["setup", "replay"] * 4


def test_cuda_graph_repetitions_follow_the_replays_time_not_the_eager_calls(monkeypatch):
    """A replay can be several times shorter than an eager call (no host work), so the first,
    untimed replay sets the count: 30 ms of target at ~0 ms a replay is max_reps, where the eager
    calls' 20 ms would give 2."""
    log = []
    fake_graphs(monkeypatch, log)
    t = timing.measure(lambda: None, lambda: time.sleep(0.02), device="cuda", warmup=1, target_ms=30,
                       min_reps=1, max_reps=7, flush_l2=False, cuda_graph=True)
    assert t.reps == 7 and log.count("replay") == 8
    eager = timing.measure(lambda: None, lambda: time.sleep(0.02), device="cuda", warmup=1, target_ms=30,
                           min_reps=1, max_reps=7, flush_l2=False)
    assert eager.reps in (1, 2)


def test_a_call_that_cannot_be_captured_says_why(monkeypatch):
    fake_graphs(monkeypatch, [], fail_with=RuntimeError("operation not permitted when stream is capturing\nmore"))
    with pytest.raises(timing.CaptureError, match="cannot be captured in a CUDA graph .*not permitted") as err:
        timing.measure(lambda: None, lambda: None, device="cuda", warmup=1, target_ms=1, min_reps=1, max_reps=1,
                       flush_l2=False, cuda_graph=True)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError):
        timing.measure(lambda: None, lambda: None, device="cpu", warmup=1, target_ms=1, min_reps=1, max_reps=1,
                       flush_l2=False, cuda_graph=True)
