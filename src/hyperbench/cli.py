"""The `hyperbench` command: `run` (a Hydra app), `results`, and the commands that read the store.

    hyperbench run seq_len=131072
    hyperbench run -m seq_len=4096,8192,16384 block_size=128,256 sample_size=128,256
    hyperbench results method=hyper causal=true
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import sys
from typing import NamedTuple

from .errors import ConfigError

USAGE = """usage: hyperbench COMMAND [ARGS]

commands:
  run [-m] [KEY=VALUE ...]   measure the methods on one config (or a sweep with -m); Hydra overrides
  results [KEY=VALUE ...]    print what the results store holds (--sql, --columns, --format, --last)
  report [KEY=VALUE ...]     one table of the store's rows for a paper or README (Markdown, LaTeX, CSV)
  plot NAME [...]            draw a paper figure from the store into results/figures/ (PDF and PNG)
  dashboard [...]            write the regression dashboard, results/dashboard/index.html
  compare --baseline REF     compare the latest results with a baseline commit; exit 1 on a regression
  compact [--dry-run]        merge each run's job files into one Parquet file per run (same rows)
  verify [KEY=VALUE ...]     check that each row's code is the code of the commit it names; exit 1 if not

`hyperbench run --help` shows Hydra's help with every config key and its default.
"""

CONFIG_MODULE = "hyperbench.conf"
# Commands on the store: name -> module with main(argv) -> exit status.
READERS = {"results": ".results_cli", "report": ".report", "plot": ".plots_cli", "dashboard": ".dashboard", "compare": ".compare",
           "compact": ".compact", "verify": ".verify"}
MAX_CHECKED_COMBINATIONS = 4096


def _fail(command: str, err: ConfigError) -> None:
    print(f"hyperbench {command}: error: {err}", file=sys.stderr)
    sys.exit(2)


def _known_keys(cfg, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig
    keys = []
    for key, value in cfg.items():
        keys.append(prefix + key)
        if isinstance(value, DictConfig):
            keys += _known_keys(value, prefix + key + ".")
    return keys


def _allowed_beside(key: str, known: list[str]) -> str:
    """The keys a mistyped `key` could have meant: those under its parent (timing.reps → timing.*)
    where the parent exists, else the top-level ones."""
    parent = key.lstrip("+~").rpartition(".")[0]
    if parent in known:
        return ", ".join(k for k in known if k.rpartition(".")[0] == parent)
    return ", ".join(k for k in known if "." not in k) + " (and nested keys such as timing.warmup)"


def _unknown_choice(err) -> ConfigError:
    """Hydra's 'Could not find inputs/nope' (a config group given an option it lacks) as one line:
    the group and its options."""
    group, _, choice = str(err.missing_cfg_file or "").rpartition("/")
    if not group:
        return ConfigError("overrides", " ".join(str(err).split()))
    return ConfigError(group, f"{choice!r} is not allowed; allowed: {', '.join(err.options or [])}")


class Checked(NamedTuple):
    jobs: int                  # how many jobs the command line runs (the first MAX_CHECKED_COMBINATIONS checked)
    results_dirs: list[str]    # the stores they write into


def check_overrides(overrides: list[str], multirun: bool) -> Checked:
    """Compose and check every job a command line would run, before any job starts.

    Raises ConfigError naming the key and what is allowed.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, MissingConfigException
    from . import inputs, launch_check, store
    from .config import job_config

    parser = OverridesParser.create()
    ours = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    try:
        parsed = parser.parse_overrides(ours)
    except HydraException as err:
        raise ConfigError("overrides", " ".join(str(err).split()))
    choices = []
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            if not multirun:
                raise ConfigError(o.key_or_group, f"{o.input_line!r} is a sweep; allowed: one value, or add -m to run one job per value")
            choices.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([o.input_line])
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        base = compose(config_name="config")
        theirs = [o for o in overrides if o not in ours]
        if theirs:   # Hydra's own settings (hydra.* keys, hydra/launcher=...)
            try:
                launch_check.check(compose, theirs, [c[0] for c in choices], multirun)
            except MissingConfigException as err:
                raise _unknown_choice(err)
        known = _known_keys(base)
        try:  # a preset (+sweep=...) sweeps through hydra.sweeper.params: check each of its points too
            params = compose(config_name="config", overrides=[c[0] for c in choices],
                             return_hydra_config=True).hydra.sweeper.get("params") or {}
        except HydraException:
            params = {}  # the loop below names what is wrong
        given = {o.get_key_element() for o in parsed}
        for o in parser.parse_overrides([f"{k}={v}" for k, v in params.items() if k not in given]):
            choices.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
                           if o.is_sweep_override() else [o.input_line])
        inputs_checked, writable = set(), {}
        composed = _composer(compose, parser, base)
        for combo in itertools.islice(itertools.product(*choices), MAX_CHECKED_COMBINATIONS):
            try:
                cfg = composed(combo)
            except MissingConfigException as err:
                raise _unknown_choice(err)
            except HydraException as err:
                bad = next((c.split("=")[0] for c in combo if c.split("=")[0].lstrip("+~") not in known
                            and not c.startswith("+")), None)
                if bad:
                    raise ConfigError(bad, f"unknown key; allowed: {_allowed_beside(bad, known)}")
                raise ConfigError("overrides", " ".join(str(err).split()))
            job = job_config(cfg)
            if job.results_dir not in writable:
                store.check_writable(job.results_dir)
                writable[job.results_dir] = None
            shape = dict(batch=job.batch, heads=job.num_heads, seq_len=job.seq_len, head_dim=job.head_dim)
            key = (repr(sorted(job.inputs.items())), tuple(shape.values()))
            if key not in inputs_checked:   # a file is read once per shape, not once per job
                inputs.check(job.inputs, **shape)
                inputs_checked.add(key)
    GlobalHydra.instance().clear()
    return Checked(math.prod(len(c) for c in choices), list(writable))


