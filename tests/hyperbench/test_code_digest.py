import shutil
import subprocess
from pathlib import Path

import pytest

import hyperbench
from hyperbench import code_digest

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def make_repo(root: Path) -> Path:
    """A repository with the layout of this one: src/hyperbench, kernels, conf."""
    files = {"src/hyperbench/__init__.py": "", "src/hyperbench/timing.py": "REPS = 3\n",
             "src/hyperbench/methods/__init__.py": "X = 1\n", "kernels/attention.py": "def f(): pass\n",
             "conf/__init__.py": "", "conf/config.yaml": "seq_len: 4096\n", "conf/sweep/smoke.yaml": "a: 1\n",
             "README.md": "not code\n", "scripts/bench.sh": "echo\n"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return root


def roots(repo: Path) -> dict:
    return {"src/hyperbench": repo / "src/hyperbench", "kernels": repo / "kernels", "conf": repo / "conf"}


def test_blob_id_is_gits(tmp_path):
    path = tmp_path / "f.py"
    path.write_bytes(b"print('\\xe9')\n\x00tail")
    assert code_digest.blob_id(path.read_bytes()) == git(tmp_path, "hash-object", str(path))


def test_a_trees_digest_is_its_commits_until_the_code_changes(tmp_path):
    repo = make_repo(tmp_path)
    head = git(repo, "rev-parse", "HEAD")
    tree = lambda: code_digest.digest(code_digest.folder_entries(roots(repo)))
    assert tree() == code_digest.of_commit(head, repo)
    # files that are not code, and compiled caches, do not count
    (repo / "README.md").write_text("changed\n")
    (repo / "kernels/notes.txt").write_text("x\n")
    (repo / "kernels/__pycache__").mkdir()
    (repo / "kernels/__pycache__/attention.cpython-311.pyc").write_bytes(b"\x00")
    assert tree() == code_digest.of_commit(head, repo)
    # an edited config file, an edited or untracked source file: another digest
    for change in ("conf/sweep/smoke.yaml", "src/hyperbench/methods/__init__.py", "kernels/extra.py"):
        before = (repo / change).read_text() if (repo / change).exists() else None
        (repo / change).write_text("changed\n")
        assert tree() != code_digest.of_commit(head, repo), change
        (repo / change).unlink() if before is None else (repo / change).write_text(before)
    assert tree() == code_digest.of_commit(head, repo)


def test_a_nested_config_package_counts_once(tmp_path):
    """A wheel installs the config package inside hyperbench's folder."""
    repo = make_repo(tmp_path / "repo")
    wheel = tmp_path / "site"
    shutil.copytree(repo / "src/hyperbench", wheel / "hyperbench")
    shutil.copytree(repo / "conf", wheel / "hyperbench/conf")
    shutil.copytree(repo / "kernels", wheel / "hyperbench_kernels")
    entries = code_digest.folder_entries({"src/hyperbench": wheel / "hyperbench", "kernels": wheel / "hyperbench_kernels",
                                          "conf": wheel / "hyperbench/conf"})
    assert code_digest.digest(entries) == code_digest.of_commit("HEAD", repo)


def test_unknown_commits_and_folders_that_are_not_repositories(tmp_path):
    repo = make_repo(tmp_path / "repo")
    assert code_digest.of_commit("0" * 40, repo) is None
    assert code_digest.is_repo(repo) and not code_digest.is_repo(tmp_path)
    assert code_digest.commits(tmp_path) == []
    assert code_digest.commits(repo) == [git(repo, "rev-parse", "HEAD")]


def test_this_checkout_is_its_head_where_it_is_clean():
    pkg = Path(hyperbench.__file__).resolve().parent
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=pkg, capture_output=True, text=True)
    if top.returncode != 0 or not (Path(top.stdout.strip()) / "kernels").is_dir():
        pytest.skip("hyperbench is not imported from its git checkout")
    repo = Path(top.stdout.strip())
    status = git(repo, "status", "--porcelain", "--untracked-files=all", "--", "src/hyperbench", "kernels", "conf")
    if any(line.endswith((".py", ".yaml")) for line in status.splitlines()):
        pytest.skip("the checkout has uncommitted source files")
    code_digest.installed.cache_clear()
    assert code_digest.installed() == code_digest.of_commit("HEAD", repo)
