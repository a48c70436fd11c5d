"""Paper figures drawn from the results store: one function per figure, each returning a Figure.

Every figure takes a DataFrame (what ``load(figure, results_dir, **filters)`` returns: the store
queried through DuckDB) or a results folder plus column filters, and draws only what the rows say:

    speedup   time of each exact method / time of each method, vs n (panels: causal × mode)
    time      median time with its p20–p80 band vs n; oom rows marked at the top of the axis; one line
              per timing mode present (per call, CUDA-graph replays, ...), told apart by line style
    memory    peak memory vs n; oom rows marked the same way
    error     spec_err vs n, vs sample_size and vs block_size, per input distribution
    pareto    time vs spec_err over block_size × sample_size, Pareto front, exact methods as references

Rules shared by all figures: rows of one device only; where a point was measured more than once
the newest row is used; configuration columns that are neither an axis nor a line variant are held
at their most common value (ties: the middle one, so a full grid is shown at its centre), and the caption under the axes says which values,
which device, torch/triton versions, commits and dates the drawn rows come from.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter

from hyperbench import methods, store
from hyperbench.config import MODES, TIMING_MODES, mode_rank, setting_name, timing_mode_rank
from hyperbench.errors import ConfigError

# The configuration that identifies a measured point (besides the method).
CONFIG = ("batch", "num_heads", "seq_len", "head_dim", "dtype", "causal", "mode", "block_size",
          "sample_size", "sample_tile", "lsh_num_projs", "min_seq_len", "inputs", "seed", "timing_mode")
PROVENANCE = ("device", "gpu_name", "torch", "triton", "git_sha", "git_dirty", "created_at")
MEASURES = {
    "speedup": ("status", "time_ms"),
    "time": ("status", "message", "time_ms", "time_ms_p20", "time_ms_p80"),
    "memory": ("status", "peak_mem_bytes"),
    "error": ("status", "spec_err", "spec_err_max"),
    "pareto": ("status", "time_ms", "spec_err"),
}
# Which rows each figure can use (a DuckDB condition on the view `results`).
CONDITIONS = {
    "speedup": "status = 'ok' AND time_ms IS NOT NULL",
    "time": "true",  # every status: ok rows are drawn, oom marked, the others listed
    "memory": "peak_mem_bytes IS NOT NULL OR status <> 'ok'",
    "error": "status = 'ok' AND spec_err IS NOT NULL",
    "pareto": "status = 'ok' AND time_ms IS NOT NULL AND spec_err IS NOT NULL",
}
# What each figure needs, in words, for the error when the selection has none of it.
WANTS = {"speedup": "ok timings", "time": "rows", "memory": "rows with peak_mem_bytes (or oom)",
         "error": "rows with spec_err", "pareto": "ok rows with both time_ms and spec_err"}
# The sweep preset that measures what each figure needs.
PRESETS = {"speedup": "paper_speedup", "time": "paper_speedup", "memory": "paper_memory",
           "error": "paper_error", "pareto": "paper_pareto"}

N_LABEL = "sequence length n (tokens)"
ERR_LABEL = "spectral error ‖Õ−O‖₂ / (‖D⁻¹A‖₂‖V‖₂)"
TIME_LABEL = "median time (ms)"
OOM_MARKER = "X"  # no method uses it, so an oom mark cannot be mistaken for a point

# One colour and marker per method, the same in every figure (registry order, so stable).
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")
_MARKERS = ("o", "s", "D", "^", "v", "<", ">", "P", "*", "h")
STYLE = {name: {"color": _PALETTE[i % len(_PALETTE)], "marker": _MARKERS[i % len(_MARKERS)]}
         for i, name in enumerate(methods.names())}
_UNKNOWN_STYLE = {"color": "black", "marker": "."}
BASELINE_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (3, 1, 1, 1, 1, 1)))


class NoDataError(ConfigError):
    """The selection holds no rows a figure can draw; says what is missing and which preset measures it."""

    def __init__(self, figure: str, missing: str, filters: dict | None = None):
        where = " where " + ", ".join(f"{k}={v}" for k, v in filters.items()) if filters else ""
        super().__init__(figure, f"no {missing} in the store{where}; measure them with "
                                 f"`hyperbench run -m +sweep={PRESETS[figure]}`")


def style(method: str) -> dict:
    """Colour and marker of a method (black dots for a method the registry does not know)."""
    return STYLE.get(method, _UNKNOWN_STYLE)


def is_exact(method: str) -> bool:
    try:
        return methods.get(method).exact
    except KeyError:  # a custom or newer method: not a reference
        return False


# ---------------------------------------------------------------------------------------------
# reading


def load(figure: str, results_dir: str | os.PathLike, **filters) -> pd.DataFrame:
    """The rows of the store a figure can use, after equality filters on columns (store.read's)."""
    if figure not in CONDITIONS:
        raise ConfigError("figure", f"unknown figure {figure!r}; allowed: {', '.join(FIGURES)}")
    columns = ", ".join(("method", *CONFIG, *MEASURES[figure], *PROVENANCE))
    sql = f"SELECT {columns} FROM results WHERE {CONDITIONS[figure]} ORDER BY created_at"
    return store.read(results_dir, where=filters, sql=sql)


def device_label(df: pd.DataFrame) -> pd.Series:
    """The GPU name, or the device (cpu) where there is none."""
    return df["gpu_name"].astype(object).where(df["gpu_name"].notna(), df["device"])


def _frame(figure: str, data, filters: dict) -> pd.DataFrame:
    """The figure's rows: the given frame, or the store queried; newest row per point; one device."""
    if isinstance(data, pd.DataFrame):
        if filters:
            raise TypeError("filters apply to a results folder; filter the DataFrame yourself")
        df = data
    else:
        df = load(figure, data, **filters)
    if df.empty:
        raise NoDataError(figure, WANTS[figure], filters)
    devices = sorted(device_label(df).dropna().unique())
    if len(devices) > 1:
        raise ConfigError("gpu_name", f"rows from several devices ({', '.join(devices)}); select one, "
                                      f"e.g. gpu_name='{devices[0]}' (or device=cpu)")
    # A re-measured point counts once, at its newest measurement.
    return df.sort_values("created_at").drop_duplicates(["method", *CONFIG], keep="last")


def _hold(df: pd.DataFrame, free: Iterable[str]) -> pd.DataFrame:
    """Keep one value of every configuration column not in `free`: its most common; among equally
    common values the middle one (upper median: 256 of 64…512, the larger of two)."""
    for column in CONFIG:
        if column in free or df[column].nunique(dropna=False) <= 1:
            continue
        counts = df[column].value_counts()
        tied = sorted(counts.index[counts == counts.max()])
        value = tied[len(tied) // 2]
        df = df[df[column] == value]
    return df


# ---------------------------------------------------------------------------------------------
# shared drawing


def _caption(rows: pd.DataFrame, notes: Iterable[str] = ()) -> str:
    """Provenance of the drawn rows, the configuration they share, and any notes."""
    def values(column: str) -> str:
        return ", ".join(sorted(map(str, rows[column].dropna().unique()))) or "—"

    dirty = set(rows.loc[rows["git_dirty"].fillna(False).astype(bool), "git_sha"])
    shas = ", ".join(sha[:7] + ("+dirty" if sha in dirty else "")
                     for sha in sorted(rows["git_sha"].dropna().unique())) or "—"
    first, last = (rows["created_at"].min(), rows["created_at"].max())
    dates = f"{first:%Y-%m-%d}" + ("" if f"{first:%F}" == f"{last:%F}" else f" to {last:%Y-%m-%d}")
    shared = " ".join(_setting(c, rows[c].iloc[0]) for c in CONFIG
                      if c not in ("causal", "mode") and rows[c].nunique() == 1)
    lines = [f"{', '.join(sorted(device_label(rows).dropna().unique()))} · torch {values('torch')} · "
             f"triton {values('triton')} · commit {shas} · {dates}", shared, *notes]
    return "\n".join(line for line in lines if line)


def _setting(column: str, value) -> str:
    return str(value) if column in ("dtype", "inputs") else f"{setting_name(column)}={value}"


def _figure(nrows: int, ncols: int, **kw) -> tuple[Figure, list]:
    fig = Figure(figsize=(4.4 * ncols + 2.4, 3.2 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _finish(fig: Figure, rows: pd.DataFrame, handles: list, notes: Iterable[str] = ()) -> Figure:
    """Legend right of the panels, caption under them."""
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    fig.supxlabel(_caption(rows, notes), x=0.0, ha="left", fontsize=7, family="monospace")
    return fig


def _method_handles(names: Iterable[str]) -> list:
    return [Line2D([], [], label=m + (" (exact)" if is_exact(m) else ""), **style(m))
            for m in _ordered(names)]


def _ordered(names: Iterable[str]) -> list[str]:
    """Methods in registry order (unknown ones last), so legends read the same everywhere."""
    order = {m: i for i, m in enumerate(methods.names())}
    return sorted(set(names), key=lambda m: (order.get(m, len(order)), m))


def _log2_n(ax, label: str = N_LABEL) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xlabel(label)
    ax.grid(True, which="major", alpha=0.3)


def _panels(df: pd.DataFrame) -> list[tuple[bool, str]]:
    """(causal, mode) pairs present, non-causal first, modes in fwd, bwd, fwd+bwd order."""
    pairs = {(bool(c), m) for c, m in zip(df["causal"], df["mode"])}
    return sorted(pairs, key=lambda p: (p[0], mode_rank(p[1])))


def _grid_by_panel(df: pd.DataFrame, sharey: bool = False):
    """One axes per (causal, mode): rows causal, columns mode."""
    panels = _panels(df)
    causals = sorted({c for c, _ in panels})
    modes = [m for m in MODES if any(p[1] == m for p in panels)] + \
            sorted({m for _, m in panels} - set(MODES))
    fig, axes = _figure(len(causals), len(modes), sharey=sharey)
    for i, causal in enumerate(causals):
        for j, mode in enumerate(modes):
            ax = axes[i][j]
            ax.set_title(f"{'causal' if causal else 'non-causal'}, {mode}", fontsize=10)
            if (causal, mode) not in panels:
                ax.set_visible(False)
    return fig, {(c, m): axes[causals.index(c)][modes.index(m)] for c, m in panels}


def _in_panel(df: pd.DataFrame, causal: bool, mode: str) -> pd.DataFrame:
    return df[(df["causal"] == causal) & (df["mode"] == mode)]


# ---------------------------------------------------------------------------------------------
# figures


def speedup(data, **filters) -> Figure:
    """Speedup of each method over each exact method (time_exact / time_method) vs n."""
    df = _hold(_frame("speedup", data, filters), free=("method", "seq_len", "causal", "mode"))
    # A line style per exact baseline (cycled, so a new exact method is never left out).
    baselines = dict(zip([m for m in _ordered(df["method"]) if is_exact(m)],
                         itertools.cycle(BASELINE_LINESTYLES)))
    if not baselines or df["method"].nunique() < 2:
        raise NoDataError("speedup", "timings of an exact method and another method at the same n",
                          filters)
    times = df.pivot(index=["causal", "mode", "seq_len"], columns="method", values="time_ms")
    fig, panels = _grid_by_panel(df)
    drawn = set()
    for (causal, mode), ax in panels.items():
        panel = times.xs((causal, mode), level=("causal", "mode"))
        for base, linestyle in baselines.items():
            for method in _ordered(df["method"]):
                ratio = (panel[base] / panel[method]).dropna()
                if method == base or ratio.empty:
                    continue
                ax.plot(ratio.index, ratio.values, linestyle=linestyle, label=f"{method} vs {base}",
                        **style(method))
                drawn.add((method, base))
        ax.axhline(1.0, color="grey", linewidth=0.8, zorder=0)
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        ax.set_ylabel("speedup over exact method (×)")
        _log2_n(ax)
    if not drawn:
        raise NoDataError("speedup", "exact and other methods timed at the same n", filters)
    used = df[df["method"].isin({m for pair in drawn for m in pair})]
    handles = _method_handles(used["method"]) + [
        Line2D([], [], color="black", linestyle=ls, label=f"÷ time of {base}")
        for base, ls in baselines.items() if any(b == base for _, b in drawn)]
    return _finish(fig, used, handles)


def _not_measured(df: pd.DataFrame) -> list[str]:
    """One caption line per status that leaves no time: which method, where."""
    notes = []
    for status in ("skipped", "unavailable", "error"):
        rows = df[df["status"] == status]
        parts = []
        for method, group in rows.groupby("method", sort=False):
            where = sorted({(int(r.seq_len), "causal" if r.causal else "non-causal", r.mode)
                            for r in group.itertuples()})
            parts.append(f"{method} ({'; '.join(f'n={n} {c} {m}' for n, c, m in where)})")
        if parts:
            notes.append(f"{status}: " + ", ".join(_ordered_parts(parts)))
    return notes


def _ordered_parts(parts: list[str]) -> list[str]:
    order = {m: i for i, m in enumerate(methods.names())}
    return sorted(parts, key=lambda p: order.get(p.split(" ")[0], len(order)))


def _mark_oom(ax, rows: pd.DataFrame) -> None:
    """oom points at the top edge of the axes (no value to plot, but not silently dropped)."""
    for method, group in rows.groupby("method"):
        ax.scatter(group["seq_len"], [1.0] * len(group), transform=ax.get_xaxis_transform(),
                   marker=OOM_MARKER, s=60, color=style(method)["color"], clip_on=False,
                   zorder=5, gid=f"oom:{method}")


# Line style per timing mode, where a figure draws several (per call against CUDA-graph replays).
TIMING_LINESTYLES = dict(zip(TIMING_MODES, ("-", "--", ":", "-.")))


def _timing_linestyles(modes: Iterable[str]) -> dict[str, object]:
    """A line style for each timing mode present: the table's, and unknown modes cycling the rest."""
    present = sorted(set(modes), key=timing_mode_rank)
    spare = itertools.cycle([ls for ls in BASELINE_LINESTYLES if ls not in TIMING_LINESTYLES.values()])
    return {m: TIMING_LINESTYLES[m] if m in TIMING_LINESTYLES else next(spare) for m in present}


def _vs_n(figure: str, data, filters: dict, value: str, scale: float, ylabel: str,
          band: tuple[str, str] | None, timings_apart: bool = False) -> Figure:
    """Per-method lines of `value` vs n in causal × mode panels; oom marked; the rest noted.
    With `timings_apart`, each timing mode the rows hold is its own line (per its line style),
    so per-call and CUDA-graph curves can be read against each other in one panel."""
    free = ("method", "seq_len", "causal", "mode") + (("timing_mode",) if timings_apart else ())
    df = _hold(_frame(figure, data, filters), free=free)
    ok = df[(df["status"] == "ok") & df[value].notna()]
    oom = df[df["status"] == "oom"]
    if ok.empty and oom.empty:
        raise NoDataError(figure, f"ok or oom rows with {value}", filters)
    linestyles = _timing_linestyles(ok["timing_mode"]) if timings_apart else {}
    several = len(linestyles) > 1
    fig, panels = _grid_by_panel(pd.concat([ok, oom]))
    for (causal, mode), ax in panels.items():
        for (method, timing), rows in _in_panel(ok, causal, mode).groupby(["method", "timing_mode"]):
            rows = rows.sort_values("seq_len")
            ax.plot(rows["seq_len"], rows[value] / scale, label=f"{method}, {timing}" if several else method,
                    linestyle=linestyles.get(timing, "-"), **style(method))
            if band:
                ax.fill_between(rows["seq_len"], rows[band[0]] / scale, rows[band[1]] / scale,
                                color=style(method)["color"], alpha=0.2, linewidth=0)
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        ax.set_ylabel(ylabel)
        _log2_n(ax)
        _mark_oom(ax, _in_panel(oom, causal, mode))
    handles = _method_handles(pd.concat([ok, oom])["method"])
    if several:
        handles += [Line2D([], [], color="black", linestyle=ls, label=f"timed {timing}")
                    for timing, ls in linestyles.items()]
    if not oom.empty:
        handles.append(Line2D([], [], color="black", marker=OOM_MARKER, linestyle="none",
                              label="out of memory (top edge)"))
    notes = _not_measured(df)
    return _finish(fig, pd.concat([ok, oom, df[df["status"].isin(("skipped", "unavailable"))]]),
                   handles, notes)


def time(data, **filters) -> Figure:
    """Median time with its p20–p80 band vs n for every method; a line per timing mode where the
    selection holds several (solid per call, dashed CUDA-graph replays, dotted back to back)."""
    return _vs_n("time", data, filters, "time_ms", 1.0, TIME_LABEL, ("time_ms_p20", "time_ms_p80"),
                 timings_apart=True)


def memory(data, **filters) -> Figure:
    """Peak memory vs n for every method."""
    return _vs_n("memory", data, filters, "peak_mem_bytes", 2.0**30, "peak memory (GiB)", None)


ERROR_AXES = (("seq_len", N_LABEL), ("sample_size", "sample size m (sampled columns)"),
              ("block_size", "block size b (rows per block)"))


def _error_panels(df: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(inputs, x column, rows) for every x with at least two values once the rest is held."""
    panels = []
    for inputs, rows in df.groupby("inputs", sort=True):
        for column, _ in ERROR_AXES:
            held = _hold(rows, free=("method", "causal", "sample_tile", column))
            if held[column].nunique() >= 2:
                panels.append((inputs, column, held))
    return panels


def error(data, **filters) -> Figure:
    """spec_err vs n, sample_size and block_size; one line per method and sampling variant
    (dotted: one sample set per head; dashed: causal)."""
    panels = _error_panels(_frame("error", data, filters))
    if not panels:
        raise NoDataError("error", "spec_err rows with two or more values of n, sample_size or "
                                   "block_size for one configuration", filters)
    inputs = list(dict.fromkeys(p[0] for p in panels))
    columns = [c for c, _ in ERROR_AXES if any(p[1] == c for p in panels)]
    fig, axes = _figure(len(inputs), len(columns), sharey=True)
    for i, name in enumerate(inputs):
        for j, column in enumerate(columns):
            axes[i][j].set_visible(False)
    # Methods that agree (hyper and hyper_ref with the same draws) draw the same line: each later
    # method goes under the ones before it, wider and with a larger marker, so every one shows.
    approx = _ordered(m for _, _, rows in panels for m in rows["method"] if not is_exact(m))
    depth = {m: approx.index(m) if m in approx else 0 for _, _, rows in panels for m in rows["method"]}
    for name, column, rows in panels:
        ax = axes[inputs.index(name)][columns.index(column)]
        ax.set_visible(True)
        for (method, causal, tile), line in rows.groupby(["method", "causal", "sample_tile"]):
            if is_exact(method) and tile != rows["sample_tile"].max():
                continue    # an exact method does not sample: one line is enough
            line = line.sort_values(column)
            k = depth[method]
            ax.plot(line[column], line["spec_err"], linestyle=_error_line(causal, tile),
                    label=f"{method}{' causal' if causal else ''}", zorder=3 + len(approx) - k,
                    linewidth=1.5 + 1.5 * k, markersize=5 + 3 * k, **style(method))
        held = " ".join(f"{setting_name(c)}={rows[c].iloc[0]}" for c, _ in ERROR_AXES if c != column)
        ax.set_title(f"{name}\n{held}", fontsize=9)
        ax.set_yscale("log")
        ax.set_ylabel(ERR_LABEL, fontsize=8)
        _log2_n(ax, dict(ERROR_AXES)[column])
    used = pd.concat([rows for _, _, rows in panels]).drop_duplicates(["method", *CONFIG])
    handles = _method_handles(used["method"])
    if used["causal"].nunique() > 1:
        handles.append(Line2D([], [], color="black", linestyle="--", label="causal"))
    if (used["sample_tile"] == 0).any() and (used["sample_tile"] > 0).any():
        handles.append(Line2D([], [], color="black", linestyle=":", label="one sample set per head (tile 0)"))
    return _finish(fig, used, handles)


def _error_line(causal: bool, tile: int) -> str:
    """Line style: solid per-tile samples, dotted one set per head; dashed variants when causal."""
    if tile == 0:
        return "-." if causal else ":"
    return "--" if causal else "-"


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """Points no other point beats in both spec_err and time_ms (ascending spec_err)."""
    ranked = points.sort_values(["spec_err", "time_ms"])
    return ranked[ranked["time_ms"] < ranked["time_ms"].cummin().shift(fill_value=float("inf"))]


def pareto(data, **filters) -> Figure:
    """Time vs spec_err over block_size × sample_size; Pareto front; exact methods as references."""
    df = _hold(_frame("pareto", data, filters), free=("method", "block_size", "sample_size", "causal"))
    exact = df["method"].map(is_exact).astype(bool)
    approx = df[~exact]
    configs = approx[["causal", "block_size", "sample_size"]].drop_duplicates()["causal"].value_counts()
    causals = sorted(configs.index[configs >= 2])
    if not causals:
        raise NoDataError("pareto", "spec_err and time rows of an approximate method at two or more "
                                    "block_size × sample_size configurations", filters)
    approx = approx[approx["causal"].isin(causals)]
    fig, axes = _figure(1, len(causals))
    labels = []
    for ax, causal in zip(axes[0], causals):
        points = approx[approx["causal"] == causal]
        for method, rows in points.groupby("method"):
            ax.scatter(rows["spec_err"], rows["time_ms"], label=method, s=30, **style(method))
            labels.append((ax, [(r.spec_err, r.time_ms, f"b{r.block_size}/m{r.sample_size}")
                                for r in rows.itertuples()]))
        front = pareto_front(points)
        ax.plot(front["spec_err"], front["time_ms"], drawstyle="steps-post", color="black",
                linewidth=1.2, gid="pareto-front", label="Pareto front")
        for method, rows in df[exact & (df["causal"] == causal)].groupby("method"):
            ax.axhline(rows["time_ms"].median(), color=style(method)["color"], linestyle="--",
                       linewidth=1, gid=f"exact:{method}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log(ax.xaxis)
        _plain_log(ax.yaxis)
        ax.set_xlabel(ERR_LABEL)
        ax.set_ylabel(TIME_LABEL)
        ax.set_title(f"{'causal' if causal else 'non-causal'}, n={int(points['seq_len'].iloc[0])}",
                     fontsize=10)
        ax.grid(True, alpha=0.3)
    used = pd.concat([approx, df[exact & df["causal"].isin(causals)]])
    handles = _method_handles(used["method"]) + [
        Line2D([], [], color="black", label="Pareto front"),
        Line2D([], [], color="grey", linestyle="--", label="exact method (error ≈ 0): its time")]
    _finish(fig, used, handles)
    fig.draw_without_rendering()   # the final layout and limits, which the label placement measures in
    for ax, points in labels:
        label_points(ax, points)
    return fig


def _plain_log(axis) -> None:
    """Plain numbers on a log axis (0.3, 1, 100, not 3×10⁻¹), minor ticks labelled too where the
    axis spans less than a decade (memory curves, a Pareto panel)."""
    axis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))


class _PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (0.04, 1.2, 10), not 4×10⁻² or 1e-01, on the ticks that
    LogFormatter itself chooses to label."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


# Where a point's label may go, in points from the point: right and above first (what a reader
# expects), then the other corners, then further out.
_LABEL_SPOTS = tuple((dx, dy, "left" if dx > 0 else "right", "bottom" if dy > 0 else "top")
                     for reach in (3, 9) for dx, dy in ((3, reach), (3, -reach), (-3, reach), (-3, -reach)))
_MARKER_HALF = 4.0   # points: the half-width of the box a point's marker is kept clear within


def label_points(ax, points: list[tuple[float, float, str]], fontsize: float = 6) -> list:
    """Annotate each (x, y, text) beside its point, at the first spot whose text overlaps no label
    placed before, no marker and nothing outside the axes (else the spot that overlaps least), so
    the labels of close points stay readable; returns the annotations in the order given. Needs the
    figure's layout done (draw_without_rendering); the labels stay out of the layout, so placing
    them does not move the axes."""
    half = _MARKER_HALF * ax.figure.dpi / 72.0
    centres = [tuple(ax.transData.transform((x, y))) for x, y, _ in points]
    markers = [(cx - half, cy - half, cx + half, cy + half) for cx, cy in centres]
    inside = tuple(ax.bbox.extents)
    boxes, placed = [], [None] * len(points)
    for i in sorted(range(len(points)), key=lambda i: centres[i]):
        x, y, text = points[i]
        obstacles = boxes + markers[:i] + markers[i + 1:]
        best = None
        for dx, dy, ha, va in _LABEL_SPOTS:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                              fontsize=fontsize, ha=ha, va=va)
            ann.set_in_layout(False)
            box = tuple(ann.get_window_extent().extents)
            cost = sum(_overlap(box, other) for other in obstacles) + _outside(box, inside)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, box)
            else:
                ann.remove()
            if cost == 0:
                break
        boxes.append(best[2])
        placed[i] = best[1]
    return placed


def _overlap(a, b) -> float:
    """Area shared by two (x0, y0, x1, y1) boxes."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _outside(box, bounds) -> float:
    """Area of `box` outside `bounds`."""
    return (box[2] - box[0]) * (box[3] - box[1]) - _overlap(box, bounds)


FIGURES: dict[str, Callable[..., Figure]] = {
    "speedup": speedup, "time": time, "error": error, "pareto": pareto, "memory": memory}
