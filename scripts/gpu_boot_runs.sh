#!/bin/bash
# On the lent GPU machine (carry .devsite, built by scripts/gpu_carry.sh): a compiled worker's boot with
# compile_scope "aot", cold then warm (the warm one without cuDNN autotuning while capturing, then the
# batch-1/32 latency), each under py-spy. Results under $OUT; docs/benchmarks.md "Where a compiled
# worker's boot goes" reads them.
python3 -m pip install -q --no-index --no-deps --target /tmp/site .devsite/whl/*.whl .devsite/tools/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.devsite/site:$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
SPY="/tmp/site/bin/py-spy record --nonblocking -r 25 -f raw"
P="python3 -X faulthandler scripts/gpu_warm_probe.py --cache /tmp/c"
timeout 120 $SPY -o $OUT/aotcold.txt -- $P --out $OUT/aotcold.json --engine '{"compile_scope": "aot"}' > $OUT/aotcold.log 2>&1
ls /tmp/c/compile/aot/ 2>&1
timeout 90 $SPY -o $OUT/aotwarm.txt -- $P --out $OUT/aotwarm.json --engine '{"compile_scope": "aot"}' --no-autotune --ablate > $OUT/aotwarm.log 2>&1
for f in aotcold aotwarm; do echo "== $f"; grep -v "^\s*$" $OUT/$f.log | grep -v "rows'" | tail -25 | cut -c1-300; done
python3 - <<PY
import json
for f in ("aotcold", "aotwarm"):
    try: d = json.load(open("$OUT/%s.json" % f))
    except Exception as e: print(f, e); continue
    b = d["buckets"]
    print(f, d["phases"], d.get("vocoder_787_ms"), d.get("ablation_ms"), d.get("compile_note"), "first", b[:1], "rest capture sum", round(sum(x["capture_s"] for x in b[1:]), 2))
PY
