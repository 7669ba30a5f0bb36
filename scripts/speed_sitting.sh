#!/usr/bin/env bash
# One quiet sitting for the speed tables: at each of XS-v1 and S-v1 (SIZES), three alternating sheeprl/ours pairs
# (sheeprl's dreamer_v3_XS / _S through the shared harness, B 16 x T 64, 2 threads; ours `wm bench --what dreamer`),
# then the `cpu` preset's profile (shares, FLOPs, share of the GEMM peak), the 1M-row replay bench, wm bench --what
# all, VizDoom collection vs raw and serving load. Nothing else may run meanwhile: the figures are quiet-machine ones.
#   bash scripts/speed_sitting.sh            (OUT=DIR, SIZES="XS-v1 S-v1", PAIRS=3, SHEEPRL_HARNESS=PATH, SKIP_REST=1)
# Results in $OUT/ (quiet.log: one line per figure; *.json: the bench records).
set -u
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${OUT:-runs/speed-sitting}"); mkdir -p "$OUT"; export OUT
# The sitting runs from a frozen copy of HEAD (a git worktree), so that editing the working tree meanwhile cannot
# change or break what is timed (it did once: docs/speed.md). PYTHONPATH puts the copy before the editable install.
if [ "${SITTING_FROZEN:-0}" != 1 ]; then
  FROZEN=$(mktemp -d /tmp/wm-sitting-XXXXXX)
  git worktree add --detach -q "$FROZEN/tree" HEAD && ln -s "$PWD/.venv" "$FROZEN/tree/.venv"
  SITTING_FROZEN=1 PYTHONPATH="$FROZEN/tree" SHEEPRL_HARNESS=$(realpath "${SHEEPRL_HARNESS:-../shared/peers/sheeprl_dreamerv3.sh}") \
    bash "$FROZEN/tree/scripts/speed_sitting.sh"; status=$?
  git worktree remove --force "$FROZEN/tree"; rm -rf "$FROZEN"
  exit $status
fi
SIZES=${SIZES:-XS-v1 S-v1}; PAIRS=${PAIRS:-3}
HARNESS=${SHEEPRL_HARNESS:-../shared/peers/sheeprl_dreamerv3.sh}
echo "start $(date +%T) $(uptime) commit $(git rev-parse --short HEAD) cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" > "$OUT/quiet.log"
for size in $SIZES; do
  model=dreamer_v3_${size%-v1}
  for i in $(seq 1 "$PAIRS"); do
    tag=${size}_$i
    echo "=== $size pair $i sheeprl $model $(date +%T)" >> "$OUT/quiet.log"
    MODEL=$model THREADS=2 bash "$HARNESS" > "$OUT/sheeprl_$tag.txt" 2> "$OUT/sheeprl_$tag.err"
    grep -E "^(grad_steps_per_s|grad_steps|peak_rss_mb|wall_s)=" "$OUT/sheeprl_$tag.txt" >> "$OUT/quiet.log"
    echo "=== $size pair $i ours $(date +%T)" >> "$OUT/quiet.log"
    /usr/bin/time -v -o "$OUT/ours_$tag.time" .venv/bin/wm bench --what dreamer --dreamer-preset "$size" --device cpu \
      --threads 2 --steps 3 --warmup 1 --repeats 3 --out "$OUT/ours_$tag.json" > "$OUT/ours_$tag.txt" 2> "$OUT/ours_$tag.err"
    grep "Maximum resident" "$OUT/ours_$tag.time" >> "$OUT/quiet.log"
    python3 -c "import json; r=json.load(open('$OUT/ours_$tag.json')); print('ours grad_steps_per_s', r['grad_steps_per_s']['median'], r['grad_steps_per_s']['runs'], 'peak_rss_mb', r['peak_rss_mb'])" >> "$OUT/quiet.log" 2>&1
  done
done
[ "${SKIP_REST:-0}" = 1 ] && { echo "=== done $(date +%T)" >> "$OUT/quiet.log"; exit 0; }
echo "=== cpu preset profile $(date +%T)" >> "$OUT/quiet.log"
for threads in 1 2; do
  .venv/bin/wm bench --what profile --dreamer-preset cpu --threads $threads --steps 3 --warmup 2 \
    --out "$OUT/profile_t$threads.json" > "$OUT/profile_t$threads.txt" 2> "$OUT/profile_t$threads.err"
done
echo "=== replay 1M $(date +%T)" >> "$OUT/quiet.log"
/usr/bin/time -v -o "$OUT/replay.time" .venv/bin/wm bench --what replay --capacity 1000000 --out "$OUT/replay.json" \
  > "$OUT/replay.txt" 2> "$OUT/replay.err"
grep "Maximum resident" "$OUT/replay.time" >> "$OUT/quiet.log"
echo "=== bench all $(date +%T)" >> "$OUT/quiet.log"
/usr/bin/time -v -o "$OUT/all.time" .venv/bin/wm bench --what all --device cpu --threads 2 --out "$OUT/all.json" > "$OUT/all.txt" 2> "$OUT/all.err"
echo "=== vizdoom collect $(date +%T)" >> "$OUT/quiet.log"
.venv/bin/wm bench --what collect --env VizdoomTakeCover-v1 --num-envs 1 --steps 2000 --repeats 3 --collect-mode both \
  --out "$OUT/collect_vizdoom.json" > /dev/null 2> "$OUT/collect_vizdoom.err"
echo "=== serve load $(date +%T)" >> "$OUT/quiet.log"
.venv/bin/wm serve --checkpoint takecover-worldmodels-cpu --port 8765 > "$OUT/serve.txt" 2>&1 &
SERVER=$!; sleep 8
.venv/bin/wm serve-load --url http://127.0.0.1:8765 --clients 8 --seconds 20 > "$OUT/serve_load.json" 2> "$OUT/serve_load.err"
kill $SERVER; wait $SERVER 2>/dev/null
echo "=== done $(date +%T)" >> "$OUT/quiet.log"
