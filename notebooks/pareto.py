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
# # Time against error: the Pareto front
#
# Every block_size × sample_size configuration of the approximate methods, the configurations no other beats in both time and error, and the exact methods' times as references. Same function as `hyperbench plot pareto`.

# %%
# %matplotlib inline
import os

from hyperbench import plots

RESULTS = os.environ.get("HYPERBENCH_RESULTS", "../results")

# %% [markdown]
# The rows the pareto figure can use (the store queried through DuckDB). A figure draws one device:
# the one with the most rows here; set `DEVICE` to another `gpu_name` (or `cpu`) to change it.

# %%
points = plots.load("pareto", RESULTS)
DEVICE = plots.device_label(points).value_counts().idxmax()
points = points[plots.device_label(points) == DEVICE]
points[["method", "causal", "seq_len", "block_size", "sample_size", "time_ms", "spec_err"]]

# %%
plots.pareto(points)
