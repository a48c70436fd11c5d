"""One job per GPU, each in its own process pinned through CUDA_VISIBLE_DEVICES.

A slot is one device (a GPU id, or "cpu" where there is no GPU, so CPU machines run the same code).
A slot runs one job at a time, so a job's timings are never shared with another job's kernels. Each
job runs in a fresh `python -m hydra_plugins.hyperbench_gpus._worker` process; one that dies is
reported as a failed job while the others go on. `<sweep dir>/launcher.jsonl` records which slot ran
which job, when, and how it ended.
"""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from hyperbench.errors import ConfigError

from . import unfinished

POLL_S = 0.05
STOP_WAIT_S = 10.0   # after Ctrl-C: how long running jobs get to store what finished before they are killed


@dataclass
class Running:
    num: int
    slot: int
    proc: subprocess.Popen
    start: float
    log: Path


def visible_gpus() -> list[str]:
    """GPU ids a job may be pinned to: CUDA_VISIBLE_DEVICES if set, else every GPU torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    import torch  # late: the plugin scan imports this module on every Hydra start
    return [str(i) for i in range(torch.cuda.device_count())]


def resolve_slots(devices: Optional[Sequence[Any]], cpu_slots: Any,
                  visible: Optional[Sequence[str]] = None) -> list[str]:
    """The launcher's slots: the GPU ids asked for (each once, each one this host has), 'cpu' slots, or
    where none are asked for, every visible GPU or else `cpu_slots` CPU slots. `visible`: the GPU ids
    this host lets us use (default visible_gpus()). Raises ConfigError naming the setting."""
    if not isinstance(cpu_slots, int) or isinstance(cpu_slots, bool) or cpu_slots < 1:
        raise ConfigError("hydra.launcher.cpu_slots", f"{cpu_slots!r} is not allowed; allowed: an integer >= 1")
    if devices is None:
        return list(visible_gpus() if visible is None else visible) or ["cpu"] * cpu_slots
    if isinstance(devices, (str, int)) or not devices:
        raise ConfigError("hydra.launcher.devices", f"{devices!r} is not allowed; allowed: null (every visible "
                          "GPU) or a non-empty list of distinct GPU ids, e.g. [0,1] (and 'cpu' slots)")
    slots = [str(d) for d in devices]
    gpus = [d for d in slots if d != "cpu"]
    if len(set(gpus)) != len(gpus):
        raise ConfigError("hydra.launcher.devices", f"{slots} names a GPU twice; allowed: each GPU once, so that "
                          "no two jobs share one")
    if gpus:
        have = list(visible_gpus() if visible is None else visible)
        missing = [d for d in gpus if d not in have]
        if missing:   # a job pinned to a GPU that is not there would find no GPU and run on the CPU
            raise ConfigError("hydra.launcher.devices", f"no GPU {', '.join(missing)} here; allowed: "
                              + (", ".join(have) if have else "'cpu' slots only (this host shows no GPU)"))
    return slots


def slot_env(device: str, cpu_threads: int) -> dict:
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else device
    if device == "cpu":  # CPU slots share the cores: give each its part rather than oversubscribing
        env["OMP_NUM_THREADS"] = str(cpu_threads)
    return env


def _die_with_parent() -> None:
    """Kill the job when the launcher dies (kill -9 included), so no orphan writes after a resume starts."""
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _singletons() -> dict:
    """Hydra's global state for the worker, less OmegaConf's resolvers: they are closures that do not
    pickle, and the worker registers Hydra's own again (the config carries the values they resolved)."""
    state = Singleton.get_state()
    state["omegaconf_resolvers"] = {}
    return state


def task_reference(task_function: TaskFunction) -> tuple[str, str]:
    """(module, name) of the task function; `python -m pkg.mod` runs it as __main__, so use its real name."""
    module = task_function.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None:
            raise ValueError("the gpus launcher needs the app to be importable (run it with python -m or its script)")
        module = spec.name
    return module, task_function.__qualname__


