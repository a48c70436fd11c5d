import datetime as dt
import functools
import math
import multiprocessing as mp
import subprocess
import sys
import re
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hyperbench import store
from hyperbench.errors import ConfigError

CONTRACT = """run_id job_id method batch num_heads seq_len head_dim dtype causal mode block_size
sample_size sample_tile lsh_num_projs min_seq_len inputs seed status message time_ms time_ms_p20
time_ms_p80 reps peak_mem_bytes est_ms spec_err spec_err_max rel_spec_err rel_spec_err_max
rel_fro_err rel_fro_err_max max_row_err lse_err attn_norm norm_iters metric_ms tflops gbps device
gpu_name driver cuda torch triton flash_attn host git_sha git_dirty overrides config_hash
created_at""".split()

NOW = dt.datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=dt.timezone.utc)


def row(**kw):
    base = {"run_id": "r1", "method": "exact", "batch": 1, "num_heads": 8, "seq_len": 1024,
            "head_dim": 64, "dtype": "bfloat16", "causal": False, "mode": "fwd", "status": "ok",
            "time_ms": 1.25, "spec_err": 1e-3, "git_sha": "abc123", "git_dirty": False,
            "created_at": NOW}
    base.update(kw)
    return base


def test_columns_cover_the_contract_with_types():
    assert set(CONTRACT) <= set(store.COLUMNS)
    assert store.COLUMNS["seq_len"] == pa.int64()
    assert store.COLUMNS["time_ms"] == pa.float64()
    assert store.COLUMNS["causal"] == pa.bool_()
    assert store.COLUMNS["git_dirty"] == pa.bool_()
    assert store.COLUMNS["method"] == pa.string()
    assert pa.types.is_timestamp(store.COLUMNS["created_at"])
    assert store.COLUMNS["created_at"].tz == "UTC"
    assert store.SCHEMA.names == list(store.COLUMNS)


def test_round_trip_preserves_types_and_nulls(tmp_path):
    rows = [
        row(seq_len=np.int64(4096), time_ms=np.float32(2.5), causal=True, overrides=["a=1", "b=2"],
            peak_mem_bytes=2**40, time_ms_p20=float("nan")),
        {"method": "hyper", "seq_len": 2048.0, "status": "oom", "message": "CUDA out of memory"},
    ]
    path = store.write_job(rows, tmp_path, job_id="job-1")
    assert path.parent.parent == tmp_path
    dt.date.fromisoformat(path.parent.name)  # a YYYY-MM-DD folder
    assert path.name == "job-1.parquet"
    # the file itself carries the store's schema
    assert pq.read_schema(path).names == list(store.COLUMNS)
    assert pq.read_schema(path).field("seq_len").type == pa.int64()

    df = store.read(tmp_path).sort_values("method").reset_index(drop=True)
    assert list(df.columns) == list(store.COLUMNS)
    assert len(df) == 2
    assert str(df["seq_len"].dtype) == "Int64"
    assert str(df["causal"].dtype) == "boolean"
    assert df["time_ms"].dtype == np.float64
    assert str(df["created_at"].dtype).startswith("datetime64") and str(df["created_at"].dt.tz) == "UTC"
    exact, hyper = df.iloc[0], df.iloc[1]
    assert exact["seq_len"] == 4096 and hyper["seq_len"] == 2048
    assert exact["causal"] is True or exact["causal"] == True  # noqa: E712
    assert exact["time_ms"] == 2.5
    assert exact["peak_mem_bytes"] == 2**40
    assert math.isnan(exact["time_ms_p20"])  # a NaN measurement stays NaN
    assert exact["overrides"] == '["a=1", "b=2"]'
    assert exact["created_at"] == pd.Timestamp(NOW)
    assert exact["job_id"] == "job-1" and hyper["job_id"] == "job-1"  # filled from job_id
    # missing keys are nulls
    assert pd.isna(hyper["causal"]) and pd.isna(hyper["time_ms"]) and pd.isna(hyper["created_at"])
    assert pd.isna(hyper["git_sha"]) and pd.isna(hyper["batch"])
    assert hyper["message"] == "CUDA out of memory"


