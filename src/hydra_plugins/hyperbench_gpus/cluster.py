"""`hydra/launcher=slurm` and `slurm_local`: hydra-submitit-launcher's launchers, ending a sweep as
hyperbench does.

- sbatch refusing the sweep (a partition, account or memory the cluster rejects) is one line and exit
  status 2, and the sweep's folder goes again: one job array is one sbatch call, so nothing was submitted.
- A job that fails or that the cluster kills (time limit, memory, a lost node) is reported and counted
  in `unfinished`, and the launcher waits for the other jobs. The plugin's own launch stops waiting at
  the first such job, and Hydra raises it as a traceback.

Jobs run in the plugin's way (its `__call__` on the node); only the launch is this module's.
"""

import contextlib
import io
import shutil
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hyperbench.errors import ConfigError

from . import unfinished
from .launcher import not_finished, print_outcome

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher as plugin
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
except ImportError:   # the slurm extra is not installed: no such launchers (`hyperbench run` says so)
    plugin = None

# Settings of the launcher's config that configure the executor itself rather than its jobs.
_EXECUTOR_SETTINGS = ("submitit_folder", "max_num_timeout")


def _executor(cluster: str, params: dict):
    """submitit's executor for `cluster` with the launcher config's settings: those all executors share
    by their own names, the others with the cluster's prefix (slurm_partition), as submitit names them."""
    import submitit
    init = {"folder": params["submitit_folder"]}
    if "max_num_timeout" in params:
        init[f"{cluster}_max_num_timeout"] = params["max_num_timeout"]
    executor = submitit.AutoExecutor(cluster=cluster, **init)
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in shared else f"{cluster}_{k}": v for k, v in params.items()
                                  if k not in _EXECUTOR_SETTINGS})
    return executor


def _remove_sweep_folder(sweep_dir: Path, results_dir: str) -> None:
    """Take back what this command wrote before sbatch refused it: the sweep's folder (Hydra's
    multirun.yaml, submitit's scripts), then `sweeps/` and the results folder if that left them empty."""
    shutil.rmtree(sweep_dir, ignore_errors=True)
    for folder in (sweep_dir.parent, sweep_dir.parent.parent):
        if folder.name != "sweeps" and folder.resolve() != Path(results_dir).resolve():
            break
        with contextlib.suppress(OSError):   # not empty: something else lives there
            folder.rmdir()


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _raised(message: str) -> str:
    """The exception line of submitit's "failed during processing with trace: ---- <trace> ----"."""
    lines = [line.strip() for line in message.splitlines()]
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    trace = [line for line in lines[rules[0] + 1:rules[1]] if line] if len(rules) >= 2 else []
    return trace[-1] if trace else _first_line(message)


def launch_jobs(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    from submitit.core.utils import FailedJobError, UncompletedJobError

    name = "slurm" if launcher._EXECUTOR == "slurm" else "slurm_local"
    executor = _executor(launcher._EXECUTOR, launcher.params)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    nums = [initial_job_idx + i for i in range(len(job_overrides))]
    calls = [(list(o), "hydra.sweep.dir", n, f"job_id_for_{n}", Singleton.get_state())
             for n, o in zip(nums, job_overrides)]
    try:
        with contextlib.redirect_stderr(io.StringIO()):   # submitit prints sbatch's complaint itself, then raises it
            jobs = executor.map_array(launcher, *zip(*calls))
    except FailedJobError as err:
        from hyperbench.cli import _fail
        _remove_sweep_folder(sweep_dir, str(launcher.config.get("results_dir", "results")))
        _fail("run", ConfigError("hydra.launcher", f"the cluster refused the sweep ({_first_line(err)}); nothing "
                                 "was submitted; allowed: settings its sbatch accepts"))
    print(f"{name} launcher: {len(jobs)} jobs submitted ({', '.join(j.job_id for j in jobs[:3])}"
          f"{', …' if len(jobs) > 3 else ''}); waiting for them", flush=True)
    returns, before = [], len(unfinished)
    for num, overrides, job in zip(nums, job_overrides, jobs):
        try:
            ret = job.results()[0]
            what = None if ret.status == JobStatus.COMPLETED else f"failed: {ret._return_value!r}"
        except FailedJobError as err:   # raised outside the task, in submitit's wrapper on the node
            ret = JobReturn(overrides=list(overrides))
            what = f"failed: {_raised(str(err))}"
        except UncompletedJobError:     # no result: killed, out of time or memory, its node lost
            ret = JobReturn(overrides=list(overrides))
            what = f"did not finish: it left no result (executor state {job.state})"
        if what is None:
            print(f"  #{num} ({job.job_id}) finished", flush=True)
        else:
            ret = not_finished(ret, f"job #{num} ({job.job_id}) {what}; its logs: {job.paths.stderr}, .out beside it")
        returns.append(ret)
    print_outcome(name, len(returns), unfinished[before:])
    return returns


if plugin is not None:
    class SlurmLauncher(plugin.SlurmLauncher):
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            return launch_jobs(self, job_overrides, initial_job_idx)

    class LocalLauncher(plugin.LocalLauncher):
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            return launch_jobs(self, job_overrides, initial_job_idx)
