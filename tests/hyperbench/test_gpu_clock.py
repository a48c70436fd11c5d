"""The GPU's clock and power state over a measurement (src/hyperbench/gpu_clock.py), through a fake
NVML: the window's arithmetic, the reader's fallbacks, and the fields a timed GPU row carries."""

import sys
import threading
import time
import types

import pytest
import torch

from hyperbench import gpu_clock, store, table, timing

from .fake_cuda import fixed_events


def test_the_window_turns_counters_into_clock_power_and_capped_shares():
    before = {"t_ns": 0, "sm_mhz": 1980, "sm_max_mhz": 1980, "energy_mj": 1_000, "power_ns": 10, "thermal_ns": 5}
    after = {"t_ns": 2_000_000_000, "sm_mhz": 1890, "sm_max_mhz": 1980, "energy_mj": 1_001_000,
             "power_ns": 1_000_000_010, "thermal_ns": 5}
    got = gpu_clock.window(before, after, [1980, 1860, 1890, None])
    assert got == {"sm_clock_mhz": 1890.0, "sm_clock_max_mhz": 1980.0, "power_w": pytest.approx(500.0),
                   "power_capped": pytest.approx(0.5), "thermal_capped": 0.0}
    assert set(got) <= set(store.COLUMNS)


def test_counters_the_driver_does_not_keep_or_that_restarted_give_no_value():
    before = {"t_ns": 0, "energy_mj": None, "power_ns": 900, "thermal_ns": 0}
    after = {"t_ns": 1_000, "energy_mj": None, "power_ns": 100, "thermal_ns": 5_000}
    got = gpu_clock.window(before, after, [])
    assert got["sm_clock_mhz"] is None and got["power_w"] is None and got["sm_clock_max_mhz"] is None
    assert got["power_capped"] is None            # went backwards: NVML was reloaded in between
    assert got["thermal_capped"] == 1.0           # a counter's rounding never gives more than the span
    assert gpu_clock.window({"t_ns": 5}, {"t_ns": 5}, [1980])["power_w"] is None


def _fake_nvml(energy_supported=True):
    state = {"energy": 0, "power": 0, "clock_reads": 0}

    class NVMLError(Exception):
        pass

    def energy(handle):
        if not energy_supported:
            raise NVMLError("Not Supported")
        state["energy"] += 700_000          # 700 J a read
        return state["energy"]

    def violation(handle, policy):
        if policy == 0:
            state["power"] += 250_000_000
        return types.SimpleNamespace(referenceTime=0, violationTime=state["power"] if policy == 0 else 0)

    def clock(handle, kind):
        assert kind == 1                      # NVML_CLOCK_SM
        state["clock_reads"] += 1
        return 1900 + state["clock_reads"]
    nvml = types.SimpleNamespace(nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 1,
                                 nvmlDeviceGetHandleByUUID=lambda uuid: ("uuid", uuid),
                                 nvmlDeviceGetHandleByIndex=lambda i: ("index", i),
                                 nvmlDeviceGetClockInfo=clock, nvmlDeviceGetMaxClockInfo=lambda h, kind: 1980,
                                 nvmlDeviceGetViolationStatus=violation,
                                 nvmlDeviceGetTotalEnergyConsumption=energy)
    return nvml, state


def test_the_reader_reads_nvml_for_the_cuda_device_and_survives_what_it_lacks(monkeypatch):
    nvml, state = _fake_nvml(energy_supported=False)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=f"u{i}"))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    read = gpu_clock.reader("cuda:1")
    full = read(True)
    assert full["sm_mhz"] == 1901 and full["energy_mj"] is None and full["power_ns"] == 250_000_000
    assert full["thermal_ns"] == 0 and full["sm_max_mhz"] == 1980 and isinstance(full["t_ns"], int)
    assert set(read()) == {"t_ns", "sm_mhz"}                       # between repetitions: the clock only
    assert gpu_clock.reader("cpu") is None
    monkeypatch.setitem(sys.modules, "pynvml", None)               # nvidia-ml-py not installed
    assert gpu_clock.reader("cuda") is None


