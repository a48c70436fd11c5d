"""Hydra launcher `hydra/launcher=gpus`: a sweep's jobs in parallel, one job per GPU of the host."""
