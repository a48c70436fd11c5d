"""The GPU's clock and power state over a measurement, read through NVML (nvidia-ml-py).

A GPU row's time depends on the SM clock it ran at, and the clock drops below its maximum when the
board reaches its power limit or gets hot. On the H200 the SDPA cuDNN rows at n = 131072 run at the
700 W limit all of their timing, at 1815–1890 MHz of 1980; `hyper`'s causal forward+backward rounds
took 1–3% longer under the limit (1860–1920 MHz) than one from an idle start (kernels/NOTES_BY_VERSION.md, v31).
So each GPU row records, over its timed repetitions:

- ``sm_clock_mhz``: the median SM clock, sampled every SAMPLE_PERIOD_S by a thread while the
  repetitions run, so that it is read while the GPU works, back to back as well as per call (the
  rows of 15a6c53 read it after each repetition, with the GPU idle; the two ways were not compared
  on one machine); ``sm_clock_max_mhz``, the most it can run at;
- ``power_w``: the board's mean power, from its energy counter (over the repetitions with their L2
  flushes and, per call, the waits between them);
- ``power_capped`` and ``thermal_capped``: the share of the time NVML counted the clock held down by
  the power limit, and by temperature (its cumulative violation counters).

Everything here is optional: without nvidia-ml-py, without NVML, on a CPU, or where the driver
does not keep a counter, the reader is None or the field is None, and the measurement goes on.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

# NVML's policy ids for nvmlDeviceGetViolationStatus (nvml.h: NVML_PERF_POLICY_POWER, _THERMAL) and
# its clock id for the SM clock (NVML_CLOCK_SM), so that the arithmetic below needs no pynvml.
_POWER, _THERMAL, _SM_CLOCK = 0, 1, 1
# How often the SM clock is sampled during a measurement: each sample is one NVML call (~20 µs of a
# thread that holds the GIL only around it), so this costs the timed calls nothing measurable.
SAMPLE_PERIOD_S = 0.02


def _nvml_handle(nvml, device_index: int):
    """The NVML handle of CUDA device device_index (matched by UUID, since NVML numbers devices
    without CUDA_VISIBLE_DEVICES), or of NVML's only device."""
    import torch
    try:
        return nvml.nvmlDeviceGetHandleByUUID(f"GPU-{torch.cuda.get_device_properties(device_index).uuid}")
    except Exception:  # noqa: BLE001  (an older torch without .uuid, or NVML spells it otherwise)
        if nvml.nvmlDeviceGetCount() == 1:
            return nvml.nvmlDeviceGetHandleByIndex(0)
        raise


_OPENED: dict[tuple[int, int], tuple] = {}


def _opened(nvml, device_index: int):
    """NVML initialised and device_index's handle, once per process (and NVML module) rather than
    once per measurement: each nvmlInit adds to NVML's count of users, which only as many
    nvmlShutdown calls take back. A failure is not kept, so a later measurement tries again."""
    key = (id(nvml), device_index)
    if key not in _OPENED or _OPENED[key][0] is not nvml:   # an id can be reused by another module
        nvml.nvmlInit()
        _OPENED[key] = (nvml, _nvml_handle(nvml, device_index))
    return _OPENED[key][1]


def reader(device: str) -> Callable[[bool], dict] | None:
    """For a CUDA device, a function read(full) giving {"t_ns", "sm_mhz"} and, when full, the SM
    clock's maximum and the cumulative counters {"sm_max_mhz", "energy_mj", "power_ns",
    "thermal_ns"} (each None where NVML keeps none);
    None where NVML cannot be reached (a CPU, no nvidia-ml-py, no driver)."""
    kind, _, index = str(device).partition(":")
    if kind != "cuda":
        return None
    try:
        import pynvml as nvml
        import torch
        handle = _opened(nvml, int(index) if index else torch.cuda.current_device())
    except Exception:  # noqa: BLE001  (ImportError, NVMLError, no CUDA: the fields stay empty)
        return None

    def counter(fn, *args):
        try:
            return fn(handle, *args)
        except Exception:  # noqa: BLE001  (NVML_ERROR_NOT_SUPPORTED on some boards)
            return None

    def read(full: bool = False) -> dict:
        got = {"t_ns": time.monotonic_ns(), "sm_mhz": counter(nvml.nvmlDeviceGetClockInfo, _SM_CLOCK)}
        if full:
            power, thermal = (counter(nvml.nvmlDeviceGetViolationStatus, p) for p in (_POWER, _THERMAL))
            got.update(energy_mj=counter(nvml.nvmlDeviceGetTotalEnergyConsumption),
                       sm_max_mhz=counter(nvml.nvmlDeviceGetMaxClockInfo, _SM_CLOCK),
                       power_ns=power.violationTime if power is not None else None,
                       thermal_ns=thermal.violationTime if thermal is not None else None)
        return got
    return read


def sample_clocks(read: Callable[[bool], dict]) -> Callable[[], list]:
    """Start sampling the SM clock every SAMPLE_PERIOD_S; returns stop(), which ends the sampling
    and gives the clocks read (none for a span shorter than the period)."""
    clocks, done = [], threading.Event()

    def loop():
        while not done.wait(SAMPLE_PERIOD_S):
            clocks.append(read(False)["sm_mhz"])
    thread = threading.Thread(target=loop, name="hyperbench-gpu-clock", daemon=True)
    thread.start()

    def stop() -> list:
        done.set()
        thread.join()
        return clocks
    return stop


def window(before: dict, after: dict, clocks_mhz: list) -> dict:
    """The row's fields for the span between two full reads, with the SM clocks sampled inside it."""
    span_ns = after["t_ns"] - before["t_ns"]

    def share(key: str, scale: float = 1.0):
        a, b = before.get(key), after.get(key)
        if a is None or b is None or span_ns <= 0 or b < a:
            return None
        return (b - a) * scale / span_ns
    clocks = [c for c in clocks_mhz if c is not None]
    capped = {key: None if (s := share(key)) is None else min(1.0, s) for key in ("power_ns", "thermal_ns")}
    top = after.get("sm_max_mhz")
    return {"sm_clock_mhz": float(statistics.median(clocks)) if clocks else None,
            "sm_clock_max_mhz": None if top is None else float(top),
            "power_w": share("energy_mj", 1e6),     # mJ per ns × 1e6 = W
            "power_capped": capped["power_ns"], "thermal_capped": capped["thermal_ns"]}


def observe(read: Callable[[bool], dict] | None, run: Callable):
    """run() with the GPU's state read around it and its SM clock sampled while it runs:
    (run's result, window's fields), or (run's result, None) where read is None (no NVML)."""
    if read is None:
        return run(), None
    before, stop = read(True), sample_clocks(read)
    try:
        got = run()
    finally:
        clocks = stop()
    after = read(True)
    return got, window(before, after, clocks or [after["sm_mhz"]])
