"""compact.py: one file per run, the same rows, and safe against crashes and runs still writing."""

import fcntl
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hyperbench import cli, compact, store
from tests.hyperbench.test_store import row


def write_run(results, run_id, jobs, methods=("exact", "hyper")):
    for j in range(jobs):
        rows = [row(run_id=run_id, method=m, seq_len=1024 * (j + 1), time_ms=1.0 + j + i / 10)
                for i, m in enumerate(methods)]
        store.write_job(rows, results, job_id=f"{run_id}-{j:04d}")


def snapshot(results):
    """The store's rows as a reader sees them, in a fixed order."""
    df = store.read(results)
    return df.sort_values(["job_id", "method"]).reset_index(drop=True)


def names(results):
    return sorted(p.name for p in results.glob("*/*.parquet"))


@pytest.fixture
def results(tmp_path):
    results = tmp_path / "results"
    write_run(results, "20250301T000000000000Z-aaaaaa", jobs=3)
    write_run(results, "20250301T000100000000Z-123456", jobs=2)   # a run id that ends in digits
    return results


def test_one_file_per_run_and_the_same_rows(results):
    before = snapshot(results)
    assert compact.compact(results, say=lambda s: None) == 2
    assert names(results) == ["20250301T000000000000Z-aaaaaa.run.parquet",
                              "20250301T000100000000Z-123456.run.parquet"]
    assert snapshot(results).equals(before)
    assert compact.compact(results, say=lambda s: None) == 0       # nothing left to merge


def test_a_run_still_writing_keeps_its_new_jobs(results):
    compact.compact(results, say=lambda s: None)
    write_run(results, "20250301T000000000000Z-aaaaaa", jobs=5)    # jobs 0-2 again, 3-4 new
    assert len(snapshot(results)) == (5 + 2) * 2
    compact.compact(results, say=lambda s: None)
    assert len(names(results)) == 2 and len(snapshot(results)) == (5 + 2) * 2


def test_a_job_written_again_replaces_its_rows(results):
    """A job written again under its run's id after compaction (HYPERBENCH_RUN_ID reused): the
    readers see its new rows alone, before the next compaction as after it."""
    compact.compact(results, say=lambda s: None)
    store.write_job([row(run_id="20250301T000000000000Z-aaaaaa", method="exact", time_ms=99.0)],
                    results, job_id="20250301T000000000000Z-aaaaaa-0001")
    for _ in range(2):
        df = store.read(results, where={"job_id": "20250301T000000000000Z-aaaaaa-0001"})
        assert df["time_ms"].tolist() == [99.0]
        assert len(snapshot(results)) == 3 * 2 - 1 + 2 * 2
        compact.compact(results, say=lambda s: None)


def test_a_crash_after_the_merge_leaves_rows_that_count_once(results, monkeypatch):
    """Killed between the merged file's rename and the job files' removal: the readers count the
    rows once, and the next compaction removes the leftovers."""
    before = snapshot(results)

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(compact.Path, "unlink", killed)
    with pytest.raises(KeyboardInterrupt):
        compact.compact(results, say=lambda s: None)
    monkeypatch.undo()
    assert any(n.endswith(".run.parquet") for n in names(results)) and len(names(results)) > 2
    assert snapshot(results).equals(before)
    compact.compact(results, say=lambda s: None)
    assert len(names(results)) == 2 and snapshot(results).equals(before)


def test_a_failed_write_changes_nothing(results, monkeypatch):
    before, files = snapshot(results), names(results)

    def broken(table, where, **kw):
        where.write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr(store.pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        compact.compact(results, say=lambda s: None)
    monkeypatch.undo()
    assert names(results) == files and snapshot(results).equals(before)
    assert not [p for p in results.glob("*/.*")]                    # no temporary file left


def test_other_files_are_left_alone(results):
    folder = next(results.iterdir())
    shutil.copy2(next(folder.glob("*-0000.parquet")), folder / "from_elsewhere.parquet")
    (folder / ".x-0000.parquet.1.ab.tmp").write_bytes(b"a crashed write")
    compact.compact(results, say=lambda s: None)
    assert "from_elsewhere.parquet" in names(results)
    assert (folder / ".x-0000.parquet.1.ab.tmp").exists()


def test_one_compaction_at_a_time(results):
    with open(results / ".compact.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another compaction"):
            compact.compact(results, say=lambda s: None)
        assert cli.main(["compact", "--results-dir", str(results)]) == 1


def test_cli_dry_run_then_compact(results, capsys):
    files = names(results)
    assert cli.main(["compact", "--results-dir", str(results), "--dry-run"]) == 0
    assert "would merge 5 job file(s) of 2 run(s)" in capsys.readouterr().out
    assert names(results) == files
    assert cli.main(["compact", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "merged 2 run(s)" in out and "(10 rows): 5 files" in out and "-> 2 files" in out


def test_cli_an_unknown_option_is_one_line_and_exit_2(results, capsys):
    files = names(results)
    assert cli.main(["compact", "--results-dir", str(results), "--bogus"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "hyperbench compact: error: arguments: unrecognized arguments: --bogus\n"
    assert captured.out == "" and names(results) == files


def test_cli_a_folder_it_cannot_write_is_one_line_and_exit_1(results, monkeypatch, capsys):
    files = names(results)

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(results / "x.tmp"))
    monkeypatch.setattr(store.pq, "write_table", refused)
    assert cli.main(["compact", "--results-dir", str(results)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hyperbench compact: error: [Errno 13] Permission denied") and err.count("\n") == 1
    assert names(results) == files


def test_a_run_whose_files_disagree_is_left_as_it_is(results, capsys):
    """Job files of one run whose columns cannot be merged (a type changed): that run keeps its
    files, the others are merged."""
    folder = next(results.iterdir())
    odd = pa.table({"run_id": ["20250301T000200000000Z-bbbbbb"], "job_id": ["x"], "seq_len": ["long"]})
    pq.write_table(odd, folder / "20250301T000200000000Z-bbbbbb-0000.parquet")
    store.write_job([row(run_id="20250301T000200000000Z-bbbbbb")], results,
                    job_id="20250301T000200000000Z-bbbbbb-0001")
    assert cli.main(["compact", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "left run 20250301T000200000000Z-bbbbbb" in out and "merged 2 run(s)" in out
    assert sum(n.startswith("20250301T000200000000Z-bbbbbb-") for n in names(results)) == 2
