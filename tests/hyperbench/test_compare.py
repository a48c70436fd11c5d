"""hyperbench compare: verdicts on the committed H200 results and on planted changes, exit codes."""

import atexit
import datetime as dt
import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hyperbench import cli, store

ROOT = Path(__file__).resolve().parents[2]
OLD = "f317ccaaf4d08d65464772242ec38c3c13aca482"
NEW = "26aba8918824c5945e2fa032e8bcde7dc2781d75"
PLANTED = "c0ffee0000000000000000000000000000000000"


def committed_store() -> Path:
    """The committed H200 job files of commits OLD and NEW, copied into a temporary store: runs a
    user makes into results/ (the README's first command writes there) must not change the tests."""
    tmp = Path(tempfile.mkdtemp(prefix="hyperbench-committed-"))
    atexit.register(shutil.rmtree, tmp, True)
    for path in sorted((ROOT / "results").glob("*/*.parquet")):
        shas = set(pq.read_table(path, columns=["git_sha"]).column("git_sha").to_pylist())
        if shas and shas <= {OLD, NEW}:
            (tmp / path.parent.name).mkdir(exist_ok=True)
            shutil.copy2(path, tmp / path.parent.name / path.name)
    return tmp


RESULTS = committed_store()


def clean_rows(sha: str) -> list[dict]:
    return [{k: None if pd.api.types.is_scalar(v) and pd.isna(v) else v for k, v in r.to_dict().items()}
            for _, r in store.read(RESULTS, where={"git_sha": sha}).iterrows()]


def with_samples(row: dict) -> dict:
    """The row plus repetitions whose p20 / median / p80 are its own (committed rows predate samples)."""
    u = (np.arange(row["reps"]) + 0.5) / row["reps"]
    lo, med, hi = row["time_ms_p20"], row["time_ms"], row["time_ms_p80"]
    samples = np.interp(u, [0.0, 0.2, 0.5, 0.8, 1.0], [lo * 0.99, lo, med, hi, hi * 1.01])
    return {**row, "time_samples_ms": json.dumps(samples.tolist())}


def plant(results: Path, rows: list[dict], sha: str, factor: float, failed_method: str | None = None) -> None:
    """Write ``rows`` as commit ``sha`` with every time and sample multiplied by ``factor``;
    ``failed_method``'s rows turned into `oom`."""
    out = []
    for row in rows:
        row = dict(row)
        for col in ("time_ms", "time_ms_p20", "time_ms_p80"):
            row[col] *= factor
        if row["time_samples_ms"]:
            row["time_samples_ms"] = json.dumps([x * factor for x in json.loads(row["time_samples_ms"])])
        if row["method"] == failed_method:
            row.update(status="oom", message="CUDA out of memory (planted)", time_ms=None)
        row.update(git_sha=sha, run_id=sha[:8], job_id=None, created_at=dt.datetime.now(dt.timezone.utc))
        out.append(row)
    store.write_job(out, results, job_id=f"{sha[:8]}-0000")


def planted_store(tmp_path: Path, factor: float, failed_method: str | None = None) -> Path:
    """A copy of the committed store plus commit c0ffee: 26aba89's rows, times multiplied by ``factor``."""
    results = tmp_path / "results"
    for folder in RESULTS.iterdir():
        if folder.is_dir() and any(folder.glob("*.parquet")):
            shutil.copytree(folder, results / folder.name)
    plant(results, clean_rows(NEW), PLANTED, factor, failed_method)
    return results


def run(capsys, *argv):
    code = cli.main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_committed_gpu_results_show_improvements_and_no_regression(capsys):
    code, out, err = run(capsys, "--baseline", "f317cca", "--candidate", "26aba89", "--results-dir", str(RESULTS))
    assert code == 0, out + err
    assert "0 regressions, 2 improvements, 10 same" in out


def test_planted_ten_percent_slowdown_is_a_regression(tmp_path, capsys):
    results = planted_store(tmp_path, 1.10)
    code, out, _ = run(capsys, "--baseline", "26aba89", "--results-dir", str(results))   # candidate: latest
    assert code == 1
    assert "12 regressions" in out and "c0ffee0 against baseline 26aba89" in out


def test_planted_one_percent_slowdown_is_not(tmp_path, capsys):
    code, out, _ = run(capsys, "--baseline", "26aba89", "--results-dir", str(planted_store(tmp_path, 1.01)))
    assert code == 0
    assert "0 regressions, 0 improvements, 12 same" in out


def test_filters_and_a_method_that_stopped_running(tmp_path, capsys):
    results = planted_store(tmp_path, 1.0, failed_method="sdpa_flash")
    code, out, _ = run(capsys, "--baseline", "26aba", "--results-dir", str(results), "method=hyper")
    assert code == 0 and "4 same" in out
    code, out, _ = run(capsys, "--baseline", "26aba", "--results-dir", str(results), "method=sdpa_flash")
    assert code == 1 and "4 regressions" in out and "ok → oom" in out


