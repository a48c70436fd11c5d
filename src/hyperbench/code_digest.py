"""A fingerprint of the code that computes a row, comparable with any commit of the repository.

A row says which commit measured it (`git_sha`), but on a GPU machine that runs a copy of the tree
the commit is only what the sender wrote in HYPERBENCH_GIT_SHA: the copy's own `.git` may be stale
or absent. The digest is computed from the files themselves, so `hyperbench verify` can check the
claim later against the repository's history, and name the commit whose code the row really ran.

The digest covers the files that decide what a row measures: the Python files of the `hyperbench`
and `hyperbench_kernels` packages and the config files. Each file enters as its repository path and
its git blob id (sha1 of "blob <size>\\0" + bytes), so a commit's digest comes from `git ls-tree`
alone, without reading the blobs. An untracked source file in those folders changes the digest on
purpose: it is code the commit does not have.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path

from hyperbench.provenance import command_output

# (importable package, its folder in the repository (pyproject's package-dir), file suffixes)
SOURCES = (
    ("hyperbench", "src/hyperbench", (".py",)),
    ("hyperbench_kernels", "kernels", (".py",)),
    ("hyperbench.conf", "conf", (".py", ".yaml")),
)
DIGEST_CHARS = 16   # 64 bits: tells apart every tree this repository will ever hold


def blob_id(data: bytes) -> str:
    """git's object id for a file with these bytes (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def digest(entries: Iterable[tuple[str, str]]) -> str:
    """The digest of (repository path, blob id) pairs, in any order."""
    h = hashlib.sha256()
    for path, blob in sorted(entries):
        h.update(f"{path}\0{blob}\n".encode())
    return h.hexdigest()[:DIGEST_CHARS]


def _wanted(path: str) -> bool:
    return any(path.startswith(folder + "/") and path.endswith(suffixes)
               for _, folder, suffixes in SOURCES)


def folder_entries(roots: Mapping[str, Path]) -> list[tuple[str, str]]:
    """(repository path, blob id) of the source files under each root, where ``roots`` maps a
    repository folder of SOURCES to the directory that holds its files here. A root that lies
    inside another (a wheel puts the config package inside hyperbench's) counts only as itself."""
    resolved = {folder: Path(root).resolve() for folder, root in roots.items()}
    entries = []
    for folder, root in resolved.items():
        nested = [other for other in resolved.values() if other != root and other.is_relative_to(root)]
        for path in root.rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if any(path.is_relative_to(other) for other in nested):
                continue
            name = f"{folder}/{path.relative_to(root).as_posix()}"
            if _wanted(name):
                entries.append((name, blob_id(path.read_bytes())))
    return entries


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


@functools.lru_cache(maxsize=None)
def installed() -> str | None:
    """The digest of the code this process imports; None where a package cannot be found.
    Cached: the files are read once per process."""
    roots = {}
    for package, folder, _ in SOURCES:
        root = _package_dir(package)
        if root is None:
            return None
        roots[folder] = root
    try:
        return digest(folder_entries(roots))
    except OSError:
        return None


def _git(repo: str | Path, *args: str) -> str | None:
    return command_output(["git", *args], cwd=Path(repo), timeout=60)


def of_commit(sha: str, repo: str | Path = ".") -> str | None:
    """The digest of a commit's tree in the repository at ``repo``; None where git or the commit
    is missing (a shallow clone, a commit from another clone)."""
    out = _git(repo, "ls-tree", "-r", "--full-tree", sha, "--", *(folder for _, folder, _ in SOURCES))
    if out is None:
        return None
    entries = []
    for line in out.splitlines():
        meta, _, path = line.partition("\t")
        _mode, kind, blob = meta.split()
        if kind == "blob" and _wanted(path):
            entries.append((path, blob))
    return digest(entries)


def is_repo(repo: str | Path) -> bool:
    return _git(repo, "rev-parse", "--git-dir") is not None


def commits(repo: str | Path = ".") -> list[str]:
    """Every commit reachable from a ref, newest first (empty without git)."""
    out = _git(repo, "rev-list", "--all")
    return out.split() if out else []
