#!/usr/bin/env bash
# Source this on the GPU machine (from the repo root) before running hyperbench there:
#   source scripts/gpu_setup.sh
# Installs the carried wheels into /tmp/site and the suite itself (editable, no index, no build isolation);
# does nothing where they are importable already (sourced twice, or by a script another script runs).
export PYTHONUNBUFFERED=1
python3 -c "import hydra, duckdb, hyperbench" 2>/dev/null && return 0
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null || return 1
