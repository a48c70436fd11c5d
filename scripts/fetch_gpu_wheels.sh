#!/usr/bin/env bash
# Fetch the wheels the GPU machine lacks (it has torch, triton, pandas, pyarrow, rich, matplotlib,
# pytest-benchmark, but no hydra-core, omegaconf, antlr4 or duckdb, and cannot reach a package index).
# They land in .whl/ (ignored by git) and travel with `carry: [".whl"]`; scripts/gpu_setup.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl "$@"; }
dl hydra-core==1.3.8 "omegaconf>=2.3,<2.4" duckdb==1.5.6
# antlr4's runtime 4.9.3 (the one hydra 1.3 needs) is published as a source archive only: build its wheel here.
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -1 .whl