def test_unknown_key_and_bad_value_raise(tmp_path):
    with pytest.raises(ValueError, match="bogus"):
        store.write_job([row(bogus=1)], tmp_path, job_id="j")
    with pytest.raises(ValueError, match="seq_len"):
        store.write_job([row(seq_len="lots")], tmp_path, job_id="j")
    with pytest.raises(ValueError, match="seq_len"):
        store.write_job([row(seq_len=1.5)], tmp_path, job_id="j")
    with pytest.raises(ValueError):
        store.write_job([row()], tmp_path, job_id="../escape")
    assert store.job_files(tmp_path) == []


def test_duckdb_glob_reads_several_jobs_and_schema_evolution(tmp_path):
    store.write_job([row(method="exact"), row(method="hyper")], tmp_path, job_id="a")
    store.write_job([row(method="sdpa_flash", seq_len=8192)], tmp_path, job_id="b")
    # a file from a "newer" hyperbench with an extra column, in another date folder
    newer = pa.table({"method": ["hyper"], "seq_len": pa.array([16384], pa.int64()),
                      "status": ["ok"], "new_metric": [3.5]})
    (tmp_path / "2031-01-01").mkdir()
    pq.write_table(newer, tmp_path / "2031-01-01" / "future.parquet")
    # an "older" file that lacks most columns
    pq.write_table(pa.table({"method": ["exact"], "seq_len": pa.array([512], pa.int64())}),
                   tmp_path / "2020-01-01.parquet")

    # the contract: plain DuckDB reads the store with a glob
    glob = str(tmp_path / "**" / "*.parquet")
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}', union_by_name=true)").fetchone()[0]
    assert n == 5

    df = store.read(tmp_path)
    assert len(df) == 5
    assert "new_metric" in df.columns and list(df.columns)[: len(store.COLUMNS)] == list(store.COLUMNS)
    assert df.loc[df["method"] == "hyper", "new_metric"].dropna().tolist() == [3.5]
    assert sorted(df["seq_len"].tolist()) == [512, 1024, 1024, 8192, 16384]
    # filters work on extra columns too
    assert len(store.read(tmp_path, where={"new_metric": "3.5"})) == 1


def test_store_missing_a_column_everywhere_still_has_it(tmp_path):
    pq.write_table(pa.table({"method": ["exact"]}), tmp_path / "old.parquet")
    df = store.read(tmp_path, where={"seq_len": None})
    assert len(df) == 1 and list(df.columns) == list(store.COLUMNS)
    assert len(store.read(tmp_path, where={"seq_len": "4096"})) == 0


def test_rows_from_before_timing_mode_read_as_timed_per_call(tmp_path):
    """A file without the column, and a row whose value is null, read as per_call (how every row
    was timed before timing.back_to_back); filters see the same."""
    pq.write_table(pa.table({"method": ["exact"]}), tmp_path / "old.parquet")
    store.write_job([row(method="hyper", timing_mode=None), row(method="sdpa_flash", timing_mode="back_to_back")],
                    tmp_path, job_id="new")
    df = store.read(tmp_path).set_index("method")
    assert df["timing_mode"].to_dict() == {"exact": "per_call", "hyper": "per_call", "sdpa_flash": "back_to_back"}
    assert sorted(store.read(tmp_path, where={"timing_mode": "per_call"})["method"]) == ["exact", "hyper"]


def test_empty_store(tmp_path):
    for d in (tmp_path / "missing", tmp_path):
        df = store.read(d)
        assert df.empty and list(df.columns) == list(store.COLUMNS)
        assert str(df["seq_len"].dtype) == "Int64"
        n = store.read(d, sql="SELECT count(*) AS n FROM results")["n"].iloc[0]
        assert n == 0
        assert store.has_rows(d, "h", "sha") is False


