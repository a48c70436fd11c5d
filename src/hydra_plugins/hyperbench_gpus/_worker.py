"""Runs one job of the gpus launcher in this process: `python -m hydra_plugins.hyperbench_gpus._worker JOB.pkl`.

Named with a leading underscore so that Hydra's plugin scan does not import it.
"""

import importlib
import pickle
import sys
import traceback

from hydra.core.singleton import Singleton
from hydra.core.utils import run_job, setup_globals


def _outcome(ret) -> tuple:
    """(status name, return value or exception): the launcher rebuilds the JobReturn from these, since
    the job's Hydra config holds classes that do not pickle across processes."""
    outcome = (ret.status.name, ret._return_value)
    try:
        pickle.dumps(outcome)
    except Exception:  # an exception or value that does not pickle: keep its text
        outcome = (ret.status.name, RuntimeError(repr(ret._return_value)))
    return outcome


def main(path: str) -> int:
    from hyperbench.job import interrupt_once
    interrupt_once()   # the launcher's SIGINT and the terminal's count once
    with open(path, "rb") as fh:
        job = pickle.load(fh)
    Singleton.set_state(job["singletons"])
    setup_globals()
    task = getattr(importlib.import_module(job["module"]), job["name"])
    try:
        ret = run_job(hydra_context=job["context"], task_function=task, config=job["config"],
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    except KeyboardInterrupt:   # the task has stored what finished; no traceback in the job's log
        print("interrupted", flush=True)
        return 130
    if ret.status.name == "FAILED" and isinstance(ret._return_value, BaseException):
        # run_job keeps the exception, not its traceback; the launcher names it, the log shows where
        traceback.print_exception(ret._return_value)
    with open(job["result"], "wb") as fh:
        pickle.dump(_outcome(ret), fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
