#!/usr/bin/env bash
# Issue 20's reporting grid: the nine MuJoCo v5 envs, each with its preset, seeds 0-4 at
# 1M steps (trpo), and the same-version sb3-contrib references (rl-zoo's settings), run
# seed-major so every env has seed 0 before any has seed 1. Both write into
# benchmarks/results/, where finished runs are committed: rerunning this script in a later
# session skips them and continues the rest. One core each: overlap=off, --workers 1.
#   nohup benchmarks/mujoco_report.sh trpo > report-trpo.log 2>&1 &
#   nohup benchmarks/mujoco_report.sh sb3 > report-sb3.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
ENVS=(Hopper-v5 Walker2d-v5 HalfCheetah-v5 Ant-v5 Swimmer-v5 Humanoid-v5 Reacher-v5
  InvertedPendulum-v5 InvertedDoublePendulum-v5)
for seed in 0 1 2 3 4; do
  case "${1:?trpo or sb3}" in
    trpo)
      trpo benchmark "$(IFS=,; echo "${ENVS[*]}")" --seed "$seed" --seeds 1 --steps 1000000 \
        --set eval_every=10 tensorboard=false overlap=off --workers 1 \
        --out benchmarks/results/mujoco-1m-trpo ;;
    sb3)
      for env in "${ENVS[@]}"; do
        python benchmarks/sb3_reference.py "$env" --seeds "$seed" --steps 1000000 \
          --out benchmarks/results/mujoco-1m-sb3
      done ;;
  esac
done
