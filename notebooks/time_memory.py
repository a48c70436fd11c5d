# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Time and peak memory against sequence length
#
# Median time (band: 20th–80th percentile) and peak memory of every method; out-of-memory rows are marked at the top edge, skipped and unavailable ones listed in the caption. Same functions as `hyperbench plot time` and `hyperbench plot memory`.

# %%
# %matplotlib inline
import os

from hyperbench import plots

RESULTS = os.environ.get("HYPERBENCH_RESULTS", "../results")

# %% [markdown]
# The rows the time figure can use (the store queried through DuckDB). A figure draws one device:
# the one with the most rows here; set `DEVICE` to another `gpu_name` (or `cpu`) to change it.

# %%
times = plots.load("time", RESULTS)
DEVICE = plots.device_label(times).value_counts().idxmax()
times = times[plots.device_label(times) == DEVICE]
times[["method", "causal", "mode", "seq_len", "status", "time_ms", "time_ms_p20", "time_ms_p80"]]

# %%
plots.time(times)

# %% [markdown]
# The rows the memory figure can use (the store queried through DuckDB). A figure draws one device:
# the one with the most rows here; set `DEVICE` to another `gpu_name` (or `cpu`) to change it.

# %%
mem = plots.load("memory", RESULTS)
DEVICE = plots.device_label(mem).value_counts().idxmax()
mem = mem[plots.device_label(mem) == DEVICE]
mem[["method", "causal", "mode", "seq_len", "status", "peak_mem_bytes"]]

# %%
plots.memory(mem)
