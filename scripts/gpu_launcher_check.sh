#!/usr/bin/env bash
# hydra/launcher=gpus on this machine's GPUs, checked: a sweep over every GPU (one job on each, never two
# at once on one); hydra.launcher.devices naming a GPU the host lacks or one GPU twice (exit 2, one line,
# nothing written); a job that dies (exit 1, no traceback, the others' rows kept, the summary printed).
# Rows go to scratch stores under $OUT (default /tmp/launcher_check).
#   source scripts/gpu_setup.sh && bash scripts/gpu_launcher_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/launcher_check}
rm -rf "$OUT" && mkdir -p "$OUT"
python3 - "$OUT" <<'PY'
import json, subprocess, sys
from pathlib import Path
import torch
from hyperbench import store

out = Path(sys.argv[1])
gpus = torch.cuda.device_count()
every = ",".join(map(str, range(gpus)))
ok = True


def run(name, *args):
    r = subprocess.run([sys.executable, "-m", "hyperbench.cli", "run", "-m", "hydra/launcher=gpus", *args,
                        f"results_dir={out / name}"], capture_output=True, text=True)
    (out / f"{name}.log").write_text(r.stdout + r.stderr)
    return r


def check(name, passed, detail):
    global ok
    ok &= passed
    print(f"{name}: {'PASS' if passed else 'FAIL'} ({detail})")


print(f"{gpus} GPUs: {[torch.cuda.get_device_name(i) for i in range(gpus)]}")
r = run("every_gpu", f"hydra.launcher.devices=[{every}]", f"seq_len={','.join(['4096', '8192'] * gpus)}",
        "methods=[sdpa_cudnn,hyper]", "errors=false", "force=true")
use = [json.loads(line) for line in next((out / "every_gpu").glob("sweeps/*/launcher.jsonl")).read_text().splitlines()]
df = store.read(out / "every_gpu")
apart = all(a["end"] <= b["start"] or b["end"] <= a["start"] for a in use for b in use
            if a is not b and a["device"] == b["device"])
check("every GPU", r.returncode == 0 and sorted({u["device"] for u in use}) == [str(i) for i in range(gpus)]
      and apart and len(df) == 4 * gpus and (df["status"] == "ok").all(),
      f"exit {r.returncode}, jobs on {sorted({u['device'] for u in use})}, one at a time per GPU {apart}, "
      f"{len(df)} rows {sorted(set(df['status']))}")
for name, devices, says in [("missing_gpu", f"[{gpus}]", f"no GPU {gpus} here"), ("gpu_twice", "[0,0]", "twice")]:
    r = run(name, f"hydra.launcher.devices={devices}", "seq_len=4096", "methods=[sdpa_cudnn]")
    lines = r.stderr.strip().splitlines()
    check(name, r.returncode == 2 and len(lines) == 1 and says in lines[0] and not (out / name).exists(),
          f"exit {r.returncode}: {lines[-1][:150] if lines else '(nothing)'}")
r = run("job_dies", "seq_len=4096,8192", "methods=[custom]", "method.target=tests.hyperbench.helpers:dies",
        "isolate=false", "errors=false", "force=true", "timing.warmup=1")
check("job dies", r.returncode == 1 and "Traceback" not in r.stdout + r.stderr and "0 of 2 jobs completed" in r.stdout
      and "2 jobs wrote no rows" in r.stdout, f"exit {r.returncode}, last line: {r.stderr.strip().splitlines()[-1][:150]}")
sys.exit(0 if ok else 1)
PY
