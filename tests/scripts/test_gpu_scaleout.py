"""scripts/gpu_scaleout.sh end to end with CPU slots standing in for GPUs: both runs complete, the
report pairs every configuration of the two runs and states the wall-time ratio. (On CPU the two
slots share two cores, so the ratio itself means nothing here; the H200 pair is the measurement.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_scaleout_script_reports_both_runs(tmp_path):
    env = dict(os.environ, SWEEP="+sweep=smoke methods=[exact]", WARM="seq_len=128", GPUS="cpu,cpu",
               OUT=str(tmp_path / "out"), SCALEOUT_DEST=str(tmp_path / "report"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               HYPERBENCH_GIT_SHA="0" * 40, HYPERBENCH_GIT_DIRTY="0")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_scaleout.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    [report_file] = (tmp_path / "report").glob("*.json")
    report = json.loads(report_file.read_text())
    assert report["jobs"] == 4 and report["rows_one_gpu"] == report["rows_two_gpus"] == 4
    assert {w["exit_status"] for w in report["walls"].values()} == {0}
    assert report["walls"]["two_gpus"]["devices"] == "cpu,cpu"
    assert len(report["pairs"]) == 4 and report["speedup"] > 0
    assert "speed-up" in r.stdout
