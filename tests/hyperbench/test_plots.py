"""The paper figures and `hyperbench plot`, drawn from the committed fixture store.

tests/fixtures/results holds real rows: eight H200 job files copied from results/2026-11-28 (one
with every method at n=131072, including an oom and an unavailable row, one re-measuring that point
at a later commit, and n=1024/2048 curve points) and CPU rows measured with
`hyperbench run -m seq_len=512,1024,2048 num_heads=2 head_dim=32 methods=[exact,sdpa_math,sdpa_flash,
hyper_ref] block_size=64,128 sample_size=32,64 sample_tile=64 min_seq_len=256 timing.target_ms=200`
plus `inputs=clustered` at seq_len=512,1024 block_size=64 sample_size=32,64.
Expected values come from queries on the fixture, not from the figure code.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from hyperbench import plots, plots_cli, report, store  # noqa: E402
from hyperbench.errors import ConfigError  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "results"
H200 = {"gpu_name": "NVIDIA H200"}
CPU = {"device": "cpu"}
CPU_ONE = {**CPU, "inputs": "gaussian(temperature=1.0)", "block_size": 128, "sample_size": 64}


def query(sql: str, **where):
    return store.read(FIXTURE, where=where, sql=sql)


def panel(fig, title: str):
    (ax,) = [a for a in fig.axes if a.get_visible() and a.get_title() == title]
    return ax


def method_lines(ax) -> dict:
    """label -> (x, y) of the lines drawn for methods (not reference lines)."""
    return {ln.get_label(): (np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float))
            for ln in ax.lines if not ln.get_label().startswith("_")}


def caption(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def newest(sql_where: str, column: str, **where) -> float:
    df = query(f"SELECT {column} FROM results WHERE {sql_where} ORDER BY created_at DESC LIMIT 1",
               **where)
    return float(df[column].iloc[0])


# ---------------------------------------------------------------------------------------------
# figures


def test_time_draws_every_ok_point_per_panel_newest_row_wins():
    fig = plots.time(FIXTURE, **H200)
    expected = query("SELECT causal, mode, method, list(DISTINCT seq_len ORDER BY seq_len) AS ns "
                     "FROM results WHERE status = 'ok' GROUP BY ALL", **H200)
    assert len([a for a in fig.axes if a.get_visible()]) == expected[["causal", "mode"]].drop_duplicates().shape[0]
    for row in expected.itertuples():
        ax = panel(fig, f"{'causal' if row.causal else 'non-causal'}, {row.mode}")
        x, _ = method_lines(ax)[row.method]
        assert list(x) == list(row.ns)
    # n=131072 was measured at two commits: the line goes through the newer median.
    _, y = method_lines(panel(fig, "non-causal, fwd"))["hyper"]
    assert y[-1] == pytest.approx(newest("method = 'hyper' AND seq_len = 131072 AND NOT causal "
                                         "AND mode = 'fwd'", "time_ms", **H200))


def test_time_band_spans_p20_to_p80():
    ax = panel(plots.time(FIXTURE, **H200), "causal, fwd")
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(method_lines(ax))
    rows = query("SELECT min(time_ms_p20) AS lo, max(time_ms_p80) AS hi FROM results WHERE causal "
                 "AND mode = 'fwd' AND method = 'hyper'", **H200)
    hyper = [b for b in bands if matplotlib.colors.same_color(b.get_facecolor()[0][:3],
                                                               plots.style("hyper")["color"])]
    y = np.concatenate([path.vertices[:, 1] for path in hyper[0].get_paths()])
    assert (y.min(), y.max()) == pytest.approx((rows["lo"].iloc[0], rows["hi"].iloc[0]))


def test_time_marks_oom_at_the_top_and_lists_unavailable():
    fig = plots.time(FIXTURE, **H200)
    ax = panel(fig, "non-causal, fwd")
    marks = [c for c in ax.collections if c.get_gid() == "oom:sdpa_math"]
    assert len(marks) == 1
    assert marks[0].get_offsets()[:, 0].tolist() == [131072]
    assert marks[0].get_offsets()[:, 1].tolist() == [1.0]  # axes fraction: the top edge
    assert "sdpa_math" not in method_lines(ax)
    assert "unavailable: flash_attn (n=131072 non-causal fwd)" in caption(fig)


def test_time_without_oom_rows_has_no_oom_mark():
    fig = plots.time(FIXTURE, **H200, method=["hyper", "sdpa_cudnn"])
    assert not [c for a in fig.axes for c in a.collections if str(c.get_gid()).startswith("oom:")]


def test_memory_lines_and_oom_mark():
    fig = plots.memory(FIXTURE, **H200)
    ax = panel(fig, "non-causal, fwd")
    expected = query("SELECT DISTINCT method FROM results WHERE peak_mem_bytes IS NOT NULL "
                     "AND NOT causal AND mode = 'fwd'", **H200)
    assert set(method_lines(ax)) == set(expected["method"])
    _, y = method_lines(ax)["exact"]
    assert y.tolist() == pytest.approx([newest("method = 'exact'", "peak_mem_bytes", **H200) / 2**30])
    assert [c.get_gid() for c in ax.collections] == ["oom:sdpa_math"]


def test_speedup_one_line_per_method_and_exact_baseline():
    fig = plots.speedup(FIXTURE, **CPU_ONE)
    ax = panel(fig, "non-causal, fwd")
    timed = query("SELECT method, seq_len, time_ms FROM results WHERE status = 'ok'", **CPU_ONE)
    names = set(timed["method"])
    exact = {m for m in names if plots.is_exact(m)}
    assert exact == {"exact", "sdpa_flash", "sdpa_math"}
    lines = method_lines(ax)
    assert set(lines) == {f"{m} vs {b}" for b in exact for m in names if m != b}
    t = timed.pivot(index="seq_len", columns="method", values="time_ms")
    x, y = lines["hyper_ref vs exact"]
    assert x.tolist() == t.index.tolist()
    assert y == pytest.approx((t["exact"] / t["hyper_ref"]).to_numpy())


def test_speedup_on_h200_pairs_points_measured_at_the_same_n():
    fig = plots.speedup(FIXTURE, **H200)
    x, y = method_lines(panel(fig, "non-causal, fwd"))["hyper vs exact"]
    assert x.tolist() == [131072]  # exact was measured only there
    where = "seq_len = 131072 AND NOT causal AND mode = 'fwd' AND method = "
    assert y[0] == pytest.approx(newest(where + "'exact'", "time_ms", **H200)
                                 / newest(where + "'hyper'", "time_ms", **H200))


def test_error_draws_the_panels_the_store_has():
    fig = plots.error(FIXTURE, **CPU)
    titles = sorted(a.get_title().split("\n")[0] for a in fig.axes if a.get_visible())
    # gaussian: n, sample_size and block_size swept; clustered: n and sample_size only.
    assert titles == ["clustered(num_clusters=8,radius=8.0,noise=1.0)"] * 2 + ["gaussian(temperature=1.0)"] * 3
    ax = [a for a in fig.axes if a.get_visible() and a.get_xlabel().startswith("sample size")
          and a.get_title().startswith("gaussian")][0]
    held = dict(kv.split("=") for kv in ax.get_title().split("\n")[1].split())
    rows = query("SELECT sample_size, spec_err FROM results ORDER BY sample_size", **CPU,
                 inputs="gaussian(temperature=1.0)", method="hyper_ref", seq_len=held["n"],
                 block_size=held["block"])
    x, y = method_lines(ax)["hyper_ref"]
    assert x.tolist() == rows["sample_size"].tolist()
    assert y == pytest.approx(rows["spec_err"].to_numpy())
    assert len(method_lines(ax)) == query("SELECT DISTINCT method FROM results", **CPU,
                                          inputs="gaussian(temperature=1.0)").shape[0]


def test_error_lines_that_coincide_both_show():
    """hyper and hyper_ref with the same draws give the same errors: the later method's line goes
    under the earlier one's, wider, so neither hides the other."""
    rows = plots.load("error", FIXTURE, **CPU)
    twin = rows[rows["method"] == "hyper_ref"].assign(method="hyper")
    fig = plots.error(pd.concat([rows, twin]))
    for ax in (a for a in fig.axes if a.get_visible()):
        lines = {ln.get_label(): ln for ln in ax.lines}
        top, under = lines["hyper"], lines["hyper_ref"]
        assert list(top.get_ydata()) == list(under.get_ydata())
        assert top.get_zorder() > under.get_zorder()
        assert top.get_linewidth() < under.get_linewidth()
        assert top.get_markersize() < under.get_markersize()


