"""Every notebook runs on the fixture store without an error, and each .ipynb matches its .py pair."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIXTURE = ROOT / "tests" / "fixtures" / "results"


def test_there_are_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"speedup", "time_memory", "error", "pareto"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("HYPERBENCH_RESULTS", str(FIXTURE))  # the kernel inherits the environment
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(path.parent)}}).execute()  # raises on error
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, "no figure was drawn"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_matches_its_py_pair(path):
    pair = path.with_suffix(".py")
    assert pair.exists(), f"{pair.name} missing: jupytext --set-formats ipynb,py:percent {path.name}"
    cells = [[(c.cell_type, c.source) for c in jupytext.read(p).cells] for p in (path, pair)]
    assert cells[0] == cells[1], f"{path.name} and {pair.name} differ: jupytext --sync {pair}"
