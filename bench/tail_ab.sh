#!/usr/bin/env bash
# The short last chunk's variants on the GPU machine (docs/performance.md, sessions 14 and 16): `bench_pipeline.py`
# as shipped (the tail's steps take turns with the last full group's), with --tail-alone (as before session 16) and
# with --replay-tail, each in fresh processes, ROUNDS times in turn (the first process of a fresh machine also
# compiles cold), then the fixture check of both variants' bits and the replay's tests. JSON rows and logs go to
# $OUT (default /tmp/tail_ab). For the replay's VRAM with a long tail, run it again with audio for 255 output frames
# (a 15-frame tail).
#   bash bench/tail_ab.sh VIDEO AUDIO LANDMARKS FIXTURES [CASES=256:on,512:on] [ROUNDS=2]
# Needs what bench_pipeline.py needs on the path (PyAV, diffusers). Each process compiles (with kept kernels about
# 20-25 s per resolution): 256:on with 2 rounds takes about 6 minutes on an H100, so give 512 its own call.
set -uo pipefail
VIDEO=$1; AUDIO=$2; LANDMARKS=$3; FIXTURES=$4; CASES=${5:-256:on,512:on}; ROUNDS=${6:-2}
REPO="$(cd "$(dirname "$0")/.." && pwd)"; OUT=${OUT:-/tmp/tail_ab}; mkdir -p "$OUT"
for round in $(seq 1 "$ROUNDS"); do
  for variant in plain tail-alone replay-tail; do
    flag=(); [ "$variant" = plain ] || flag=(--"$variant")
    python3 "$REPO/bench/bench_pipeline.py" --video "$VIDEO" --audio "$AUDIO" --landmarks "$LANDMARKS" \
      --cases "$CASES" "${flag[@]}" > "$OUT/$variant.$round.log" 2>&1
    echo "$variant round $round: rc=$?"
    grep '^{' "$OUT/$variant.$round.log" | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print("  %s:%s %6.2f s  sample %5.2f  VRAM reserved %5.2f GiB" % (r["case"]["resolution"],
          "on" if r["case"]["deepcache"] else "off", r["seconds"], r["stages"]["sample"], r["vram_peak_reserved_gib"]))'
  done
done
python3 "$REPO/tools/device_checks/check_pipeline_device.py" --fixtures "$FIXTURES" --device cuda --dtypes fp16 \
  --compile --batch-chunks 2 --json "$OUT/check.json" 2>&1 | grep -E '^fp16|Error' | tee "$OUT/check.txt"
# the replay's own tests on the GPU (the image's pytest: wheels carried in clash with its plugins)
LATENTSYNC_PARITY_FIXTURES="$FIXTURES" python3 -m pytest -q -p no:cacheprovider "$REPO/tests/unit/test_cuda_graphs.py" \
  2>&1 | tail -3 | tee "$OUT/pytest.txt"
