#!/usr/bin/env bash
# Issue 20's reporting grid: the nine MuJoCo v5 envs, each with its preset, seeds 0-4 at
# 1M steps (trpo), and the same-version sb3-contrib references (rl-zoo's settings), run
# seed-major so every env has seed 0 before any has seed 1. One core each (overlap=off,
# --workers 1). Both write into benchmarks/results/, where each finished run's text files
# are committed (metrics.csv and the settings; not its checkpoints, ~1 MB a run): rerunning
# this script in a later session skips the runs whose metrics reach 1M steps. After each
# trpo run, `--report-only` rewrites the grid's results.md and results.json from every
# finished run so far.
#   nohup benchmarks/mujoco_report.sh trpo > report-trpo.log 2>&1 &
#   nohup benchmarks/mujoco_report.sh sb3 > report-sb3.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=1000000
ENVS=(Hopper-v5 Walker2d-v5 HalfCheetah-v5 Ant-v5 Swimmer-v5 Humanoid-v5 Reacher-v5
  InvertedPendulum-v5 InvertedDoublePendulum-v5)
TRPO_OUT=benchmarks/results/mujoco-1m-trpo
# every 10,240 steps, as benchmarks/sb3_reference.py evaluates (the 2048-step presets: 5 iterations)
TRPO_SETTINGS=(--steps "$STEPS" --eval-every-steps 10240 --set tensorboard=false overlap=off
  --out "$TRPO_OUT")

trpo_finished() {  # the run's metrics.csv has reached STEPS (column 2, "steps")
  local metrics="$TRPO_OUT/$1-s$2/metrics.csv"
  [[ -f $metrics ]] && (($(tail -n 1 "$metrics" | cut -d, -f2) >= STEPS))
}

for seed in 0 1 2 3 4; do
  for env in "${ENVS[@]}"; do
    case "${1:?trpo or sb3}" in
      trpo)
        trpo_finished "$env" "$seed" && continue
        trpo benchmark "$env" --seed "$seed" --seeds 1 --workers 1 "${TRPO_SETTINGS[@]}"
        trpo benchmark "$(IFS=,; echo "${ENVS[*]}")" --seeds 5 "${TRPO_SETTINGS[@]}" --report-only ;;
      sb3)
        python benchmarks/sb3_reference.py "$env" --seeds "$seed" --steps "$STEPS" \
          --out benchmarks/results/mujoco-1m-sb3 ;;
    esac
  done
done
