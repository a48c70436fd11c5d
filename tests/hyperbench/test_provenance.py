import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import hyperbench
from hyperbench import provenance, store

FIELDS = {"host", "device", "gpu_name", "driver", "cuda", "torch", "triton", "flash_attn",
          "git_sha", "git_dirty", "code_digest", "switches", "created_at"}
PKG = Path(hyperbench.__file__).resolve().parent


def _git(*args):
    if shutil.which("git") is None:
        return None
    proc = subprocess.run(["git", *args], cwd=PKG, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def test_collect_has_every_field_and_they_fit_the_store(tmp_path):
    info = provenance.collect("cpu")
    assert set(info) == FIELDS
    assert set(info) <= set(store.COLUMNS)
    assert info["device"] == "cpu"
    assert info["gpu_name"] is None
    assert info["torch"] == torch.__version__
    assert info["cuda"] == torch.version.cuda
    assert isinstance(info["host"], str) and info["host"]
    assert info["created_at"].tzinfo is not None
    assert abs(info["created_at"] - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=1)
    for key in ("triton", "flash_attn", "driver"):
        assert info[key] is None or isinstance(info[key], str)
    # a row with the provenance is storable as is
    store.write_job([{"method": "exact", **info}], tmp_path, job_id="p")
    back = store.read(tmp_path).iloc[0]
    assert back["torch"] == torch.__version__ and back["host"] == info["host"]


def test_git_sha_matches_the_checkout():
    head = _git("rev-parse", "HEAD")
    tracked = _git("ls-files", "--error-unmatch", "__init__.py")
    if head is None or tracked is None:
        pytest.skip("hyperbench is not imported from a git checkout")
    info = provenance.collect("cpu")
    assert info["git_sha"] == head
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    assert info["git_dirty"] is bool(dirty)


def test_not_a_checkout_gives_none(tmp_path):
    pkg = tmp_path / "site-packages" / "hyperbench"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    assert provenance.git_info(str(pkg)) == (None, None)


def test_installed_copy_inside_another_repo_is_not_that_repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("no git")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    pkg = tmp_path / "venv" / "hyperbench"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    assert provenance.git_info(str(pkg)) == (None, None)


def test_missing_tools_do_not_raise(monkeypatch):
    provenance.git_info.cache_clear()
    provenance.nvidia_driver.cache_clear()
    monkeypatch.setattr(provenance.shutil, "which", lambda name: None)
    try:
        info = provenance.collect("cpu")
        assert info["git_sha"] is None and info["git_dirty"] is None and info["driver"] is None
    finally:
        provenance.git_info.cache_clear()
        provenance.nvidia_driver.cache_clear()


def test_failing_tools_do_not_raise(monkeypatch):
    def broken(*a, **k):
        raise OSError("exec format error")

    provenance.git_info.cache_clear()
    provenance.nvidia_driver.cache_clear()
    monkeypatch.setattr(provenance.subprocess, "run", broken)
    try:
        info = provenance.collect("cpu")
        assert info["git_sha"] is None and info["driver"] is None
    finally:
        provenance.git_info.cache_clear()
        provenance.nvidia_driver.cache_clear()


def test_git_lookup_is_cached(monkeypatch):
    provenance.git_info.cache_clear()
    provenance.collect("cpu")
    calls = []
    real = provenance.subprocess.run
    monkeypatch.setattr(provenance.subprocess, "run",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    provenance.collect("cpu")
    assert not [c for c in calls if c and c[0][0] == "git"]


def test_cuda_device_without_gpu_does_not_raise():
    if torch.cuda.is_available():
        info = provenance.collect("cuda")
        assert info["gpu_name"] == torch.cuda.get_device_name()
    else:
        info = provenance.collect("cuda")
        assert info["device"] == "cuda" and info["gpu_name"] is None


def test_run_ids_sort_by_time_and_are_unique():
    ids = [provenance.new_run_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert ids[0][:8] == dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")


def test_switches_name_the_kernel_settings_off_their_defaults(monkeypatch):
    """A row records each kernel switch set off its default (as JSON), and none at the defaults;
    every switch's default is the value its module takes with the variable unset."""
    import importlib
    import json
    import os
    for variable, (module, attribute) in provenance.SWITCHES.items():
        mod = importlib.import_module(module)
        if variable not in os.environ:
            assert getattr(mod, attribute) == getattr(mod, f"{attribute}_DEFAULT"), variable
    assert provenance.switches() == {} and provenance.collect("cpu")["switches"] is None
    from hyperbench_kernels import causal_triton, sdpa_leaves
    monkeypatch.setattr(causal_triton, "CAUSAL_16BIT_ADDS", 0.0)
    monkeypatch.setattr(sdpa_leaves, "LEAF_FORWARD", "flash")
    want = {"HYPERBENCH_CAUSAL_16BIT_ADDS": 0.0, "HYPERBENCH_LEAF_FORWARD": "flash"}
    assert provenance.switches() == want
    assert json.loads(provenance.collect("cpu")["switches"]) == want


def test_rows_carry_the_digest_of_the_code_they_ran_whatever_commit_they_are_told(monkeypatch):
    """On a GPU machine the commit is the sender's word (HYPERBENCH_GIT_SHA); the digest is not."""
    from hyperbench import code_digest
    monkeypatch.setenv("HYPERBENCH_GIT_SHA", "0" * 40)
    provenance.git_info.cache_clear()
    try:
        info = provenance.collect("cpu")
    finally:
        provenance.git_info.cache_clear()
    assert info["git_sha"] == "0" * 40
    assert info["code_digest"] == code_digest.installed()
    assert len(info["code_digest"]) == code_digest.DIGEST_CHARS
    int(info["code_digest"], 16)
