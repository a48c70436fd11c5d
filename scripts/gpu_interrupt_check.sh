#!/usr/bin/env bash
# Ctrl-C during a sweep on a GPU, checked on this machine: SIGINT to the command's process group (as a
# terminal sends it) while job 0's second method waits, with the default isolate (a worker process) and
# under hydra/launcher=gpus. Expected: exit 130 with no traceback, sdpa_cudnn's row of job 0 kept, and a
# rerun of the same command that measures only job 0's custom and both methods of job 1.
# Rows go to scratch stores under $OUT (default /tmp/interrupt).
#   source scripts/gpu_setup.sh && bash scripts/gpu_interrupt_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/interrupt}
rm -rf "$OUT" && mkdir -p "$OUT"
rc=0
for launcher in basic gpus; do
    python3 - "$OUT/$launcher" "$launcher" <<'PY' || rc=1
import subprocess, sys
from pathlib import Path
from hyperbench import store
from tests.hyperbench.helpers import interrupted_run

out, launcher = Path(sys.argv[1]), sys.argv[2]
out.mkdir(parents=True)
args = ["-m", "seq_len=4096,8192", "num_heads=8", "methods=[sdpa_cudnn,custom]", "errors=false",
        "method.target=tests.hyperbench.helpers:waits_for_interrupt", f"results_dir={out / 'r'}"]
args += ["hydra/launcher=gpus"] if launcher == "gpus" else []
code, stdout, stderr = interrupted_run(args, out / "wait")
kept = sorted(map(tuple, store.read(out / "r")[["seq_len", "method", "status"]].values.tolist()))
rerun = subprocess.run([sys.executable, "-m", "hyperbench.cli", "run", *args], capture_output=True, text=True)
df = store.read(out / "r")
measured = sorted(map(tuple, df[df["run_id"] == df["run_id"].max()][["seq_len", "method", "status"]].values.tolist()))
(out / "interrupted.log").write_text(stdout + stderr)
(out / "rerun.log").write_text(rerun.stdout + rerun.stderr)
print(f"{launcher}: exit {code}, traceback {'Traceback' in stderr}, kept {kept}")
print(f"  last line: {stderr.strip().splitlines()[-1][:160] if stderr.strip() else '(none)'}")
print(f"  rerun: exit {rerun.returncode}, measured {measured}")
ok = (code == 130 and "Traceback" not in stderr and kept == [(4096, "sdpa_cudnn", "ok")] and rerun.returncode == 0
      and [m[:2] for m in measured] == [(4096, "custom"), (8192, "custom"), (8192, "sdpa_cudnn")])
print(f"  {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
done
exit $rc