def _composer(compose, parser, base):
    """compose(config_name="config", overrides=combo) for the many combinations of a sweep, at the
    cost of one Hydra composition per set of config-group choices (inputs=..., +sweep=...) instead
    of one per job (~0.1 s each; 192 jobs of +sweep=paper_error took 25 s on 2 cores). The other
    overrides are applied to a copy of that composition by Hydra's own step for them, as Hydra's
    compose does after composing; tests/hyperbench/test_cli.py compares the two ways. base: the
    composition with no overrides, which the caller has already made."""
    import copy
    from hydra.core.global_hydra import GlobalHydra
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    repo = GlobalHydra.instance().config_loader().repository
    by_groups = {(): base}

    def is_group(o) -> bool:   # Hydra's own split (hydra/_internal/defaults_list.py, Overrides)
        return repo.group_exists(o.key_or_group) and not isinstance(o.value(), dict)

    def composed(combo):
        parsed = parser.parse_overrides(list(combo))
        groups = tuple(o.input_line for o in parsed if is_group(o))
        if groups not in by_groups:
            by_groups[groups] = compose(config_name="config", overrides=list(groups))
        cfg = copy.deepcopy(by_groups[groups])
        ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if not is_group(o)], cfg)
        return cfg
    return composed


def _run_task(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from . import provenance

    hc = HydraConfig.get()
    run_id = os.environ.setdefault("HYPERBENCH_RUN_ID", provenance.new_run_id())
    job_num = hc.job.get("num", 0) if hc.mode.name == "MULTIRUN" else 0
    job_id = f"{run_id}-{job_num:04d}"
    if not _in_this_process(hc):   # the gpus and SLURM launchers report a job's exception themselves
        return _measure(cfg, hc, run_id, job_id)
    try:
        _measure(cfg, hc, run_id, job_id)
    except Exception as err:   # a bug, or the store unwritable mid-sweep: the other jobs go on (Ctrl-C is no Exception)
        import traceback
        from hydra_plugins.hyperbench_gpus import unfinished
        traceback.print_exc()
        what = f"job {job_id} ({' '.join(hc.overrides.task) or 'the defaults'}) raised {type(err).__name__}: {err}"
        print(f"FAILED {what}", file=sys.stderr, flush=True)
        unfinished.append(what)


def _in_this_process(hc) -> bool:
    """Whether the job runs in `hyperbench run`'s own process: a single run, or a sweep under Hydra's
    basic launcher, which would raise the first failed job's exception as a traceback after the last
    job and drop the sweep's summary."""
    return hc.mode.name != "MULTIRUN" or str(hc.launcher.get("_target_", "")).endswith(".BasicLauncher")


def _measure(cfg, hc, run_id: str, job_id: str) -> None:
    from . import job as job_mod
    from . import provenance, store, table
    from .config import job_config, MEASURED_KEYS

    try:
        job = job_config(cfg)
    except ConfigError as err:
        _fail("run", err)
    console = table.console()
    overrides = " ".join(hc.overrides.task)
    measured = {k: job.as_dict()[k] for k in MEASURED_KEYS}
    if job.method_target:  # two custom callables on one shape are two configurations
        measured["method_target"] = job.method_target
    if job.timing.mode != "per_call":  # other timings of one shape are other rows (per-call rows hash as before)
        measured["timing_mode"] = job.timing.mode
    prov = provenance.collect(job.device)
    if prov["switches"]:  # a kernel switched off its default computes another configuration
        measured["switches"] = prov["switches"]
    chash = store.config_hash(measured)
    point = f"n={job.seq_len} {'causal' if job.causal else 'non-causal'} {job.mode}"
    if job.timing.back_to_back:
        point += " (timed back to back)"
    if job.timing.cuda_graph:
        point += " (CUDA graph replays)"
    if not job.force:
        done = store.measured_methods(job.results_dir, chash, prov.get("git_sha"), prov.get("git_dirty"))
        missing = tuple(m for m in job.methods if m not in done)
        if not missing:
            console.print(f"{point}: every method is already in {job.results_dir} for this commit "
                          "(force=true measures again)")
            return
        job = dataclasses.replace(job, methods=missing)
    base = job_mod.base_row(job, prov, run_id, job_id, overrides, chash)
    title = (f"job {job_id}: {point} d={job.head_dim} H={job.num_heads} B={job.batch} {job.dtype} "
             f"on {base.get('gpu_name') or job.device}"
             f" | block={job.block_size} sample={job.sample_size} sample_tile={job.sample_tile}")
    console.print(f"[bold]{title}[/]")
    try:
        if job.isolate != "none":
            rows = job_mod.run_isolated(job, base, keep=job.isolate == "worker")
        else:
            with console.status("measuring") as status:
                rows = job_mod.run_job(job, base, say=lambda s: status.update(f"measuring {s}"))
    except job_mod.Interrupted as err:   # keep what finished, so that a rerun measures only the rest
        if err.rows:
            from .summary import counted
            try:
                path = store.write_job(err.rows, job.results_dir, job_id=job_id)
                console.print(f"interrupted: kept {counted(len(err.rows), 'finished method')} in {path}")
            except Exception as write_err:   # the Ctrl-C still ends the sweep, not this job alone
                console.print(f"interrupted: could not keep the finished methods' rows: {write_err}")
        raise
    table.print_job(rows, title=point, out=console)   # before the write: a store that fails still shows them
    path = store.write_job(rows, job.results_dir, job_id=job_id)
    console.print(f"results: {path}")


def run_main(args: list[str]) -> int:
    import hydra

    from . import provenance

    multirun = any(a in ("-m", "--multirun") for a in args)
    info = any(a.startswith("-") and a not in ("-m", "--multirun") for a in args)
    checked = None
    if not info:
        try:
            checked = check_overrides([a for a in args if not a.startswith("-")], multirun)
        except ConfigError as err:
            _fail("run", err)
        except KeyboardInterrupt:   # while checking (an input file is read whole): nothing was written
            print("hyperbench: interrupted while checking the configuration; nothing was run", file=sys.stderr)
            return 130
    # One run id for every job of this command, also in the processes a launcher starts for them.
    run_id = os.environ.setdefault("HYPERBENCH_RUN_ID", provenance.new_run_id())
    app = hydra.main(version_base="1.3", config_path="pkg://" + CONFIG_MODULE, config_name="config")(_run_task)
    sys.argv = ["hyperbench run", *args]
    interrupted = False
    from hydra_plugins.hyperbench_gpus import unfinished
    unfinished.clear()   # this command's launcher reports its own
    try:
        app()
    except KeyboardInterrupt:   # Hydra passes it on; a traceback would say nothing the user needs
        interrupted = True
    if checked and (checked.jobs > 1 or interrupted or unfinished):
        from .summary import sweep_summary
        print(sweep_summary(run_id, checked.jobs, checked.results_dirs, interrupted=interrupted))
    if interrupted:
        from .launch_check import launcher_choice
        cluster = ("; jobs already submitted to SLURM keep running (squeue lists them, scancel stops them)"
                   if launcher_choice(args) == "slurm" else "")
        print("hyperbench: interrupted; the rows of finished jobs and methods are in the store, and the "
              f"same command measures only what is missing (force=true measures everything again){cluster}",
              file=sys.stderr)
        return 130
    if unfinished:
        from .summary import counted
        print(f"hyperbench: {counted(len(unfinished), 'job')} did not finish (the FAILED lines above name each, "
              "with its output or traceback); the same command measures what is missing", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        return run_main(rest)
    if command in READERS:
        import importlib
        return importlib.import_module(READERS[command], __package__).main(rest)
    print(f"hyperbench: error: unknown command {command!r}; allowed: run, {', '.join(READERS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
