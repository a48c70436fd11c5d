"""`hyperbench compact`: merge each run's job files into one Parquet file per run.

    hyperbench compact [--results-dir results] [--dry-run]

A run writes one file per job (store.write_job), so that a crash loses at most the job in flight.
A store that lives for months then holds thousands of small files, each carrying the whole schema
(~15 KB for a few rows; this repository's store had 1789 files and 33 MB for 4642 rows), and every
read opens them all. Compaction rewrites each date folder's job files of one run as
``<date>/<run_id>.run.parquet`` with the same rows.

Safe to run at any time:
  * The merged file is written to a temporary file, fsynced and renamed into place, and read back
    and counted; only then are the job files it holds removed. A crash in between leaves those rows
    on disk twice: the store's readers take the job files' rows, and the next compaction removes
    the leftovers.
  * Only the files listed when the compaction starts are merged and removed, so a run that is still
    writing keeps its later jobs' files until the next compaction.
  * A job file whose job_id the run's merged file already holds replaces those rows, as writing the
    job again replaced its file before compaction. (Only a reused HYPERBENCH_RUN_ID does that;
    until the next compaction the readers already see the new rows alone.)
  * One compaction at a time: a lock on ``<results_dir>/.compact.lock``.
Files that are not a run's job files (other names, temporary files) are left alone.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hyperbench.cli_args import Parser
from hyperbench.errors import ConfigError
from hyperbench.store import RUN_SUFFIX, _fsync_dir, check_store, job_files, write_atomically

PROG = "hyperbench compact"
_JOB_FILE = re.compile(r"^(?P<run>[^.].*)-\d{4,}\.parquet$")


@dataclass
class Group:
    """One run's files in one date folder."""
    folder: Path
    run_id: str
    merged: Path | None = None
    jobs: list[Path] = field(default_factory=list)


def find_groups(results_dir: str | os.PathLike) -> list[Group]:
    """Every (date folder, run) with at least one job file, in name order."""
    groups: dict[tuple[Path, str], Group] = {}
    merged: dict[tuple[Path, str], Path] = {}
    for path in map(Path, job_files(results_dir)):
        if path.name.endswith(RUN_SUFFIX):
            merged[(path.parent, path.name[:-len(RUN_SUFFIX)])] = path
            continue
        match = _JOB_FILE.match(path.name)
        if match:
            key = (path.parent, match["run"])
            groups.setdefault(key, Group(path.parent, match["run"])).jobs.append(path)
    for key, group in groups.items():
        group.merged = merged.get(key)
    return list(groups.values())


def _merged_table(group: Group) -> pa.Table:
    """The run's rows: the merged file's, less the jobs that a job file holds again, then the job
    files' rows in name order."""
    jobs = [pq.read_table(p) for p in group.jobs]
    parts = []
    if group.merged is not None:
        old = pq.read_table(group.merged)
        ids = [t["job_id"].combine_chunks() for t in jobs if "job_id" in t.column_names]
        if ids and "job_id" in old.column_names:
            again = pa.concat_arrays(ids).unique()
            old = old.filter(pc.invert(pc.is_in(old["job_id"], value_set=again)))
        parts.append(old)
    return pa.concat_tables(parts + jobs, promote_options="default")


def compact_group(group: Group) -> int:
    """Merge one group; returns the rows of its merged file."""
    table = _merged_table(group)
    write_atomically(table, group.folder / f"{group.run_id}{RUN_SUFFIX}")
    for path in group.jobs:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    _fsync_dir(group.folder)
    return table.num_rows


def _store_size(results_dir: Path) -> tuple[int, int]:
    files = job_files(results_dir)
    return len(files), sum(os.path.getsize(p) for p in files)


def compact(results_dir: str | os.PathLike, *, dry_run: bool = False, say=print) -> int:
    """Compact the store; returns the number of runs merged (or that would be, with dry_run)."""
    root = Path(results_dir)
    if not root.is_dir():
        say(f"no results in {root}")
        return 0
    with open(root / ".compact.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another compaction of {root} is running ({lock.name} is locked)") from None
        groups = find_groups(root)
        files, size = _store_size(root)
        if dry_run:
            jobs = sum(len(g.jobs) for g in groups)
            say(f"would merge {jobs} job file(s) of {len(groups)} run(s) in {root} "
                f"({files} files, {size / 1e6:.1f} MB now)")
            return len(groups)
        rows, merged = 0, 0
        for group in groups:
            try:
                rows += compact_group(group)
                merged += 1
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:   # files whose columns disagree
                say(f"left run {group.run_id} in {group.folder} as it is: {' '.join(str(exc).split())}")
        after_files, after_size = _store_size(root)
        say(f"merged {merged} run(s) in {root} ({rows} rows): {files} files, {size / 1e6:.1f} MB "
            f"-> {after_files} files, {after_size / 1e6:.1f} MB")
        return merged


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compact"]:
        argv = argv[1:]
    parser = Parser(prog=PROG, description="Merge each run's job files into one "
                    "Parquet file per run (same rows; see the module docstring).")
    parser.add_argument("--results-dir", default="results", help="store folder (default: results)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be merged, change nothing")
    try:
        args = parser.parse_args(argv)
        check_store(args.results_dir)
    except ConfigError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    try:
        compact(args.results_dir, dry_run=args.dry_run)
    except (RuntimeError, OSError) as exc:   # locked, or a folder it cannot write: nothing half-done
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
