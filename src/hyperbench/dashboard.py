"""``hyperbench dashboard``: a static regression dashboard of the store.

    hyperbench dashboard [--results-dir results] [--out results/dashboard] [--baseline REF]
                         [--threshold 0.05] [--per-clock]

Writes ``<out>/index.html``, one self-contained page (inline CSS and SVG, no script, nothing
fetched), since the machines that read it are offline: the latest commit against the baseline
(default: the newest earlier commit that measured one of its configurations, status ok) with
regress.py's verdicts, regressions first and highlighted
(``--per-clock``: GPU times judged in SM clock cycles, as ``hyperbench compare --per-clock``);
per configuration and method the median time (p20–p80 whiskers) and spec_err across commits; links
to ``<results-dir>/figures/*.png``. The page is written to a temporary file and renamed into place.
"""

from __future__ import annotations

import argparse
import html
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hyperbench import compare, regress, store
from hyperbench.errors import ConfigError
from hyperbench.cli_args import Parser

PROG = "hyperbench dashboard"
CHART_W, CHART_H, PAD = 240, 64, 6
CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: middle; }
th { background: #f2f2f2; }
tr.regression td { background: #fdd; font-weight: bold; }
tr.improvement td { background: #dfd; }
tr.same td { color: #555; }
svg.chart { display: block; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0 1em 1em 0; }
figure img { max-width: 420px; border: 1px solid #ccc; }
"""


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Write the static regression dashboard.")
    p.add_argument("--results-dir", default="results", help="store folder (default: results)")
    p.add_argument("--out", help="output folder (default: <results-dir>/dashboard)")
    p.add_argument("--baseline", help="commit prefix or 'latest' (default: the newest earlier commit that "
                                      "measured one of the latest commit's configurations)")
    p.add_argument("--threshold", default=str(regress.THRESHOLD), help="relative change that counts")
    p.add_argument("--per-clock", action="store_true",
                   help="judge GPU times in SM clock cycles (time × the row's median SM clock)")
    return p


def _e(value) -> str:
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------------------------------------
# charts


def chart(points: Sequence[tuple[int, float, float, float, str]], slots: int, unit: str) -> str:
    """A small SVG: one point per commit (x = the commit's index among ``slots``), the median as a
    dot on a line, a whisker from low to high, the value in each point's tooltip."""
    lows = [p[2] for p in points]
    highs = [p[3] for p in points]
    y_min, y_max = min(lows), max(highs)
    span = (y_max - y_min) or abs(y_max) or 1.0
    y_min, y_max = y_min - 0.1 * span, y_max + 0.1 * span

    def x(i: int) -> float:
        return PAD + 40 + (CHART_W - 2 * PAD - 40) * (i + 0.5) / max(slots, 1)

    def y(v: float) -> float:
        return PAD + (CHART_H - 2 * PAD) * (y_max - v) / (y_max - y_min)

    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{CHART_H}" '
             f'viewBox="0 0 {CHART_W} {CHART_H}" role="img">',
             f'<text x="2" y="{PAD + 8}" font-size="9" fill="#666">{_e(f"{y_max:.4g}")}</text>',
             f'<text x="2" y="{CHART_H - PAD}" font-size="9" fill="#666">{_e(f"{y_min:.4g}")}</text>']
    if len(points) > 1:
        line = " ".join(f"{x(i):.1f},{y(m):.1f}" for i, m, *_ in points)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#36c" stroke-width="1.2"/>')
    for i, median, low, high, label in points:
        parts.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{y(low):.1f}" y2="{y(high):.1f}" stroke="#999"/>')
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(median):.1f}" r="3" fill="#36c">'
                     f'<title>{_e(label)}: {_e(f"{median:.4g}")} {unit}'
                     f'{_e(f" ({low:.4g}–{high:.4g})") if high > low else ""}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _finite(value) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(float(value))


def history_charts(rows: pd.DataFrame, order: dict[str, int]) -> tuple[str, str]:
    """Time and spec_err charts of one (configuration, method) across commits."""
    times, errs = [], []
    for _, r in rows.iterrows():
        i, label = order[r["git_sha"]], r["git_sha"][:compare.SHORT_SHA]
        if r["status"] == "ok" and _finite(r["time_ms"]):
            low = r["time_ms_p20"] if _finite(r["time_ms_p20"]) else r["time_ms"]
            high = r["time_ms_p80"] if _finite(r["time_ms_p80"]) else r["time_ms"]
            times.append((i, float(r["time_ms"]), float(low), float(high), label))
        if r["status"] == "ok" and _finite(r["spec_err"]):
            errs.append((i, float(r["spec_err"]), float(r["spec_err"]), float(r["spec_err"]), label))
    slots = len(order)
    return (chart(times, slots, "ms") if times else "—", chart(errs, slots, "") if errs else "—")


# ---------------------------------------------------------------------------------------------
# sections


def _commits_section(df: pd.DataFrame, shas: list[str]) -> str:
    rows = []
    for sha in shas:
        part = df[df["git_sha"] == sha]
        gpus = ", ".join(sorted({str(g) for g in part["gpu_name"].dropna()})) or "—"
        rows.append(f"<tr><td><code>{_e(sha[:compare.SHORT_SHA])}</code></td>"
                    f"<td>{part['created_at'].min():%Y-%m-%d %H:%M} UTC</td><td class=num>{len(part)}</td>"
                    f"<td>{_e(gpus)}</td></tr>")
    return ("<h2>Commits</h2><table id=commits><tr><th>commit</th><th>first row</th><th>rows</th><th>GPU</th></tr>"
            + "".join(rows) + "</table>")


def _verdict_section(rows: list[compare.Comparison], title: str) -> str:
    head = ("<tr><th>verdict</th><th>method</th><th>configuration</th><th>baseline ms (p20–p80)</th>"
            "<th>candidate ms (p20–p80)</th><th>time change [99% CI]</th><th>spec_err</th><th>note</th></tr>")
    body = "".join(
        f'<tr class="{c.verdict}"><td>{c.verdict}</td><td>{_e(c.method)}</td><td>{_e(c.config)}</td>'
        f"<td class=num>{_e(compare.ms(c.base))}</td><td class=num>{_e(compare.ms(c.cand))}</td>"
        f"<td class=num>{_e(compare.change(c))}</td><td>{_e(compare.error_change(c))}</td><td>{_e(c.note)}</td></tr>"
        for c in rows)
    return (f"<h2>{_e(title)}</h2><p>{_e(compare.summary(rows))}</p>"
            f"<table id=verdicts>{head}{body}</table>")


def _history_section(df: pd.DataFrame, shas: list[str], verdicts: dict[tuple[str, str], str]) -> str:
    order = {sha: i for i, sha in enumerate(shas)}
    newest = pd.concat([compare.newest(df, sha) for sha in shas]).sort_values(
        ["seq_len", "causal", "mode", "config_hash"], kind="stable")
    legend = " → ".join(sha[:compare.SHORT_SHA] for sha in shas)
    out = [f"<h2>History</h2><p>Median time (whiskers p20–p80) and spec_err per commit, left to right: "
           f"{_e(legend)}. Hover a point for its value.</p>"]
    for config_hash, group in newest.groupby("config_hash", sort=False):
        out.append(f"<h3>{_e(compare.config_label(group.iloc[0]))} <small><code>{_e(config_hash)}</code></small></h3>"
                   "<table class=history><tr><th>method</th><th>verdict</th><th>time (ms)</th><th>spec_err</th></tr>")
        for method, rows in group.groupby("method", sort=True):
            verdict = verdicts.get((config_hash, method), "")
            status = rows["status"].iloc[-1]   # the newest commit's, said where it did not run
            time_svg, err_svg = history_charts(rows, order)
            shown = verdict or (status if status != "ok" else "—")
            out.append(f'<tr class="{verdict}"><td>{_e(method)}</td><td>{_e(shown)}</td>'
                       f"<td>{time_svg}</td><td>{err_svg}</td></tr>")
        out.append("</table>")
    return "".join(out)


def _figures_section(results_dir: Path, out_dir: Path) -> str:
    pngs = sorted((results_dir / "figures").glob("*.png"))
    if not pngs:
        return "<h2>Figures</h2><p>No figures yet (<code>hyperbench plot NAME</code> draws them).</p>"
    items = "".join(
        f'<figure><a href="{_e(rel)}"><img src="{_e(rel)}" alt="{_e(p.stem)}"></a>'
        f"<figcaption>{_e(p.name)}</figcaption></figure>"
        for p in pngs for rel in [Path(os.path.relpath(p, out_dir)).as_posix()])
    return f"<h2>Figures</h2>{items}"


def _baseline(df: pd.DataFrame, shas: list[str], latest: str, ref: str | None) -> str | None:
    """`ref`'s commit; by default the newest commit before `latest` with an ok row of one of the
    (configuration, method) pairs `latest` measured, so that a commit which ran other
    configurations (a sweep of its own) does not leave the page with nothing to compare; failing
    that, the commit just before `latest`."""
    if ref is not None:
        return compare.resolve(df, ref, "--baseline")
    earlier = shas[:shas.index(latest)]
    measured = set(zip(*(df.loc[df["git_sha"] == latest, c] for c in ("config_hash", "method"))))
    for sha in reversed(earlier):   # the rows compare_store would pair, newest commit first
        base = compare.baseline_rows(df, sha)
        if measured & set(zip(base["config_hash"], base["method"])):
            return sha
    return earlier[-1] if earlier else None


def _latest_section(df: pd.DataFrame, shas: list[str], ref: str | None, threshold: float,
                    per_clock: bool) -> tuple[list[compare.Comparison], str]:
    latest = compare.resolve(df, "latest", "--results-dir")
    baseline = _baseline(df, shas, latest, ref)
    short = latest[:compare.SHORT_SHA]
    rows = (compare.compare_store(df, baseline, latest, threshold, per_clock)
            if baseline not in (None, latest) else [])
    if not rows:
        why = "no earlier commit" if baseline in (None, latest) else "no configuration measured at both"
        return [], f"<h2>Latest commit {_e(short)}</h2><p>Nothing to compare: {why}.</p>"
    judged = ", times judged per SM clock cycle" if per_clock else ""
    title = f"{short} against baseline {baseline[:compare.SHORT_SHA]} (threshold {threshold:g}{judged})"
    return rows, _verdict_section(rows, title)


def render(df: pd.DataFrame, results_dir: Path, out_dir: Path, ref: str | None, threshold: float,
           per_clock: bool = False) -> str:
    """The page for a non-empty store."""
    shas = compare.commits(df)
    rows, verdicts = _latest_section(df, shas, ref, threshold, per_clock)
    by_pair = {(c.config_hash, c.method): c.verdict for c in rows}
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>hyperbench dashboard</title>"
            f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body>'
            f"<h1>hyperbench dashboard</h1><p>Store: <code>{_e(results_dir)}</code>, {len(df)} rows.</p>"
            + verdicts + _commits_section(df, shas) + _history_section(df, shas, by_pair)
            + _figures_section(results_dir, out_dir) + "</body></html>")


def write_atomic(path: Path, text: str) -> None:
    """Write then rename, so a reader never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
        threshold = compare.parse_threshold(args.threshold)
        results_dir = Path(args.results_dir)
        out_dir = Path(args.out) if args.out else results_dir / "dashboard"
        store.check_store(results_dir)
        store.check_writable(out_dir, "--out")
        df = store.read(results_dir)
        if df.empty:
            raise ConfigError("--results-dir", f"no results in {results_dir}; allowed: a store folder that "
                                               "hyperbench run has written to")
        page = render(df, results_dir, out_dir, args.baseline, threshold, args.per_clock)
    except ConfigError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    write_atomic(out_dir / "index.html", page)
    print(f"dashboard: {out_dir / 'index.html'}")
    return 0
