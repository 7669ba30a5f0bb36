#!/usr/bin/env bash
# The GPU check: everything this project says about a GPU, measured in one go on one GPU in under 8 minutes.
#
#   1. the suite's GPU-marked tests (pytest -m gpu: CUDA vs CPU, bf16-mixed vs fp32, imagination on the GPU);
#   2. wm bench --what dreamer, imagine, dream at the Dreamer presets S and M, fp32 and bf16-mixed, --compile off;
#   3. a 3-minute Boxing run at preset S (Atari-100k protocol) that reports its updates per second;
#   then 2. again with --compile on, last, since each compiled run compiles for tens of seconds;
#   4. one summary, $OUT/gpu_check.json (every record, and which steps were skipped for time or failed).
#
# Usage:
#   bash scripts/gpu_check.sh --fetch-wheels   here, with PyPI: the cp312 wheels the GPU image lacks, into .whl/
#   bash scripts/gpu_check.sh                  there (device run, carry .whl): OUT=DIR (default runs/gpu-check)
#   bash scripts/gpu_check.sh --dry-run        anywhere: print each step's command and budget, run nothing
# BUDGET_S (default 470) is the whole check's wall-clock budget: each step has a timeout, and a step whose
# timeout would end past the budget is skipped and recorded as such, so the check never outruns it.
set -u
cd "$(dirname "$0")/.."
MODE=${1:-run}
OUT=${OUT:-runs/gpu-check}
BUDGET_S=${BUDGET_S:-470}
PY=${PY:-python3}
# What the GPU image lacks (its package list: the device tool's KINDS.md); the rest (torch, lightning, numpy,
# einops, safetensors, opencv, tensorboard, pytest, ...) is there. Versions as this project's CPU venv resolves.
WHEELS="gymnasium==1.4.0 ale-py==0.12.1 farama-notifications==0.0.6 cma==4.5.0"

if [ "$MODE" = "--fetch-wheels" ]; then
  mkdir -p .whl
  grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
  for wheel in $WHEELS; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d .whl "$wheel" || exit 1
  done
  ls .whl
  exit 0
fi

DRY=0
[ "$MODE" = "--dry-run" ] && DRY=1
[ "$DRY" = 1 ] || [ "$MODE" = "run" ] || { echo "usage: bash scripts/gpu_check.sh [--dry-run | --fetch-wheels]" >&2; exit 2; }
WORK=$(mktemp -d)
START=$(date +%s)
STEPS="$WORK/steps.tsv"  # name, status, seconds, record file
: > "$STEPS"

if [ "$DRY" = 0 ]; then
  mkdir -p "$OUT"
  if ls .whl/*.whl > /dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
  else
    export PYTHONPATH=$PWD
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$WORK/gpu.txt" 2>&1
fi

# step NAME TIMEOUT_S RECORD_FILE COMMAND...: run COMMAND under its timeout unless the budget is spent.
step() {
  local name=$1 limit=$2 record=$3; shift 3
  if [ "$DRY" = 1 ]; then
    echo "$name	timeout ${limit}s	$*"
    return
  fi
  local elapsed=$(( $(date +%s) - START ))
  if [ $(( elapsed + limit )) -gt "$BUDGET_S" ]; then
    printf '%s\tskipped: budget spent after %ss\t0\t\n' "$name" "$elapsed" >> "$STEPS"
    return
  fi
  local began=$(date +%s)
  timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
  local code=$?
  local status=ok
  [ "$code" = 124 ] && status="timed out after ${limit}s"
  [ "$code" != 0 ] && [ "$code" != 124 ] && status="failed (exit $code): $(tail -1 "$WORK/$name.log" | cut -c1-300)"
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - began ))" "$record" >> "$STEPS"
}

WM="$PY -m scripts.cli"
step tests-gpu 120 "" $PY -m pytest -q -m gpu tests/gpu -p no:cacheprovider
benches() {  # benches COMPILE TIMEOUT_S
  local compile=$1 limit=$2 preset precision what name
  for preset in S M; do
    for precision in 32-true bf16-mixed; do
      for what in dreamer imagine dream; do
        [ "$compile" = true ] && [ "$what" = dream ] && continue  # --compile applies to the Dreamer kinds only
        name="bench-$what-$preset-$precision-compile-$compile"
        step "$name" "$limit" "$WORK/$name.json" $WM bench --what "$what" --dreamer-preset "$preset" --device cuda \
          --precision "$precision" --compile "$compile" --steps 5 --warmup 2 --repeats 3 --out "$WORK/$name.json"
      done
    done
  done
}
benches false 60
# ~3 minutes: prefill 1,000 random steps, then updates at replay ratio 256 (B 16 x T 64: one update per 4 steps).
step boxing-S 200 "$WORK/boxing-S/results.json" $WM dreamer --env ALE/Boxing-v5 --preset S --atari-protocol atari100k \
  --steps 5000 --prefill 1000 --replay-ratio 256 --evaluate false --dream-every 0 --device cuda \
  --run-dir "$WORK/boxing-S"
benches true 100

if [ "$DRY" = 1 ]; then
  rm -rf "$WORK"
  exit 0
fi
$PY - "$STEPS" "$WORK/gpu.txt" "$OUT/gpu_check.json" "$START" <<'EOF'
import json, sys, time
steps_path, gpu_path, out_path, start = sys.argv[1:5]
steps = []
for line in open(steps_path):
    name, status, seconds, record = (line.rstrip("\n").split("\t") + [""] * 4)[:4]
    entry = {"name": name, "status": status, "seconds": int(seconds or 0)}
    try:
        entry["record"] = json.load(open(record)) if record else None
    except (OSError, ValueError):
        entry["record"] = None
    steps.append(entry)
summary = {"gpu": open(gpu_path).read().strip(), "wall_s": time.time() - float(start), "steps": steps}
json.dump(summary, open(out_path, "w"), indent=2, default=str)
print(json.dumps({s["name"]: s["status"] for s in steps}, indent=1))
EOF
cp "$WORK"/tests-gpu.log "$OUT"/tests-gpu.log 2>/dev/null
cat "$WORK"/*.log > "$OUT"/all-steps.log 2>/dev/null
rm -rf "$WORK"