def test_pareto_points_front_and_exact_references():
    where = {**CPU, "inputs": "gaussian(temperature=1.0)", "seq_len": 1024}
    fig = plots.pareto(FIXTURE, **where)
    ax = panel(fig, "non-causal, n=1024")
    rows = query("SELECT block_size, sample_size, spec_err, time_ms FROM results", **where,
                 method="hyper_ref")
    (points,) = [c for c in ax.collections if c.get_label() == "hyper_ref"]
    assert sorted(map(tuple, points.get_offsets().tolist())) == \
        sorted(zip(rows["spec_err"], rows["time_ms"]))
    # Front by brute force: points no other point beats in both.
    front = sorted((e, t) for e, t in zip(rows["spec_err"], rows["time_ms"])
                   if not any(e2 <= e and t2 <= t and (e2, t2) != (e, t)
                              for e2, t2 in zip(rows["spec_err"], rows["time_ms"])))
    (line,) = [ln for ln in ax.lines if ln.get_gid() == "pareto-front"]
    assert list(zip(line.get_xdata(), line.get_ydata())) == front
    refs = {ln.get_gid(): ln.get_ydata()[0] for ln in ax.lines if str(ln.get_gid()).startswith("exact:")}
    assert set(refs) == {"exact:exact", "exact:sdpa_flash", "exact:sdpa_math"}
    # exact does not depend on block/sample: its rows of every configuration, summarised by the median.
    assert refs["exact:exact"] == pytest.approx(float(query(
        "SELECT median(time_ms) AS t FROM results WHERE method = 'exact'", **where)["t"].iloc[0]))


