"""`hyperbench verify`: check that each row's code is the code of the commit it names.

    hyperbench verify [KEY=VALUE ...] [--results-dir results] [--repo .]

Rows carry `git_sha` (the commit they claim) and `code_digest` (computed from the files that ran,
code_digest.py). For every distinct (commit, dirty flag, digest) of the store this compares the
digest with the commit's own in the repository at --repo, and where they differ, or the commit is
not in this clone, looks through the history for the commit whose code the rows ran.

Verdicts: `ok`; `dirty` (the rows said their tree had uncommitted changes, so a difference is
expected); `MISMATCH` (a clean tree that is not the commit it names: a wrong HYPERBENCH_GIT_SHA on a
GPU machine, or an untracked source file); `unknown commit` (not in this clone: a shallow clone, or
another clone's commit); `no commit` (the rows name none). Rows written before the digest existed
are counted apart. Exit status 1 where any group is a MISMATCH, 2 on bad arguments, else 0.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pandas as pd
from rich.table import Table

from hyperbench import code_digest, store, table
from hyperbench.cli_args import Parser, filters
from hyperbench.errors import ConfigError

PROG = "hyperbench verify"
OK, DIRTY, MISMATCH, UNKNOWN, NO_COMMIT = "ok", "dirty", "MISMATCH", "unknown commit", "no commit"
STYLE = {OK: "green", DIRTY: "yellow", MISMATCH: "bold red", UNKNOWN: "dim", NO_COMMIT: "dim"}


@dataclass
class Group:
    """The rows of one (commit, dirty flag, digest)."""
    git_sha: str | None
    git_dirty: bool | None
    code_digest: str
    rows: int
    runs: int
    first: object
    last: object
    verdict: str = ""
    note: str = ""


class History:
    """The repository's commits by digest, computed once and only when a group needs them; each
    commit's digest (one `git ls-tree`) asked for once."""

    def __init__(self, repo: str):
        self.repo = repo
        self._by_digest: dict[str, list[str]] | None = None
        self._of: dict[str, str | None] = {}

    def digest_of(self, sha: str) -> str | None:
        if sha not in self._of:
            self._of[sha] = code_digest.of_commit(sha, self.repo)
        return self._of[sha]

    def commits_with(self, digest: str) -> list[str]:
        if self._by_digest is None:
            self._by_digest = {}
            for sha in code_digest.commits(self.repo):
                found = self.digest_of(sha)
                if found is not None:
                    self._by_digest.setdefault(found, []).append(sha)
        return self._by_digest.get(digest, [])


def _groups(results_dir: str, where: dict) -> tuple[list[Group], int]:
    """The digested rows' groups, and the number of rows without a digest."""
    sql = """SELECT git_sha, git_dirty, code_digest, count(*) AS n_rows, count(DISTINCT run_id) AS n_runs,
                    min(created_at) AS first, max(created_at) AS last
             FROM results GROUP BY ALL ORDER BY min(created_at)"""
    df = store.read(results_dir, where=where, sql=sql)
    groups, undigested = [], 0
    for r in df.to_dict("records"):
        if pd.isna(r["code_digest"]):
            undigested += int(r["n_rows"])
            continue
        dirty = None if pd.isna(r["git_dirty"]) else bool(r["git_dirty"])
        groups.append(Group(None if pd.isna(r["git_sha"]) else r["git_sha"], dirty, r["code_digest"], int(r["n_rows"]), int(r["n_runs"]),
                            r["first"], r["last"]))
    return groups, undigested


def _matches(history: History, digest: str) -> str:
    found = history.commits_with(digest)
    if not found:
        return "no commit in this clone has this code"
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return f"the code of {found[0][:10]}{more}"


def judge(group: Group, repo: str, history: History) -> None:
    """Set the group's verdict and note."""
    if group.git_sha is None:
        group.verdict, group.note = NO_COMMIT, _matches(history, group.code_digest)
        return
    expected = history.digest_of(group.git_sha)
    if expected is None:
        group.verdict, group.note = UNKNOWN, _matches(history, group.code_digest)
    elif expected == group.code_digest:
        group.verdict = OK
    elif group.git_dirty:
        group.verdict, group.note = DIRTY, "uncommitted changes; " + _matches(history, group.code_digest)
    else:
        group.verdict = MISMATCH
        group.note = f"{group.git_sha[:10]} has {expected}; the rows ran " + _matches(history, group.code_digest)


def _parser() -> Parser:
    p = Parser(prog=PROG, description="Check that each row's code is the code of the commit it names.")
    p.add_argument("filters", nargs="*", metavar="KEY=VALUE", help="equality filter on a column")
    p.add_argument("--results-dir", default="results", help="store folder (default: results)")
    p.add_argument("--repo", default=".", help="the git repository to check against (default: .)")
    return p


def _report(groups: list[Group], undigested: int) -> Table:
    t = Table(title="rows' code against the commits they name")
    for name in ("verdict", "git_sha", "dirty", "code_digest", "rows", "runs", "measured", "note"):
        t.add_column(name, justify="right" if name in ("rows", "runs") else "left")
    for g in groups:
        days = sorted({f"{d:%Y-%m-%d}" for d in (g.first, g.last) if not pd.isna(d)})
        when = " … ".join(days) or "—"
        t.add_row(f"[{STYLE[g.verdict]}]{g.verdict}[/]", (g.git_sha or "—")[:10],
                  "—" if g.git_dirty is None else str(g.git_dirty).lower(), g.code_digest, str(g.rows),
                  str(g.runs), when, g.note)
    if undigested:
        t.caption = f"{undigested} rows were written before rows carried a code digest; they cannot be checked"
    return t


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
        if not code_digest.is_repo(args.repo):
            raise ConfigError("--repo", f"{args.repo!r} is not a git repository; give the clone the rows came from")
        store.check_store(args.results_dir)
        groups, undigested = _groups(args.results_dir, filters(args.filters))
    except ConfigError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    console = table.console()
    if not groups and not undigested:
        console.print(f"no rows in {args.results_dir}")
        return 0
    history = History(args.repo)
    for group in groups:
        judge(group, args.repo, history)
    console.print(_report(groups, undigested))
    counts = {v: sum(g.rows for g in groups if g.verdict == v) for v in STYLE}
    console.print(", ".join(f"{n} rows {v}" for v, n in counts.items() if n) or "no rows carry a code digest")
    return 1 if counts[MISMATCH] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
