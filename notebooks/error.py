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
# # Spectral error of the approximation
#
# `spec_err` against the sequence length, the sample size and the block size, per input distribution (panels only where the store has two or more values). Same function as `hyperbench plot error`.

# %%
# %matplotlib inline
import os

from hyperbench import plots

RESULTS = os.environ.get("HYPERBENCH_RESULTS", "../results")

# %% [markdown]
# The rows the error figure can use (the store queried through DuckDB). A figure draws one device:
# the one with the most rows here; set `DEVICE` to another `gpu_name` (or `cpu`) to change it.

# %%
errs = plots.load("error", RESULTS)
DEVICE = plots.device_label(errs).value_counts().idxmax()
errs = errs[plots.device_label(errs) == DEVICE]
errs.pivot_table(index=["inputs", "seq_len", "block_size", "sample_size"], columns="method", values="spec_err")

# %%
plots.error(errs)
