"""``hyperbench plot``: draw paper figures from the store into PDF and PNG files.

    hyperbench plot NAME [KEY=VALUE ...] [--results-dir results] [--out-dir DIR]
    hyperbench plot all [KEY=VALUE ...]

NAME is one of speedup, time, error, pareto, memory (``all``: every figure the selection has rows
for; the others are reported and skipped). KEY=VALUE pairs filter rows by column as in
``hyperbench results``. Files go to ``DIR/NAME.pdf`` and ``DIR/NAME.png`` (default DIR:
``<results-dir>/figures``), each written to a temporary file and renamed. Bad input, or no rows for
the figure asked for, prints one ``hyperbench plot: error: <field>: <what is allowed>`` line to
stderr, exits 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window

from hyperbench import plots, store  # noqa: E402
from hyperbench.errors import ConfigError  # noqa: E402
from hyperbench.cli_args import Parser, filters

PROG = "hyperbench plot"
FORMATS = ("pdf", "png")


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Draw a paper figure from the results store.")
    p.add_argument("name", metavar="NAME", help=f"{', '.join(plots.FIGURES)} or all")
    p.add_argument("filters", nargs="*", metavar="KEY=VALUE", help="equality filter on a column")
    p.add_argument("--results-dir", default="results", help="store folder (default: results)")
    p.add_argument("--out-dir", help="where the files go (default: <results-dir>/figures)")
    return p


def _names(name: str) -> list[str]:
    if name == "all":
        return list(plots.FIGURES)
    if name not in plots.FIGURES:
        raise ConfigError("NAME", f"unknown figure {name!r}; allowed: {', '.join(plots.FIGURES)}, all")
    return [name]


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    """NAME.pdf and NAME.png, each through a temporary file, so no reader sees half a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        final = out_dir / f"{name}.{fmt}"
        tmp = out_dir / f".{name}.{fmt}.{os.getpid()}.tmp"
        try:
            # No creation date in the PDF, so redrawing the same rows gives the same file.
            fig.savefig(tmp, format=fmt, dpi=200, bbox_inches="tight",
                        metadata={"CreationDate": None} if fmt == "pdf" else None)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(final)
    return paths


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    names = _names(args.name)
    where = filters(args.filters)
    store.check_store(args.results_dir)
    store.read(args.results_dir, where=where, sql="SELECT 1 FROM results LIMIT 0")  # check keys
    out_dir = Path(args.out_dir or Path(args.results_dir) / "figures")
    store.check_writable(out_dir, "--out-dir")   # before drawing, not after
    figures = {}
    for name in names:
        try:
            figures[name] = plots.FIGURES[name](args.results_dir, **where)
        except plots.NoDataError as err:
            if len(names) == 1:
                raise
            print(f"{PROG}: skipped {err}", file=sys.stderr)
    if not figures:
        raise ConfigError("NAME", "no figure has rows in this selection; see the lines above")
    for name, fig in figures.items():
        for path in _save(fig, out_dir, name):
            print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