def test_a_moved_clock_is_noted_beside_the_verdict():
    """Rows that carry their SM clock (since v31) say when it moved between the two runs, since the
    power limit alone moves a row's time; the verdict itself stays the times'."""
    from hyperbench import compare
    base = pd.Series({**with_samples(clean_rows(NEW)[0]), "sm_clock_mhz": 1890.0})
    slower = pd.Series({**base, "sm_clock_mhz": 1815.0})
    got = compare.compare_rows(base, slower, 0.05)
    assert got.note == "SM clock 1890 → 1815 MHz" and got.verdict == "same"
    assert compare.compare_rows(base, pd.Series({**base, "sm_clock_mhz": 1875.0}), 0.05).note == ""
    assert compare.compare_rows(base, pd.Series({**base, "sm_clock_mhz": None}), 0.05).note == ""


def test_per_clock_judges_cycles_so_a_power_capped_row_is_not_a_regression(tmp_path, capsys):
    """--per-clock: a candidate 8% slower at a clock 8% lower took the same cycles (same); 8% slower
    at the same clock is a regression either way; a pair without both clocks is judged on times
    and says so. Checked through the command on a planted store."""
    from hyperbench import compare
    base = pd.Series({**with_samples(clean_rows(NEW)[0]), "sm_clock_mhz": 1980.0})
    capped = pd.Series({**base, "sm_clock_mhz": 1980.0 / 1.08})
    capped["time_samples_ms"] = json.dumps([x * 1.08 for x in json.loads(base["time_samples_ms"])])
    assert compare.compare_rows(base, capped, 0.05).verdict == "regression"
    got = compare.compare_rows(base, capped, 0.05, per_clock=True)
    assert got.verdict == "same" and got.time.ratio == pytest.approx(1.0)
    assert got.note == "SM clock 1980 → 1833 MHz, judged in cycles"
    assert got.cand.median == pytest.approx(compare.row_timing(base).median * 1.08)   # shown as measured
    slower = compare.compare_rows(base, pd.Series({**capped, "sm_clock_mhz": 1980.0}), 0.05, per_clock=True)
    assert slower.verdict == "regression" and slower.note == ""
    unknown = compare.compare_rows(base, pd.Series({**capped, "sm_clock_mhz": None}), 0.05, per_clock=True)
    assert unknown.verdict == "regression" and unknown.note.startswith("per clock: no SM clock on both rows")

    results = tmp_path / "results"
    rows = [{**with_samples(r), "sm_clock_mhz": 1980.0} for r in clean_rows(NEW)]
    plant(results, rows, "b0" * 20, 1.0)
    plant(results, [{**r, "sm_clock_mhz": 1980.0 / 1.10} for r in rows], PLANTED, 1.10)
    code, out, _ = run(capsys, "--baseline", "b0b0", "--results-dir", str(results))
    assert code == 1 and "12 regressions" in out
    code, out, _ = run(capsys, "--baseline", "b0b0", "--results-dir", str(results), "--per-clock")
    assert code == 0 and "12 same" in out and "per SM clock cycle" in out


def test_host_bound_rows_and_other_timings_say_so():
    """A row whose host took most of its time to issue a call measures the CPU too (v24): the note
    says so, beside a moved clock; a row timed other than per call names its timing."""
    from hyperbench import compare
    base = pd.Series({**with_samples(clean_rows(NEW)[0]), "time_ms": 1.0, "host_ms": 0.2, "sm_clock_mhz": 1890.0})
    bound = pd.Series({**base, "time_ms": 2.0, "host_ms": 1.9, "sm_clock_mhz": 1815.0})
    assert compare.compare_rows(base, bound, 0.05).note == (
        "SM clock 1890 → 1815 MHz; host-bound: the CPU took 0.200 → 1.900 ms to issue a call")
    assert compare.compare_rows(base, pd.Series({**base, "host_ms": 0.7}), 0.05).note == ""
    # not host-bound, but the host's change accounts for the time's: said beside the verdict
    slower = pd.Series({**base, "time_ms": 1.3, "host_ms": 0.45})
    assert compare.compare_rows(base, slower, 0.05).note == (
        "the CPU took 0.200 → 0.450 ms to issue a call (+0.250 ms; time +0.300 ms)")
    assert compare.compare_rows(base, pd.Series({**slower, "host_ms": 0.3}), 0.05).note == ""   # +0.1 of +0.3
    assert compare.compare_rows(base, pd.Series({**slower, "host_ms": 0.1}), 0.05).note == ""   # moved the other way
    assert "host-bound: the CPU took — → 0.900" in compare.compare_rows(
        pd.Series({**base, "host_ms": None}), pd.Series({**base, "host_ms": 0.9}), 0.05).note
    assert "timed" not in compare.config_label(base)
    graphed = pd.Series({**base, "timing_mode": "per_call+cuda_graph"})
    assert compare.config_label(graphed).endswith(" timed per_call+cuda_graph")


@pytest.mark.parametrize("factor, code, counts", [(1.10, 1, "12 regressions"), (1.01, 0, "12 same")])
def test_planted_change_with_samples(tmp_path, capsys, factor, code, counts):
    results = tmp_path / "results"
    rows = [with_samples(r) for r in clean_rows(NEW)]
    plant(results, rows, "b0" * 20, 1.0)
    plant(results, rows, PLANTED, factor)
    got, out, _ = run(capsys, "--baseline", "b0b0", "--results-dir", str(results))
    assert got == code and counts in out
    assert "% [" in out   # decided by the bootstrap of the samples


