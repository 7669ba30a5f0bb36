#!/usr/bin/env bash
# The Atari-20k table's runs, one after the other, in the background; rerun it to resume (a finished run is skipped,
# an interrupted one resumes from its last checkpoint: wm dreamer's exact resume).
#
#   RUNS=/work/runs/atari20k nohup bash scripts/atari20k.sh boxing:1 krull:0 crazy_climber:0 > atari20k.log 2>&1 &
#   .venv/bin/wm atari-table --runs /work/runs/atari20k      # records -> results/atari20k.json, prints the table
#
# Each argument is GAME:SEED (a game of worldmodels/atari_scores.py). One recipe for every game: --preset cpu, the
# Atari-100k protocol, exactly 20,000 agent steps, no per-game flag. Each process appends a start line (CPU model,
# commit, command) and an end line (exit code) to RUN/segments.jsonl; a killed one's end is its heartbeat file's
# time. The record's wall time is the sum of the segments (trainers/runs/atari_table.py).
set -u
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/atari20k}
PRESET=${PRESET:-cpu}
STEPS=${STEPS:-20000}
WM=${WM:-.venv/bin/wm}
mkdir -p "$RUNS"
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
for item in "$@"; do
  game=${item%%:*}; seed=${item##*:}
  env=$(.venv/bin/python -c "from worldmodels.atari_scores import ATARI_100K as A; print(A['$game'].env_id)") || exit 2
  run="$RUNS/$game-s$seed"
  if [ -f "$run/eval.json" ] && [ -f "$run/results.json" ]; then
    echo "$(date +%FT%T) $game seed $seed: finished already"; continue
  fi
  command="wm dreamer --env $env --preset $PRESET --steps $STEPS --seed $seed --run-dir $run"
  mkdir -p "$run"
  start=$(date +%s)
  # A kill (a session's end) never writes this segment's end: the heartbeat, rewritten every 30 s, stands in for it.
  ( while true; do date +%s > "$run/heartbeat-$start"; sleep 30; done ) &
  beat=$!
  echo "$(date +%FT%T) $game seed $seed: $command"
  printf '{"start": %s, "cpu": "%s", "commit": "%s", "preset": "%s", "command": "%s"}\n' \
    "$start" "$cpu" "$(git rev-parse --short HEAD)" "$PRESET" "$command" >> "$run/segments.jsonl"
  $WM dreamer --env "$env" --preset "$PRESET" --steps "$STEPS" --seed "$seed" --run-dir "$run" >> "$run/run.log" 2>&1
  code=$?
  kill "$beat" 2>/dev/null
  printf '{"start": %s, "end": %s, "exit": %d}\n' "$start" "$(date +%s)" "$code" >> "$run/segments.jsonl"
  echo "$(date +%FT%T) $game seed $seed: exit $code"
  [ "$code" = 0 ] || [ "$code" = 130 ] || exit "$code"
  [ "$code" = 130 ] && exit 130
done
