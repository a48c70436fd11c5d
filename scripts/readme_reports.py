"""The README's tables that `hyperbench report` makes from the store: rewrite them, or check them.

    python scripts/readme_reports.py [--check] [README.md]

A block between a line `<!-- hyperbench report ARGS -->` and a line `<!-- end report -->` holds the
output of `hyperbench report ARGS` over the store next to the README (results/), so every number in
it is one committed row, with its commit, GPU and date in the caption. Without --check the blocks
are rewritten in place; with --check each block that differs from what the store gives is named and
the exit status is 1 (tests/scripts/test_readme_reports.py runs the check in CI).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from hyperbench import report, store
from hyperbench.errors import ConfigError

_OPEN = re.compile(r"^<!-- hyperbench report (?P<args>.*) -->$")
_CLOSE = "<!-- end report -->"


def blocks(lines: list[str]) -> list[tuple[int, int, str]]:
    """(first line of the block's text, line of its closing marker, ARGS) for each block."""
    found, i = [], 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if m:
            end = next((j for j in range(i + 1, len(lines)) if lines[j] == _CLOSE), None)
            if end is None:
                raise ValueError(f"line {i + 1}: a report block without {_CLOSE!r}")
            found.append((i + 1, end, m["args"]))
            i = end
        i += 1
    return found


def regenerate(readme: Path) -> tuple[str, list[str]]:
    """The README's text with every block as the store gives it, and the ARGS of the blocks that changed."""
    lines = readme.read_text().splitlines()
    results = str(readme.parent / "results")
    stale, out, last = [], [], 0
    try:
        store.check_store(results)
    except ConfigError as err:
        raise ValueError(f"{err.field}: {err.message}") from None
    with store.snapshot(results) as rows:   # read once for every block
        for start, end, args in blocks(lines):
            try:
                text = report.render(shlex.split(args) + ["--results-dir", results], rows)   # named in its errors
            except ConfigError as err:
                raise ValueError(f"hyperbench report {args}: {err}") from None
            fresh = text.rstrip("\n").split("\n")
            if lines[start:end] != fresh:
                stale.append(args)
            out += lines[last:start] + fresh
            last = end
    out += lines[last:]
    return "\n".join(out) + "\n", stale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a block is not what the store gives")
    p.add_argument("readme", nargs="?", default=str(Path(__file__).resolve().parents[1] / "README.md"))
    args = p.parse_args(argv)
    readme = Path(args.readme)
    try:
        text, stale = regenerate(readme)
    except ValueError as err:
        print(f"readme_reports: error: {err}", file=sys.stderr)
        return 2
    if args.check:
        for s in stale:
            print(f"{readme}: stale: hyperbench report {s}")
        return 1 if stale else 0
    if stale:
        readme.write_text(text)
    print(f"{readme}: {len(stale)} block(s) rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
