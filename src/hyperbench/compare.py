"""``hyperbench compare``: verdicts of a candidate commit against a baseline commit.

    hyperbench compare --baseline REF [--candidate REF] [--results-dir DIR] [--threshold 0.05]
                       [--per-clock] [KEY=VALUE ...]
    hyperbench compare --pytest-benchmark BASELINE.json CANDIDATE.json [--threshold 0.05]
                       [--relative-to BENCHMARK]

REF is a prefix of a commit (git_sha) in the store, or ``latest`` (the commit of the newest row;
the default candidate). Rows pair by (config_hash, method); where a commit measured one pair more
than once its newest row counts. Each pair gets regress.py's verdict on time and on spec_err; a
candidate that no longer runs (oom, error, ...) where the baseline did is a regression.
``--per-clock`` judges GPU times in SM clock cycles instead (each row's times times its median SM
clock), so that a row slowed only by a lower clock (the power limit) is not a regression; it
fits compute-bound kernels, whose time scales with the clock, and pairs without both clocks are
judged on their times as measured, with a note saying so.
``--relative-to`` does the same for pytest-benchmark files on CPU, where the machine's speed is what
moves: each candidate time is scaled by the named benchmark's median in the baseline file over its
median in the candidate file (a yardstick timed in the same run), and the yardstick is not judged.
Exit status: 1 if any regression, 0 otherwise, 2 with one stderr line for bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from typing import Any

import pandas as pd
from rich.markup import escape
from rich.table import Table

from hyperbench import regress, store, table
from hyperbench.errors import ConfigError
from hyperbench.regress import IMPROVEMENT, REGRESSION, SAME, Timing, Verdict
from hyperbench.cli_args import Parser, filters

PROG = "hyperbench compare"
SHORT_SHA = 7
STYLE = {REGRESSION: "bold red", IMPROVEMENT: "green", SAME: "dim"}
ORDER = {REGRESSION: 0, IMPROVEMENT: 1, SAME: 2}


@dataclass(frozen=True)
class Comparison:
    """One (configuration, method) measured at both commits."""
    method: str
    config: str                        # a readable label of the configuration
    config_hash: str | None
    base: Timing
    cand: Timing | None                # None: the candidate did not run (see status)
    time: Verdict | None
    err: Verdict | None = None
    base_err: float | None = None
    cand_err: float | None = None
    status: str = "ok"                 # the candidate's status
    note: str = ""

    @property
    def verdict(self) -> str:
        verdicts = {v.verdict for v in (self.time, self.err) if v is not None}
        if self.status != "ok" or REGRESSION in verdicts:
            return REGRESSION
        return IMPROVEMENT if IMPROVEMENT in verdicts else SAME


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Compare a candidate commit's results with a baseline's.")
    p.add_argument("filters", nargs="*", metavar="KEY=VALUE", help="equality filter on a column")
    p.add_argument("--baseline", help="commit prefix or 'latest'")
    p.add_argument("--candidate", default="latest", help="commit prefix or 'latest' (default)")
    p.add_argument("--results-dir", default="results", help="store folder (default: results)")
    p.add_argument("--threshold", default=str(regress.THRESHOLD), help="relative change that counts")
    p.add_argument("--per-clock", action="store_true",
                   help="judge GPU times in SM clock cycles (time × the row's median SM clock)")
    p.add_argument("--pytest-benchmark", nargs=2, metavar=("BASELINE", "CANDIDATE"),
                   help="compare two pytest-benchmark JSON files instead of the store")
    p.add_argument("--relative-to", metavar="BENCHMARK",
                   help="with --pytest-benchmark: judge times relative to this benchmark's median in the "
                        "same file (the machine's speed); it is the yardstick, not judged")
    return p


def parse_threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 10:
        raise ConfigError("--threshold", f"a relative change such as 0.05 (5%), got {text!r}")
    return value


# ---------------------------------------------------------------------------------------------
# the store


def commits(df: pd.DataFrame) -> list[str]:
    """The store's commits, oldest first (by their first row)."""
    first = df.dropna(subset=["git_sha"]).groupby("git_sha")["created_at"].min()
    return first.sort_values().index.tolist()


