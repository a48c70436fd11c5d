"""hyperbench's Hydra launchers: `hydra/launcher=gpus` (a sweep's jobs in parallel, one job per GPU of
the host) and `hydra/launcher=slurm` / `slurm_local` (hydra-submitit-launcher's, ending as hyperbench
ends a sweep)."""

# The jobs of this process's sweep that did not finish, as this package's launchers reported them. They
# hand Hydra a plain return for such a job, since Hydra's sweeper would raise the first one as a
# traceback; `hyperbench run` ends the sweep with its summary instead, and exit status 1.
unfinished: list[str] = []
