"""Summarise scripts/gpu_scaleout.sh: wall times, their ratio, and per-configuration medians of the
two-GPU run against the one-GPU run with the suite's noise-aware verdict (hyperbench.regress).

    python3 scripts/scaleout_report.py WORKDIR "SWEEP ARGS"
Writes results/scaleout/<date>-<sha>.json (every pair's medians included; SCALEOUT_DEST changes
the folder). The runs' own rows stay in
WORKDIR: results/ holds one row per configuration and commit, and these are repeats by design.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

from hyperbench import compare, provenance, regress, store

REPO = Path(__file__).resolve().parents[1]


def main(work: Path, sweep: str) -> None:
    walls = {}
    for line in (work / "walls.txt").read_text().split("\n"):
        if line.strip():
            label, devices, rc, secs = line.split()
            walls[label] = {"devices": devices, "exit_status": int(rc), "wall_s": float(secs)}
    rows = {label: store.read(work / label) for label in ("one_gpu", "two_gpus")}
    key = ["config_hash", "method"]
    one = rows["one_gpu"].set_index(key)
    pairs = []
    for idx, r2 in rows["two_gpus"].set_index(key).iterrows():
        if idx not in one.index or r2["status"] != "ok" or one.loc[idx, "status"] != "ok":
            continue
        r1 = one.loc[idx]
        t1, t2 = compare.row_timing(r1), compare.row_timing(r2)
        v = regress.compare_times(t1, t2)
        pairs.append({"method": idx[1], "seq_len": int(r2["seq_len"]), "causal": bool(r2["causal"]),
                      "mode": r2["mode"], "one_gpu_ms": t1.median, "two_gpus_ms": t2.median,
                      "ratio": v.ratio, "verdict": v.verdict})
    speedup = walls["one_gpu"]["wall_s"] / walls["two_gpus"]["wall_s"]
    env = provenance.collect("cuda")
    report = {"sweep": sweep, "walls": walls, "speedup": speedup,
              "jobs": int(rows["two_gpus"]["config_hash"].nunique()),
              "rows_one_gpu": len(rows["one_gpu"]), "rows_two_gpus": len(rows["two_gpus"]),
              "medians_moved": [p for p in pairs if p["verdict"] != regress.SAME],
              "median_ratio_range": [min(p["ratio"] for p in pairs), max(p["ratio"] for p in pairs)] if pairs else None,
              "pairs": pairs, "provenance": env}
    sha = str(rows["two_gpus"]["git_sha"].iloc[0])[:7]
    dest = Path(os.environ.get("SCALEOUT_DEST") or REPO / "results" / "scaleout")
    dest.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    (dest / f"{stamp}-{sha}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"wall one GPU {walls['one_gpu']['wall_s']:.1f} s, two GPUs {walls['two_gpus']['wall_s']:.1f} s: "
          f"speed-up {speedup:.2f}x over {report['jobs']} jobs")
    print(f"per-configuration medians, two GPUs / one GPU: {len(pairs)} pairs, ratio range "
          f"{report['median_ratio_range']}, moved beyond noise and 5%: {len(report['medians_moved'])}")
    for p in report["medians_moved"]:
        print("  moved:", p)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