def resolve(df: pd.DataFrame, ref: str, field: str) -> str:
    """The full git_sha that ``ref`` (a commit prefix or 'latest') names in the store."""
    known = commits(df)
    if ref == "latest" and known:
        return df.dropna(subset=["git_sha"]).sort_values("created_at")["git_sha"].iloc[-1]
    matches = [sha for sha in known if sha.startswith(ref.strip().lower())] if ref.strip() else []
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(sha[:SHORT_SHA] for sha in known) or "none (no rows in the store match)"
    what = "ambiguous" if matches else "unknown"
    raise ConfigError(field, f"{what} ref {ref!r}; allowed: latest or a commit prefix of {listed}")


def newest(df: pd.DataFrame, sha: str) -> pd.DataFrame:
    """The commit's rows, one per (config_hash, method): the newest where it measured one twice."""
    rows = df[df["git_sha"] == sha].sort_values("created_at")
    return rows.drop_duplicates(["config_hash", "method"], keep="last")


def config_label(row: Any) -> str:
    timing = row.get("timing_mode")
    return (f"n={row['seq_len']} {'causal' if row['causal'] else 'non-causal'} {row['mode']} {row['dtype']} "
            f"B{row['batch']} H{row['num_heads']} d{row['head_dim']} block {row['block_size']} "
            f"sample {row['sample_size']}/{row['sample_tile']} {row['inputs']}"
            + (f" timed {timing}" if isinstance(timing, str) and timing != "per_call" else ""))


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _samples(text: Any) -> list[float] | None:
    """The row's repetitions, or None where it has none (older rows) or they do not parse."""
    try:
        samples = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    ok = isinstance(samples, list) and samples and all(isinstance(x, (int, float)) for x in samples)
    return samples if ok else None


def row_timing(row: Any) -> Timing:
    samples = _samples(row.get("time_samples_ms"))
    if samples:
        return Timing.of_samples(samples)
    reps = row.get("reps")
    return Timing(float(row["time_ms"]), _number(row.get("time_ms_p20")), _number(row.get("time_ms_p80")),
                  None if pd.isna(reps) else int(reps))


def compare_rows(base: Any, cand: Any, threshold: float, per_clock: bool = False) -> Comparison:
    label, common = config_label(base), dict(method=base["method"], config_hash=base["config_hash"])
    if cand["status"] != "ok" or pd.isna(cand["time_ms"]):
        status = cand["status"] if cand["status"] != "ok" else "no time"
        return Comparison(config=label, base=row_timing(base), cand=None, time=None, status=status,
                          note=f"status ok → {status}: {cand.get('message') or ''}"[:160], **common)
    b_err, c_err = _number(base.get("spec_err")), _number(cand.get("spec_err"))
    b_time, c_time = row_timing(base), row_timing(cand)
    judged, clock = c_time, clock_note(base, cand)
    if per_clock:
        judged, clock = per_clock_timing(base, cand, c_time)
    return Comparison(config=label, base=b_time, cand=c_time,
                      time=regress.compare_times(b_time, judged, threshold),
                      err=regress.compare_errors(b_err, c_err, threshold),
                      base_err=b_err, cand_err=c_err,
                      note="; ".join(n for n in (clock, host_note(base, cand)) if n), **common)


def per_clock_timing(base: Any, cand: Any, c_time: Timing) -> tuple[Timing, str]:
    """The candidate's times scaled by its SM clock over the baseline's (cycles in the baseline's
    MHz), with a note where the clock moved; unscaled, and the note says so, where either row has no
    clock."""
    b, c = _number(base.get("sm_clock_mhz")), _number(cand.get("sm_clock_mhz"))
    if not (b and c):
        return c_time, "per clock: no SM clock on both rows, judged on times as measured"
    moved = clock_note(base, cand)
    return c_time.scaled(c / b), moved + ", judged in cycles" if moved else ""


# Two GPU rows whose SM clocks (gpu_clock) differ by this share or more get a note beside their
# verdict: at the power limit the H200's clock moved 1785–1980 MHz between runs of one row (v31),
# which alone moves a compute-bound row's time by as much.
CLOCK_NOTE_CHANGE = 0.02


def clock_note(base: Any, cand: Any) -> str:
    """"SM clock b → c MHz" where both rows carry a clock and it moved by CLOCK_NOTE_CHANGE or more."""
    b, c = _number(base.get("sm_clock_mhz")), _number(cand.get("sm_clock_mhz"))
    if b and c and abs(c / b - 1) >= CLOCK_NOTE_CHANGE:
        return f"SM clock {b:.0f} → {c:.0f} MHz"
    return ""


# A row below table.HOST_BOUND_SHARE still waits for its host at the start of a call (hyper's
# planning launches), so its time can move with the machine's CPU: where the host's time to issue a
# call moved the same way as the row's time, by at least this share of the change, the note says so.
HOST_NOTE_SHARE = 0.5