def _text_boxes(fig) -> list:
    return [tuple(t.get_window_extent().extents) for ax in fig.axes for t in ax.texts]


def _disjoint(boxes) -> bool:
    return all(min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])
               for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_pareto_labels_do_not_overlap():
    fig = plots.pareto(FIXTURE, **CPU)
    approx = sum(len(c.get_offsets()) for ax in fig.axes for c in ax.collections
                 if not plots.is_exact(c.get_label()))
    assert approx >= 4 and len(_text_boxes(fig)) == approx   # one label a point
    assert _disjoint(_text_boxes(fig))


def test_label_points_keeps_close_labels_apart_and_beside_their_point():
    from matplotlib.figure import Figure
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    # four points a pixel apart in the middle (where the first label spot of each overlaps the
    # others' markers), and two far away
    points = [(0.3, 2.0), (0.3001, 2.0), (0.3, 2.001), (0.3001, 2.001), (0.0, 0.0), (0.6, 4.0)]
    ax.scatter(*zip(*points))
    fig.draw_without_rendering()
    labels = plots.label_points(ax, [(x, y, f"b{i}/m{i}") for i, (x, y) in enumerate(points)])
    assert [t.get_text() for t in labels] == [f"b{i}/m{i}" for i in range(6)]
    boxes = _text_boxes(fig)
    assert len(boxes) == 6 and _disjoint(boxes)
    reach = 30 * fig.dpi / 72   # every label starts within 30 points of its point
    for t, (x, y) in zip(labels, points):
        px, py = ax.transData.transform((x, y))
        box = t.get_window_extent().extents
        assert min(abs(box[0] - px), abs(box[2] - px)) < reach
        assert min(abs(box[1] - py), abs(box[3] - py)) < reach


