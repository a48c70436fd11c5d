#!/usr/bin/env bash
# Issue 6's measurement: one sweep's wall time with hydra/launcher=gpus on two GPUs against one GPU,
# and whether any configuration's median moved when a neighbour job ran on the other GPU.
#   HYPERBENCH_GIT_SHA=... HYPERBENCH_GIT_DIRTY=0 scripts/gpu_scaleout.sh     (needs >= 2 GPUs)
# Both runs use fresh stores under /tmp and force=true, after a warm-up sweep that fills Triton's
# kernel cache, so neither run pays for compilation. Writes results/scaleout/<date>-<sha>.json
# (scripts/scaleout_report.py); the runs' rows stay in the /tmp stores.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then source scripts/gpu_setup.sh || exit 1; fi
SWEEP=${SWEEP:-"+sweep=paper_speedup seq_len=16384,32768,65536,131072 methods=[hyper,sdpa_cudnn,sdpa_flash]"}
WARM=${WARM:-"seq_len=16384"}     # the warm-up: one n of the sweep compiles every kernel it uses
GPUS=${GPUS:-0,1}
ONE=${GPUS%%,*}
WORK=$(mktemp -d /tmp/scaleout.XXXX)
# shellcheck disable=SC2086
hyperbench run -m $SWEEP $WARM results_dir="$WORK/warm" force=true >"$OUT/scaleout_warm.log" 2>&1
run() {   # $1: label, $2: devices
  local t0 t1
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  hyperbench run -m $SWEEP hydra/launcher=gpus "hydra.launcher.devices=[$2]" results_dir="$WORK/$1" \
    force=true >"$OUT/scaleout_$1.log" 2>&1
  local rc=$?
  t1=$(date +%s.%N)
  echo "$1 $2 $rc $(python3 -c "print($t1 - $t0)")" | tee -a "$WORK/walls.txt"
}
run one_gpu "$ONE"
run two_gpus "$GPUS"
python3 scripts/scaleout_report.py "$WORK" "$SWEEP" | tee "$OUT/scaleout.txt"
