#!/usr/bin/env bash
# Everything the GPU results in results/ come from, on a GPU machine, in steps (STEPS, below):
#   check     the Triton kernels and the SDPA leaves against the PyTorch reference (bf16/fp16,
#             NaN-poisoned outputs), the driver's time broken down (scripts/gpu_kernel_check.py);
#             CHECKS picks the groups (leaves,driver,primitive,limits; also beyond: past 2^31 elements
#             and 65535 heads a launch, ~80 GB of GPU memory), KERNEL_NS the lengths timed,
#             KERNEL_ARGS more flags (e.g. --sweep=64,128 to tune the tile configs first)
#   headline  `hyperbench run` at n = 131072 with every method (with error metrics)
#   goal      the goal sweep of issue 3 at n = 131072: hyper vs SDPA cuDNN/flash, causal and not,
#             fwd (with error metrics) and fwd+bwd; then `hyperbench report` of this commit's rows
#   curve     n = 1024..131072, fwd / bwd / fwd+bwd, causal and not, head_dim 64
#   long      n = LONG_NS (default 262144; hyper and cuDNN, which budget_s=60 skips beyond ~1 minute
#             of calls), fwd and fwd+bwd, at head_dim LONG_D (default 64)
#   d128      head_dim 128, the curve's n = 1024..131072, fwd / bwd / fwd+bwd, causal and not
#   d32, d16  head_dim 32 or 16, n = 4096..131072, fwd and fwd+bwd
#   blocks    the bucket-size axis at n = 131072: hyper at block_size BLOCKS (sample 256), fwd and
#             fwd+bwd, causal and not; 256 is the goal step's shape, the others run narrower tiles
#   presets   PRESETS (default: every paper preset), then `hyperbench plot all`
#   metric    issue 4's metric cost at n = 131072: every input kind, causal and not, the metric's
#             time (metric_ms) beside the SDPA cuDNN forward of the same run
#   tiles     issue 4's sampling question at n = 16384: one sample set per head against sets per
#             64 / 128 / 256 sorted query rows, time and spec_err
#   scaleout  scripts/gpu_scaleout.sh (needs two GPUs)
# On a machine without hydra/omegaconf/duckdb, run scripts/fetch_gpu_wheels.sh where pip works and
# carry .whl along. A copy of the tree without .git says its commit through HYPERBENCH_GIT_SHA and
# HYPERBENCH_GIT_DIRTY (e.g. HYPERBENCH_GIT_SHA=$(git rev-parse HEAD) HYPERBENCH_GIT_DIRTY=0).
# EXTRA adds overrides to every run: EXTRA=timing.cuda_graph=true times CUDA-graph replays (with the
# curve and d128 steps, also MODES=fwd,fwd+bwd: mode bwd cannot be replayed), EXTRA=timing.back_to_back=true
# queues the calls as do_bench does.
# Logs and a tarball of results/ go to $OUT (default ./gpu_out). Rows already in results/ for this
# commit are not measured again (add force=true through EXTRA to measure again). Every sweep runs its
# jobs in one worker process (isolate's default on a GPU), so a kernel fault costs only its own job;
# the steps other than goal and headline ran with isolate=false up to 2026-11-30 (the same calls timed).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then source scripts/gpu_setup.sh || exit 1; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
# The commit the rows will name, beside the digest of the code that runs (`hyperbench verify` compares them).
read -r SHA DIGEST < <(python3 -c "from hyperbench import code_digest as c, provenance as p; print(p.git_info()[0], c.installed())")
echo "commit $SHA code digest $DIGEST" | tee -a "$OUT/gpu.txt"
KERNEL_NS=${KERNEL_NS:-16384,131072}
CHECKS=${CHECKS:-leaves,driver,primitive,limits}
STEPS=${STEPS:-"check headline goal curve"}
PRESETS=${PRESETS:-"paper_speedup paper_memory paper_pareto paper_error"}
EXTRA=${EXTRA:-}
# curve, long, d128/d32/d16 and blocks measure these (e.g. CAUSALS=true MODES=fwd+bwd to re-measure one corner).
CAUSALS=${CAUSALS:-false,true}
BLOCKS=${BLOCKS:-32,48,64,128,192,256,512}
MODES=${MODES:-}
# results/ is packed after every step, so a run cut short by a time limit still returns what it made.
hb() { echo "+ hyperbench $*"; hyperbench "$@" $EXTRA 2>&1 | tee -a "$OUT/hyperbench.log"; tar czf "$OUT/results.tgz" results; }
# The table of this commit's rows that the README's headline block shows (`hyperbench report`).
report() { echo "+ hyperbench report git_sha=$SHA $*"; hyperbench report "git_sha=$SHA" "$@" 2>&1 | tee -a "$OUT/hyperbench.log"; }
for step in $STEPS; do
  case $step in
    check)
      DEADLINE_S=${KERNEL_DEADLINE_S:-200} python3 scripts/gpu_kernel_check.py --ns="$KERNEL_NS" \
        --checks="$CHECKS" ${KERNEL_ARGS:-} 2>&1 | tee "$OUT/kernel_check.log"
      # The check decides which SDPA kernel the inference leaves use (cuDNN unless its lse is off).
      if [ -f "$OUT/leaf_forward" ]; then export HYPERBENCH_LEAF_FORWARD=$(cat "$OUT/leaf_forward"); fi
      echo "leaf forward: ${HYPERBENCH_LEAF_FORWARD:-cudnn (default)}" ;;
    headline)
      hb run seq_len=131072 budget_s=120 ;;
    goal)
      hb run -m seq_len=131072 'methods=[hyper,sdpa_cudnn,sdpa_flash]' causal=false,true mode=fwd budget_s=120
      hb run -m seq_len=131072 'methods=[hyper,sdpa_cudnn,sdpa_flash]' causal=false,true mode=fwd+bwd errors=false
      report seq_len=131072 head_dim=64 method=hyper method=sdpa_cudnn method=sdpa_flash --cols method --baseline sdpa_cudnn ;;
    curve)
      hb run -m seq_len=1024,2048,4096,8192,16384,32768,65536,131072 'methods=[hyper,sdpa_cudnn,sdpa_flash]' \
         causal=$CAUSALS mode=${MODES:-fwd,bwd,fwd+bwd} errors=false ;;
    long)
      hb run -m seq_len=${LONG_NS:-262144} head_dim=${LONG_D:-64} 'methods=[hyper,sdpa_cudnn]' causal=$CAUSALS mode=${MODES:-fwd,fwd+bwd} errors=false \
         budget_s=60 'timing.warmup=1' ;;
    d128)
      hb run -m head_dim=128 seq_len=1024,2048,4096,8192,16384,32768,65536,131072 \
         'methods=[hyper,sdpa_cudnn,sdpa_flash]' causal=$CAUSALS mode=${MODES:-fwd,bwd,fwd+bwd} errors=false ;;
    d32|d16)
      hb run -m head_dim=${step#d} seq_len=4096,16384,65536,131072 'methods=[hyper,sdpa_cudnn,sdpa_flash]' \
         causal=$CAUSALS mode=${MODES:-fwd,fwd+bwd} errors=false ;;
    blocks)
      hb run -m seq_len=131072 block_size=$BLOCKS 'methods=[hyper]' causal=$CAUSALS \
         mode=${MODES:-fwd,fwd+bwd} errors=false ;;
    presets)
      for preset in $PRESETS; do hb run +sweep=$preset; done
      hb plot all ;;
    metric)
      hb run -m seq_len=131072 inputs=gaussian,clustered,heavy_hitters,low_rank causal=$CAUSALS \
         'methods=[hyper,sdpa_cudnn]' budget_s=60 ;;
    tiles)
      hb run -m seq_len=16384 sample_tile=0,64,128,256 'methods=[hyper,hyper_ref]' ;;
    scaleout)
      scripts/gpu_scaleout.sh; tar czf "$OUT/results.tgz" results ;;
    *) echo "unknown step $step (allowed: check headline goal curve long d128 d32 d16 blocks presets metric tiles scaleout)"; exit 2 ;;
  esac
done
