"""Hydra's own settings on a `hyperbench run` command line (hydra.* keys, hydra/launcher=...), checked
before any job starts as the config's keys are, so that each mistake is one line naming the setting:
an unknown key or a value of the wrong type, a launcher this machine cannot run (its package or SLURM's
commands missing), GPUs it does not have, or a launcher given to a command that runs no sweep."""

from __future__ import annotations

import importlib.util
import re
import shutil

from .errors import ConfigError

# The launchers of conf/hydra/launcher built on hydra-submitit-launcher, with the commands each runs.
SUBMITIT_LAUNCHERS = {"slurm": ("sbatch", "srun"), "slurm_local": ()}


def _key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def launcher_choice(overrides: list[str]) -> str | None:
    """The launcher a command line chooses (hydra/launcher=NAME), or None for Hydra's default."""
    return next((o.partition("=")[2] for o in overrides if _key(o) == "hydra/launcher"), None)


def _has_submitit() -> bool:
    return importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None


def runnable_launchers() -> str:
    """The launchers this machine can run, as an error's "allowed here"."""
    names = ["gpus"]
    if _has_submitit():
        names += [n for n, commands in SUBMITIT_LAUNCHERS.items() if all(map(shutil.which, commands))]
    return ", ".join(sorted(names)) + ", or none (the jobs one after another in this process)"


def check_can_launch(choice: str) -> None:
    """A submitit launcher needs its package, and SLURM's needs sbatch and srun where it submits from."""
    if choice not in SUBMITIT_LAUNCHERS:
        return
    if not _has_submitit():
        raise ConfigError("hydra/launcher", f"{choice!r} needs hydra-submitit-launcher, which is not installed "
                          f"(pip install -e '.[slurm]'); allowed here: {runnable_launchers()}")
    missing = [c for c in SUBMITIT_LAUNCHERS[choice] if shutil.which(c) is None]
    if missing:
        raise ConfigError("hydra/launcher", f"{choice!r} submits through SLURM's {' and '.join(missing)}, not on "
                          f"PATH here (a cluster's login node has them); allowed here: {runnable_launchers()}")


def _setting_error(override: str, err: Exception, compose, groups: list[str]) -> ConfigError:
    """Hydra's refusal of one hydra.* override as one line: an unknown key with the keys beside it, or
    a value its setting cannot take."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError
    key = _key(override)
    cause = err.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        parent = key.rpartition(".")[0]
        node = OmegaConf.select(compose(config_name="config", overrides=groups, return_hydra_config=True), parent)
        beside = [f"{parent}.{k}" for k in (node.keys() if node is not None and hasattr(node, "keys") else [])
                  if not str(k).startswith("_")]
        if not beside and parent == "hydra.launcher":   # Hydra's default launcher has no settings
            return ConfigError(key, "unknown key: the default launcher (jobs one after another in this process) "
                               "has no settings; allowed: choose a launcher first, hydra/launcher=gpus, slurm or "
                               "slurm_local, then its keys")
        return ConfigError(key, "unknown key; allowed: " + (", ".join(beside) or f"the keys of {parent}"))
    if isinstance(cause, ValidationError):
        wanted = re.search(r"converted to (\w+)", cause.msg or "")
        value = override.partition("=")[2]
        return ConfigError(key, f"{value!r} is not allowed; allowed: "
                           + (f"a value of type {wanted.group(1)}" if wanted else "a value of the setting's type"))
    return ConfigError(key, " ".join(str(err).split()))


def check(compose, hydra_overrides: list[str], job_overrides: list[str], multirun: bool) -> None:
    """Check the hydra.* overrides and the launcher. compose: hydra's compose inside the initialised
    config module; job_overrides: the first point of the command's own overrides (a +sweep= preset may
    make it a sweep). A launcher group choice that does not exist raises MissingConfigException."""
    from hydra.errors import HydraException, MissingConfigException
    from hydra.types import RunMode

    groups = [o for o in hydra_overrides if "/" in _key(o)]
    choice = launcher_choice(groups)
    if choice is not None:
        check_can_launch(choice)
    for override in hydra_overrides:
        if override in groups:
            continue
        try:
            compose(config_name="config", overrides=groups + [override], return_hydra_config=True)
        except MissingConfigException:
            raise
        except HydraException as err:
            raise _setting_error(override, err, compose, groups) from None
    if choice is None:
        return
    try:
        cfg = compose(config_name="config", overrides=job_overrides + hydra_overrides, return_hydra_config=True)
    except HydraException:   # a mistake in the job's own overrides, which the caller names
        cfg = compose(config_name="config", overrides=hydra_overrides, return_hydra_config=True)
    if not (multirun or cfg.hydra.mode == RunMode.MULTIRUN):
        raise ConfigError("hydra/launcher", f"{choice!r} launches the jobs of a sweep, and this command runs one "
                          "job in this process; allowed: add -m (a sweep of one job is fine)")
    if choice == "gpus":
        from hydra_plugins.hyperbench_gpus.launcher import resolve_slots
        resolve_slots(cfg.hydra.launcher.get("devices"), cfg.hydra.launcher.get("cpu_slots"))
