"""``hyperbench report``: rows of the store as one table for a paper or a README.

    hyperbench report [KEY=VALUE ...] [--cols KEY,KEY] [--value COLUMN] [--baseline METHOD[,METHOD]] [--spread]
                      [--format markdown|latex|csv] [--results-dir DIR]

Each cell is the value (default ``time_ms``, the median) of the one row the filters leave for it.
Of the keys that say what was measured (the method, the timing mode and the shape keys of
``config.MEASURED_KEYS``), those with one value in the selection go to the caption, with the GPU,
the versions, the commits and the dates; those that vary label the table's rows, except the
``--cols`` keys (default ``method,timing_mode``), which label its columns. Two rows for one cell
(two commits, two GPUs, a rerun) are an error naming what tells them apart, so that every number
printed is one row of the store. ``--baseline METHOD`` adds, beside each other method's column, its
speedup: the baseline's value in the same row and column keys over its own; several baselines
(``--baseline sdpa_cudnn,sdpa_flash``) give each method that is not one of them a speedup against
each. ``--spread`` shows a
time as its median with the 20th–80th percentiles of its repetitions.

Bad input prints one ``hyperbench report: error: <field>: <what is allowed>`` line to stderr and
exits 2; nothing is written.
"""

from __future__ import annotations

import argparse
import io
import math
import numbers
import sys
from dataclasses import dataclass

import pandas as pd

from hyperbench import methods, store
from hyperbench.cli_args import Parser, filters
from hyperbench.compare import SHORT_SHA
from hyperbench.config import MEASURED_KEYS, mode_rank, setting_name, timing_mode_rank
from hyperbench.errors import ConfigError

PROG = "hyperbench report"
FORMATS = ("markdown", "latex", "csv")
# What one measurement is: a cell of the table is one value of these keys.
PIVOT_KEYS = ("method", "timing_mode") + MEASURED_KEYS
DEFAULT_COLS = ("method", "timing_mode")
# Columns that tell two rows of one cell apart, in the order the error names them.
TELLS_APART = ("git_sha", "git_dirty", "gpu_name", "host", "torch", "triton", "cuda", "switches",
               "method_target", "overrides", "status", "run_id", "job_id")


@dataclass
class Report:
    """A table of strings with its caption: header, rows, and how many label columns lead each row."""
    header: list[str]
    rows: list[list[str]]
    labels: int
    caption: str


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Print rows of the store as one table (Markdown, LaTeX or CSV).")
    p.add_argument("filters", nargs="*", metavar="KEY=VALUE", help="equality filter on a column")
    p.add_argument("--cols", default=",".join(DEFAULT_COLS),
                   help="keys whose values label the columns (default: method,timing_mode)")
    p.add_argument("--value", default="time_ms", help="numeric column each cell shows (default: time_ms)")
    p.add_argument("--baseline", help="method(s), comma-separated, whose value over each other method's gives a "
                   "speedup column")
    p.add_argument("--spread", action="store_true",
                   help="times as median (p20–p80) of the repetitions, from time_ms_p20 and time_ms_p80")
    p.add_argument("--format", default="markdown", help="markdown (default), latex or csv")
    p.add_argument("--results-dir", default="results", help="store folder (default: results)")
    return p


def _label(key: str, value) -> str:
    if value is None or value is pd.NA:
        return "—"
    if key == "causal":
        return "causal" if bool(value) else "non-causal"
    return str(value)


def number(x: float) -> str:
    """A value with the digits a reader can use: 3 decimals under 10, 2 under 100, 1 above; small
    values (errors) with 3 significant digits."""
    if x != 0 and abs(x) < 0.01:
        return f"{x:.3g}"
    return f"{x:.1f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) >= 10 else f"{x:.3f}"


def times(x: float) -> str:
    return f"{x:.0f}×" if x >= 100 else f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


def _cols(spec: str) -> list[str]:
    cols = [c.strip() for c in spec.split(",") if c.strip()]
    bad = next((c for c in cols if c not in PIVOT_KEYS), None)
    if not cols or bad is not None:
        raise ConfigError("--cols", f"keys among {', '.join(PIVOT_KEYS)}" + (f"; got {bad!r}" if bad else ""))
    return cols


def _present(df: pd.DataFrame, key: str) -> pd.Series:
    return df[key].astype(object).where(df[key].notna(), None)


