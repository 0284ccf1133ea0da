#!/usr/bin/env bash
# The issue's MinAtar side by side, one (game, seed) pair per process so that a stopped
# session loses at most the pair in progress: rerun to continue; finished pairs are skipped,
# and OUT/results.json and results.md report every finished pair after each one.
# One worker at a time: trpo's value fit runs beside its rollout on the second core, so a
# second worker would slow the runs it is timing.
#   benchmarks/minatar_2m.sh [OUT]   (default benchmarks/results/minatar-2m)
# To stop between pairs (before a job that would slow the next one): touch OUT/STOP; the
# script removes it when it stops there.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/minatar-2m}
mkdir -p "$out"
for seed in 0 1 2; do
  for game in Breakout SpaceInvaders Asterix Freeway Seaquest; do
    pair="$out/$game-s$seed.json"
    [[ -e $pair ]] && continue
    if [[ -e $out/STOP ]]; then
      rm "$out/STOP"
      echo "stopped before $game seed $seed ($out/STOP)"
      exit 0
    fi
    python benchmarks/minatar_sb3.py --games "$game" --seeds "$seed" --steps 2000000 \
      --out "$pair.partial"
    mv "$pair.partial" "$pair"
    python benchmarks/minatar_sb3.py --merge "$out"/*-s[0-9]*.json --out "$out/results.json"
  done
done