@pytest.mark.parametrize("argv, field", [
    (["--baseline", "deadbeef"], "--baseline"),
    (["--baseline", "f317cca", "--candidate", "nope"], "--candidate"),
    (["--baseline", "f317cca", "--candidate", "f317"], "--candidate"),       # the same commit
    (["--baseline", "f317cca", "seq_len=1024"], "--candidate"),             # 26aba89 has no n=1024: nothing to compare
    (["--baseline", "f317cca", "method=nope"], "--baseline"),
    (["--baseline", "f317cca", "colour=red"], "colour"),
    (["--baseline", "f317cca", "--threshold", "-1"], "--threshold"),
    ([], "--baseline"),
    (["--pytest-benchmark", "missing.json", "missing.json"], "--pytest-benchmark"),
    (["--pytest-benchmark", "a.json", "b.json", "--per-clock"], "--per-clock"),
    (["--baseline", "f317cca", "--relative-to", "test_x"], "--relative-to"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, field):
    code, out, err = run(capsys, "--results-dir", str(RESULTS), *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"hyperbench compare: error: {field}: "), err


def bench_file(path: Path, median_s: float, save_data: bool, seed: int = 0, **others: float) -> str:
    """A pytest-benchmark JSON file with benchmark test_x around ``median_s`` and one more per
    keyword (name=median_s), each with 2% noise."""
    rng = np.random.default_rng(seed)
    benchmarks = []
    for name, median in {"test_x": median_s, **others}.items():
        data = rng.normal(median, 0.02 * median, 40)
        stats = {"median": float(np.median(data)), "q1": float(np.quantile(data, 0.25)),
                 "q3": float(np.quantile(data, 0.75)), "rounds": len(data)}
        if save_data:
            stats["data"] = data.tolist()
        benchmarks.append({"fullname": f"tests/kernels/test_x.py::{name}", "name": name, "stats": stats})
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return str(path)


@pytest.mark.parametrize("save_data", [True, False])
@pytest.mark.parametrize("factor, code", [(1.10, 1), (1.01, 0), (0.90, 0)])
def test_pytest_benchmark_files(tmp_path, capsys, save_data, factor, code):
    base = bench_file(tmp_path / "base.json", 0.020, save_data, seed=0)
    cand = bench_file(tmp_path / "cand.json", 0.020 * factor, save_data, seed=1)
    got, out, _ = run(capsys, "--pytest-benchmark", base, cand)
    assert got == code, out
    assert "test_x" in out
    assert ("% [" in out) == save_data   # the bootstrap's interval is shown where there are samples


@pytest.mark.parametrize("x_ms, yard_ms, relative, code", [
    (50, 250, True, 0),     # the machine is 2.5x slower, test_x with it: no regression relative to it
    (50, 250, False, 1),    # ... but a regression in milliseconds
    (50, 100, True, 1),     # test_x 2.5x slower on a machine as fast as before
    (20, 250, True, 0),     # the machine slower, test_x not: an improvement relative to it
])
def test_pytest_benchmark_relative_to_a_yardstick(tmp_path, capsys, x_ms, yard_ms, relative, code):
    base = bench_file(tmp_path / "base.json", 0.020, True, seed=0, test_yard=0.100)
    cand = bench_file(tmp_path / "cand.json", x_ms / 1e3, True, seed=1, test_yard=yard_ms / 1e3)
    got, out, _ = run(capsys, "--pytest-benchmark", base, cand, "--threshold", "1.0",
                      *(["--relative-to", "test_yard"] if relative else []))
    assert got == code, out
    counts = re.search(r"(\d+) regressions?, (\d+) improvements?, (\d+) same", out).groups()
    assert sum(map(int, counts)) == (1 if relative else 2)   # the yardstick itself is not judged
    if relative:
        assert f"judged ×{100 / yard_ms:.3g}" in " ".join(out.split())


def test_relative_to_names_the_benchmarks_allowed(tmp_path, capsys):
    base = bench_file(tmp_path / "base.json", 0.020, True, test_yard=0.1)
    code, out, err = run(capsys, "--pytest-benchmark", base, base, "--relative-to", "test_nope")
    assert code == 2 and out == ""
    assert err.startswith("hyperbench compare: error: --relative-to: test_nope: not in ") and "allowed: test_x, test_yard" in err


def test_saved_cpu_baseline_is_readable(capsys):
    baseline = str(ROOT / "tests" / "benchmarks" / "baseline.json")
    code, out, _ = run(capsys, "--pytest-benchmark", baseline, baseline, "--threshold", "0.5")
    assert code == 0 and "test_hyper_ref_cpu_benchmark" in out and "0 regressions" in out
    code, out, _ = run(capsys, "--pytest-benchmark", baseline, baseline, "--threshold", "1.0",
                       "--relative-to", "test_dense_attention_yardstick_cpu_benchmark")
    assert code == 0 and "judged ×1 " in out and "1 same" in out