def _one_row_per_cell(df: pd.DataFrame, keys: list[str]) -> None:
    for cell, group in df.groupby(keys, dropna=False, sort=True):
        if len(group) < 2:
            continue
        cell = cell if isinstance(cell, tuple) else (cell,)
        where = " ".join(f"{k}={v}" for k, v in zip(keys, cell) if len(df[k].unique()) > 1) or "the selection"
        differs = next((c for c in TELLS_APART if c in group and group[c].astype(str).nunique() > 1), None)
        if differs is None:
            raise ConfigError("filters", f"{len(group)} identical rows for {where}")
        distinct = sorted(group[differs].astype(str).str[:12].unique())
        seen = ", ".join(distinct[:3]) + (f", … ({len(distinct)} in all)" if len(distinct) > 3 else "")
        raise ConfigError("filters", f"{len(group)} rows for {where} differ in {differs} ({seen}); "
                                     f"add a filter such as {differs}=..., so that each cell is one row")


def _caption(df: pd.DataFrame, constant: list[str], value: str) -> str:
    def values(col: str, short: int | None = None) -> str:
        if col not in df:
            return "?"
        seen = [str(v)[:short] if short else str(v) for v in dict.fromkeys(df[col].dropna().tolist())]
        return ", ".join(seen) if seen else "?"
    known = [k for k in constant if df[k].iloc[0] is not None]   # a key no row recorded says nothing
    shape = " ".join(_label(k, df[k].iloc[0]) if k == "causal" else
                     f"{setting_name(k)}={_label(k, df[k].iloc[0])}" for k in known)
    dates = sorted(pd.to_datetime(df["created_at"]).dt.strftime("%Y-%m-%d").unique()) if "created_at" in df else []
    dirty = " (uncommitted changes)" if "git_dirty" in df and df["git_dirty"].fillna(False).astype(bool).any() else ""
    what = "median ms" if value == "time_ms" else value
    gpu = values("gpu_name") if "gpu_name" in df and df["gpu_name"].notna().any() else "no GPU"
    return (f"{what}; {shape}; {gpu}, torch {values('torch')}, Triton {values('triton')}; "
            f"commit {values('git_sha', SHORT_SHA)}{dirty}; {', '.join(dates) or 'no date'}")


def build(df: pd.DataFrame, *, cols: list[str], value: str = "time_ms", baseline: str | None = None,
          order: dict[str, list] | None = None, spread: bool = False) -> Report:
    """The table of the rows in df (one per cell, or ConfigError). `order`: for some keys, the order
    their values take (the filters' order: `method=hyper method=sdpa_cudnn` puts hyper first).
    `baseline`: one method or several, comma-separated."""
    baselines = [b.strip() for b in (baseline or "").split(",") if b.strip()]
    if value not in df.columns or not (pd.api.types.is_numeric_dtype(df[value]) and not pd.api.types.is_bool_dtype(df[value])):
        numeric = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
        raise ConfigError("--value", "a numeric column, such as " + ", ".join(numeric))
    if spread and value != "time_ms":
        raise ConfigError("--spread", "only with --value time_ms (the repetitions' p20 and p80)")
    if baselines and "method" not in cols:
        raise ConfigError("--baseline", "needs method among --cols")
    missing = next((b for b in baselines if b not in set(df["method"])), None)
    if missing is not None or (baseline is not None and not baselines):
        raise ConfigError("--baseline", "methods in the selection: " + ", ".join(sorted(set(df["method"])))
                          + (f"; got {missing!r}" if missing else ""))
    if len(set(baselines)) != len(baselines):
        raise ConfigError("--baseline", f"each method once; got {baseline!r}")
    df = df.copy()
    for k in PIVOT_KEYS:
        df[k] = _present(df, k)
    varying = [k for k in PIVOT_KEYS if df[k].astype(str).nunique() > 1]
    row_keys = [k for k in varying if k not in cols]
    col_keys = [k for k in cols if k in varying] or cols[:1]
    constant = [k for k in PIVOT_KEYS if k not in varying and k not in col_keys]
    _one_row_per_cell(df, [k for k in PIVOT_KEYS if k in row_keys + col_keys] or ["method"])

    def ordered(keys: list[str]) -> list[tuple]:
        seen = df[keys].drop_duplicates()
        return [tuple(r) for r in seen.sort_values(keys, kind="stable", key=lambda c: _sort_key(c, order or {}))
                .itertuples(index=False)]
    row_values, col_values = ordered(row_keys) if row_keys else [()], ordered(col_keys)
    cells = {(tuple(r[k] for k in row_keys), tuple(r[k] for k in col_keys)): r
             for r in df.to_dict("records")}
    header = list(row_keys)
    columns: list[tuple[tuple, str | None]] = []   # (column keys, None) or (column keys, speedup's baseline key)
    for cv in col_values:
        header.append(", ".join(_label(k, v) for k, v in zip(col_keys, cv)))
        columns.append((cv, None))
        method = dict(zip(col_keys, cv)).get("method")
        if method is None or method in baselines:
            continue
        for b in baselines:
            base = tuple(b if k == "method" else v for k, v in zip(col_keys, cv))
            if base in col_values:
                header.append(f"vs {b}")
                columns.append((cv, base))
    rows = []
    for rv in row_values:
        line = [_label(k, v) for k, v in zip(row_keys, rv)]
        for cv, base in columns:
            line.append(_cell(cells.get((rv, cv)), cells.get((rv, base)) if base else None, value, base is not None,
                              spread))
        rows.append(line)
    return Report(header, rows, len(row_keys), _caption(df, constant, value))