def test_filters_convert_types(tmp_path):
    store.write_job([row(seq_len=1024, causal=False, time_ms=1.0),
                     row(seq_len=4096, causal=True, time_ms=2.0),
                     row(seq_len=4096, causal=False, time_ms=3.0, method="hyper")],
                    tmp_path, job_id="j")
    assert len(store.read(tmp_path, where={"seq_len": "4096"})) == 2
    assert len(store.read(tmp_path, where={"seq_len": 4096})) == 2
    assert len(store.read(tmp_path, where={"seq_len": "4096", "causal": "false"})) == 1
    assert len(store.read(tmp_path, where={"causal": "True"})) == 1
    assert len(store.read(tmp_path, where={"causal": "yes"})) == 1
    assert len(store.read(tmp_path, where={"seq_len": "4096.0"})) == 2
    assert len(store.read(tmp_path, where={"seq_len": np.int64(1024)})) == 1
    assert len(store.read(tmp_path, where={"time_ms": "2"})) == 1
    assert len(store.read(tmp_path, where={"method": "hyper"})) == 1
    assert len(store.read(tmp_path, where={"method": "it's"})) == 0  # quoting is safe
    assert len(store.read(tmp_path, where={"seq_len": ["1024", "4096"]})) == 3
    assert len(store.read(tmp_path, where={"block_size": None})) == 3
    # filters and SQL together: SQL sees the filtered view
    out = store.read(tmp_path, where={"seq_len": "4096"},
                     sql="SELECT method, sum(time_ms) AS t FROM results GROUP BY method ORDER BY 1")
    assert out.to_dict("records") == [{"method": "exact", "t": 2.0}, {"method": "hyper", "t": 3.0}]


def test_a_snapshot_reads_as_the_folder_does_and_the_files_once(tmp_path):
    store.write_job([row(seq_len=1024, time_ms=1.0), row(seq_len=4096, causal=True, time_ms=2.0),
                     row(seq_len=4096, time_ms=3.0, method="hyper", block_size=64)], tmp_path, job_id="j1")
    store.write_job([row(seq_len=4096, time_ms=3.0, method="hyper", block_size=64),
                     row(seq_len=8192, time_ms=5.0, git_sha="e4793e8f61654b4f")], tmp_path, job_id="j2")
    asks = [({}, None), ({"seq_len": "4096"}, None), ({"git_sha": "e4793e8"}, None),
            ({"block_size": None}, None), ({}, "SELECT method, count(*) AS n FROM results GROUP BY 1 ORDER BY 1")]
    with store.snapshot(tmp_path) as snap:
        for where, sql in asks:
            pd.testing.assert_frame_equal(store.read(snap, where=where, sql=sql),
                                          store.read(tmp_path, where=where, sql=sql))
        store.write_job([row(seq_len=16384)], tmp_path, job_id="j3")
        assert len(store.read(snap)) == 5 and len(store.read(tmp_path)) == 6   # read when it was taken
        with pytest.raises(ConfigError, match="no_such_column"):
            store.read(snap, where={"no_such_column": 1})
        assert len(store.read(snap, where={"seq_len": 4096})) == 3               # still usable


def test_an_abbreviated_commit_filters_like_the_full_one(tmp_path):
    full, other = "e4793e8f61654b4f34d871f0fd0a4093bd628254", "a2db87721f1a421d256f25864e823b6407356abf"
    store.write_job([{"method": "hyper", "git_sha": full}, {"method": "exact", "git_sha": full},
                     {"method": "hyper", "git_sha": other}, {"method": "hyper", "git_sha": "e4793e8"},
                     {"method": "hyper", "git_sha": None}],
                    tmp_path, job_id="j")
    short = store.read(tmp_path, where={"git_sha": "e4793e8"})
    assert sorted(short["git_sha"]) == ["e4793e8", full, full]   # a prefix, and the literal value
    assert len(store.read(tmp_path, where={"git_sha": ["E4793E8F", other[:10]]})) == 3
    assert store.read(tmp_path, where={"git_sha": "e4793e9"}).empty
    assert store.read(tmp_path, where={"git_sha": "e47"}).empty   # under 4 characters: equality only
    assert len(store.read(tmp_path, where={"git_sha": full})) == 2
    assert len(store.read(tmp_path, where={"git_sha": ["e4793e8", None]})) == 4   # and the row with no commit


