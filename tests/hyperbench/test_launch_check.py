"""launch_check: which launchers this machine can run, said before any job starts (the command-line
cases are in test_cli.py)."""

import pytest

from hyperbench import launch_check
from hyperbench.errors import ConfigError


def test_slurm_needs_sbatch_and_srun_where_it_submits_from(monkeypatch):
    monkeypatch.setattr(launch_check, "_has_submitit", lambda: True)
    monkeypatch.setattr(launch_check.shutil, "which", lambda c: None if c == "srun" else f"/usr/bin/{c}")
    with pytest.raises(ConfigError, match="SLURM's srun, not on PATH.*allowed here: gpus, slurm_local, or none"):
        launch_check.check_can_launch("slurm")
    monkeypatch.setattr(launch_check.shutil, "which", lambda c: f"/usr/bin/{c}")
    launch_check.check_can_launch("slurm")
    assert launch_check.runnable_launchers().startswith("gpus, slurm, slurm_local,")


def test_a_submitit_launcher_without_its_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(launch_check, "_has_submitit", lambda: False)
    for choice in ("slurm", "slurm_local"):
        with pytest.raises(ConfigError, match=r"needs hydra-submitit-launcher.*\[slurm\].*allowed here: gpus, or none"):
            launch_check.check_can_launch(choice)
    launch_check.check_can_launch("gpus")   # this project's own: always there
