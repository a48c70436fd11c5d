import datetime as dt

import pytest

from hyperbench import cli, report, store

T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)
SHA = "e4793e8f61654b4f34d871f0fd0a4093bd628254"
OTHER = "a2db87721f1a421d256f25864e823b6407356abf"


def row(method, causal, mode, time_ms, timing_mode="per_call", sha=SHA, **extra):
    return {"method": method, "seq_len": 131072, "head_dim": 64, "num_heads": 32, "batch": 1,
            "dtype": "bfloat16", "causal": causal, "mode": mode, "block_size": 256, "sample_size": 256,
            "timing_mode": timing_mode, "status": "ok", "time_ms": time_ms, "git_sha": sha,
            "gpu_name": "NVIDIA H200", "torch": "2.11.0+cu130", "triton": "3.6.0",
            "created_at": T0, **extra}


@pytest.fixture
def results(tmp_path):
    rows = [row("hyper", False, "fwd", 2.541, spec_err=0.1146), row("sdpa_cudnn", False, "fwd", 306.2),
            row("hyper", True, "fwd", 11.223), row("sdpa_cudnn", True, "fwd", 154.4),
            row("hyper", False, "fwd", 2.478, "per_call+cuda_graph", time_ms_p20=2.4712, time_ms_p80=2.4857),
            row("sdpa_cudnn", False, "fwd", 299.4, "per_call+cuda_graph"),
            row("hyper", True, "fwd", 11.150, "per_call+cuda_graph"),
            row("sdpa_cudnn", True, "fwd", 152.9, "per_call+cuda_graph"),
            row("hyper", False, "fwd", 2.547, sha=OTHER, created_at=T0 - dt.timedelta(days=1)),
            row("hyper", True, "fwd", 0.0, status="oom", sha=OTHER, created_at=T0 - dt.timedelta(days=1))]
    store.write_job(rows[:8], tmp_path, job_id="run-0000")
    store.write_job(rows[8:], tmp_path, job_id="old-0000")
    return tmp_path


