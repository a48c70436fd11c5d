"""Scaling out: sweep presets, the gpus launcher on CPU slots, submitit's local executor, resume after a
kill, and many writers on one store."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from hydra_plugins.hyperbench_gpus import cluster
from hydra_plugins.hyperbench_gpus.launcher import resolve_slots, slot_env
from hyperbench import cli, store
from hyperbench.errors import ConfigError
from tests.hyperbench.helpers import block_store_folder, interrupted_run

ROOT = Path(__file__).parents[2]
QUICK = ["errors=false", "timing.warmup=1", "timing.min_reps=1", "timing.max_reps=1"]
HERE = "tests.hyperbench.test_scaleout"


def slow_attention(q, k, v, causal):
    """Long enough that jobs on two slots overlap in time."""
    time.sleep(0.3)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


def killed(q, k, v, causal):
    """The job process killed from outside (as the OOM killer would)."""
    os.kill(os.getpid(), signal.SIGKILL)


def hyperbench_cmd(*args):
    return [sys.executable, "-m", "hyperbench.cli", "run", *args]


def env():
    out = {**os.environ, "PYTHONPATH": str(ROOT)}
    out.pop("HYPERBENCH_RUN_ID", None)  # each command is its own run
    return out


def hyperbench(*args):
    return subprocess.run(hyperbench_cmd(*args), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("preset,jobs", [("paper_speedup", 32), ("paper_error", 192), ("paper_pareto", 32),
                                         ("paper_memory", 16), ("smoke", 4)])
def test_every_point_of_each_preset_composes_and_validates(preset, jobs):
    assert cli.check_overrides([f"+sweep={preset}"], multirun=False).jobs == jobs


def test_slurm_local_sweep_writes_every_job_into_one_store(tmp_path):
    r = hyperbench("+sweep=smoke", "hydra/launcher=slurm_local", "causal=false", "methods=[exact]", *QUICK,
                   f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    df = store.read(tmp_path)
    assert sorted(df["seq_len"]) == [128, 192]
    assert (df["status"] == "ok").all() and df["run_id"].nunique() == 1 and df["job_id"].nunique() == 2


def test_slurm_local_sweep_reports_jobs_that_die_and_waits_for_the_rest(tmp_path):
    targets = f"tests.hyperbench.helpers:dies,{HERE}:killed,{HERE}:slow_attention"
    r = hyperbench("-m", "hydra/launcher=slurm_local", "seq_len=128", "num_heads=1", "causal=false", "methods=[custom]",
                   f"method.target={targets}", "isolate=false", "force=true", *QUICK, f"results_dir={tmp_path}")
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, r.stderr[-3000:]
    assert "slurm_local launcher: 1 of 3 jobs completed" in r.stdout
    failed = [line for line in r.stdout.splitlines() if line.lstrip().startswith("FAILED")]
    assert len(failed) == 2 and all("did not finish" in line and "_log.err" in line for line in failed)
    assert "3 jobs, 1 row (1 ok)" in r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith("hyperbench: 2 jobs did not finish")
    df = store.read(tmp_path)
    assert len(df) == 1 and df["status"].tolist() == ["ok"]


FAKE_SBATCH = """#!/bin/sh
echo "sbatch: error: invalid partition specified: gpux" >&2
exit 1
"""


def test_a_sweep_the_cluster_refuses_is_one_line_and_leaves_nothing(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", "#!/bin/sh\nexit 0\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    out = tmp_path / "results"
    r = subprocess.run(hyperbench_cmd("-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpux", "seq_len=128,160",
                                      "methods=[exact]", *QUICK, f"results_dir={out}"),
                       cwd=ROOT, env={**env(), "PATH": f"{bin_dir}:{os.environ['PATH']}"},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.stdout, r.stderr[-3000:])
    (line,) = r.stderr.strip().splitlines()
    assert "error: hydra.launcher: the cluster refused the sweep (sbatch: error: invalid partition" in line
    assert "nothing was submitted" in line and not out.exists()


def test_a_job_that_raised_on_the_node_is_named_by_its_exception():
    message = ("Job (task=0) failed during processing with trace:\n----------------------\nTraceback (most recent "
               "call last):\n  File \"x.py\", line 1, in f\nMemoryError: host memory\n\n----------------------\n"
               "You can check full logs with 'job.stderr(0)'")
    assert cluster._raised(message) == "MemoryError: host memory"
    assert cluster._raised("sbatch: error: no such account\n") == "sbatch: error: no such account"


def test_a_refused_sweep_takes_back_only_its_own_folders(tmp_path):
    results = tmp_path / "results"
    sweep = results / "sweeps" / "2026-11-30_12-00-00"
    (sweep / ".submitit").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("x")
    cluster._remove_sweep_folder(sweep, str(results))
    assert not results.exists()   # all of it was this command's
    (results / "2026-11-30").mkdir(parents=True)   # a store that was there before
    sweep.mkdir(parents=True)
    cluster._remove_sweep_folder(sweep, str(results))
    assert sorted(p.name for p in results.iterdir()) == ["2026-11-30"]


def test_slots_are_the_devices_asked_for_each_gpu_once(monkeypatch):
    assert resolve_slots([0, 1], cpu_slots=2, visible=["0", "1", "2"]) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU visible: CPU slots
    assert resolve_slots(None, cpu_slots=3) == ["cpu"] * 3
    assert resolve_slots(["cpu", "cpu"], cpu_slots=3) == ["cpu", "cpu"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert resolve_slots(None, cpu_slots=3) == ["2", "3"]
    assert resolve_slots([3], cpu_slots=3) == ["3"]
    for devices, cpu_slots, says in [([0, 0], 2, "twice"), ([1], 2, "no GPU 1 here; allowed: 2, 3"),
                                     ([], 2, "non-empty list"), ("0", 2, "non-empty list"),
                                     (None, 0, "integer >= 1"), (None, "x", "integer >= 1")]:
        with pytest.raises(ConfigError, match=says):   # `hyperbench run` says these before any job starts
            resolve_slots(devices, cpu_slots=cpu_slots)
    assert slot_env("1", 4)["CUDA_VISIBLE_DEVICES"] == "1" and slot_env("cpu", 4)["CUDA_VISIBLE_DEVICES"] == ""


def slot_use(results_dir: Path) -> list[dict]:
    (record,) = results_dir.glob("sweeps/*/launcher.jsonl")
    return [json.loads(line) for line in record.read_text().splitlines()]


def test_gpus_launcher_runs_jobs_in_parallel_one_per_slot_and_reports_dead_jobs(tmp_path):
    targets = f"{HERE}:slow_attention,tests.hyperbench.helpers:dies,{HERE}:killed,{HERE}:slow_attention"
    # force: method.target is not part of the configuration hash, so the four jobs share one
    r = hyperbench("-m", "hydra/launcher=gpus", "hydra.launcher.cpu_slots=2", "+sweep=smoke", "seq_len=128",
                   "causal=false", "methods=[custom]", f"method.target={targets}", "isolate=false", "force=true",
                   *QUICK, f"results_dir={tmp_path}")
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in out   # two jobs died: the sweep says so, at its end
    assert "2 of 4 jobs completed" in out
    assert "#1 on slot" in out and "exit code 13" in out and "#2 on slot" in out and "killed by signal SIGKILL" in out
    assert "4 jobs, 2 rows (2 ok)" in r.stdout and "2 jobs wrote no rows" in r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith("hyperbench: 2 jobs did not finish")
    df = store.read(tmp_path)
    assert len(df) == 2 and (df["status"] == "ok").all() and df["job_id"].nunique() == 2
    use = slot_use(tmp_path)
    assert sorted(u["job"] for u in use) == list(range(4)) and {u["slot"] for u in use} == {0, 1}
    for slot in (0, 1):  # never two jobs on one slot at a time
        spans = sorted((u["start"], u["end"]) for u in use if u["slot"] == slot)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
    assert any(a["start"] < b["end"] and b["start"] < a["end"]  # ... but the slots ran side by side
               for a in use if a["slot"] == 0 for b in use if b["slot"] == 1)


def test_gpus_launcher_names_a_job_that_raised_and_its_log_has_the_traceback(tmp_path):
    block_store_folder(tmp_path)   # each job measures, then cannot store its rows
    r = hyperbench("-m", "hydra/launcher=gpus", "hydra.launcher.cpu_slots=2", "+sweep=smoke", "seq_len=128,160",
                   "causal=false", "methods=[exact]", *QUICK, f"results_dir={tmp_path}")
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr
    failed = [line for line in r.stdout.splitlines() if line.lstrip().startswith("FAILED")]
    assert len(failed) == 2 and all("FileExistsError" in line for line in failed)
    for line in failed:
        log = Path(line.split("its output: ")[1].strip()).read_text()
        assert "│ exact" in log                                           # the table, printed before the write
        assert "Traceback" in log and "store.py" in log and "FileExistsError" in log   # and where it failed
    assert not list(tmp_path.glob("**/*.parquet"))


def test_a_killed_sweep_resumes_with_exactly_the_missing_configurations(tmp_path):
    args = ["-m", "+sweep=smoke", "seq_len=128,160,192", "methods=[custom]",
            f"method.target={HERE}:slow_attention", *QUICK, f"results_dir={tmp_path}"]
    sweep = subprocess.Popen(hyperbench_cmd(*args), cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not store.job_files(tmp_path) and time.time() < deadline and sweep.poll() is None:
        time.sleep(0.05)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    first = store.read(tmp_path)
    assert 1 <= first["job_id"].nunique() < 6 and len(store.job_files(tmp_path)) == first["job_id"].nunique()
    for f in store.job_files(tmp_path):
        pq.read_table(f)

    r = hyperbench(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    df = store.read(tmp_path)
    assert not df.duplicated(["config_hash", "method"]).any()
    assert sorted(zip(df["seq_len"], df["causal"])) == sorted((n, c) for n in (128, 160, 192) for c in (False, True))
    again = df[~df["run_id"].isin(first["run_id"])]
    assert set(again["config_hash"]) == set(df["config_hash"]) - set(first["config_hash"])


def test_ctrl_c_on_a_gpus_launcher_sweep_keeps_each_running_jobs_finished_methods(tmp_path):
    args = ["-m", "hydra/launcher=gpus", "hydra.launcher.cpu_slots=2", "+sweep=smoke", "seq_len=128,160",
            "causal=false", "methods=[exact,custom]", "method.target=tests.hyperbench.helpers:waits_for_interrupt",
            *QUICK, f"results_dir={tmp_path}"]
    code, out, err = interrupted_run(args, tmp_path / "wait", processes=2)
    assert code == 130, err[-3000:]
    assert "Traceback" not in err and "(interrupted): 2 jobs, 2 rows (2 ok)" in out and "#1 stopped on slot" in out
    df = store.read(tmp_path)
    assert sorted(df["seq_len"]) == [128, 160] and set(df["method"]) == {"exact"}
    assert sorted((u["job"], u["returncode"]) for u in slot_use(tmp_path)) == [(0, 130), (1, 130)]


WRITER = """
import sys
from hyperbench import store
results_dir, writer, jobs, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for j in range(jobs):
    store.write_job([{"run_id": "w" + writer, "method": f"m{i}", "seq_len": i, "status": "ok"} for i in range(rows)],
                    results_dir, job_id=f"w{writer}-{j:04d}")
"""


def test_concurrent_writers_lose_no_rows_and_leave_no_partial_files(tmp_path):
    writers, jobs, rows = 4, 10, 25
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), str(jobs), str(rows)], env=env())
             for w in range(writers)]
    assert [p.wait(timeout=120) for p in procs] == [0] * writers
    files = store.job_files(tmp_path)
    assert len(files) == writers * jobs and all(pq.read_table(f).num_rows == rows for f in files)
    assert not [p for p in tmp_path.glob("**/*") if p.is_file() and p.suffix != ".parquet"]
    df = store.read(tmp_path)
    assert len(df) == writers * jobs * rows and df.groupby("run_id").size().eq(jobs * rows).all()
