#!/usr/bin/env bash
# Upstream and this pack timed side by side by the shared harness (../shared/tools/baseline), on the GPU machine.
#   BL_CARRY=_carry AV_WHEEL=<dir with the av wheel> bash bench/side_by_side.sh BUDGET_S PLAN [bench.py args]
# Same setup as the harness's device_run.sh (carried wheels, small ffmpeg), plus PyAV and this repository on the
# path of every case process, so `--impl latentsync_pack_bench:Impl` imports (bench/harness/latentsync_pack_bench.py). Results go to $OUT.
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
B="${BL_HARNESS:-$REPO/../shared/tools/baseline}"
[ -d "$B" ] || B="$REPO/shared/tools/baseline"
BUDGET="${1:-520}"; PLAN="${2:-demo1=256:on}"; shift 2 || true
CARRY="$(cd "${BL_CARRY:?set BL_CARRY}" && pwd)"; CARRY_WHL="${BL_CARRY_WHL:-${CARRY}_whl}"
SITE="${BL_SITE:-/tmp/site}"; BIN="${BL_BIN:-/tmp/blbin}"; WORK="${BL_WORK:-/tmp/bl_work}"; OUT="${OUT:-/tmp/bl_out}"
mkdir -p "$BIN" "$OUT"
[ -x "$BIN/ffmpeg" ] || { python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
  "$CARRY/bin/ffmpeg.xz" "$BIN/ffmpeg" && chmod +x "$BIN/ffmpeg"; } || exit 3
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$CARRY"/whl/*.whl "$CARRY_WHL"/*.whl \
  ${AV_WHEEL:+"$AV_WHEEL"/av-*.whl} || exit 4
export PATH="$BIN:$PATH" IMAGEIO_FFMPEG_EXE="$BIN/ffmpeg" PYTHONUNBUFFERED=1 LS_UPSTREAM="$CARRY/upstream"
export PYTHONPATH="$B/stubs:$SITE:$CARRY/pylib:$REPO/bench/harness"
LS_MEDIA="${BL_MEDIA:-}"
python3 "$B/bench.py" "$@" --plan "$PLAN" --outdir "$OUT" --workdir "$WORK" --budget-s "$BUDGET" 2>&1 | tee "$OUT/bench_stdout.txt"