@pytest.mark.parametrize("name,where", [("memory", H200), ("time", CPU), ("speedup", CPU), ("pareto", CPU)])
def test_log_axes_are_labelled_in_plain_numbers(name, where):
    fig = plots.FIGURES[name](FIXTURE, **where)
    fig.draw_without_rendering()
    labels = [t.get_text() for ax in fig.axes if ax.get_visible() and ax.get_yscale() == "log"
              for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
    assert labels, "no labelled log axis"
    for text in labels:   # 0.3, 1, 100: not 3×10⁻¹ or 1e-01
        assert float(text) > 0, text


def test_pareto_front_unit():
    import pandas as pd
    pts = pd.DataFrame({"spec_err": [0.1, 0.2, 0.3, 0.05], "time_ms": [5.0, 3.0, 4.0, 9.0]})
    assert plots.pareto_front(pts)[["spec_err", "time_ms"]].values.tolist() == \
        [[0.05, 9.0], [0.1, 5.0], [0.2, 3.0]]


def test_a_method_has_one_colour_in_every_figure():
    figs = [plots.time(FIXTURE, **CPU), plots.speedup(FIXTURE, **CPU), plots.error(FIXTURE, **CPU),
            plots.pareto(FIXTURE, **CPU)]
    seen: dict[str, set] = {}
    for fig in figs:
        for ax in fig.axes:
            for ln in ax.lines:
                method = ln.get_label().split(" ")[0]
                if method in plots.STYLE:
                    seen.setdefault(method, set()).add(matplotlib.colors.to_hex(ln.get_color()))
            for c in ax.collections:
                if c.get_label() in plots.STYLE:
                    seen.setdefault(c.get_label(), set()).add(matplotlib.colors.to_hex(c.get_facecolor()[0]))
    assert {"exact", "sdpa_flash", "sdpa_math", "hyper_ref"} <= set(seen)
    assert all(len(colours) == 1 for colours in seen.values()), seen
    assert len({c for colours in seen.values() for c in colours}) == len(seen)


@pytest.mark.parametrize("figure", ["time", "speedup", "memory"])
def test_caption_names_gpu_commits_and_date(figure):
    text = caption(plots.FIGURES[figure](FIXTURE, **H200))
    shas = query("SELECT DISTINCT git_sha FROM results", **H200)["git_sha"]
    assert "NVIDIA H200" in text and "torch 2.11.0+cu130" in text and "triton 3.6.0" in text
    assert all(sha[:7] in text for sha in shas)
    assert "2026-11-28" in text


def test_caption_names_settings_as_report_tables_do():
    """A figure and a table of the same rows, side by side in a paper, spell each setting alike."""
    text = caption(plots.FIGURES["time"](FIXTURE, **H200))
    for setting in ("block=256", "sample=256", "projections=7", "min_seq_len=4096", "timing_mode=per_call"):
        assert setting in text
    table = report.render(["--results-dir", str(FIXTURE), "gpu_name=NVIDIA H200", "git_sha=26aba89"])
    for setting in ("block=256", "sample=256", "projections=7", "min_seq_len=4096", "timing_mode=per_call"):
        assert setting in table


@pytest.mark.parametrize("figure, where, preset", [
    ("error", H200, "paper_error"), ("pareto", H200, "paper_pareto"),
    ("memory", CPU, "paper_memory"), ("speedup", {"seq_len": 3}, "paper_speedup")])
def test_no_rows_names_what_is_missing_and_the_preset(figure, where, preset):
    with pytest.raises(plots.NoDataError, match=rf"^{figure}: no .*\+sweep={preset}"):
        plots.FIGURES[figure](FIXTURE, **where)


def test_rows_of_several_devices_are_refused():
    with pytest.raises(ConfigError, match="^gpu_name: rows from several devices"):
        plots.time(FIXTURE)


# ---------------------------------------------------------------------------------------------
# hyperbench plot


def cli(capsys, *args):
    code = plots_cli.main([*map(str, args), "--results-dir", str(FIXTURE)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_pdf_and_png(tmp_path, capsys):
    code, out, err = cli(capsys, "time", "gpu_name=NVIDIA H200", "--out-dir", tmp_path)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["time.pdf", "time.png"]  # no temp files
    assert out.split() == [str(tmp_path / "time.pdf"), str(tmp_path / "time.png")]
    assert (tmp_path / "time.pdf").read_bytes()[:4] == b"%PDF"
    assert (tmp_path / "time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_all_skips_figures_without_rows(tmp_path, capsys):
    code, out, err = cli(capsys, "all", "device=cpu", "--out-dir", tmp_path)
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}.{e}" for n in ("speedup", "time", "error", "pareto") for e in ("pdf", "png"))
    assert "memory: no rows with peak_mem_bytes" in err


@pytest.mark.parametrize("args, field", [
    (["bogus"], "NAME"), (["time", "colour=red"], "colour"), (["time", "seq_len=abc"], "seq_len"),
    (["error", "gpu_name=NVIDIA H200"], "error"), (["time", "seq_len=3"], "time"),
    (["time"], "gpu_name"), ([], "arguments")])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, field):
    out_dir = tmp_path / "figures"
    code, out, err = cli(capsys, *args, "--out-dir", out_dir)
    assert code == 2
    assert err.startswith(f"hyperbench plot: error: {field}: ") and err.count("\n") == 1
    assert out == "" and not out_dir.exists()


def test_cli_an_out_dir_that_is_a_file_is_refused_before_drawing(tmp_path, capsys):
    (tmp_path / "figures").write_text("not a folder\n")
    code, out, err = cli(capsys, "time", "gpu_name=NVIDIA H200", "--out-dir", tmp_path / "figures" / "sub")
    assert code == 2 and out == ""
    assert err.startswith("hyperbench plot: error: --out-dir: ") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures"]


def test_a_full_grid_is_held_at_its_middle_value():
    """Every sample size equally common: the panels against n hold the middle one, not the edge."""
    import pandas as pd
    df = pd.DataFrame({c: [0] * 4 for c in plots.CONFIG})
    df["sample_size"] = [64, 128, 256, 512]
    assert list(plots._hold(df, free=())["sample_size"]) == [256]
    df["sample_size"] = [0, 256, 0, 256]
    assert set(plots._hold(df, free=())["sample_size"]) == {256}


def test_a_figure_does_not_mix_per_call_and_back_to_back_timings():
    """Rows of one point timed both ways are two points (timing_mode is configuration): the newest
    of each survives, and a panel holds one timing mode."""
    import pandas as pd
    df = pd.DataFrame({c: [0] * 3 for c in plots.CONFIG})
    df["timing_mode"] = ["per_call", "per_call", "back_to_back"]
    df["method"], df["created_at"] = "hyper", pd.to_datetime([1, 2, 3])
    df["gpu_name"], df["device"] = "NVIDIA H200", "cuda"
    kept = plots._frame("speedup", df, {})
    assert kept["timing_mode"].tolist() == ["per_call", "back_to_back"] and kept["created_at"].iloc[0] == pd.to_datetime(2)
    assert plots._hold(kept, free=())["timing_mode"].nunique() == 1


def test_time_draws_each_timing_mode_as_its_own_line():
    """Per-call and CUDA-graph rows of the same points: the time figure draws both, told apart by
    line style and label, at the values the rows hold; with one timing mode the labels stay plain."""
    import pandas as pd
    base = query("SELECT * FROM results WHERE status = 'ok' AND method = 'hyper'", **H200)
    graphed = base.assign(timing_mode="per_call+cuda_graph", time_ms=base["time_ms"] / 2,
                          time_ms_p20=base["time_ms_p20"] / 2, time_ms_p80=base["time_ms_p80"] / 2)
    fig = plots.time(pd.concat([base, graphed], ignore_index=True))
    drawn = plots._hold(plots._frame("time", base, {}), free=("method", "seq_len", "causal", "mode"))
    causal, mode = bool(drawn["causal"].iloc[0]), drawn["mode"].iloc[0]
    ax = panel(fig, f"{'causal' if causal else 'non-causal'}, {mode}")
    lines = {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}
    assert set(lines) == {"hyper, per_call", "hyper, per_call+cuda_graph"}
    assert lines["hyper, per_call"].get_linestyle() == "-" and lines["hyper, per_call+cuda_graph"].get_linestyle() == "--"
    per_call = drawn[(drawn["causal"] == causal) & (drawn["mode"] == mode)].sort_values("seq_len")
    np.testing.assert_allclose(lines["hyper, per_call+cuda_graph"].get_ydata(), per_call["time_ms"] / 2)
    np.testing.assert_allclose(lines["hyper, per_call"].get_ydata(), per_call["time_ms"])
    assert "timed per_call+cuda_graph" in [t.get_text() for t in fig.legends[0].get_texts()]
    single = panel(plots.time(base), ax.get_title())
    assert {ln.get_label() for ln in single.lines if not ln.get_label().startswith("_")} == {"hyper"}
