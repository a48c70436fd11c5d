"""The table a run ends with: one line per method of a job, speedups against the fastest exact method."""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import methods

STATUS_STYLE = {"ok": "green", "skipped": "yellow", "unavailable": "dim", "oom": "red", "error": "red"}


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x))


def _fmt(x, spec: str) -> str:
    return format(x, spec) if _num(x) else "—"


def _bytes(x) -> str:
    if not _num(x):
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(x) < 1024 or unit == "GiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024


def fastest_exact_ms(rows: list[dict]) -> tuple[float | None, str | None]:
    timed = [(r["time_ms"], r["method"]) for r in rows
             if r.get("status") == "ok" and _num(r.get("time_ms")) and r["method"] in methods.names()
             and methods.get(r["method"]).exact]
    return min(timed) if timed else (None, None)


# A GPU row whose host took this share of its time or more to issue the call is marked: the GPU
# waited for the launches, so the time is the host's CPU as much as the kernels'.
HOST_BOUND_SHARE = 0.8
# A GPU row whose median SM clock was below this share of its maximum is marked, with what NVML
# counted as holding it down: its time is the board's power or cooling as well as the code's (on
# the H200 most long rows run at the 700 W limit, and cuDNN's at 1770-1890 MHz of 1980).
SLOW_CLOCK_SHARE = 0.97


def host_bound(r) -> bool:
    """Whether an ok row's host took HOST_BOUND_SHARE of its time or more to issue a call."""
    host, t = r.get("host_ms"), r.get("time_ms")
    return r.get("status") == "ok" and _num(host) and _num(t) and host >= HOST_BOUND_SHARE * t


def note(r: dict) -> str:
    """The row's message; for a GPU row bound by its host, how long the host took a call; for one
    whose clock ran slow while it was timed, the clock and what held it down."""
    parts = [r.get("message") or ""]
    if host_bound(r):
        parts.append(f"host-bound: the CPU took {r['host_ms']:.3f} ms to issue a call")
    clock, top = r.get("sm_clock_mhz"), r.get("sm_clock_max_mhz")
    if r.get("status") == "ok" and _num(clock) and _num(top) and clock < SLOW_CLOCK_SHARE * top:
        why = [f"{cause} {r[key]:.0%} of the time" for key, cause in
               (("power_capped", "power limit"), ("thermal_capped", "heat")) if _num(r.get(key)) and r[key] > 0]
        parts.append(f"SM clock {clock:.0f} MHz ({clock / top:.0%} of max)" + (f": {', '.join(why)}" if why else ""))
    return "; ".join(p for p in parts if p)


def job_table(rows: list[dict], title: str) -> Table:
    best_ms, best_name = fastest_exact_ms(rows)
    table = Table(title=title, title_justify="left")
    for col, justify in [("method", "left"), ("status", "left"), ("median ms (p20–p80)", "right"),
                         (f"speedup vs {best_name or 'exact'}", "right"), ("peak mem", "right"),
                         ("spec_err", "right"), ("rel_spec_err", "right"), ("rel_fro_err", "right"), ("note", "left")]:
        table.add_column(col, justify=justify, overflow="fold")
    for r in rows:
        status = r.get("status", "?")
        t = r.get("time_ms")
        timing = f"{t:.3f} ({r['time_ms_p20']:.3f}–{r['time_ms_p80']:.3f})" if _num(t) else "—"
        speedup = f"{best_ms / t:.2f}×" if _num(t) and best_ms else "—"
        table.add_row(r["method"], f"[{STATUS_STYLE.get(status, '')}]{status}[/]", timing, speedup,
                      _bytes(r.get("peak_mem_bytes")), _fmt(r.get("spec_err"), ".2e"),
                      _fmt(r.get("rel_spec_err"), ".2e"), _fmt(r.get("rel_fro_err"), ".2e"),
                      escape(note(r)[:160]))
    return table


def console() -> Console:
    """A console that does not squeeze the table to 80 columns when output goes to a file or pipe."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=200)


def print_job(rows: list[dict], title: str, out: Console | None = None) -> None:
    (out or console()).print(job_table(rows, title))
