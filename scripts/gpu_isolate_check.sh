#!/usr/bin/env bash
# Where jobs run on a GPU (the `isolate` key), checked and timed on this machine: one small sweep run
# three ways (false: hyperbench's process; worker: one child process for the sweep, the default on a
# GPU; true: a fresh process per job), then a job whose kernel breaks the CUDA context followed by
# one that must still run, in a worker. Rows go to a scratch store under $OUT (default /tmp/isolate).
#   source scripts/gpu_setup.sh && bash scripts/gpu_isolate_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/isolate}
SWEEP=${SWEEP:-"seq_len=4096,8192,16384,32768 causal=false,true methods=[hyper,sdpa_cudnn] errors=false"}
mkdir -p "$OUT"
rc=0
# Triton's cache filled first, so that no timed way pays the kernels' compilation.
python3 -m hyperbench.cli run -m $SWEEP isolate=false force=true results_dir="$OUT/warm" > "$OUT/warm.log" 2>&1 || rc=1
for iso in false worker true; do
    start=$(date +%s.%N)
    python3 -m hyperbench.cli run -m $SWEEP isolate=$iso force=true results_dir="$OUT/$iso" > "$OUT/$iso.log" 2>&1 || rc=1
    end=$(date +%s.%N)
    printf 'isolate=%-6s %6.1f s  %s\n' "$iso" "$(python3 -c "print($end - $start)")" \
        "$(python3 -m hyperbench.cli results --results-dir "$OUT/$iso" --sql \
           "SELECT count(*) || ' rows, ' || count_if(status = 'ok') || ' ok' AS n FROM results" --format csv | tail -1)"
done
# A kernel fault in job 0 costs only the methods after it in that job (sdpa_cudnn, measured before it,
# keeps its row; hyper is not run); job 1 runs all three in a fresh worker.
python3 -m hyperbench.cli run -m seq_len=4096 num_heads=8 'methods=[sdpa_cudnn,custom,hyper]' errors=false isolate=worker \
    method.target=tests.hyperbench.helpers:illegal_address,tests.hyperbench.helpers:plain_attention \
    force=true results_dir="$OUT/fault" > "$OUT/fault.log" 2>&1 || rc=1
python3 -m hyperbench.cli results --results-dir "$OUT/fault" --columns job_id,method,status,message --format csv | cut -c1-160
exit $rc
