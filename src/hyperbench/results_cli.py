"""``hyperbench results``: show what the store holds.

    hyperbench results [KEY=VALUE ...] [--sql "SELECT ..."] [--results-dir DIR]
                       [--columns a,b,c|all] [--format table|csv|json] [--last N]

KEY=VALUE pairs filter rows by column (a value of ``null`` matches missing values); ``--sql``
runs a DuckDB query over the view ``results`` (after the filters); ``--last N`` keeps the N most
recent rows. Bad input prints one ``hyperbench results: error: <field>: <what is allowed>`` line
to stderr and exits 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import pandas as pd

from hyperbench import store
from hyperbench.errors import ConfigError
from hyperbench.cli_args import Parser, filters

PROG = "hyperbench results"
FORMATS = ("table", "csv", "json")
DEFAULT_COLUMNS = ("created_at", "method", "seq_len", "head_dim", "causal", "mode", "block_size",
                   "sample_size", "status", "time_ms", "spec_err", "gpu_name", "git_sha")
SHORT_SHA = 8


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Show benchmark results held in the store.")
    p.add_argument("filters", nargs="*", metavar="KEY=VALUE", help="equality filter on a column")
    p.add_argument("--sql", help="DuckDB query over the view 'results'")
    p.add_argument("--results-dir", default="results", help="store folder (default: results)")
    p.add_argument("--columns", help="comma-separated columns to show, or 'all'")
    p.add_argument("--format", default="table", help="table (default), csv or json")
    p.add_argument("--last", help="show only the N most recent rows")
    return p


def _last(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise ConfigError("--last", f"a positive integer, got {value!r}")
    return n


def _pick_columns(df: pd.DataFrame, spec: str | None, sql: bool) -> list[str]:
    if spec is None:
        if sql:
            return list(df.columns)
        return [c for c in DEFAULT_COLUMNS if c in df.columns]
    if spec.strip().lower() in ("all", "*"):
        return list(df.columns)
    wanted = [c.strip() for c in spec.split(",") if c.strip()]
    if not wanted:
        raise ConfigError("--columns", "a comma-separated list of columns, or 'all'")
    unknown = [c for c in wanted if c not in df.columns]
    if unknown:
        raise ConfigError("--columns", f"unknown column {unknown[0]!r}; allowed: "
                          + ", ".join(map(str, df.columns)))
    return wanted


def _cell(column: str, value: Any) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if column == "git_sha" and isinstance(value, str):
        return value[:SHORT_SHA]
    return str(value)


def _print_table(df: pd.DataFrame, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 250)
    table = Table()
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])
        table.add_column(str(col), justify="right" if numeric else "left", no_wrap=True)
    for row in df.itertuples(index=False, name=None):
        table.add_row(*(_cell(str(c), v) for c, v in zip(df.columns, row)))
    console.print(title, highlight=False)
    console.print(table)


def _run(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        raise ConfigError("--format", "one of " + ", ".join(FORMATS))
    last = _last(args.last)
    where = filters(args.filters)
    store.check_store(args.results_dir)
    df = store.read(args.results_dir, where=where or None, sql=args.sql)
    columns = _pick_columns(df, args.columns, args.sql is not None)
    if df.empty:
        if not store.job_files(args.results_dir):
            print(f"no results in {args.results_dir}")
        else:
            print(f"no results in {args.results_dir} match "
                  + (" ".join(args.filters) or "") + (" (--sql)" if args.sql else ""))
        return 0
    if args.sql is None or last is not None:  # oldest first; a query's own order is kept
        # then by job; a job's rows, which share created_at, in the order it wrote them (store.read's)
        keys = [c for c in ("created_at", "job_id") if c in df.columns]
        if keys:
            df = df.sort_values(keys, kind="stable", na_position="first")
    if last is not None:
        df = df.tail(last)
    df = df[columns]
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        sys.stdout.write(df.to_json(orient="records", date_format="iso", indent=1) + "\n")
    else:
        _print_table(df, f"{len(df)} row(s) from {args.results_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["results"]:  # tolerate being handed the subcommand name too
        argv = argv[1:]
    try:
        return _run(_parser().parse_args(argv))
    except ConfigError as exc:
        print(f"{PROG}: error: {exc.field}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