def test_bad_filter_key_value_and_sql(tmp_path):
    store.write_job([row()], tmp_path, job_id="j")
    with pytest.raises(ConfigError) as err:
        store.read(tmp_path, where={"seqlen": "4096"})
    assert err.value.field == "seqlen"
    assert "unknown column" in err.value.message and "seq_len" in err.value.message
    with pytest.raises(ConfigError) as err:
        store.read(tmp_path, where={"seq_len": "big"})
    assert err.value.field == "seq_len" and "integer" in err.value.message
    with pytest.raises(ConfigError) as err:
        store.read(tmp_path, where={"causal": "maybe"})
    assert err.value.field == "causal"
    with pytest.raises(ConfigError) as err:
        store.read(tmp_path, sql="SELEC nonsense")
    assert err.value.field == "sql"
    with pytest.raises(ConfigError):
        store.read(tmp_path, sql="SELECT no_such_column FROM results")
    # an empty store still reports unknown columns
    with pytest.raises(ConfigError):
        store.read(tmp_path / "nothing", where={"nope": 1})


_CRASH = textwrap.dedent("""
    import os, sys
    from hyperbench import store
    def crash(*args, **kwargs):
        os._exit(17)  # the process dies after the temp file is written, before the rename
    store.os.replace = crash
    store.write_job([{"method": "exact", "seq_len": 1}], sys.argv[1], job_id="crashed")
""")


def test_crash_before_rename_leaves_no_visible_file(tmp_path):
    store.write_job([row(method="survivor")], tmp_path, job_id="good")
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and "crashed" in p.name]
    assert leftovers, "the crash should have left a temporary file behind"
    assert all(not p.name.endswith(".parquet") for p in leftovers)
    assert not any(p.name == "crashed.parquet" for p in tmp_path.rglob("*"))
    df = store.read(tmp_path)
    assert df["method"].tolist() == ["survivor"]
    # the plain DuckDB glob of the contract also ignores it
    glob = str(tmp_path / "**" / "*.parquet")
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}', union_by_name=true)").fetchone()[0] == 1
    # a rerun of the job succeeds next to the leftover
    store.write_job([row(method="again")], tmp_path, job_id="crashed")
    assert sorted(store.read(tmp_path)["method"]) == ["again", "survivor"]


def test_failed_write_cleans_up_and_keeps_old_file(tmp_path, monkeypatch):
    first = store.write_job([row(method="v1")], tmp_path, job_id="j")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", boom)
    with pytest.raises(OSError):
        store.write_job([row(method="v2")], tmp_path, job_id="j")
    monkeypatch.undo()
    assert [p.name for p in first.parent.iterdir()] == ["j.parquet"]
    assert store.read(tmp_path)["method"].tolist() == ["v1"]


def test_truncated_leftover_temp_file_is_ignored(tmp_path):
    store.write_job([row()], tmp_path, job_id="j")
    day = next(tmp_path.iterdir())
    (day / ".k.parquet.123.deadbeef.tmp").write_bytes(b"PAR1 half a file")
    assert len(store.read(tmp_path)) == 1


