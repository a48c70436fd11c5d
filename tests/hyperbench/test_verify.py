import datetime as dt
import shutil

import pytest

from hyperbench import code_digest, store, verify
from tests.hyperbench.test_code_digest import git, make_repo

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture
def two_commits(tmp_path):
    """A repository with commits A and B (B changes a kernel), and their digests."""
    repo = make_repo(tmp_path / "repo")
    a = git(repo, "rev-parse", "HEAD")
    (repo / "kernels/attention.py").write_text("def f(): return 1\n")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "second")
    b = git(repo, "rev-parse", "HEAD")
    return repo, a, b, code_digest.of_commit(a, repo), code_digest.of_commit(b, repo)


def rows(results, *specs):
    when = dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)
    for i, (method, sha, dirty, digest) in enumerate(specs):
        store.write_job([{"run_id": f"r{i}", "method": method, "git_sha": sha, "git_dirty": dirty,
                          "code_digest": digest, "created_at": when}], results, job_id=f"r{i}-0001")


def test_each_verdict_and_the_commit_the_rows_really_ran(two_commits, tmp_path, capsys, monkeypatch):
    repo, a, b, da, db = two_commits
    assert da != db
    results = tmp_path / "results"
    rows(results,
         ("right", a, False, da),                 # ok
         ("wrong_sha", a, False, db),             # a wrong HYPERBENCH_GIT_SHA: the rows ran B
         ("dirty", b, True, "0123456789abcdef"),  # uncommitted changes: expected to differ
         ("elsewhere", "f" * 40, False, db),      # a commit this clone does not have
         ("nameless", None, None, da),            # no commit named
         ("old", a, False, None))                 # before rows carried a digest
    status = verify.main(["--results-dir", str(results), "--repo", str(repo)])
    out = capsys.readouterr().out
    assert status == 1
    groups, undigested = verify._groups(str(results), {})
    assert undigested == 1 and len(groups) == 5
    history = verify.History(str(repo))
    asked = []
    real = verify.code_digest.of_commit
    monkeypatch.setattr(verify.code_digest, "of_commit", lambda sha, r: asked.append(sha) or real(sha, r))
    for g in groups:
        verify.judge(g, str(repo), history)
    assert len(asked) == len(set(asked))                  # each commit's tree listed once
    monkeypatch.undo()
    by_sha = {(g.git_sha, g.code_digest): g for g in groups}
    assert by_sha[(a, da)].verdict == verify.OK
    wrong = by_sha[(a, db)]
    assert wrong.verdict == verify.MISMATCH and f"the code of {b[:10]}" in wrong.note and da in wrong.note
    dirty = by_sha[(b, "0123456789abcdef")]
    assert dirty.verdict == verify.DIRTY and "no commit in this clone" in dirty.note
    assert by_sha[("f" * 40, db)].verdict == verify.UNKNOWN and b[:10] in by_sha[("f" * 40, db)].note
    assert by_sha[(None, da)].verdict == verify.NO_COMMIT and a[:10] in by_sha[(None, da)].note
    assert "MISMATCH" in out and "1 rows were written before" in out
    # the filters narrow the check: without the wrong row, nothing fails
    assert verify.main(["--results-dir", str(results), "--repo", str(repo), "method=right"]) == 0
    assert verify.main(["--results-dir", str(results), "--repo", str(repo), "method=wrong_sha"]) == 1


def test_bad_arguments_exit_2_with_one_line(two_commits, tmp_path, capsys):
    repo, *_ = two_commits
    assert verify.main(["--repo", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hyperbench verify: error: --repo:") and len(err.splitlines()) == 1
    assert verify.main(["--repo", str(repo), "--results-dir", str(tmp_path), "nonsense"]) == 2
    assert verify.main(["--repo", str(repo), "--results-dir", str(tmp_path)]) == 0
    assert "no rows in" in capsys.readouterr().out
