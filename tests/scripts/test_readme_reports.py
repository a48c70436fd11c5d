"""scripts/readme_reports.py: the README's report tables are what the committed store gives."""

import datetime as dt
import os
import sys
from pathlib import Path

from hyperbench import store

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import readme_reports  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_the_readme_tables_are_the_committed_stores():
    found = readme_reports.blocks((REPO / "README.md").read_text().splitlines())
    assert len(found) >= 2  # the headline table and the curve
    assert readme_reports.main(["--check", str(REPO / "README.md")]) == 0


def _readme(tmp_path, body):
    store.write_job([{"method": "hyper", "seq_len": 4096, "causal": False, "mode": "fwd", "status": "ok",
                      "time_ms": 0.113, "git_sha": "8dbc57f80ac156ae0f8375c9b4e853cd57aa7298",
                      "gpu_name": "NVIDIA H200",
                      "created_at": dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)},
                     {"method": "hyper", "seq_len": 8192, "causal": False, "mode": "fwd", "status": "ok",
                      "time_ms": 0.195, "git_sha": "8dbc57f80ac156ae0f8375c9b4e853cd57aa7298",
                      "gpu_name": "NVIDIA H200",
                      "created_at": dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)}],
                    tmp_path / "results", job_id="r-0000")
    readme = tmp_path / "README.md"
    readme.write_text(body)
    return readme


def test_a_stale_block_fails_the_check_and_is_rewritten(tmp_path, capsys):
    readme = _readme(tmp_path, "# t\n\ntext before\n<!-- hyperbench report git_sha=8dbc57f -->\n"
                               "| seq_len | hyper |\n|---|---:|\n| 4096 | 0.100 |\n<!-- end report -->\ntext after\n")
    assert readme_reports.main(["--check", str(readme)]) == 1
    assert "stale: hyperbench report git_sha=8dbc57f" in capsys.readouterr().out
    assert readme_reports.main([str(readme)]) == 0
    text = readme.read_text()
    assert "| 4096 | 0.113 |\n| 8192 | 0.195 |\n\nmedian ms;" in text
    assert text.startswith("# t\n\ntext before\n<!-- hyperbench report git_sha=8dbc57f -->\n")
    assert text.endswith("commit 8dbc57f; 2026-11-30\n<!-- end report -->\ntext after\n")
    assert readme_reports.main(["--check", str(readme)]) == 0


def test_a_block_the_store_cannot_give_is_an_error(tmp_path, capsys):
    readme = _readme(tmp_path, "<!-- hyperbench report git_sha=0000000 -->\n<!-- end report -->\n")
    assert readme_reports.main(["--check", str(readme)]) == 2
    assert "no rows in" in capsys.readouterr().err
    unclosed = _readme(tmp_path, "<!-- hyperbench report git_sha=8dbc57f -->\n| x |\n")
    assert readme_reports.main([str(unclosed)]) == 2
    assert unclosed.read_text() == "<!-- hyperbench report git_sha=8dbc57f -->\n| x |\n"
