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
# # Speedup over exact attention
#
# Time of each exact method divided by the time of each method, against the sequence length, per causal mask and mode. Same function as `hyperbench plot speedup`.

# %%
# %matplotlib inline
import os

from hyperbench import plots

RESULTS = os.environ.get("HYPERBENCH_RESULTS", "../results")

# %% [markdown]
# The rows the speedup figure can use (the store queried through DuckDB). A figure draws one device:
# the one with the most rows here; set `DEVICE` to another `gpu_name` (or `cpu`) to change it.

# %%
rows = plots.load("speedup", RESULTS)
DEVICE = plots.device_label(rows).value_counts().idxmax()
rows = rows[plots.device_label(rows) == DEVICE]
rows.pivot_table(index=["causal", "mode", "seq_len"], columns="method", values="time_ms")

# %%
plots.speedup(rows)
