"""Ray backend against local rollouts, measured in one process, alternating A B A B.

    python benchmarks/ray_scaling.py                          # Hopper-v5, the issue's figures
    python benchmarks/ray_scaling.py --env CartPole-v1 --repeats 5

1. Rollout phase at the default batch (1024 transitions an iteration): one local collector
   over --envs-per-worker envs against Ray with 1 and 2 workers of --envs-per-worker envs
   each. Env steps/s of `collect` alone; the ratio to the local collector per repeat and
   its median.
2. End to end, the same settings on both backends (n_envs = 2 × --envs-per-worker; the
   two give identical runs): seconds per training iteration, and the share of it that is
   rollout.
3. Broadcast and gather at 1, 2 and 4 workers: bytes of the weights put in the object
   store once an iteration, bytes of the batches returned, and milliseconds of each: the
   put itself, and the collection's wall time beyond the slowest worker's own time (sending
   the work, returning and joining the batches).
4. The learner's side as the batch grows with the workers: seconds of the policy step and
   the value fit at batches of 1k to 64k transitions, with the defaults and with
   fvp_subsample 0.25 and a value minibatch of batch / 16 (both opt-in).

Writes the figures as JSON (--out) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from trpo import TRPO

BATCH = 1024


def agent(env_id: str, n_envs: int, workers: int) -> TRPO:
    backend = {"backend": "ray", "ray_workers": workers} if workers else {}
    return TRPO(env_id, n_envs=n_envs, steps_per_iter=BATCH, eval_every=0, **backend)


def rollout_rate(env_id: str, n_envs: int, workers: int, iterations: int) -> float:
    """Env steps/s of `collect` over ``iterations`` default-sized batches (after one
    warm-up batch that resets the envs and starts the actors' work)."""
    runner = agent(env_id, n_envs, workers)
    try:
        runner.trainer.collector.collect(BATCH // n_envs)
        started = time.perf_counter()
        for _ in range(iterations):
            runner.trainer.collector.collect(BATCH // n_envs)
        return iterations * BATCH / (time.perf_counter() - started)
    finally:
        runner.close()


def iteration_seconds(env_id: str, n_envs: int, workers: int, iterations: int) -> dict[str, float]:
    runner = agent(env_id, n_envs, workers)
    try:
        runner.learn(2 * BATCH)  # warm-up
        runner.learn((2 + iterations) * BATCH)  # wall_sec counts from this call's start
        rows = runner.metrics[2:]
        wall = rows[-1]["wall_sec"] / iterations
        rollout = statistics.mean(row["rollout_sec"] for row in rows)
        return {"iteration_sec": wall, "rollout_sec": rollout}
    finally:
        runner.close()


def communication(env_id: str, n_envs: int, workers: int, iterations: int) -> dict[str, Any]:
    runner = agent(env_id, n_envs, workers)
    try:
        runner.trainer.collector.collect(BATCH // n_envs)
        timings = []
        for _ in range(iterations):
            runner.trainer.collector.collect(BATCH // n_envs)
            timings.append(runner.trainer.collector.timing)
        return {
            "workers": workers,
            "broadcast_bytes": timings[0].broadcast_bytes,
            "gather_bytes": timings[0].gather_bytes,
            "broadcast_ms": 1e3 * statistics.median(t.broadcast_sec for t in timings),
            "overhead_ms": 1e3
            * statistics.median(t.collect_sec - t.slowest_worker_sec for t in timings),
            "collect_ms": 1e3 * statistics.median(t.collect_sec for t in timings),
        }
    finally:
        runner.close()


def learner_seconds(env_id: str, batch: int, **settings: Any) -> dict[str, float]:
    runner = TRPO(env_id, steps_per_iter=batch, eval_every=0, **settings)
    try:
        row = runner.learn(batch).metrics[-1]
        return {"policy_sec": row["policy_sec"], "value_sec": row["value_sec"]}
    finally:
        runner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--envs-per-worker", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ray-scaling.json"))
    args = parser.parse_args()
    env_id, per_worker, n = args.env, args.envs_per_worker, args.iterations

    rates: dict[str, list[float]] = {"local": [], "ray1": [], "ray2": []}
    ends: dict[str, list[dict[str, float]]] = {"local": [], "ray2": []}
    for _ in range(args.repeats):
        rates["local"].append(rollout_rate(env_id, per_worker, 0, n))
        rates["ray1"].append(rollout_rate(env_id, per_worker, 1, n))
        rates["ray2"].append(rollout_rate(env_id, 2 * per_worker, 2, n))
        ends["local"].append(iteration_seconds(env_id, 2 * per_worker, 0, n))
        ends["ray2"].append(iteration_seconds(env_id, 2 * per_worker, 2, n))
    comms = [communication(env_id, 8, workers, n) for workers in (1, 2, 4)]
    learner = {
        batch: {
            "defaults": learner_seconds(env_id, batch),
            "opt_in": learner_seconds(
                env_id, batch, fvp_subsample=0.25, value_minibatch=batch // 16
            ),
        }
        for batch in (1024, 8192, 65536)
    }

    ratio = [r / local for r, local in zip(rates["ray2"], rates["local"], strict=True)]
    end_ratio = [
        local["iteration_sec"] / ray["iteration_sec"]
        for local, ray in zip(ends["local"], ends["ray2"], strict=True)
    ]
    print(f"## {env_id}: rollout phase, {BATCH} transitions an iteration, env steps/s\n")
    k = per_worker
    print(f"| repeat | local, 1 process × {k} envs | Ray 1 × {k} | Ray 2 × {k} | Ray 2 / local |")
    print("|---|---|---|---|---|")
    for i in range(args.repeats):
        print(
            f"| {i + 1} | {rates['local'][i]:,.0f} | {rates['ray1'][i]:,.0f} "
            f"| {rates['ray2'][i]:,.0f} | {ratio[i]:.2f} |"
        )
    print(f"\nmedian Ray 2 / local: **{statistics.median(ratio):.2f}**\n")
    print(f"## {env_id}: end to end, n_envs {2 * per_worker}, seconds per iteration\n")
    print("| repeat | local | Ray, 2 workers | local / Ray | rollout share local / Ray |")
    print("|---|---|---|---|---|")
    for i in range(args.repeats):
        local, ray = ends["local"][i], ends["ray2"][i]
        print(
            f"| {i + 1} | {local['iteration_sec']:.3f} | {ray['iteration_sec']:.3f} "
            f"| {end_ratio[i]:.2f} | {local['rollout_sec'] / local['iteration_sec']:.0%} / "
            f"{ray['rollout_sec'] / ray['iteration_sec']:.0%} |"
        )
    print(f"\nmedian local / Ray: **{statistics.median(end_ratio):.2f}**\n")
    print(f"## {env_id}: broadcast and gather per iteration (8 envs in all)\n")
    print("| workers | weights put | ms | batches returned | overhead ms | collect ms |")
    print("|---|---|---|---|---|---|")
    for c in comms:
        print(
            f"| {c['workers']} | {c['broadcast_bytes']:,} B | {c['broadcast_ms']:.2f} "
            f"| {c['gather_bytes']:,} B | {c['overhead_ms']:.1f} | {c['collect_ms']:.1f} |"
        )
    print(f"\n## {env_id}: the learner's seconds per iteration as the batch grows\n")
    print("| batch | policy step | value fit | policy step, fvp 0.25 | value fit, minibatch B/16 |")
    print("|---|---|---|---|---|")
    for batch, times in learner.items():
        plain, opt_in = times["defaults"], times["opt_in"]
        print(
            f"| {batch:,} | {plain['policy_sec']:.3f} | {plain['value_sec']:.3f} "
            f"| {opt_in['policy_sec']:.3f} | {opt_in['value_sec']:.3f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "env": env_id,
                "envs_per_worker": per_worker,
                "batch": BATCH,
                "rollout_steps_per_sec": rates,
                "rollout_ratio_median": statistics.median(ratio),
                "end_to_end": ends,
                "end_to_end_ratio_median": statistics.median(end_ratio),
                "communication": comms,
                "learner_seconds": learner,
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                "torch": torch.__version__,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