def run(capsys, *argv):
    code = cli.main(["report", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_markdown_table_has_one_cell_per_row_and_the_provenance_in_its_caption(results, capsys):
    code, out, err = run(capsys, "--results-dir", results, f"git_sha={SHA}", "method=hyper",
                         "method=sdpa_cudnn", "--baseline", "sdpa_cudnn")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == ("| causal | hyper, per_call | vs sdpa_cudnn | hyper, per_call+cuda_graph | vs sdpa_cudnn "
                        "| sdpa_cudnn, per_call | sdpa_cudnn, per_call+cuda_graph |")
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---:|"
    # speedups are the baseline's time over the method's, in the same timing mode
    assert lines[2] == f"| non-causal | 2.541 | {306.2 / 2.541:.0f}× | 2.478 | {299.4 / 2.478:.0f}× | 306.2 | 299.4 |"
    assert lines[3] == f"| causal | 11.22 | {154.4 / 11.223:.1f}× | 11.15 | {152.9 / 11.15:.1f}× | 154.4 | 152.9 |"
    caption = lines[5]
    for text in ("median ms", "n=131072", "d=64", "fwd", "NVIDIA H200", "torch 2.11.0+cu130", "Triton 3.6.0",
                 "commit e4793e8", "2026-11-30"):
        assert text in caption
    assert "causal" not in caption.split(";")[1]  # it varies: a row label, not the caption's


def test_the_filters_order_sets_the_columns_order(results, capsys):
    code, out, _ = run(capsys, "--results-dir", results, "git_sha=e4793e8", "method=sdpa_cudnn",
                       "method=hyper", "timing_mode=per_call")
    assert code == 0
    assert out.splitlines()[0] == "| causal | sdpa_cudnn | hyper |"


def test_two_rows_for_one_cell_are_an_error_naming_what_differs(results, capsys):
    code, out, err = run(capsys, "--results-dir", results, "method=hyper", "timing_mode=per_call")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("hyperbench report: error: filters: 2 rows for causal=False differ in git_sha "
                          "(a2db87721f1a, e4793e8f6165); add a filter such as git_sha=")


def test_a_row_that_did_not_run_shows_its_status_and_no_speedup(results, capsys):
    code, out, _ = run(capsys, "--results-dir", results, f"git_sha={OTHER}", "--format", "csv")
    assert code == 0
    assert out.splitlines() == ["causal,hyper", "non-causal,2.547", "causal,oom"]
    store.write_job([row("sdpa_cudnn", c, "fwd", 150.0, sha=OTHER, gpu_name=None) for c in (False, True)],
                    results, job_id="old-0001")
    code, out, _ = run(capsys, "--results-dir", results, f"git_sha={OTHER}", "--baseline", "sdpa_cudnn")
    assert code == 0
    assert out.splitlines()[2:4] == ["| non-causal | 150.0 | 2.547 | 58.9× |", "| causal | 150.0 | oom | — |"]
    code, out, _ = run(capsys, "--results-dir", results, f"git_sha={OTHER}", "method=sdpa_cudnn")
    assert code == 0 and "; no GPU, torch 2.11.0+cu130" in out


def test_several_baselines_give_each_other_method_a_speedup_against_each(results, capsys):
    store.write_job([row("sdpa_flash", c, "fwd", t) for c, t in ((False, 451.9), (True, 225.0))],
                    results, job_id="run-0001")
    code, out, _ = run(capsys, "--results-dir", results, f"git_sha={SHA}", "timing_mode=per_call",
                       "method=hyper", "method=sdpa_cudnn", "method=sdpa_flash",
                       "--baseline", "sdpa_cudnn,sdpa_flash", "--format", "csv")
    assert code == 0
    assert out.splitlines() == [
        "causal,hyper,vs sdpa_cudnn,vs sdpa_flash,sdpa_cudnn,sdpa_flash",
        f"non-causal,2.541,{306.2 / 2.541:.0f}×,{451.9 / 2.541:.0f}×,306.2,451.9",
        f"causal,11.22,{154.4 / 11.223:.1f}×,{225.0 / 11.223:.1f}×,154.4,225.0"]


def test_modes_read_forward_backward_then_both(results, capsys):
    store.write_job([row("hyper", False, m, t) for m, t in (("fwd+bwd", 7.8), ("bwd", 5.0))], results,
                    job_id="run-0002")
    code, out, _ = run(capsys, "--results-dir", results, f"git_sha={SHA}", "timing_mode=per_call",
                       "method=hyper", "causal=false", "--format", "csv")
    assert code == 0
    assert out.splitlines() == ["mode,hyper", "fwd,2.541", "bwd,5.000", "fwd+bwd,7.800"]


def test_latex_escapes_and_keeps_the_caption_as_a_comment(results, capsys):
    code, out, _ = run(capsys, "--results-dir", results, "git_sha=e4793e8", "--format", "latex",
                       "--baseline", "sdpa_cudnn", "timing_mode=per_call")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("% median ms;") and lines[1] == r"\begin{tabular}{lrrr}"
    assert lines[3] == r"causal & sdpa\_cudnn & hyper & vs sdpa\_cudnn \\"
    assert lines[5] == rf"non-causal & 306.2 & 2.541 & {306.2 / 2.541:.0f}$\times$ \\"
    assert lines[-1] == r"\end{tabular}"


def test_another_value_and_columns(results, capsys):
    code, out, _ = run(capsys, "--results-dir", results, "git_sha=e4793e8", "method=hyper",
                       "--value", "spec_err", "--cols", "timing_mode", "causal=false", "--format", "csv")
    assert code == 0
    assert out.splitlines() == ["per_call,per_call+cuda_graph", "0.115,—"]


def test_spread_shows_the_repetitions_p20_and_p80(results, capsys):
    code, out, _ = run(capsys, "--results-dir", results, "git_sha=e4793e8", "method=hyper", "causal=false",
                       "--spread", "--format", "csv")
    assert code == 0
    assert out.splitlines() == ["per_call,per_call+cuda_graph", "2.541,2.478 (2.471–2.486)"]  # no p20/p80: the median


@pytest.mark.parametrize("argv, field", [
    (["--spread", "--value", "spec_err"], "--spread"),
    (["--format", "html"], "--format"),
    (["--cols", "colour"], "--cols"),
    (["--value", "method"], "--value"),
    (["--value", "nope"], "--value"),
    (["--baseline", "exact"], "--baseline"),
    (["--baseline", "sdpa_cudnn,exact"], "--baseline"),
    (["--baseline", "sdpa_cudnn,sdpa_cudnn"], "--baseline"),
    (["--baseline", ","], "--baseline"),
    (["--baseline", "sdpa_cudnn", "--cols", "timing_mode", "method=hyper", "git_sha=e4793e8"], "--baseline"),
    (["seq_len=4096"], "filters"),
    (["colour=red"], "colour"),
])
def test_bad_input_is_one_line_and_exit_status_2(results, capsys, argv, field):
    code, out, err = run(capsys, "--results-dir", results, *argv)
    assert code == 2 and out == ""
    assert err.startswith(f"hyperbench report: error: {field}: ") and err.count("\n") == 1


def test_numbers_keep_the_digits_a_reader_uses():
    assert [report.number(x) for x in (0.0271, 2.5411, 11.2234, 305.04, 1.5e-5, 0)] == \
        ["0.027", "2.541", "11.22", "305.0", "1.5e-05", "0.000"]
    assert [report.times(x) for x in (0.981, 13.62, 120.4)] == ["0.98×", "13.6×", "120×"]