def test_nvml_is_initialised_once_per_process_and_device(monkeypatch):
    nvml, _ = _fake_nvml(energy_supported=True)
    inits, handles = [], []
    nvml.nvmlInit = lambda: inits.append(1)
    by_uuid = nvml.nvmlDeviceGetHandleByUUID
    nvml.nvmlDeviceGetHandleByUUID = lambda uuid: handles.append(uuid) or by_uuid(uuid)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=f"u{i}"))
    for device in ("cuda:0", "cuda:0", "cuda:1", "cuda:0"):
        assert gpu_clock.reader(device)(True)["sm_max_mhz"] == 1980
    assert len(inits) == 2 and handles == ["GPU-u0", "GPU-u1"]     # one per device, not per measurement
    failing = types.SimpleNamespace(nvmlInit=lambda: (_ for _ in ()).throw(RuntimeError("no driver")))
    monkeypatch.setitem(sys.modules, "pynvml", failing)
    assert gpu_clock.reader("cuda:0") is None and gpu_clock.reader("cuda:0") is None


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device that is not there: NVML faked, events of 4 ms, waits that return at once.
    Returns the fake NVML's counters."""
    nvml, state = _fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="u"))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "Event", fixed_events(4.0))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    return state


@pytest.mark.parametrize("back_to_back", [False, True])
def test_a_timed_gpu_row_carries_the_clock_and_power_of_its_repetitions(monkeypatch, fake_gpu, back_to_back):
    monkeypatch.setattr(gpu_clock, "SAMPLE_PERIOD_S", 0.001)
    t = timing.measure(lambda: None, lambda: time.sleep(0.005), device="cuda", warmup=1, target_ms=1,
                       min_reps=4, max_reps=4, flush_l2=False, back_to_back=back_to_back)
    # two full reads around the repetitions, and the clock sampled while they ran
    reads = fake_gpu["clock_reads"]
    assert reads >= 4 and t.gpu["sm_clock_mhz"] > 1901 and t.gpu["sm_clock_mhz"] < 1900 + reads
    assert t.gpu["power_w"] > 0 and 0 < t.gpu["power_capped"] <= 1.0 and t.gpu["thermal_capped"] == 0.0
    assert not [th for th in threading.enumerate() if th.name == "hyperbench-gpu-clock"]   # stopped
    cpu = timing.measure(lambda: None, lambda: None, device="cpu", warmup=1, target_ms=1, min_reps=3,
                         max_reps=3, flush_l2=False)
    assert cpu.gpu is None


def test_the_sampling_stops_when_a_repetition_fails(fake_gpu):
    """An out-of-memory or crash in a timed call is recorded for its job by the caller; the clock's
    sampling thread must not outlive it."""
    calls = []

    def timed():
        calls.append(1)
        if len(calls) > 1:                    # the warm-up passes, the first repetition fails
            raise RuntimeError("CUDA out of memory")
    with pytest.raises(RuntimeError, match="out of memory"):
        timing.measure(lambda: None, timed, device="cuda", warmup=1, target_ms=1, min_reps=3, max_reps=3,
                       flush_l2=False)
    assert not [th for th in threading.enumerate() if th.name == "hyperbench-gpu-clock"]


def test_the_table_marks_a_row_whose_clock_ran_slow_and_says_why():
    row = {"method": "hyper", "status": "ok", "time_ms": 37.6, "host_ms": 1.0, "message": "",
           "power_capped": 1.0, "sm_clock_mhz": 1800.0, "sm_clock_max_mhz": 1980.0, "thermal_capped": 0.0}
    assert table.note(row) == "SM clock 1800 MHz (91% of max): power limit 100% of the time"
    # capped nearly all the time, yet within 3% of the maximum: not worth a mark
    assert table.note({**row, "sm_clock_mhz": 1965.0}) == ""
    assert table.note({**row, "power_capped": None, "thermal_capped": 0.2}) == \
        "SM clock 1800 MHz (91% of max): heat 20% of the time"
    assert table.note({**row, "sm_clock_max_mhz": None}) == ""        # no NVML: nothing to say