def _sort_key(s: pd.Series, order: dict[str, list]) -> pd.Series:
    # Values in the order given, then methods in the registry's order, timing modes per call first
    # and other keys as values (False before True, numbers as numbers): a report reads the same
    # every time.
    if s.name in order:
        given = [str(v) for v in order[s.name]]
        return s.map(lambda v: (given.index(str(v)) if str(v) in given else len(given), str(v)))
    if s.name == "method":
        rank = {m: i for i, m in enumerate(methods.names())}
        return s.map(lambda m: (rank.get(m, len(rank)), str(m)))
    if s.name == "timing_mode":
        return s.map(timing_mode_rank)
    if s.name == "mode":   # fwd, bwd, fwd+bwd: the order a reader expects, not the alphabet's
        return s.map(mode_rank)
    return s.map(lambda v: (v is None, v if isinstance(v, numbers.Number) else str(v)))


def _ok_value(row: dict | None, value: str) -> float | None:
    if row is None or row.get("status") != "ok":
        return None
    x = row.get(value)
    return None if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)) else float(x)


def _cell(row: dict | None, base: dict | None, value: str, speedup: bool, spread: bool = False) -> str:
    if row is None:
        return "—"
    if speedup:  # a ratio needs both values; a row that did not run shows its status in its own column
        x, b = _ok_value(row, value), _ok_value(base, value)
        return times(b / x) if x and b else "—"
    if row.get("status") != "ok":
        return row.get("status") or "—"
    x = _ok_value(row, value)
    if x is None:
        return "—"
    lo, hi = _ok_value(row, "time_ms_p20"), _ok_value(row, "time_ms_p80")
    return f"{number(x)} ({number(lo)}–{number(hi)})" if spread and lo is not None and hi is not None else number(x)


def markdown(r: Report) -> str:
    out = ["| " + " | ".join(r.header) + " |",
           "|" + "|".join("---" if i < r.labels else "---:" for i in range(len(r.header))) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in r.rows]
    return "\n".join(out) + f"\n\n{r.caption}\n"


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("×", r"$\times$"), ("—", "---"), ("–", "--")):
        text = text.replace(a, b)
    return text


def latex(r: Report) -> str:
    spec = "l" * r.labels + "r" * (len(r.header) - r.labels)
    out = [f"% {_tex(r.caption)}", f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
           " & ".join(map(_tex, r.header)) + r" \\", r"\midrule"]
    out += [" & ".join(map(_tex, row)) + r" \\" for row in r.rows]
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def csv(r: Report) -> str:
    buf = io.StringIO()
    pd.DataFrame(r.rows, columns=r.header).to_csv(buf, index=False)
    return buf.getvalue()


def render(argv: list[str], snapshot: store.Snapshot | None = None) -> str:
    """The report the command line asks for, as text (ConfigError for bad input); from
    `snapshot` (`store.snapshot`) instead of the folder --results-dir names, where given."""
    args = _parser().parse_args(argv)
    if args.format not in FORMATS:
        raise ConfigError("--format", "one of " + ", ".join(FORMATS))
    cols = _cols(args.cols)
    where = filters(args.filters)
    if snapshot is None:
        store.check_store(args.results_dir)
    df = store.read(snapshot or args.results_dir, where=where or None)
    if df.empty:
        raise ConfigError("filters", f"no rows in {args.results_dir} match " + (" ".join(args.filters) or "(no filters)"))
    order = {k: v for k, v in where.items() if isinstance(v, list)}
    report = build(df, cols=cols, value=args.value, baseline=args.baseline, order=order, spread=args.spread)
    return {"markdown": markdown, "latex": latex, "csv": csv}[args.format](report)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        argv = argv[1:]
    try:
        text = render(argv)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc.field}: {exc.message}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