class GpusLauncher(Launcher):
    def __init__(self, devices: Optional[Sequence[Any]] = None, cpu_slots: int = 2) -> None:
        self.devices = None if devices is None else list(devices)
        self.cpu_slots = cpu_slots
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        slots = resolve_slots(self.devices, self.cpu_slots)   # `hyperbench run` checked these already
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        work = sweep_dir / "launcher"
        work.mkdir(parents=True, exist_ok=True)
        print(f"gpus launcher: {len(job_overrides)} jobs on {len(slots)} slots {slots}", flush=True)
        jobs = [self._prepare(initial_job_idx + i, list(o), work) for i, o in enumerate(job_overrides)]
        cpu_threads = max(1, (os.cpu_count() or 1) // max(1, slots.count("cpu")))
        ends = self._run_all(jobs, slots, cpu_threads, sweep_dir / "launcher.jsonl")
        before = len(unfinished)
        returns = [self._collect(job, ends[job["num"]]) for job in jobs]
        print_outcome("gpus", len(returns), unfinished[before:])
        return returns

    def _prepare(self, num: int, overrides: list[str], work: Path) -> dict:
        """Compose the job's config here, once, and hand it to the worker as a file."""
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config):
            config.hydra.job.id = f"{num}"
            config.hydra.job.num = num
        module, name = task_reference(self.task_function)
        job = {"num": num, "overrides": overrides, "config": config, "payload": work / f"{num}.pkl",
               "result": work / f"{num}.result.pkl", "log": work / f"{num}.log"}
        job["result"].unlink(missing_ok=True)
        with open(job["payload"], "wb") as fh:
            pickle.dump({"context": self.hydra_context, "singletons": _singletons(), "config": config,
                         "module": module, "name": name, "result": str(job["result"])}, fh)
        return job

    def _start(self, job: dict, slot: int, device: str, cpu_threads: int) -> Running:
        log = open(job["log"], "w")
        proc = subprocess.Popen([sys.executable, "-m", "hydra_plugins.hyperbench_gpus._worker", str(job["payload"])],
                                env=slot_env(device, cpu_threads), stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        log.close()
        print(f"  #{job['num']} started on slot {slot} ({device}): {' '.join(filter_overrides(job['overrides']))}",
              flush=True)
        return Running(job["num"], slot, proc, time.time(), job["log"])

    def _run_all(self, jobs: list[dict], slots: list[str], cpu_threads: int, record: Path) -> dict[int, dict]:
        """Run every job, at most one per slot at a time; returns how each ended, by job number."""
        pending, free = deque(jobs), deque(range(len(slots)))
        running: dict[int, Running] = {}
        ends: dict[int, dict] = {}
        try:
            while pending or running:
                while pending and free:
                    slot = free.popleft()
                    running[slot] = self._start(pending.popleft(), slot, slots[slot], cpu_threads)
                time.sleep(POLL_S)
                for slot, run in list(running.items()):
                    if run.proc.poll() is None:
                        continue
                    ends[run.num] = _ended(run, slots[slot], record)
                    print(f"  #{run.num} finished on slot {slot} ({slots[slot]}) in {time.time() - run.start:.1f} s: "
                          f"{_exit_text(run.proc.returncode)}; output: {run.log}", flush=True)
                    del running[slot]
                    free.append(slot)
        finally:  # interrupted: take the running jobs down with us, once they have stored what finished
            _stop(running.values())
            for slot, run in running.items():
                ends[run.num] = _ended(run, slots[slot], record)
                print(f"  #{run.num} stopped on slot {slot} ({slots[slot]}): {_exit_text(run.proc.returncode)}; "
                      f"output: {run.log}", flush=True)
        return ends

    @staticmethod
    def _collect(job: dict, end: dict) -> JobReturn:
        ret = JobReturn(overrides=job["overrides"], cfg=job["config"], hydra_cfg=job["config"],
                        task_name=str(job["config"].hydra.job.name))
        if end["returncode"] == 0 and job["result"].exists():
            with open(job["result"], "rb") as fh:
                status, ret.return_value = pickle.load(fh)
            ret.status = JobStatus[status]
            if ret.status == JobStatus.COMPLETED:
                return ret
            what = f"failed: {ret._return_value!r}"
        else:
            what = f"died: {_exit_text(end['returncode'])}"
        return not_finished(ret, f"job #{job['num']} on slot {end['slot']} ({end['device']}) {what}; "
                                 f"its output: {end['log']}")


def not_finished(ret: JobReturn, what: str) -> JobReturn:
    """Count a job that did not finish in `unfinished` and hand Hydra a plain return for it, which its
    sweeper would otherwise raise as a traceback."""
    unfinished.append(what)
    ret.return_value, ret.status = None, JobStatus.COMPLETED
    return ret


def print_outcome(launcher: str, jobs: int, failed: list[str]) -> None:
    print(f"{launcher} launcher: {jobs - len(failed)} of {jobs} jobs completed", flush=True)
    for line in failed:
        print(f"  FAILED {line}", flush=True)


def _ended(run: Running, device: str, record: Path) -> dict:
    """How a finished job ended, also appended to the launcher's record."""
    end = {"job": run.num, "slot": run.slot, "device": device, "pid": run.proc.pid, "start": run.start,
           "end": time.time(), "returncode": run.proc.returncode, "log": str(run.log)}
    with open(record, "a") as fh:
        fh.write(json.dumps(end) + "\n")
    return end


def _stop(runs) -> None:
    """Interrupt the running jobs (the terminal's Ctrl-C may have reached them already; a job counts
    one), give them STOP_WAIT_S to store the rows of their finished methods, then kill the rest."""
    runs = [run for run in runs if run.proc.poll() is None]
    for run in runs:
        run.proc.send_signal(signal.SIGINT)
    deadline = time.time() + STOP_WAIT_S
    for run in runs:
        try:
            run.proc.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.proc.wait()


def _exit_text(code: int) -> str:
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit code {code}"
