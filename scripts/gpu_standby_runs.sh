#!/bin/bash
# On the lent GPU machine (carry .devsite, built by scripts/gpu_carry.sh): what a worker crash costs
# with and without [engine] standby, compiled fp16 F5TTS_v1_Base architecture (random weights), and
# the latency while a standby boots beside the serving worker (it yields: engine/yielding.py).
# Results under $OUT; docs/benchmarks.md "Recovery after a worker crash" reads them.
python3 -m pip install -q --no-index --no-deps --target /tmp/site .devsite/whl/*.whl .devsite/tools/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.devsite/site:$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
python3 -c "from pathlib import Path; from ishowttsd.engine.tiny import build_random_base; build_random_base(Path('/tmp/models'))" || exit 1
B="python3 scripts/gpu_daemon_bench.py --models /tmp/models --model random:F5TTS_v1_Base --compile --dtype fp16 --runs 5 --concurrency 1 16 --nfe 8"
E='"max_batch": 32, "max_frames": 2048, "stream_first_chunk_bytes": 48'
# the same compile cache for both: the second daemon boots warm, as a restart would
timeout 280 $B --work /tmp/d --out $OUT/nostandby.json --engine "{$E, \"standby\": false}" --phases kill > $OUT/nostandby.log 2>&1
timeout 300 $B --work /tmp/d --out $OUT/standby.json --engine "{$E, \"standby\": true}" --phases bench,kill > $OUT/standby.log 2>&1
python3 - <<PY
import json
for f in ("nostandby", "standby"):
    try: d = json.load(open("$OUT/%s.json" % f))
    except Exception as e: print(f, e); continue
    kill = d.get("kill") or {}
    print(f, "cold/ready", d.get("cold_start_s"), "kill back_s", kill.get("back_s"), "standby_wait_s", kill.get("standby_wait_s"))
PY
