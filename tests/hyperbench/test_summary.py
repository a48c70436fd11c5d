"""The summary `hyperbench run` prints after a sweep, read back from the store."""

from hyperbench import store
from hyperbench.summary import SHOWN_FAILURES, sweep_summary

from .test_store import row


def test_counts_the_runs_rows_by_status_and_names_the_failures(tmp_path):
    store.write_job([row(run_id="s", method="exact"), row(run_id="s", method="hyper", status="oom",
                                                          message="CUDA out of memory")], tmp_path, job_id="s-0000")
    store.write_job([row(run_id="s", method="exact", status="error", message="RuntimeError: " + "x" * 400),
                     row(run_id="s", method="hyper", status="skipped")], tmp_path, job_id="s-0001")
    store.write_job([row(run_id="other", method="exact", status="error")], tmp_path, job_id="other-0000")
    text = sweep_summary("s", 3, [str(tmp_path)])
    lines = text.splitlines()
    assert lines[0] == "sweep s: 3 jobs, 4 rows (1 ok, 1 oom, 1 error, 1 skipped)"   # not the other run's row
    assert "1 job wrote no rows" in lines[1]
    assert "oom: job s-0000 hyper: CUDA out of memory" in text
    failure = next(line for line in lines if "job s-0001 exact" in line)
    assert len(failure) < 220 and failure.endswith("…")
    assert f"hyperbench results run_id=s --results-dir {tmp_path}" in text
    assert f"hyperbench report run_id=s --results-dir {tmp_path}" in text


def test_many_failures_are_counted_not_listed(tmp_path):
    rows = [row(run_id="s", method=m, status="error", message="boom")
            for m in ("exact", "hyper", "hyper_ref", "sdpa_math", "sdpa_flash", "sdpa_cudnn", "sdpa_efficient")]
    store.write_job(rows, tmp_path, job_id="s-0000")
    text = sweep_summary("s", 1, [str(tmp_path)])
    assert text.count("error: job") == SHOWN_FAILURES and f"and {7 - SHOWN_FAILURES} more" in text


def test_a_sweep_that_wrote_nothing_says_why_and_shows_no_commands(tmp_path):
    text = sweep_summary("s", 2, [str(tmp_path), str(tmp_path / "never-made")])
    assert text.splitlines()[0] == "sweep s: 2 jobs, no new rows"
    assert "force=true" in text and "hyperbench results" not in text


def test_an_interrupted_run_says_so_and_why_jobs_wrote_nothing(tmp_path):
    store.write_job([row(run_id="s", method="exact")], tmp_path, job_id="s-0000")
    lines = sweep_summary("s", 3, [str(tmp_path)], interrupted=True).splitlines()
    assert lines[0] == "sweep s (interrupted): 3 jobs, 1 row (1 ok)"
    assert lines[1] == "  2 jobs wrote no rows: not reached or interrupted before any method finished"
    assert sweep_summary("s", 1, [str(tmp_path)], interrupted=True).startswith("run s (interrupted): 1 job, 1 row")
