#!/usr/bin/env bash
# One quiet sitting for the README speed table: three sheeprl/ours S-v1 pairs, wm bench --what all, VizDoom
# collection vs raw, serving load. Usage: bash scripts/speed_sitting.sh (OUT=DIR, SHEEPRL_HARNESS=PATH); results in $OUT/.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/speed-sitting}; mkdir -p $OUT
echo "start $(date +%T) $(uptime)" > $OUT/quiet.log
for i in 1 2 3; do
  echo "=== pair $i sheeprl $(date +%T)" >> $OUT/quiet.log
  MODEL=dreamer_v3_S THREADS=2 bash ${SHEEPRL_HARNESS:-../shared/peers/sheeprl_dreamerv3.sh} > $OUT/sheeprl_$i.txt 2> $OUT/sheeprl_$i.err
  grep -E "^(grad_steps_per_s|grad_steps|peak_rss_mb|wall_s)=" $OUT/sheeprl_$i.txt >> $OUT/quiet.log
  echo "=== pair $i ours $(date +%T)" >> $OUT/quiet.log
  /usr/bin/time -v -o $OUT/ours_$i.time .venv/bin/wm bench --what dreamer --dreamer-preset S-v1 --device cpu \
    --threads 2 --steps 3 --warmup 1 --repeats 3 --out $OUT/ours_$i.json > $OUT/ours_$i.txt 2> $OUT/ours_$i.err
  grep "Maximum resident" $OUT/ours_$i.time >> $OUT/quiet.log
  python3 -c "import json; r=json.load(open('$OUT/ours_$i.json')); print('ours grad_steps_per_s', r['grad_steps_per_s']['median'], r['grad_steps_per_s']['runs'], 'peak_rss_mb', r['peak_rss_mb'])" >> $OUT/quiet.log 2>&1
done
echo "=== bench all $(date +%T)" >> $OUT/quiet.log
/usr/bin/time -v -o $OUT/all.time .venv/bin/wm bench --what all --device cpu --threads 2 --out $OUT/all.json > $OUT/all.txt 2> $OUT/all.err
echo "=== vizdoom collect $(date +%T)" >> $OUT/quiet.log
.venv/bin/wm bench --what collect --env VizdoomTakeCover-v1 --num-envs 1 --steps 2000 --repeats 3 --out $OUT/collect_vizdoom.json > /dev/null 2> $OUT/collect_vizdoom.err
echo "=== serve load $(date +%T)" >> $OUT/quiet.log
.venv/bin/wm serve --checkpoint takecover-worldmodels-cpu --port 8765 > $OUT/serve.txt 2>&1 &
SERVER=$!; sleep 8
.venv/bin/wm serve-load --url http://127.0.0.1:8765 --clients 8 --seconds 20 > $OUT/serve_load.json 2> $OUT/serve_load.err
kill $SERVER; wait $SERVER 2>/dev/null
echo "=== done $(date +%T)" >> $OUT/quiet.log
