"""hyperbench dashboard: the static page, and that it renders in a real (headless) browser."""

import os
import re
import shutil
import tempfile
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from hyperbench import cli
from tests.hyperbench.test_compare import NEW, PLANTED, RESULTS, clean_rows, plant, planted_store

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The dashboard of the committed store plus a planted 10% slowdown, with one figure."""
    tmp = tmp_path_factory.mktemp("dash")
    results = planted_store(tmp, 1.10)
    (results / "figures").mkdir()
    matplotlib.image.imsave(results / "figures" / "speed.png", np.eye(8))
    assert cli.main(["dashboard", "--results-dir", str(results)]) == 0
    return results / "dashboard" / "index.html"


def test_page_shows_the_planted_regressions(site):
    page = site.read_text()
    verdicts = page[page.index('<table id=verdicts>'):]
    verdicts = verdicts[:verdicts.index("</table>")]
    assert verdicts.count('<tr class="regression">') == 12
    assert "c0ffee0 against baseline 26aba89" in page and "12 regressions" in page
    assert page.count("<svg") > 100   # a time chart per (configuration, method) that ran, spec_err too
    assert 'src="../figures/speed.png"' in page


def test_page_is_self_contained(site):
    page = site.read_text()
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)   # nothing fetched: the machines are offline
    assert [p.name for p in site.parent.iterdir()] == ["index.html"]   # no temporary file left


def test_rewrite_replaces_the_page_and_baseline_is_chosen(tmp_path, capsys):
    out = tmp_path / "dash"
    out.mkdir()
    (out / "index.html").write_text("old")
    assert cli.main(["dashboard", "--results-dir", str(RESULTS), "--out", str(out), "--baseline", "f317"]) == 0
    page = (out / "index.html").read_text()
    assert "26aba89 against baseline f317cca" in page and "0 regressions, 2 improvements" in page


def test_one_commit_has_history_but_nothing_to_compare(tmp_path, capsys):
    plant(tmp_path / "results", clean_rows(NEW), NEW, 1.0)
    assert cli.main(["dashboard", "--results-dir", str(tmp_path / "results")]) == 0
    page = (tmp_path / "results" / "dashboard" / "index.html").read_text()
    assert "Nothing to compare: no earlier commit" in page and "<table id=verdicts>" not in page
    assert page.count("<svg") == 12 + 6   # every method's time, spec_err where measured (fwd only)


def test_default_baseline_skips_a_commit_that_measured_other_configurations(tmp_path):
    """A commit that ran a sweep of its own between two runs of the same configurations is not the
    baseline: the newest earlier commit that measured one of the latest's pairs is."""
    results = tmp_path / "results"
    rows = clean_rows(NEW)
    plant(results, rows, "a1" * 20, 1.0)
    plant(results, [{**r, "config_hash": "other-" + r["config_hash"]} for r in rows], "b2" * 20, 1.0)
    plant(results, rows, PLANTED, 1.10)
    assert cli.main(["dashboard", "--results-dir", str(results)]) == 0
    page = (results / "dashboard" / "index.html").read_text()
    assert "c0ffee0 against baseline a1a1a1a" in page and "12 regressions" in page
    assert cli.main(["dashboard", "--results-dir", str(results), "--baseline", "b2b2"]) == 0
    page = (results / "dashboard" / "index.html").read_text()
    assert "Nothing to compare: no configuration measured at both" in page


def test_per_clock_verdicts(tmp_path):
    """--per-clock: a candidate 10% slower at a clock 10% lower is the same in cycles."""
    results = tmp_path / "results"
    rows = [{**r, "sm_clock_mhz": 1980.0} for r in clean_rows(NEW)]
    plant(results, rows, "b0" * 20, 1.0)
    plant(results, [{**r, "sm_clock_mhz": 1800.0} for r in rows], PLANTED, 1.10)
    for flags, summary in (([], "12 regressions"), (["--per-clock"], "12 same")):
        assert cli.main(["dashboard", "--results-dir", str(results), *flags]) == 0
        page = (results / "dashboard" / "index.html").read_text()
        assert summary in page
    assert "times judged per SM clock cycle" in page and "SM clock 1980 → 1800 MHz, judged in cycles" in page


@pytest.mark.parametrize("argv, field", [(["--baseline", "nope"], "--baseline"), (["--threshold", "x"], "--threshold")])
def test_bad_input_exits_2(tmp_path, capsys, argv, field):
    assert cli.main(["dashboard", "--results-dir", str(RESULTS), "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hyperbench dashboard: error: {field}: ") and err.count("\n") == 1
    assert not (tmp_path / "index.html").exists()


def test_an_out_that_is_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "page").write_text("not a folder\n")
    assert cli.main(["dashboard", "--results-dir", str(RESULTS), "--out", str(tmp_path / "page")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hyperbench dashboard: error: --out: ") and "not a folder" in err
    assert err.count("\n") == 1 and (tmp_path / "page").read_text() == "not a folder\n"


def test_empty_store_exits_2(tmp_path, capsys):
    assert cli.main(["dashboard", "--results-dir", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("hyperbench dashboard: error: --results-dir: ")


def _browser():
    """A headless Debian chromium through selenium; in CI a missing browser fails the test."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        message = (f"dashboard browser test needs {', '.join(missing)} "
                   "(apt-get install chromium chromium-driver; pip install -e '.[test]')")
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000", f"--user-data-dir={tempfile.mkdtemp(prefix='hyperbench-chromium-')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def test_dashboard_renders_in_a_browser(site):
    from selenium.webdriver.common.by import By

    driver = _browser()
    try:
        driver.get(site.as_uri())
        assert driver.title == "hyperbench dashboard"
        rows = driver.find_elements(By.CSS_SELECTOR, "#verdicts tr.regression")
        assert len(rows) == 12 and rows[0].is_displayed()
        charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert len(charts) > 100 and charts[0].size["width"] > 0
        img = driver.find_element(By.CSS_SELECTOR, "figure img")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 8
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
        artifacts = Path(os.environ.get("HYPERBENCH_ARTIFACTS") or tempfile.mkdtemp(prefix="hyperbench-artifacts-"))
        artifacts.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(artifacts / "dashboard.png"))
    finally:
        driver.quit()


@pytest.mark.parametrize("ci, outcome", [("1", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_browser_fails_in_ci_and_skips_elsewhere(monkeypatch, ci, outcome):
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="chromium"):
        _browser()
