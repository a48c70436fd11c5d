"""The `hyperbench` command as a user runs it: Hydra overrides, sweeps, bad input, the store."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyperbench import store
from tests.hyperbench.helpers import block_store_folder, interrupted_run

ROOT = Path(__file__).parents[2]
SMALL = ["seq_len=192", "num_heads=2", "head_dim=16", "block_size=32", "sample_size=32", "sample_tile=32",
         "min_seq_len=64", "timing.warmup=1", "timing.min_reps=2", "timing.max_reps=2"]


def hyperbench(*args, cwd=ROOT, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "hyperbench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_single_run_prints_a_table_and_writes_one_file(tmp_path):
    r = hyperbench("run", *SMALL, "methods=[exact,hyper_ref,sdpa_cudnn]", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    for text in ("exact", "hyper_ref", "unavailable", "speedup", "spec_err"):
        assert text in r.stdout
    files = list(tmp_path.glob("**/*.parquet"))
    assert len(files) == 1
    df = store.read(tmp_path)
    assert sorted(df["method"]) == ["exact", "hyper_ref", "sdpa_cudnn"]
    assert df["seq_len"].unique().tolist() == [192]
    assert df["git_sha"].notna().all() and df["torch"].notna().all()
    assert (df["overrides"].str.contains("seq_len=192")).all()


def test_multirun_sweeps_one_job_per_point(tmp_path):
    r = hyperbench("run", "-m", *SMALL, "methods=[exact]", "errors=false", "seq_len=128,160",
                   "block_size=16,32", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    df = store.read(tmp_path)
    assert len(list(tmp_path.glob("**/*.parquet"))) == 4
    assert sorted(zip(df["seq_len"], df["block_size"])) == [(128, 16), (128, 32), (160, 16), (160, 32)]
    assert df["run_id"].nunique() == 1 and df["job_id"].nunique() == 4
    run_id = df["run_id"].iloc[0]
    assert f"sweep {run_id}: 4 jobs, 4 rows (4 ok)" in r.stdout     # the summary after the last job
    assert f"hyperbench report run_id={run_id} --results-dir {tmp_path}" in r.stdout


@pytest.mark.parametrize("isolate,processes", [("worker", 1), ("true", 2)])
def test_a_worker_process_serves_every_job_of_a_sweep(tmp_path, isolate, processes):
    pids = tmp_path / "pids"
    r = hyperbench("run", "-m", *SMALL, "methods=[custom]", "method.target=tests.hyperbench.helpers:records_pid",
                   "errors=false", "seq_len=128,160", f"isolate={isolate}", f"results_dir={tmp_path / 'r'}",
                   env={"HYPERBENCH_TEST_PID_FILE": str(pids)})
    assert r.returncode == 0, r.stderr
    assert (store.read(tmp_path / "r")["status"] == "ok").all()
    assert len(set(pids.read_text().split())) == processes


WAITS = ["methods=[exact,custom]", "method.target=tests.hyperbench.helpers:waits_for_interrupt", "errors=false"]


@pytest.mark.parametrize("isolate,whole_group", [("false", True), ("worker", True), ("worker", False)])
def test_ctrl_c_keeps_the_finished_methods_and_a_rerun_measures_only_the_rest(tmp_path, isolate, whole_group):
    args = ["-m", *SMALL, *WAITS, "seq_len=128,160", f"isolate={isolate}", f"results_dir={tmp_path / 'r'}"]
    code, out, err = interrupted_run(args, tmp_path / "wait", whole_group=whole_group)
    assert code == 130, err[-3000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("hyperbench: interrupted;")
    assert "(interrupted): 2 jobs, 1 row (1 ok)" in out and "1 job wrote no rows" in out
    first = store.read(tmp_path / "r")
    assert first[["seq_len", "method", "status"]].values.tolist() == [[128, "exact", "ok"]]
    r = hyperbench("run", *args)   # no wait this time: measures what the interrupt left out
    assert r.returncode == 0, r.stderr[-3000:]
    again = store.read(tmp_path / "r", where={"run_id": store.read(tmp_path / "r")["run_id"].max()})
    assert sorted(map(tuple, again[["seq_len", "method"]].values.tolist())) == [
        (128, "custom"), (160, "custom"), (160, "exact")]


def test_ctrl_c_ends_the_sweep_even_where_the_finished_rows_cannot_be_kept(tmp_path):
    # Keeping the finished methods' rows fails (the store's folder for today is a file): that
    # failure must not turn the Ctrl-C into one failed job after which the sweep goes on.
    block_store_folder(tmp_path / "r")
    args = ["-m", *SMALL, *WAITS, "seq_len=128,160", "isolate=false", f"results_dir={tmp_path / 'r'}"]
    code, out, err = interrupted_run(args, tmp_path / "wait")
    assert code == 130, err[-3000:]
    assert "could not keep the finished methods' rows" in out
    assert "n=160" not in out and "FAILED" not in err   # the second job never started
    assert err.strip().splitlines()[-1].startswith("hyperbench: interrupted;")


@pytest.mark.parametrize("arg,key", [
    ("seq_len=0", "seq_len"), ("head_dim=7", "head_dim"), ("block_size=100", "block_size"),
    ("sample_size=-1", "sample_size"), ("methods=[nope]", "methods"), ("dtype=float13", "dtype"),
    ("device=cuda", "device"), ("no_such_key=3", "no_such_key"), ("seq_len=4096,0", "seq_len"),
    ("timing.reps=3", "timing.reps"), ("inputs=nope", "inputs"), ("+sweep=nope", "sweep"),
    ("hydra/launcher=nope", "hydra/launcher"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, arg, key):
    multirun = ["-m"] if "," in arg else []
    # hyper alone: a shape only some selected methods refuse is not an error (next test)
    r = hyperbench("run", *multirun, arg, "methods=[hyper]" if "methods" not in arg else "seed=0",
                   f"results_dir={tmp_path}")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"error: {key}" in lines[0] and "allowed" in lines[0]
    assert not any(tmp_path.iterdir())


def test_a_shape_one_method_refuses_gives_it_an_unavailable_row_and_measures_the_others(tmp_path):
    # head_dim 48 has no hyper kernel; exact takes it. The sweep's other point runs both as usual.
    r = hyperbench("run", "-m", *[a for a in SMALL if not a.startswith("head_dim")], "head_dim=48,16",
                   "methods=[exact,hyper]", "errors=false", "isolate=false", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = store.read(tmp_path).set_index(["head_dim", "method"])
    assert rows.loc[(48, "exact"), "status"] == "ok"
    assert rows.loc[(48, "hyper"), "status"] == "unavailable"
    assert rows.loc[(48, "hyper"), "message"] == ("head_dim: 48 is not allowed for method hyper; "
                                                  "allowed: 16, 32, 64, 128")
    assert rows.loc[(16, "hyper"), "message"] != rows.loc[(48, "hyper"), "message"]   # no GPU here: its own reason


@pytest.mark.parametrize("args,key,says", [
    (["hydra.nope=1"], "hydra.nope", "hydra.launcher"),
    (["-m", "hydra/launcher=gpus", "hydra.launcher.devices=[0,0]"], "hydra.launcher.devices", "each GPU once"),
    (["-m", "hydra/launcher=gpus", "hydra.launcher.devices=[7]"], "hydra.launcher.devices", "no GPU 7 here"),
    (["-m", "hydra/launcher=gpus", "hydra.launcher.cpu_slots=0"], "hydra.launcher.cpu_slots", "integer >= 1"),
    (["-m", "hydra/launcher=slurm_local", "hydra.launcher.mem_gb=lots"], "hydra.launcher.mem_gb", "Integer"),
    (["-m", "hydra/launcher=slurm_local", "hydra.launcher.partiton=gpu"], "hydra.launcher.partiton",
     "hydra.launcher.timeout_min"),
    (["-m", "hydra/launcher=slurm"], "hydra/launcher", "sbatch and srun, not on PATH"),
    (["hydra/launcher=gpus"], "hydra/launcher", "add -m"),
    (["-m", "hydra.launcher.partition=gpu"], "hydra.launcher.partition", "choose a launcher first"),
])
def test_bad_launcher_settings_are_one_line_exit_2_and_write_nothing(tmp_path, args, key, says):
    # no GPU here (CUDA hidden), and a PATH without SLURM's commands
    env = {"CUDA_VISIBLE_DEVICES": "", "PATH": os.path.dirname(sys.executable)}
    r = hyperbench("run", *args, "methods=[exact]", f"results_dir={tmp_path}", env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    (line,) = r.stderr.strip().splitlines()
    assert f"error: {key}: " in line and "allowed" in line and says in line
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("content", [b"not tensors\n", None])
def test_an_input_file_that_is_not_tensors_fails_before_any_job(tmp_path, content):
    path = tmp_path / "inputs.pt"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "results"
    r = hyperbench("run", "-m", *SMALL, "methods=[exact]", "inputs=file", f"inputs.path={path}",
                   "seq_len=128,192", f"results_dir={out}")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error: inputs.path" in lines[0]
    assert ("not a file torch.save wrote" if content else "no such file") in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("where", ["a_file", "a_file/below_it"])
def test_a_results_dir_that_cannot_be_written_fails_before_any_job(tmp_path, where):
    (tmp_path / "a_file").write_text("not a folder\n")
    r = hyperbench("run", *SMALL, "methods=[exact]", f"results_dir={tmp_path / where}")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error: results_dir" in lines[0] and "not a folder" in lines[0]
    assert r.stdout == ""   # refused before the job started, not after it measured
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_a_job_that_raises_fails_alone_and_the_sweep_ends_with_its_summary(tmp_path):
    # Every job measures and then fails to write: under Hydra's basic launcher, before this was
    # handled, the sweep ended in the first job's traceback, exit 1, with no summary and no tables.
    block_store_folder(tmp_path)
    r = hyperbench("run", "-m", *SMALL, "methods=[exact]", "errors=false", "seq_len=128,160",
                   f"results_dir={tmp_path}")
    assert r.returncode == 1, (r.stdout, r.stderr)
    titles = [line.strip() for line in r.stdout.splitlines() if line.startswith("n=")]
    assert titles == ["n=128 non-causal fwd", "n=160 non-causal fwd"]   # both tables, though neither was stored
    assert r.stdout.count("│ exact") == 2
    failed = [line for line in r.stderr.splitlines() if line.startswith("FAILED job")]
    assert len(failed) == 2 and all("raised FileExistsError" in line for line in failed)
    assert "seq_len=128" in failed[0] and "seq_len=160" in failed[1]
    assert "2 jobs, no new rows" in r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith("hyperbench: 2 jobs did not finish")
    assert not list(tmp_path.glob("**/*.parquet"))


def test_a_mistyped_nested_key_lists_the_keys_beside_it(tmp_path):
    r = hyperbench("run", "timing.reps=3", f"results_dir={tmp_path}")
    assert r.returncode == 2
    allowed = r.stderr.split("allowed:")[1]
    assert "timing.warmup" in allowed and "timing.max_reps" in allowed and "seq_len" not in allowed


def test_sweep_without_multirun_flag_is_refused(tmp_path):
    r = hyperbench("run", "seq_len=128,256", f"results_dir={tmp_path}")
    assert r.returncode == 2 and "-m" in r.stderr


def test_results_command_reads_the_store(tmp_path):
    assert hyperbench("run", *SMALL, "methods=[exact]", "errors=false", f"results_dir={tmp_path}").returncode == 0
    r = hyperbench("results", f"--results-dir={tmp_path}", "method=exact")
    assert r.returncode == 0 and "exact" in r.stdout
    bad = hyperbench("results", f"--results-dir={tmp_path}", "nope=1")
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_unknown_command_and_help():
    assert hyperbench("frobnicate").returncode == 2
    assert "usage" in hyperbench("--help").stdout


def test_run_help_lists_every_key_and_the_launchers():
    r = hyperbench("run", "--help")
    assert r.returncode == 0 and r.stdout.startswith("hyperbench run [-m]")
    assert "seq_len: 4096" in r.stdout and "sweep: paper_error" in r.stdout
    for launcher in ("gpus", "slurm", "slurm_local"):   # Hydra's help lists the app's groups only
        assert f"hydra/launcher={launcher} " in r.stdout


def test_rerun_measures_only_what_is_missing_and_force_reruns(tmp_path):
    common = [*SMALL, "errors=false", f"results_dir={tmp_path}"]
    assert hyperbench("run", *common, "methods=[exact]").returncode == 0
    again = hyperbench("run", *common, "methods=[exact]")
    assert again.returncode == 0 and "already in" in again.stdout
    assert len(list(tmp_path.glob("**/*.parquet"))) == 1
    more = hyperbench("run", *common, "methods=[exact,sdpa_math]")
    assert more.returncode == 0
    df = store.read(tmp_path)
    assert sorted(df["method"]) == ["exact", "sdpa_math"]       # exact was not measured twice
    forced = hyperbench("run", *common, "methods=[exact]", "force=true")
    assert forced.returncode == 0
    assert sorted(store.read(tmp_path)["method"]) == ["exact", "exact", "sdpa_math"]


def test_a_kernel_switch_off_its_default_is_another_configuration(tmp_path):
    """A run with HYPERBENCH_CAUSAL_16BIT_ADDS=0 (fp32 sums) is measured although the store holds
    the shape at the defaults for this commit, and its row says which switch it ran with."""
    common = [*SMALL, "errors=false", "methods=[exact]", f"results_dir={tmp_path}"]
    assert hyperbench("run", *common).returncode == 0
    switched = hyperbench("run", *common, env={"HYPERBENCH_CAUSAL_16BIT_ADDS": "0"})
    assert switched.returncode == 0 and "already in" not in switched.stdout
    df = store.read(tmp_path).sort_values("created_at")
    assert df["switches"].isna().tolist() == [True, False]
    assert df["switches"].iloc[1] == '{"HYPERBENCH_CAUSAL_16BIT_ADDS": 0.0}'
    assert df["config_hash"].nunique() == 2
    again = hyperbench("run", *common, env={"HYPERBENCH_CAUSAL_16BIT_ADDS": "0"})
    assert "already in" in again.stdout


def test_back_to_back_rows_say_so_and_are_measured_apart_from_per_call_rows(tmp_path):
    """timing.back_to_back is another configuration: a store holding the per-call rows of a shape
    still measures it back to back, each row records its timing_mode, and the per-call rows keep
    the hash they had before the key existed."""
    common = [*SMALL, "errors=false", "methods=[exact]", f"results_dir={tmp_path}"]
    assert hyperbench("run", *common).returncode == 0
    queued = hyperbench("run", *common, "timing.back_to_back=true")
    assert queued.returncode == 0 and "already in" not in queued.stdout
    df = store.read(tmp_path).sort_values("created_at")
    assert df["timing_mode"].tolist() == ["per_call", "back_to_back"]
    per_call, back_to_back = df["config_hash"].tolist()
    assert per_call != back_to_back
    from hyperbench.config import MEASURED_KEYS, job_config
    from omegaconf import OmegaConf
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "config.yaml"))
    cfg.pop("defaults"), cfg.pop("hydra")
    cfg.update(inputs={"name": "gaussian", "temperature": 1.0}, seq_len=192, num_heads=2, head_dim=16,
               block_size=32, sample_size=32, sample_tile=32, min_seq_len=64)
    job = job_config(cfg)
    assert store.config_hash({k: job.as_dict()[k] for k in MEASURED_KEYS}) == per_call


@pytest.mark.parametrize("combo", [
    ["seq_len=128", "methods=[exact,hyper_ref]"],
    ["inputs=clustered", "inputs.num_clusters=8", "seq_len=256"],
    ["+sweep=smoke", "sample_size=64", "timing.min_reps=3"],
    ["++timing.warmup=4", "+extra_note=hi", "~budget_s"],
    ["inputs={name: gaussian, temperature: 2.0}", "causal=true"],
    ["inputs=low_rank", "inputs=heavy_hitters"],
])
def test_the_checks_composition_equals_hydras(combo):
    """check_overrides composes once per set of config-group choices and applies the other overrides
    to a copy (cli._composer): the config must be the one Hydra's compose gives for the same line."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf
    from hyperbench import cli

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=cli.CONFIG_MODULE, version_base="1.3"):
        composed = cli._composer(compose, OverridesParser.create(), compose(config_name="config"))
        composed(["seq_len=512"])     # a cached composition must not leak into the next combination
        ours = OmegaConf.to_container(composed(combo))
        hydras = OmegaConf.to_container(compose(config_name="config", overrides=combo))
    GlobalHydra.instance().clear()
    assert ours == hydras


@pytest.mark.parametrize("combo", [["seq_lenn=3"], ["inputs=nope"], ["+seq_len=3"], ["~nope"]])
def test_the_checks_composition_fails_where_hydras_does(combo):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hyperbench import cli

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=cli.CONFIG_MODULE, version_base="1.3"):
        with pytest.raises(HydraException) as hydras:
            compose(config_name="config", overrides=combo)
        with pytest.raises(HydraException) as ours:
            cli._composer(compose, OverridesParser.create(), compose(config_name="config"))(combo)
    GlobalHydra.instance().clear()
    assert type(ours.value) is type(hydras.value)


def test_ctrl_c_while_checking_is_one_line_and_exit_130(monkeypatch, capsys):
    from hyperbench import cli

    def interrupted(overrides, multirun):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "check_overrides", interrupted)
    assert cli.run_main(["seq_len=128"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "hyperbench: interrupted while checking the configuration; nothing was run"]