def test_concurrent_writers(tmp_path):
    ctx = mp.get_context("spawn")
    n_jobs, n_rows = 8, 5
    procs = []
    for j in range(n_jobs):
        rows = [row(run_id=f"run{j}", seq_len=128 * (i + 1), seed=i) for i in range(n_rows)]
        target = functools.partial(store.write_job, rows, str(tmp_path), job_id=f"job{j}")
        procs.append(ctx.Process(target=target))
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
        assert p.exitcode == 0
    df = store.read(tmp_path)
    assert len(df) == n_jobs * n_rows
    assert sorted(df["job_id"].unique()) == sorted(f"job{j}" for j in range(n_jobs))
    assert df.groupby("job_id").size().eq(n_rows).all()
    assert len(store.job_files(tmp_path)) == n_jobs
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_config_hash_is_stable_and_ignores_excluded_keys():
    cfg = {"seq_len": 4096, "head_dim": 64, "methods": ["exact", "hyper"], "causal": True,
           "results_dir": "results/", "timing": {"reps": 10}, "budget": 60}
    h = store.config_hash(cfg)
    assert isinstance(h, str) and len(h) == 16 and int(h, 16) >= 0
    assert h == store.config_hash(dict(reversed(list(cfg.items()))))  # key order
    assert h == store.config_hash({**cfg, "results_dir": "/elsewhere", "timing": {"reps": 99}})
    assert h == store.config_hash({**cfg, "budget": 5})
    assert h == store.config_hash({**cfg, "seq_len": 4096.0})
    assert h != store.config_hash({**cfg, "seq_len": 8192})
    assert h != store.config_hash({**cfg, "causal": False})
    # excluded keys are a parameter
    assert h != store.config_hash(cfg, exclude=())
    assert store.config_hash(cfg, exclude=("results_dir", "timing", "budget", "head_dim")) == \
        store.config_hash({**cfg, "head_dim": 128}, exclude=("results_dir", "timing", "budget", "head_dim"))
    # dotted paths drop nested keys
    nested = {"a": 1, "timing": {"reps": 3, "flush": True}}
    assert store.config_hash(nested, exclude=("timing.reps",)) == \
        store.config_hash({"a": 1, "timing": {"reps": 7, "flush": True}}, exclude=("timing.reps",))
    # stable across processes (no hash randomisation)
    out = subprocess.run([sys.executable, "-c",
                          "from hyperbench import store; print(store.config_hash("
                          f"{cfg!r}))"], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == h


def test_config_hash_accepts_omegaconf():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = {"seq_len": 4096, "methods": ["exact"], "results_dir": "x"}
    assert store.config_hash(omegaconf.OmegaConf.create(cfg)) == store.config_hash(cfg)


def test_has_rows(tmp_path):
    h = store.config_hash({"seq_len": 1024})
    assert not store.has_rows(tmp_path, h, "abc123")
    store.write_job([row(config_hash=h, git_sha="abc123", status="error")], tmp_path, job_id="j")
    assert store.has_rows(tmp_path, h, "abc123")
    assert not store.has_rows(tmp_path, h, "other")
    assert not store.has_rows(tmp_path, "0" * 16, "abc123")
    assert not store.has_rows(tmp_path, h, "abc123", statuses=("ok",))
    assert store.has_rows(tmp_path, h, "abc123", statuses=("ok", "error"))
    store.write_job([row(config_hash=h, git_sha=None)], tmp_path, job_id="k")
    assert store.has_rows(tmp_path, h, None)


def test_check_writable_creates_nothing_and_names_the_field(tmp_path):
    store.check_writable(tmp_path / "new" / "deeper")   # creatable: fine, and not created
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    for bad, says in ((tmp_path / "file", "is not a folder"),
                      (tmp_path / "file" / "sub", f"cannot be created: {tmp_path / 'file'} is not a folder")):
        with pytest.raises(ConfigError, match=f"^--out: .*{re.escape(says)}"):
            store.check_writable(bad, "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_check_writable_tries_a_file_where_permission_bits_cannot_tell():
    # /proc takes no new files, even for root, whom os.access would let through
    with pytest.raises(ConfigError, match="^results_dir: /proc/x cannot be written"):
        store.check_writable("/proc/x")


@pytest.mark.parametrize("command", ["results", "report", "plot time", "dashboard", "compare --baseline latest",
                                     "compact", "verify"])
def test_every_store_reader_refuses_a_folder_that_is_not_there(tmp_path, capsys, command):
    from hyperbench import cli
    missing = tmp_path / "no-such-store"
    assert cli.main([*command.split(), "--results-dir", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert err == f"hyperbench {command.split()[0]}: error: --results-dir: {missing} does not exist; " \
                  "allowed: a store folder that hyperbench run has written to\n"
    assert not missing.exists() and list(tmp_path.iterdir()) == []
