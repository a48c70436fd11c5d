"""Warp stall samples of each kernel in an Nsight Compute source export, summed by region: before
the kernel's main loop, in it, and after it (the loop: the backward branch spanning the most
instructions), with the stall reasons and the instructions that hold the most outside the loop.

    ncu --clock-control none --kernel-name regex:^_list_ --launch-skip 2 --launch-count 2 \
        --section SourceCounters -o /tmp/lists python3 scripts/gpu_probe.py --parts=once
    ncu --import /tmp/lists.ncu-rep --page source --csv --print-source sass > source.csv
    python3 scripts/ncu_regions.py source.csv

Needs no GPU: it reads the CSV only.
"""

import csv
import io
import re
import sys

text = open(sys.argv[1]).read()
blocks = re.split(r'^"Kernel Name",', text, flags=re.M)[1:]
REASONS = ['stall_barrier','stall_long_sb','stall_short_sb','stall_wait','stall_mio','stall_lg','stall_math','stall_selected','stall_not_selected','stall_dispatch','stall_branch_resolving','stall_no_inst','stall_membar','stall_drain','stall_sleep','stall_misc','stall_imc','stall_tex']
for b in blocks:
    name = b.split('\n',1)[0]
    rows = list(csv.reader(io.StringIO(b.split('\n',1)[1])))
    hdr = rows[0]; data = [r for r in rows[1:] if len(r) == len(hdr)]
    H = {h: i for i, h in enumerate(hdr)}
    addr = [int(r[H["Address"]], 16) for r in data]
    src = [r[H["Source"]] for r in data]
    S = [float(r[H["Warp Stall Sampling (All Samples)"]] or 0) for r in data]
    best = None
    for a, s in zip(addr, src):
        mm = re.search(r'BRA .*?0x([0-9a-f]+)', s)
        if mm:
            t = int(mm.group(1), 16)
            if t < a and (best is None or a - t > best[1] - best[0]):
                best = (t, a)
    lo, hi = best
    tot = sum(S)
    print(f"== {name}: {tot:.0f} samples")
    for region, sel in (("before loop", lambda a: a < lo), ("loop", lambda a: lo <= a <= hi), ("after loop", lambda a: a > hi)):
        idx = [i for i, a in enumerate(addr) if sel(a)]
        rs = sum(S[i] for i in idx)
        by = {r: sum(float(data[i][H[r]] or 0) for i in idx) for r in REASONS}
        top = sorted(by.items(), key=lambda kv: -kv[1])[:6]
        print(f"  {region:12s} {rs/tot:6.1%}: " + ", ".join(f"{k[6:]} {v/tot:.1%}" for k, v in top))
        if region != "loop":
            for i in sorted(idx, key=lambda i: -S[i])[:8]:
                rr = max(REASONS, key=lambda r: float(data[i][H[r]] or 0))
                print(f"      {S[i]/tot:5.1%} {rr[6:]:10s} {src[i].strip()[:80]}")
