"""The run's table (src/hyperbench/table.py): speedups against the fastest exact method, and the
note that marks a GPU row whose host took most of its time to issue the call."""

from rich.console import Console

from hyperbench import table


def _row(method, time_ms, host_ms=None, message=""):
    return {"method": method, "status": "ok", "time_ms": time_ms, "time_ms_p20": time_ms, "time_ms_p80": time_ms,
            "host_ms": host_ms, "message": message}


def test_a_row_its_host_bounds_is_marked():
    assert table.note(_row("hyper", 0.40, host_ms=0.39)) == "host-bound: the CPU took 0.390 ms to issue a call"
    assert table.note(_row("hyper", 0.40, host_ms=0.30)) == ""
    assert table.note(_row("hyper", 0.40)) == ""                        # a CPU row: no host time
    both = table.note(_row("hyper", 0.40, host_ms=0.50, message="error metrics skipped"))
    assert both == "error metrics skipped; host-bound: the CPU took 0.500 ms to issue a call"
    assert table.note({**_row("hyper", 0.40, host_ms=0.50), "status": "error", "message": "boom"}) == "boom"


def test_the_table_shows_speedups_and_notes():
    rows = [_row("sdpa_cudnn", 2.0, host_ms=0.05), _row("hyper", 0.5, host_ms=0.49)]
    out = Console(width=250, record=True)
    out.print(table.job_table(rows, "t"))
    text = out.export_text()
    assert "speedup vs sdpa_cudnn" in text and "4.00×" in text and "1.00×" in text
    assert text.count("host-bound") == 1
