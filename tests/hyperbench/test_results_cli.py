import csv
import datetime as dt
import io
import json

import pytest

from hyperbench import compact, results_cli, store

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def results(tmp_path):
    rows = [
        {"method": "exact", "seq_len": 1024, "head_dim": 64, "causal": False, "mode": "fwd",
         "status": "ok", "time_ms": 1.5, "spec_err": 0.0, "git_sha": SHA, "gpu_name": "NVIDIA H200",
         "created_at": T0},
        {"method": "hyper", "seq_len": 4096, "head_dim": 64, "causal": True, "mode": "fwd",
         "block_size": 256, "sample_size": 256, "status": "ok", "time_ms": 2.25,
         "spec_err": 0.0123, "git_sha": SHA, "created_at": T0 + dt.timedelta(minutes=1)},
        {"method": "sdpa_flash", "seq_len": 4096, "head_dim": 128, "causal": True, "mode": "fwd",
         "status": "unavailable", "message": "no GPU", "git_sha": SHA,
         "created_at": T0 + dt.timedelta(minutes=2)},
    ]
    store.write_job(rows[:2], tmp_path, job_id="a")
    store.write_job(rows[2:], tmp_path, job_id="b")
    return tmp_path


def run(capsys, *argv):
    code = results_cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_shows_default_columns(results, capsys):
    code, out, err = run(capsys, "--results-dir", results)
    assert code == 0 and err == ""
    for col in results_cli.DEFAULT_COLUMNS:
        assert col in out
    for text in ("exact", "hyper", "sdpa_flash", "4096", "NVIDIA H200", "unavailable", "0.0123",
                 "2025-03-01 12:01:00"):
        assert text in out
    assert SHA[:8] in out and SHA not in out  # short sha in the table
    assert "message" not in out  # not a default column


def test_filters_and_columns(results, capsys):
    code, out, _ = run(capsys, "seq_len=4096", "causal=true", "--results-dir", results,
                       "--columns", "method,seq_len,message", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["method"] for r in rows] == ["hyper", "sdpa_flash"]
    assert list(rows[0]) == ["method", "seq_len", "message"]
    assert rows[1]["message"] == "no GPU"


def test_filters_may_follow_options(results, capsys):
    """KEY=VALUE filters after an option select the same rows as before it (intermixed arguments)."""
    before = run(capsys, "seq_len=4096", "--results-dir", results, "--format", "csv", "causal=true")
    after = run(capsys, "--results-dir", results, "seq_len=4096", "--format", "csv", "causal=true")
    assert before == after and before[0] == 0
    assert [r["method"] for r in csv.DictReader(io.StringIO(after[1]))] == ["hyper", "sdpa_flash"]


def test_json_and_last(results, capsys):
    code, out, _ = run(capsys, "--results-dir", results, "--format", "json", "--last", "2",
                       "--columns", "all")
    assert code == 0
    data = json.loads(out)
    assert [d["method"] for d in data] == ["hyper", "sdpa_flash"]  # the two most recent
    assert data[0]["git_sha"] == SHA and data[0]["seq_len"] == 4096
    assert data[1]["time_ms"] is None


def test_sql(results, capsys):
    code, out, _ = run(capsys, "--results-dir", results, "--format", "csv", "--sql",
                       "SELECT status, count(*) AS n FROM results GROUP BY status ORDER BY status")
    assert code == 0
    assert list(csv.DictReader(io.StringIO(out))) == [{"status": "ok", "n": "2"},
                                                      {"status": "unavailable", "n": "1"}]
    # filters narrow the view the query sees
    code, out, _ = run(capsys, "method=hyper", "--results-dir", results, "--sql",
                       "SELECT count(*) AS n FROM results")
    assert code == 0 and "1" in out


def test_subcommand_name_is_tolerated(results, capsys):
    code, out, _ = run(capsys, "results", "method=exact", "--results-dir", results,
                       "--format", "csv")
    assert code == 0 and "exact" in out and "hyper" not in out


@pytest.mark.parametrize("argv, field", [
    (["seqlen=4096"], "seqlen"),
    (["seq_len=big"], "seq_len"),
    (["seq_len"], "seq_len"),
    (["--sql", "SELEKT 1"], "sql"),
    (["--sql", "SELECT nope FROM results"], "sql"),
    (["--columns", "method,nope"], "--columns"),
    (["--format", "xml"], "--format"),
    (["--last", "0"], "--last"),
    (["--bogus-flag"], "arguments"),
])
def test_bad_input_is_one_error_line_and_exit_2(results, capsys, argv, field):
    code, out, err = run(capsys, "--results-dir", results, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"hyperbench results: error: {field}: ")


def test_bad_key_names_allowed_columns(results, capsys):
    _, _, err = run(capsys, "--results-dir", results, "seqlen=1")
    assert "unknown column" in err and "seq_len" in err


def test_empty_store(tmp_path, capsys):
    code, out, err = run(capsys, "--results-dir", tmp_path)
    assert code == 0 and err == ""
    assert out.strip() == f"no results in {tmp_path}"
    # a folder that is not there is a mistyped path, not an empty store
    code, out, err = run(capsys, "--results-dir", tmp_path / "nothing-here")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"hyperbench results: error: --results-dir: {tmp_path / 'nothing-here'} does not exist")
    # a bad key is still an error on an empty store
    code, _, err = run(capsys, "--results-dir", tmp_path, "nope=1")
    assert code == 2 and "nope" in err


def test_no_match(results, capsys):
    code, out, _ = run(capsys, "--results-dir", results, "seq_len=7")
    assert code == 0 and "no results in" in out and "seq_len=7" in out


def test_a_jobs_rows_are_listed_in_the_order_it_wrote_them(tmp_path, capsys):
    """A job's rows share created_at: the listing keeps the order the job wrote them in (the config's
    methods), the same on every call and after `hyperbench compact`, jobs in their order."""
    methods = ["sdpa_math", "exact", "hyper_ref", "sdpa_flash", "hyper"]
    store.write_job([{"run_id": "r", "method": m, "status": "ok", "created_at": T0} for m in methods], tmp_path,
                    job_id="r-0001")
    store.write_job([{"run_id": "r", "method": m, "status": "ok", "created_at": T0} for m in methods[:2]], tmp_path,
                    job_id="r-0000")
    want = [("r-0000", m) for m in methods[:2]] + [("r-0001", m) for m in methods]
    for compacted in (False, True):
        if compacted:
            assert compact.main(["--results-dir", str(tmp_path)]) == 0
            assert len(store.job_files(tmp_path)) == 1
            capsys.readouterr()
        for _ in range(3):
            code, out, _ = run(capsys, "--results-dir", tmp_path, "--format", "csv", "--columns", "job_id,method")
            assert code == 0
            assert [(r["job_id"], r["method"]) for r in csv.DictReader(io.StringIO(out))] == want
