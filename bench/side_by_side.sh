#!/usr/bin/env bash
# Upstream and this pack timed side by side by the shared harness (../shared/tools/baseline), on the GPU machine.
#   BL_CARRY=_carry AV_WHEEL=<dir with the av wheel> bash bench/side_by_side.sh BUDGET_S PLAN [bench.py args]
# Same setup as the harness's device_run.sh (carried wheels, small ffmpeg), plus PyAV and this repository on the
# path of every case process, so `--impl latentsync_pack_bench:Impl` imports (bench/harness/latentsync_pack_bench.py).
# Results go to $OUT, with env.txt (GPU, driver, versions). BL_CARRY_WHL (default ${BL_CARRY}_whl) is optional when
# its wheels travel elsewhere; BL_MEDIA (read by the harness) names another media folder.
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
WHEELS=("$CARRY"/whl/*.whl)
[ -d "$CARRY_WHL" ] && WHEELS+=("$CARRY_WHL"/*.whl) || echo "side_by_side: no $CARRY_WHL; using the wheels in $CARRY/whl only" >&2
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "${WHEELS[@]}" \
  ${AV_WHEEL:+"$AV_WHEEL"/av-*.whl} || exit 4
export PATH="$BIN:$PATH" IMAGEIO_FFMPEG_EXE="$BIN/ffmpeg" PYTHONUNBUFFERED=1 LS_UPSTREAM="$CARRY/upstream"
export PYTHONPATH="$B/stubs:$SITE:$CARRY/pylib:$REPO/bench/harness"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  PYTHONPATH="$SITE" python3 -c "import triton, av, diffusers; print('triton', triton.__version__, 'av', av.__version__, 'diffusers', diffusers.__version__)" 2>&1
  git -C "$REPO" rev-parse HEAD 2>/dev/null; echo "plan: $PLAN budget: $BUDGET args: $*"; } > "$OUT/env.txt"
python3 "$B/bench.py" "$@" --plan "$PLAN" --outdir "$OUT" --workdir "$WORK" --budget-s "$BUDGET" 2>&1 | tee "$OUT/bench_stdout.txt"