def host_note(base: Any, cand: Any) -> str:
    """"host-bound" where either row is (table.host_bound): such a row measures the machine's CPU as
    much as the kernels (v24), and moves with it. Otherwise the host's change where it accounts for
    HOST_NOTE_SHARE of the time's (a per-call row at 16384 on another H200 host: +0.125 ms of host,
    +0.127 of time, with the kernels unchanged)."""
    b_host, c_host = _number(base.get("host_ms")), _number(cand.get("host_ms"))
    if table.host_bound(base) or table.host_bound(cand):
        shown = ("—" if h is None else f"{h:.3f}" for h in (b_host, c_host))
        return "host-bound: the CPU took {} → {} ms to issue a call".format(*shown)
    b_time, c_time = _number(base.get("time_ms")), _number(cand.get("time_ms"))
    if None in (b_host, c_host, b_time, c_time):
        return ""
    d_host, d_time = c_host - b_host, c_time - b_time
    if d_host * d_time > 0 and abs(d_host) >= HOST_NOTE_SHARE * abs(d_time):
        return (f"the CPU took {b_host:.3f} → {c_host:.3f} ms to issue a call ({d_host:+.3f} ms; "
                f"time {d_time:+.3f} ms)")
    return ""


def baseline_rows(df: pd.DataFrame, sha: str) -> pd.DataFrame:
    """The commit's rows that can be a baseline: its newest per (config_hash, method), status ok,
    with a time."""
    base = newest(df, sha)
    return base[(base["status"] == "ok") & base["time_ms"].notna()]


def compare_store(df: pd.DataFrame, baseline: str, candidate: str, threshold: float,
                  per_clock: bool = False) -> list[Comparison]:
    """Verdicts for every (config_hash, method) the baseline measured (status ok) and the candidate
    measured too."""
    pairs = baseline_rows(df, baseline).merge(newest(df, candidate), on=["config_hash", "method"],
                                              suffixes=("", "_cand"))
    cand_cols = {f"{c}_cand": c for c in df.columns if c not in ("config_hash", "method")}
    out = []
    for _, row in pairs.iterrows():
        cand = row[list(cand_cols)].rename(cand_cols)
        cand["config_hash"], cand["method"] = row["config_hash"], row["method"]
        out.append(compare_rows(row, cand, threshold, per_clock))
    return sorted(out, key=lambda c: (ORDER[c.verdict], c.config, c.method))


# ---------------------------------------------------------------------------------------------
# pytest-benchmark files


def _bench_file(path: str) -> dict[str, Timing]:
    """name -> Timing (ms) of a pytest-benchmark JSON file: every round where saved with
    --benchmark-save-data, else median and q1/q3."""
    try:
        with open(path) as fh:
            benchmarks = json.load(fh)["benchmarks"]
        out = {}
        for b in benchmarks:
            s = b["stats"]
            if s.get("data"):
                out[b["fullname"]] = Timing.of_samples([x * 1e3 for x in s["data"]])
            else:
                out[b["fullname"]] = Timing(s["median"] * 1e3, s["q1"] * 1e3, s["q3"] * 1e3, s.get("rounds"))
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("--pytest-benchmark", f"{path}: not a readable pytest-benchmark JSON file "
                                                f"({type(exc).__name__}: {exc})") from None


def _benchmark_named(timings: dict[str, Timing], name: str, path: str) -> Timing:
    """The benchmark whose fullname, or test name after '::', is ``name``."""
    found = [full for full in timings if name in (full, full.rpartition("::")[2])]
    if len(found) != 1:
        allowed = ", ".join(sorted(full.rpartition("::")[2] for full in timings))
        raise ConfigError("--relative-to", f"{name}: {'not in' if not found else 'ambiguous in'} {path}; "
                                           f"allowed: {allowed}")
    return timings[found[0]]


