#!/usr/bin/env bash
# Everything the GPU results in results/ come from, in one command on a GPU machine:
#   1. the Triton kernels checked against the PyTorch reference (bf16/fp16, NaN-poisoned outputs)
#      and the driver's time broken down (scripts/gpu_kernel_check.py);
#   2. `hyperbench run` at n = 131072 with every method (with error metrics), the goal sweep of
#      issue 3 (hyper vs SDPA cuDNN/flash, causal and not, fwd and fwd+bwd) and the curve
#      n = 1024..65536, all into results/;
#   3. with STEPS="presets": the sweep presets behind every paper figure, then `hyperbench plot all`.
# On a machine without hydra/omegaconf/duckdb, run scripts/fetch_gpu_wheels.sh where pip works and
# carry .whl along. A copy of the tree without .git says its commit through HYPERBENCH_GIT_SHA and
# HYPERBENCH_GIT_DIRTY (e.g. HYPERBENCH_GIT_SHA=$(git rev-parse HEAD) HYPERBENCH_GIT_DIRTY=0).
# Logs and a tarball of results/ go to $OUT (default ./gpu_out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then source scripts/gpu_setup.sh || exit 1; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
KERNEL_NS=${KERNEL_NS:-16384,131072}
# STEPS picks what to run (default: all but the presets, which take ~15 min on one H200).
STEPS=${STEPS:-"check headline curve"}
has() { [[ " $STEPS " == *" $1 "* ]]; }
# results/ is packed after every step, so a run cut short by a time limit still returns what it made.
hb() { echo "+ hyperbench $*"; hyperbench "$@" 2>&1 | tee -a "$OUT/hyperbench.log"; tar czf "$OUT/results.tgz" results; }
if has check; then
  DEADLINE_S=${KERNEL_DEADLINE_S:-200} python3 scripts/gpu_kernel_check.py --ns="$KERNEL_NS" 2>&1 | tee "$OUT/kernel_check.log"
fi
if has headline; then
  hb run seq_len=131072 budget_s=120
  hb run -m seq_len=131072 'methods=[hyper,sdpa_cudnn,sdpa_flash]' causal=false,true mode=fwd budget_s=120
  hb run -m seq_len=131072 'methods=[hyper,sdpa_cudnn,sdpa_flash]' causal=false,true mode=fwd+bwd errors=false
fi
if has curve; then
  hb run -m seq_len=1024,2048,4096,8192,16384,32768,65536 'methods=[hyper,sdpa_cudnn,sdpa_flash]' \
     causal=false,true mode=fwd,fwd+bwd errors=false isolate=false
fi
if has presets; then
  for preset in paper_speedup paper_memory paper_pareto paper_error; do hb run +sweep=$preset; done
  hb plot all
fi
