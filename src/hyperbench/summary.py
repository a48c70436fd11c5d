"""The lines `hyperbench run` prints after a sweep: what its jobs wrote, by status, the failures
named, and the commands that show the rows. A sweep of many jobs prints a table per job; a
failure in the middle of a long log is easy to miss, and this says it at the end."""

from __future__ import annotations

import os
import shlex

import pandas as pd

from . import store

SHOWN_FAILURES = 5


def sweep_summary(run_id: str, jobs: int, results_dirs: list[str], interrupted: bool = False) -> str:
    """The summary of run `run_id` (`jobs` jobs, writing into `results_dirs`), read back from the store,
    so that it counts the rows of jobs that launchers ran in other processes too; `interrupted`:
    the run was stopped by Ctrl-C, so jobs without rows may simply not have run."""
    frames = [store.read(d, where={"run_id": run_id}) for d in results_dirs if os.path.isdir(d)]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(store.COLUMNS))
    counts = df["status"].value_counts()
    by_status = ", ".join(f"{counts[s]} {s}" for s in store.STATUSES if s in counts)
    what = "sweep" if jobs > 1 else "run"
    lines = [f"{what} {run_id}{' (interrupted)' if interrupted else ''}: {counted(jobs, 'job')}, "
             + (f"{counted(len(df), 'row')} ({by_status})" if len(df) else "no new rows")]
    written = df["job_id"].nunique()
    if written < jobs:
        why = ("not reached or interrupted before any method finished" if interrupted else
               "every method already in the store for this commit (force=true measures again), "
               "or the job did not finish (a FAILED line above names it)")
        lines.append(f"  {counted(jobs - written, 'job')} wrote no rows: {why}")
    failed = sorted(df[df["status"].isin(["error", "oom"])].itertuples(),
                    key=lambda r: (r.job_id, str(r.message).startswith("not run")))   # the cause before its effects
    for r in failed[:SHOWN_FAILURES]:
        message = r.message if len(r.message or "") <= 160 else r.message[:159] + "…"
        lines.append(f"  {r.status}: job {r.job_id} {r.method}: {message}")
    if len(failed) > SHOWN_FAILURES:
        lines.append(f"  … and {len(failed) - SHOWN_FAILURES} more")
    for d in results_dirs if len(df) else []:
        where = "" if d == "results" else f" --results-dir {shlex.quote(d)}"
        lines.append(f"  rows:  hyperbench results run_id={run_id}{where}")
        lines.append(f"  table: hyperbench report run_id={run_id}{where}")
    return "\n".join(lines)


def counted(n: int, noun: str) -> str:
    """'1 job', '2 jobs': a count with its noun in the right number."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