def compare_benchmarks(base_path: str, cand_path: str, threshold: float,
                       relative_to: str | None = None) -> list[Comparison]:
    base, cand = _bench_file(base_path), _bench_file(cand_path)
    names = sorted(set(base) & set(cand))
    factor, note = 1.0, ""
    if relative_to:
        base_yard = _benchmark_named(base, relative_to, base_path)
        cand_yard = _benchmark_named(cand, relative_to, cand_path)
        factor = base_yard.median / cand_yard.median
        names = [n for n in names if relative_to not in (n, n.rpartition("::")[2])]
        note = (f"yardstick {relative_to}: {base_yard.median:.4g} → {cand_yard.median:.4g} ms, "
                f"times judged ×{factor:.3g}")
    if not names:
        raise ConfigError("--pytest-benchmark", "the two files share no benchmark (matched by fullname)"
                                                + (" besides the yardstick" if relative_to else ""))
    return [Comparison(method=name.rpartition("::")[2], config=name.rpartition("::")[0], config_hash=None,
                       base=base[name], cand=cand[name], note=note,
                       time=regress.compare_times(base[name], cand[name].scaled(factor), threshold))
            for name in names]


# ---------------------------------------------------------------------------------------------
# output


def ms(t: Timing | None) -> str:
    if t is None:
        return "—"
    spread = f" ({t.low:.4g}–{t.high:.4g})" if t.low is not None and t.high is not None else ""
    return f"{t.median:.4g}{spread}"


def change(c: Comparison) -> str:
    """The time change, with its confidence interval where bootstrapped."""
    if c.time is None:
        return "—"
    text = f"{(c.time.ratio - 1) * 100:+.1f}%"
    if c.time.interval:
        low, high = c.time.interval
        text += f" [{(low - 1) * 100:+.1f}, {(high - 1) * 100:+.1f}]"
    return text


def error_change(c: Comparison) -> str:
    if c.err is None:
        return "—"
    return f"{c.base_err:.3g} → {c.cand_err:.3g} ({c.err.verdict})"


def verdict_table(rows: list[Comparison], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    notes = any(c.note for c in rows)
    for col in ("verdict", "method", "configuration", "baseline ms (p20–p80)", "candidate ms (p20–p80)",
                "time change [99% CI]", "spec_err") + (("note",) if notes else ()):
        t.add_column(col, overflow="fold")
    for c in rows:
        cells = [f"[{STYLE[c.verdict]}]{c.verdict}[/]", c.method, escape(c.config), ms(c.base), ms(c.cand),
                 change(c), error_change(c)]
        t.add_row(*cells, *([escape(c.note)] if notes else []))
    return t


def summary(rows: list[Comparison]) -> str:
    counts = {v: sum(c.verdict == v for c in rows) for v in (REGRESSION, IMPROVEMENT, SAME)}
    return ", ".join(f"{n} {v}{'s' if n != 1 and v != SAME else ''}" for v, n in counts.items())


def _store_rows(args: argparse.Namespace, threshold: float) -> tuple[list[Comparison], str]:
    if not args.baseline:
        raise ConfigError("--baseline", "required: a commit prefix or 'latest' (or use --pytest-benchmark)")
    store.check_store(args.results_dir)
    df = store.read(args.results_dir, where=filters(args.filters))
    baseline = resolve(df, args.baseline, "--baseline")
    candidate = resolve(df, args.candidate, "--candidate")
    if baseline == candidate:
        raise ConfigError("--candidate", f"{candidate[:SHORT_SHA]} is the baseline too; allowed: another commit")
    rows = compare_store(df, baseline, candidate, threshold, args.per_clock)
    if not rows:
        raise ConfigError("--candidate", f"nothing to compare: no (config_hash, method) measured ok at "
                                         f"{baseline[:SHORT_SHA]} was measured at {candidate[:SHORT_SHA]}; "
                                         "allowed: a commit that measured the same configurations")
    judged = ", times judged per SM clock cycle" if args.per_clock else ""
    return rows, f"{candidate[:SHORT_SHA]} against baseline {baseline[:SHORT_SHA]}{judged}"


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
        threshold = parse_threshold(args.threshold)
        if args.pytest_benchmark and args.per_clock:
            raise ConfigError("--per-clock", "applies to GPU rows of the store; allowed without --pytest-benchmark")
        if args.relative_to and not args.pytest_benchmark:
            raise ConfigError("--relative-to", "applies to pytest-benchmark files; allowed with --pytest-benchmark")
        if args.pytest_benchmark:
            rows = compare_benchmarks(*args.pytest_benchmark, threshold, args.relative_to)
            title = f"{args.pytest_benchmark[1]} against baseline {args.pytest_benchmark[0]}"
        else:
            rows, title = _store_rows(args, threshold)
    except ConfigError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    console = table.console()
    console.print(verdict_table(rows, f"{title} (threshold {threshold:g})"))
    console.print(summary(rows))
    return 1 if any(c.verdict == REGRESSION for c in rows) else 0
